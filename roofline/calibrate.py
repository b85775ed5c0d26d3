"""`kb calibrate`: measure the achievable ceilings of the GPU present and save a measured profile.

A ceiling that is lower than what some real kernel reaches puts T_SOL above that kernel's time, so
each measured field is the best of a battery, every call timed as the evaluator times kernels
(after a device sync and an L2 flush, which also lets the clocks recover between calls; a
calibration of back-to-back 8192^3 GEMMs ran power-throttled at 768-793 TFLOP/s bf16 on an H100
while smaller GEMMs in the evaluator beat that):
  dram_bandwidth   max over a device copy (bytes read + written), a read-only reduction and a
                   write-only fill, at two sizes well above L2
  tensor.<class>   2*M*N*K / time, max over BATTERY_SHAPES x layouts (NN, NT, TN for bf16, fp16
                   (class bf16), fp32 with TF32 (class tf32); fp8 e4m3 via torch._scaled_mm and
                   int8 via torch._int_mm in the layouts they accept)
  cuda.fp32        a Triton kernel of independent FMA chains held in registers (2 FLOPs per FMA)
  sfu              a Triton kernel of exp2 chains (MUFU.EX2 results per second)
  launch_floor_s   the shortest event-timed duration of an empty kernel
Trust: a measured rate more than (1 - TRUST_FLOOR) below the datasheet's means the battery did not
find the peak (throttled GPU, another process, a slow library path), so that field keeps the
datasheet figure. `profile.sources[field]` says, per field, which figure is used and why, and
`profile.measured` lists only the fields taken from the measurement. `raise_to_observed` lifts
fields to what timed kernels reached on this GPU (a rate is at least work / time), so a measured
profile is never below any measurement it has been shown.
"""

from __future__ import annotations

import contextlib
import statistics
from dataclasses import replace

import torch

from .hardware import DATASHEETS, HardwareProfile, canonical_name, measured_from, save_profile

TRUST_FLOOR = 0.6          # a measured ceiling below this fraction of the datasheet's is not used
# (M, N, K): square, the skinny shapes of projection layers (N=2048, K=4096, M=8k-16k), wide and deep K
BATTERY_SHAPES = ((4096, 4096, 4096), (8192, 8192, 8192), (8192, 2048, 4096), (12288, 2048, 4096),
                  (16384, 2048, 4096), (4096, 16384, 4096), (4096, 4096, 16384), (16384, 8192, 4096))
LAYOUTS = ("NN", "NT", "TN")   # whether A (first letter) and B (second) are stored transposed


class Timer:
    """Best seconds per call, each call after a device sync and an L2 flush (the evaluator's protocol)."""

    def __init__(self, l2_bytes: int):
        self.flush = torch.empty(2 * l2_bytes, dtype=torch.uint8, device="cuda")

    def __call__(self, fn, reps: int = 10, warmup: int = 3) -> float:
        for _ in range(warmup):
            fn()
        best = float("inf")
        for _ in range(reps):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            self.flush.zero_()
            start.record()
            fn()
            end.record()
            end.synchronize()
            best = min(best, start.elapsed_time(end) * 1e-3)
        return best


def dram_bandwidth(timer: Timer, l2_bytes: int) -> dict[str, float]:
    """Bytes per second of copy, read and write, each the best of two sizes (16x L2 and 2 GiB+)."""
    found: dict[str, float] = {}
    for n_bytes in (16 * l2_bytes, max(32 * l2_bytes, 1 << 31)):
        x = torch.randn(n_bytes // 4, device="cuda")
        y = torch.empty_like(x)
        size = x.numel() * 4
        for kind, fn, moved in (("copy", lambda: y.copy_(x), 2 * size), ("read", lambda: torch.sum(x), size),
                                ("write", lambda: y.fill_(1.0), size)):
            found[kind] = max(found.get(kind, 0.0), moved / timer(fn))
        x = y = None
        torch.cuda.empty_cache()
    return found


def _operands(m: int, n: int, k: int, layout: str, make):
    """A (m, k) and B (k, n) made by make(rows, cols), stored transposed where the layout says T."""
    a = make(k, m).t() if layout[0] == "T" else make(m, k)
    b = make(n, k).t() if layout[1] == "T" else make(k, n)
    return a, b


def matmul_rates(timer: Timer) -> tuple[dict[str, float], dict[str, str]]:
    """class -> best FLOP/s over the battery, and class -> the shape and layout that reached it."""
    rates: dict[str, float] = {}
    where: dict[str, str] = {}
    one = torch.ones((), device="cuda")

    def randn(dtype):
        return lambda r, c: torch.randn(r, c, device="cuda").to(dtype)

    def int8(r, c):
        return torch.randint(-8, 8, (r, c), device="cuda", dtype=torch.int8)

    cases = [("bf16", randn(torch.bfloat16), torch.mm, LAYOUTS), ("bf16", randn(torch.float16), torch.mm, LAYOUTS),
             ("tf32", randn(torch.float32), torch.mm, LAYOUTS),
             ("fp8", randn(torch.float8_e4m3fn),
              lambda a, b: torch._scaled_mm(a, b, one, one, out_dtype=torch.bfloat16, use_fast_accum=True), ("NT",)),
             ("int8", int8, torch._int_mm, ("NT", "NN"))]
    for cls, make, run, layouts in cases:
        for m, n, k in BATTERY_SHAPES:
            for layout in layouts:
                try:
                    a, b = _operands(m, n, k, layout, make)
                    with _tf32() if cls == "tf32" else contextlib.nullcontext():
                        rate = 2 * m * n * k / timer(lambda: run(a, b), reps=5, warmup=2)
                except (RuntimeError, torch.OutOfMemoryError):   # a layout the library refuses
                    continue
                finally:
                    a = b = None
                if rate > rates.get(cls, 0.0):
                    rates[cls], where[cls] = rate, f"{layout} {m}x{n}x{k} ({a_dtype(make)})"
        torch.cuda.empty_cache()
    return rates, where


def a_dtype(make) -> str:
    return str(make(1, 1).dtype).replace("torch.", "")


@contextlib.contextmanager
def _tf32():
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous


def triton_kernels():
    """The three Triton kernels calibration times (None without Triton)."""
    try:
        import triton
        import triton.language as tl
    except ImportError:
        return None

    @triton.jit
    def fma_chains(out, a, b, iters, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        x0 = offs.to(tl.float32) * 1e-9
        x1, x2, x3, x4, x5, x6, x7 = x0 + 1, x0 + 2, x0 + 3, x0 + 4, x0 + 5, x0 + 6, x0 + 7
        for _ in range(iters):            # 8 independent chains: 8 FMAs (16 FLOPs) per element per step
            x0 = x0 * a + b
            x1 = x1 * a + b
            x2 = x2 * a + b
            x3 = x3 * a + b
            x4 = x4 * a + b
            x5 = x5 * a + b
            x6 = x6 * a + b
            x7 = x7 * a + b
        tl.store(out + offs, x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7)

    @triton.jit
    def exp2_chains(out, iters, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        x0 = offs.to(tl.float32) * 1e-9
        x1, x2, x3 = x0 + 0.25, x0 + 0.5, x0 + 0.75
        for _ in range(iters):            # 4 exp2 per element per step; values stay in [0, 1)
            x0 = tl.exp2(x0) - 1.0
            x1 = tl.exp2(x1) - 1.0
            x2 = tl.exp2(x2) - 1.0
            x3 = tl.exp2(x3) - 1.0
        tl.store(out + offs, x0 + x1 + x2 + x3)

    @triton.jit
    def empty(out):
        pass

    return fma_chains, exp2_chains, empty


def triton_rates(sm_count: int, timer: Timer) -> dict[str, float]:
    """fp32 FMA and exp2 (SFU) throughput from register-resident Triton loops; {} without Triton."""
    kernels = triton_kernels()
    if kernels is None:
        return {}
    fma_chains, exp2_chains, empty = kernels
    block, iters = 1024, 4096
    elements = sm_count * 64 * block
    out = torch.empty(elements, device="cuda")
    grid = (elements // block,)
    t = timer(lambda: fma_chains[grid](out, 0.999, 1e-3, iters, BLOCK=block), reps=5)
    fp32 = 16 * iters * elements / t
    t = timer(lambda: exp2_chains[grid](out, iters // 4, BLOCK=block), reps=5)
    sfu = 4 * (iters // 4) * elements / t
    durations = []
    for _ in range(3):
        empty[(1,)](out)
    sleep = getattr(torch.cuda, "_sleep", None)
    for _ in range(200):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        if sleep is not None:   # the GPU is busy while the host queues start, kernel, end (as behind the
            sleep(200_000)      # evaluator's L2 flush): the events then see GPU time only
        start.record()
        empty[(1,)](out)
        end.record()
        end.synchronize()
        durations.append(start.elapsed_time(end) * 1e-3)
    return {"cuda.fp32": fp32, "sfu": sfu, "launch_floor_s": min(durations),
            "_launch_median_s": statistics.median(durations)}


def trusted_profile(name: str, values: dict[str, float], notes: dict[str, str], device_name: str = "") -> HardwareProfile:
    """The measured profile: each measured field used where it is at least TRUST_FLOOR of the
    datasheet's (launch_floor_s, a floor not a rate, always), else the datasheet figure; sources say which."""
    sheet = DATASHEETS[canonical_name(name)]
    used, sources = {}, {}
    for key, value in values.items():
        group, _, cls = key.partition(".")
        datasheet = getattr(sheet, group)[cls] if cls else getattr(sheet, key)
        ratio = value / datasheet
        if key == "launch_floor_s" or ratio >= TRUST_FLOOR:
            used[key] = value
            sources[key] = f"measured {value:.4g} ({ratio:.2f}x datasheet){': ' + notes[key] if key in notes else ''}"
        else:
            sources[key] = (f"datasheet: measured {value:.4g} is {ratio:.2f}x the datasheet's, below "
                            f"{TRUST_FLOOR}: not trusted")
    profile = measured_from(name, used, device_name=device_name)
    return replace(profile, sources={**profile.sources, **sources})


def raise_to_observed(profile: HardwareProfile, observations) -> tuple[HardwareProfile, list[str]]:
    """Lift the profile's ceilings so that no observation beats its bound: for a kernel that took
    `seconds` for a workload, T_SOL <= seconds needs every resource's time within seconds - floor.

    `observations`: dicts with label, seconds, tensor_flops {class: FLOPs}, sfu (results), bytes.
    Returns the raised profile and one line per change."""
    tensor, cuda = dict(profile.tensor), dict(profile.cuda)
    top = {"sfu": profile.sfu, "dram_bandwidth": profile.dram_bandwidth, "launch_floor_s": profile.launch_floor_s}
    sources, changes = dict(profile.sources), []

    def lift(key, old, new, label):
        sources[key] = f"raised from {old:.4g} to {new:.4g}: {label} achieved it"
        changes.append(f"{key}: {old:.4g} -> {new:.4g} ({label})")

    for obs in observations:
        seconds, label = obs["seconds"], obs["label"]
        if seconds <= 0:
            continue
        if seconds <= 2 * top["launch_floor_s"]:
            lift("launch_floor_s", top["launch_floor_s"], seconds / 2, label)
            top["launch_floor_s"] = seconds / 2
        budget = seconds - top["launch_floor_s"]
        flops = {c: n for c, n in obs.get("tensor_flops", {}).items() if n}
        tensor_time = sum(n / _rate(tensor, cuda, c) for c, n in flops.items())
        if tensor_time > budget:
            for c in flops:
                old = _rate(tensor, cuda, c)
                tensor[c] = old * tensor_time / budget
                lift(f"tensor.{c}", old, tensor[c], label)
        sfu_rate = top["sfu"] + cuda["fp32"] / 4
        if obs.get("sfu", 0) / sfu_rate > budget:
            new = obs["sfu"] / budget - cuda["fp32"] / 4
            lift("sfu", top["sfu"], new, label)
            top["sfu"] = new
        if obs.get("bytes", 0) / top["dram_bandwidth"] > budget:
            new = obs["bytes"] / budget
            lift("dram_bandwidth", top["dram_bandwidth"], new, label)
            top["dram_bandwidth"] = new
    return replace(profile, tensor=tensor, cuda=cuda, sources=sources, **top), changes


def _rate(tensor: dict, cuda: dict, cls: str) -> float:
    return tensor.get(cls) or tensor.get({"fp4": "fp8", "fp8": "bf16", "int8": "bf16"}.get(cls, "bf16")) or cuda["fp32"]


def calibrate(out: str | None = None, profile_dir=None) -> tuple[HardwareProfile, dict, str]:
    """Measure the GPU present; returns (profile, raw measurements, saved path)."""
    if not torch.cuda.is_available():
        raise RuntimeError("kb calibrate needs a CUDA GPU")
    device_name = torch.cuda.get_device_name(0)
    name = canonical_name(device_name)
    props = torch.cuda.get_device_properties(0)
    l2 = getattr(props, "L2_cache_size", 0) or DATASHEETS[name].l2_bytes
    timer = Timer(l2)
    raw: dict[str, float] = {}
    bandwidth = dram_bandwidth(timer, l2)
    raw.update({f"dram.{k}": v for k, v in bandwidth.items()})
    rates, where = matmul_rates(timer)
    raw.update({f"tensor.{k}": v for k, v in rates.items()})
    raw.update(triton_rates(props.multi_processor_count, timer))
    values = {k: v for k, v in raw.items() if not k.startswith(("dram.", "_"))}
    values["dram_bandwidth"] = max(bandwidth.values())
    best_dram = max(bandwidth, key=bandwidth.get)
    notes = {f"tensor.{c}": f"best of the battery at {w}" for c, w in where.items()}
    notes["dram_bandwidth"] = f"best of copy/read/write: {best_dram}"
    profile = trusted_profile(name, values, notes, device_name=device_name)
    path = save_profile(profile, out, profile_dir) if profile_dir else save_profile(profile, out)
    return profile, raw, str(path)
