"""What every job needs before it evaluates anything: the store, the environment, T_SOL per workload."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from kernelbench.core.settings import Settings
from kernelbench.eval.gpu_state import environment_info
from roofline import sol_ms_by_uuid
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
        return {"hardware": self.environment["hardware"], "device": self.environment["device"],
                "libs": self.environment["libs"], "roofline_profile": f"{self.hardware}/{self.profile}"}

    def sol_ms(self, problem: Problem) -> dict[str, float]:
        """T_SOL in ms per workload uuid from the roofline; empty on CPU, where no roofline describes the device."""
        if not self.on_gpu:
            return {}
        key = (problem.name, definition_hash(problem))
        if key not in self.sol_cache:
            self.sol_cache[key] = roofline_sol_ms(problem, self.hardware, self.settings)
        return self.sol_cache[key]


def roofline_hardware(environment: dict) -> str:
    if environment.get("device") == "cuda":
        for fragment, name in _HARDWARE_NAMES:
            if fragment in environment.get("hardware", ""):
                return name
    return DEFAULT_HARDWARE


def roofline_sol_ms(problem: Problem, hardware: str, settings: Settings) -> dict[str, float]:
    return sol_ms_by_uuid(problem, hardware, settings.profile, settings)


def definition_hash(problem: Problem) -> str:
    return json_hash(asdict(problem.definition))
