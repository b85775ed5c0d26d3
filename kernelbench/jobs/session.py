"""What every job needs before it evaluates anything: the store, the environment, T_SOL per workload."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from kernelbench.core.settings import Settings
from kernelbench.eval.gpu_state import environment_info
from roofline import WorkloadSOL, load_profile, sol_for_problem
from kernelbench.core.problem import Problem
from kernelbench.core.store import Store, json_hash

DEFAULT_HARDWARE = "H200"
# GPU names (as the driver reports them) -> roofline hardware profile names.
_HARDWARE_NAMES = (("H200", "H200"), ("H100", "H100"), ("B200", "B200"), ("A100", "A100"))


@dataclass
class Session:
    settings: Settings
    store: Store
    device: str
    environment: dict
    environment_id: int
    hardware: str              # roofline profile name the scores use
    sol_cache: dict = field(default_factory=dict)

    @classmethod
    def open(cls, settings: Settings, device: str) -> "Session":
        store = Store(settings.db)
        environment = environment_info(device)
        environment_id = store.environment_id(environment["fingerprint"], environment["hardware"],
                                              environment["device"], environment)
        return cls(settings, store, device, environment, environment_id,
                   settings.hardware or roofline_hardware(environment))

    @property
    def profile(self) -> str:
        return self.settings.profile

    @property
    def on_gpu(self) -> bool:
        return self.device.startswith("cuda")

    def trace_environment(self) -> dict:
        """What a trace records of where it was measured; the roofline profile by its id (a measured
        one carries its date) and, on a GPU, where each ceiling came from."""
        environment = {"hardware": self.environment["hardware"], "device": self.environment["device"],
                       "libs": self.environment["libs"], "roofline_profile": f"{self.hardware}/{self.profile}"}
        if self.on_gpu:
            profile = load_profile(self.hardware, self.profile, self.settings.profile_dir)
            environment.update(roofline_profile=profile.profile_id, roofline_sources=dict(profile.sources))
        return environment

    def sol(self, problem: Problem) -> dict[str, WorkloadSOL]:
        """The roofline per workload uuid (T_SOL, binding unit, bytes, FLOPs); empty on CPU, where no
        roofline describes the device."""
        if not self.on_gpu:
            return {}
        key = (problem.name, definition_hash(problem))
        if key not in self.sol_cache:
            sols = sol_for_problem(problem, self.hardware, self.settings.profile, self.settings)
            self.sol_cache[key] = {s.uuid: s for s in sols}
        return self.sol_cache[key]

    def sol_ms(self, problem: Problem) -> dict[str, float]:
        """T_SOL in ms per workload uuid, for the workloads the roofline could count (empty on CPU)."""
        return {uuid: s.t_sol_s * 1e3 for uuid, s in self.sol(problem).items() if s.t_sol_s is not None}


def roofline_hardware(environment: dict) -> str:
    if environment.get("device") == "cuda":
        for fragment, name in _HARDWARE_NAMES:
            if fragment in environment.get("hardware", ""):
                return name
    return DEFAULT_HARDWARE


def definition_hash(problem: Problem) -> str:
    return json_hash(asdict(problem.definition))
