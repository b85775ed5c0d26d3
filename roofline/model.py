"""T_SOL of a workload: the time no correct kernel can beat on the named hardware.

    T_SOL = max(T_tensor, T_sfu, T_dram) + T_launch          (T_cuda reported beside it)

    T_tensor = sum over tensor-core classes c of FLOPs_c / rate_c   (classes share the tensor cores)
    T_cuda   = sum over CUDA classes c of FLOPs_c / rate_c          (fp32, packed fp16, fp64 share the lanes)
    T_sfu    = SFU results / (sfu_rate + fp32_rate / 4)
               A transcendental can also be computed on the FMA pipe by a short polynomial
               (FlashAttention-4 emulates exp2 so on Blackwell); at no fewer than 4 FMA-pipe
               operations each, SFU and FMA pipes together give at most sfu + fp32/4 results/s.
    T_dram   = (bytes read + bytes written) / DRAM bandwidth

The units run concurrently, so the slowest one bounds the kernel: the max, not the sum.

T_cuda is computed and reported but does not raise T_SOL: CUDA-core FLOPs are counted from the
reference's formulation, which is not a lower bound on elementwise work. A reference may take an
algorithmically costlier route than a kernel needs (the Mamba references scan with a Hillis-Steele
parallel prefix, O(L log L) multiply-adds, where the sequential recurrence does O(L)); counting it
would put T_SOL above real kernels on exactly those workloads. When the reference's own CUDA-core
work would exceed T_SOL the result says so in its notes. Matrix work is kept (its 2*M*N*K does not
depend on how the reference is written, masks aside, which the counter handles), and so are SFU
results (each transcendental a computation needs is produced at least once; references rarely
recompute them, and where one does, e.g. logsumexp beside softmax of the same scores, SFU time
stays far below the tensor or memory time of those workloads).
T_launch is added once: every kernel pays its launch and completion, which no work overlaps
(0.5 us on datasheet profiles, the measured empty-kernel time on measured ones; hardware.py).

Writing outputs counts against DRAM even though a write may end in L2: the evaluator flushes
L2 before each timed call by writing a buffer twice its size, so L2 is full of dirty lines and
every line a kernel allocates (read or written) forces a write-back of at least as many bytes.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from kernelbench.core.errors import KernelBenchError
from kernelbench.core.problem import Problem, Workload
from kernelbench.core.inputs import safetensors_path
from kernelbench.core.reference import compile_reference
from kernelbench.core.settings import DEFAULTS, Settings

from .counter import COUNTER_VERSION, Count, CountError, count_workload
from .hardware import HardwareProfile, load_profile

FMA_OPS_PER_TRANSCENDENTAL = 4
_MEMORY: dict[str, Count] = {}


@dataclass
class WorkloadSOL:
    """T_SOL of one workload, or, when it could not be counted, t_sol_s None and the `reason`."""
    index: int
    uuid: str
    axes: dict[str, int]
    hardware: str
    profile_id: str
    t_sol_s: float | None
    binding: str                           # tensor | sfu | dram (| launch when all work is ~0); "" uncounted
    times_s: dict[str, float]              # per resource, before the launch floor
    launch_floor_s: float
    tensor_flops: dict[str, float]
    cuda_flops: dict[str, float]
    sfu_ops: float
    bytes_read: int
    bytes_written: int
    counted_on: str                        # meta | values | cpu; "" uncounted
    notes: list[str] = field(default_factory=list)
    published_t_sol_s: float | None = None
    reason: str | None = None              # why there is no T_SOL
    read_by_input: dict[str, int] = field(default_factory=dict)
    written_by_output: dict[str, int] = field(default_factory=dict)

    @classmethod
    def uncounted(cls, index: int, workload: Workload, axes: dict[str, int], profile: HardwareProfile,
                  reason: str, published: float | None = None) -> "WorkloadSOL":
        return cls(index=index, uuid=workload.uuid, axes=axes, hardware=profile.name, profile_id=profile.profile_id,
                   t_sol_s=None, binding="", times_s={}, launch_floor_s=profile.launch_floor_s, tensor_flops={},
                   cuda_flops={}, sfu_ops=0.0, bytes_read=0, bytes_written=0, counted_on="",
                   published_t_sol_s=published, reason=reason)

    @property
    def flops(self) -> float:
        return sum(self.tensor_flops.values()) + sum(self.cuda_flops.values())

    @property
    def bytes(self) -> int:
        return self.bytes_read + self.bytes_written

    @property
    def intensity(self) -> float | None:
        """FLOPs per DRAM byte (None when uncounted)."""
        if self.t_sol_s is None:
            return None
        return self.flops / self.bytes if self.bytes else float("inf")

    @property
    def ratio_to_published(self) -> float | None:
        return self.t_sol_s / self.published_t_sol_s if self.published_t_sol_s and self.t_sol_s else None

    def to_dict(self) -> dict:
        data = asdict(self)
        data.update(flops=self.flops, bytes=self.bytes, intensity=self.intensity,
                    ratio_to_published=self.ratio_to_published)
        return data


def bound(count: Count, profile: HardwareProfile) -> tuple[float, str, dict[str, float]]:
    """(T_SOL, binding resource, per-resource times) of a count on a profile."""
    times = {
        "tensor": sum(n / profile.tensor_rate(c) for c, n in count.tensor_flops.items()),
        "cuda": sum(n / profile.cuda[c] for c, n in count.cuda_flops.items()),
        "sfu": count.sfu / (profile.sfu + profile.cuda["fp32"] / FMA_OPS_PER_TRANSCENDENTAL),
        "dram": (count.bytes_read + count.bytes_written) / profile.dram_bandwidth,
    }
    bounding = {k: v for k, v in times.items() if k != "cuda"}
    binding = max(bounding, key=bounding.get)
    if bounding[binding] == 0:
        binding = "launch"
    return max(bounding.values()) + profile.launch_floor_s, binding, times


# ------------------------------------------------------------------------------ counting, cached

def _cache_key(problem: Problem, workload: Workload, data_root: Path) -> str:
    blobs = sorted(n for n, s in workload.inputs.items()
                   if s.kind == "safetensors" and safetensors_path(s.path, data_root).is_file())
    payload = json.dumps({
        "v": COUNTER_VERSION, "reference": problem.definition.reference,
        "entry": problem.definition.custom_inputs_entrypoint, "axes": problem.axes_for(workload),
        "inputs": {n: [s.kind, s.value, s.path, s.tensor_key] for n, s in workload.inputs.items()},
        "specs": {n: [s.shape, s.dtype] for n, s in {**problem.definition.inputs,
                                                    **problem.definition.outputs}.items()},
        "blobs": blobs,
    }, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def _known(key: str, directory: Path | None) -> Count | str | None:
    """The remembered count of a key, the reason it could not be counted (a str), or None."""
    if key in _MEMORY:
        return _MEMORY[key]
    path = directory / f"{key}.json" if directory else None
    if path is not None and path.is_file():
        try:
            data = json.loads(path.read_text())
            _MEMORY[key] = data["uncounted"] if "uncounted" in data else Count.from_dict(data)
            return _MEMORY[key]
        except (ValueError, TypeError, KeyError):
            pass
    return None


def _remember(key: str, count: Count | str, directory: Path | None) -> None:
    _MEMORY[key] = count
    if directory is None:
        return
    try:
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f"{key}.tmp{os.getpid()}"
        tmp.write_text(json.dumps({"uncounted": count} if isinstance(count, str) else count.to_dict()))
        tmp.replace(directory / f"{key}.json")
    except OSError:
        pass


def _count_or_reason(problem: Problem, workload: Workload, module, data_root: Path) -> Count | str:
    try:
        return count_workload(problem, workload, module, data_root=data_root)
    except CountError as exc:
        return str(exc)


def cached_count(problem: Problem, workload: Workload, module=None, settings: Settings = DEFAULTS) -> Count | str:
    """count_workload, or the reason it cannot count (a str), remembered in memory and under
    settings.roofline_cache (keyed by reference, axes, inputs and which blobs exist under the data root)."""
    key = _cache_key(problem, workload, settings.data_root)
    count = _known(key, settings.roofline_cache)
    if count is None:
        count = _count_or_reason(problem, workload, module, settings.data_root)
        _remember(key, count, settings.roofline_cache)
    return count


_PENDING: list = []


def _count_pending(i: int):
    problem, workload, key, data_root = _PENDING[i]
    try:
        return key, _count_or_reason(problem, workload, None, data_root)
    except Exception:            # not a CountError (a bug of ours): the parent counts it again and reports it
        return key, None


def _size(item) -> int:
    """Input elements of a pending workload, times 16 for references that loop in Python."""
    problem, workload = item[:2]
    axes = problem.axes_for(workload)
    elements = sum(math.prod(problem.shape_of(s, axes) or ()) for s in problem.definition.inputs.values())
    loops = "for " in problem.definition.reference.split("def run", 1)[-1]
    return elements * (16 if loops else 1)


def _single_thread() -> None:
    torch.set_num_threads(1)


def prefetch_counts(problems: list[Problem], jobs: int = 1, settings: Settings = DEFAULTS) -> int:
    """Count the uncached workloads of `problems` in `jobs` forked processes; returns how many."""
    global _PENDING
    cache, root = settings.roofline_cache, settings.data_root
    pending = [(p, w, key, root) for p in problems for w in p.workloads
               for key in [_cache_key(p, w, root)] if _known(key, cache) is None]
    pending.sort(key=_size, reverse=True)           # largest first: no long tail at the end of the pool
    if jobs <= 1 or len(pending) < 2 * jobs or not hasattr(os, "fork"):
        return 0
    problem, workload, key, _ = pending.pop()        # warm torch up on the smallest: the forked workers inherit it
    try:
        _remember(key, _count_or_reason(problem, workload, None, root), cache)
    except Exception:                               # reported when the problem is bounded
        pass
    _PENDING = pending
    try:
        with multiprocessing.get_context("fork").Pool(jobs, initializer=_single_thread) as pool:
            for key, count in pool.imap_unordered(_count_pending, range(len(pending)), chunksize=1):
                if count is not None:
                    _remember(key, count, cache)
    finally:
        _PENDING = []
    return len(pending)


# ------------------------------------------------------------------------------ public API

PUBLISHED_HARDWARE = "B200"   # the public leaderboard's T_SOL is for B200 unless metadata says otherwise


def published_sol(problem: Problem, hardware: str | None = None) -> dict[int, float]:
    """Published T_SOL (seconds) per workload index from a metadata.json beside definition.json;
    empty when `hardware` is given and is not the hardware the published numbers are for."""
    if problem.directory is None:
        return {}
    path = Path(problem.directory) / "metadata.json"
    try:
        sol = json.loads(path.read_text()).get("sol") or {}
    except (OSError, ValueError):
        return {}
    if not sol.get("available", True) or sol.get("sol_is_dummy"):
        return {}
    if hardware is not None and str(sol.get("hardware", PUBLISHED_HARDWARE)).upper() != hardware.upper():
        return {}
    return {int(w.get("index", i)): float(w["sol_ms"]) * 1e-3
            for i, w in enumerate(sol.get("per_workload") or []) if w.get("sol_ms") is not None}


def sol_for_workload(problem: Problem, workload: Workload, profile: HardwareProfile | str = "H200",
                     *, kind: str = "datasheet", index: int | None = None, module=None,
                     published: dict[int, float] | None = None, settings: Settings = DEFAULTS) -> WorkloadSOL:
    """T_SOL of one workload. `profile` is a HardwareProfile or a hardware name (with `kind`).
    A workload that cannot be counted gets t_sol_s None and the reason, never an exception."""
    profile = load_profile(profile, kind, settings.profile_dir) if isinstance(profile, str) else profile
    index = problem.workloads.index(workload) if index is None else index
    published = published_sol(problem, profile.name) if published is None else published
    axes = problem.axes_for(workload)
    try:
        count = cached_count(problem, workload, module, settings)
    except Exception as exc:                        # a bug of ours: still a per-workload answer
        count = f"the counter failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
    if isinstance(count, str):
        return WorkloadSOL.uncounted(index, workload, axes, profile, count, published.get(index))
    t_sol, binding, times = bound(count, profile)
    notes = list(count.notes)
    if times["cuda"] > t_sol - profile.launch_floor_s:
        notes.append(f"the reference's CUDA-core work as written ({times['cuda'] * 1e6:.3g} us) exceeds the "
                     f"bound; not counted in T_SOL (a kernel may restructure it)")
    return WorkloadSOL(
        index=index, uuid=workload.uuid, axes=axes, hardware=profile.name,
        profile_id=profile.profile_id, t_sol_s=t_sol, binding=binding, times_s=times,
        launch_floor_s=profile.launch_floor_s, tensor_flops=dict(count.tensor_flops),
        cuda_flops=dict(count.cuda_flops), sfu_ops=count.sfu, bytes_read=count.bytes_read,
        bytes_written=count.bytes_written, counted_on=count.counted_on, notes=notes,
        published_t_sol_s=published.get(index), read_by_input=dict(count.read_by_input),
        written_by_output=dict(count.written_by_output))


def sol_for_problem(problem: Problem, hardware: str | HardwareProfile = "H200",
                    profile: str = "datasheet", settings: Settings = DEFAULTS) -> list[WorkloadSOL]:
    """T_SOL of every workload of a problem on `hardware` with a datasheet or measured profile
    (a workload that cannot be counted: t_sol_s None and its reason)."""
    prof = load_profile(hardware, profile, settings.profile_dir) if isinstance(hardware, str) else hardware
    published = published_sol(problem, prof.name)
    try:
        module = compile_reference(problem.definition)
    except KernelBenchError as exc:
        return [WorkloadSOL.uncounted(i, w, problem.axes_for(w), prof, f"the reference does not load: {exc}",
                                      published.get(i)) for i, w in enumerate(problem.workloads)]
    return [sol_for_workload(problem, w, prof, index=i, module=module, published=published, settings=settings)
            for i, w in enumerate(problem.workloads)]


def sol_ms_by_uuid(problem: Problem, hardware: str | HardwareProfile, profile: str = "datasheet",
                   settings: Settings = DEFAULTS) -> dict[str, float]:
    """T_SOL in ms per workload uuid, for the workloads that have one."""
    return {s.uuid: s.t_sol_s * 1e3 for s in sol_for_problem(problem, hardware, profile, settings)
            if s.t_sol_s is not None}
