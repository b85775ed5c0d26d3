"""`kb calibrate`: measure the achievable ceilings of the GPU present and save a measured profile.

Measured (each the best of several timed repetitions, CUDA events, after warm-up):
  dram_bandwidth   max of a large device-to-device copy (bytes read + written) and a large
                   read-only reduction (bytes read); buffers 16x the L2 size
  tensor.<class>   dense matrix products: bf16, fp16 (class bf16 takes the faster),
                   fp32 with TF32 allowed (class tf32), fp8 e4m3 via torch._scaled_mm,
                   int8 via torch._int_mm; 2*M*N*K / time at the best of a few large shapes
  cuda.fp32        a Triton kernel of independent FMA chains held in registers (2 FLOPs per FMA)
  sfu              a Triton kernel of exp2 chains (MUFU.EX2 results per second)
  launch_floor_s   the shortest event-timed duration of an empty kernel
Fields not measured keep their datasheet figure; the profile lists which were measured.

The measured ceilings are what the best kernels we know reach; the bound they give is
tighter but rests on that: a kernel that beats a measured ceiling would be flagged, and the
datasheet profile remains the unconditional bound.
"""

from __future__ import annotations

import contextlib
import statistics

import torch

from .hardware import HardwareProfile, canonical_name, measured_from, save_profile


def _time(fn, reps: int = 10, warmup: int = 3) -> float:
    """Best seconds per call of fn() over `reps` event-timed calls."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        best = min(best, start.elapsed_time(end) * 1e-3)
    return best


def dram_bandwidth(l2_bytes: int) -> dict[str, float]:
    n = max(16 * l2_bytes, 1 << 31) // 4
    x = torch.randn(n, device="cuda")
    y = torch.empty_like(x)
    copy = 2 * x.numel() * 4 / _time(lambda: y.copy_(x))
    read = x.numel() * 4 / _time(lambda: torch.sum(x))
    return {"copy": copy, "read": read}


def matmul_rates() -> dict[str, float]:
    rates: dict[str, float] = {}
    shapes = [(8192, 8192, 8192), (16384, 8192, 8192), (8192, 16384, 4096)]

    def best(make, run):
        value = 0.0
        for m, n, k in shapes:
            try:
                a, b = make(m, n, k)
                value = max(value, 2 * m * n * k / _time(lambda: run(a, b), reps=5))
            except (RuntimeError, torch.OutOfMemoryError):
                continue
            finally:
                torch.cuda.empty_cache()
        return value

    for dtype in (torch.bfloat16, torch.float16):
        rates["bf16"] = max(rates.get("bf16", 0.0), best(
            lambda m, n, k: (torch.randn(m, k, device="cuda", dtype=dtype),
                             torch.randn(k, n, device="cuda", dtype=dtype)), torch.mm))
    with _tf32():
        rates["tf32"] = best(lambda m, n, k: (torch.randn(m, k, device="cuda"), torch.randn(k, n, device="cuda")),
                             torch.mm)
    one = torch.ones((), device="cuda")
    rates["fp8"] = best(lambda m, n, k: (torch.randn(m, k, device="cuda").to(torch.float8_e4m3fn),
                                         torch.randn(n, k, device="cuda").to(torch.float8_e4m3fn).t()),
                        lambda a, b: torch._scaled_mm(a, b, one, one, out_dtype=torch.bfloat16, use_fast_accum=True))
    rates["int8"] = best(lambda m, n, k: (torch.randint(-8, 8, (m, k), device="cuda", dtype=torch.int8),
                                          torch.randint(-8, 8, (n, k), device="cuda", dtype=torch.int8).t()),
                         torch._int_mm)
    return {k: v for k, v in rates.items() if v > 0}


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


def triton_rates(sm_count: int) -> dict[str, float]:
    """fp32 FMA and exp2 (SFU) throughput from register-resident Triton loops; {} without Triton."""
    kernels = triton_kernels()
    if kernels is None:
        return {}
    fma_chains, exp2_chains, empty = kernels
    block, iters = 1024, 4096
    elements = sm_count * 64 * block
    out = torch.empty(elements, device="cuda")
    grid = (elements // block,)
    t = _time(lambda: fma_chains[grid](out, 0.999, 1e-3, iters, BLOCK=block), reps=5)
    fp32 = 16 * iters * elements / t
    t = _time(lambda: exp2_chains[grid](out, iters // 4, BLOCK=block), reps=5)
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


def calibrate(out: str | None = None, profile_dir=None) -> tuple[HardwareProfile, dict, str]:
    """Measure the GPU present; returns (profile, raw measurements, saved path)."""
    if not torch.cuda.is_available():
        raise RuntimeError("kb calibrate needs a CUDA GPU")
    device_name = torch.cuda.get_device_name(0)
    name = canonical_name(device_name)
    props = torch.cuda.get_device_properties(0)
    raw: dict[str, float] = {}
    bandwidth = dram_bandwidth(getattr(props, "L2_cache_size", 50 << 20))
    torch.cuda.empty_cache()
    raw.update({f"dram.{k}": v for k, v in bandwidth.items()})
    raw.update({f"tensor.{k}": v for k, v in matmul_rates().items()})
    raw.update(triton_rates(props.multi_processor_count))
    values = {k: v for k, v in raw.items() if not k.startswith(("dram.", "_"))}
    values["dram_bandwidth"] = max(bandwidth.values())
    profile = measured_from(name, values, device_name=device_name)
    path = save_profile(profile, out, profile_dir) if profile_dir else save_profile(profile, out)
    return profile, raw, str(path)
