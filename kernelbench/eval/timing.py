"""The timer: DESIGN.md's measurement protocol, one function per clock.

Per timed iteration, outside the timed window: the call's inputs are copied into the next
slot of a rotating pool (a fresh address, and in-place changes by the previous call undone),
from the pristine inputs or, as the evaluator does it, from newly generated values (a cache
keyed by values never hits), then L2 is flushed by writing a buffer twice its size. Inside:
CUDA events around the call plus a device-wide synchronize, so work the call puts on any
stream counts (see ``time_gpu``). The median of the iterations is the number reported, with
the NVML state of the GPU before and after.

On CPU the same pipeline runs with ``time.perf_counter`` and the result says clock="cpu":
those are CPU times (Triton through its interpreter), never comparable with GPU times.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from time import (
    perf_counter,  # bound at import: a solution patching time.perf_counter later does not reach us
)
from typing import Any, Callable, Sequence

import torch

from kernelbench.eval.gpu_state import capture_gpu_state

Observer = Callable[[int, Any], None]  # observe(timed call index, its return value)

# Bound at import for the same reason as perf_counter (the audit checks for patching too).
_cuda_synchronize = torch.cuda.synchronize

DEFAULT_POOL_COPIES = 3
DEFAULT_POOL_BYTES = 2 * 1024**3  # the pool's copies together stay under ~2 GiB (but never fewer than 2)
PREPARED_BYTES = 256 * 1024**2    # fresh values of every call made before timing while they fit in this together
FALLBACK_L2_BYTES = 128 * 1024**2  # if the driver does not report L2: bigger than any current GPU's
CALIBRATION_SLEEP_CYCLES = 100_000  # ~50 us at Hopper clocks: long enough that the host waits in synchronize
CALIBRATION_TRIALS = 25
HOST_CALLS = 10   # back-to-back calls after the timed ones: the host's time a call (details["host_ms_per_call"])
HOST_WARMUP = 3   # untimed calls first: the first call after a sync is slower than the steady state (a cold host)


@dataclass
class TimingConfig:
    warmup: int = 10
    iterations: int = 50
    flush_l2: bool = True

    def __post_init__(self):
        if self.warmup < 0 or self.iterations < 1:
            raise ValueError(f"need warmup >= 0 and iterations >= 1, got {self.warmup} and {self.iterations}")


# ------------------------------------------------------------------ statistics


def percentile(samples: Sequence[float], q: float) -> float:
    """q-th percentile (0..100) with linear interpolation between order statistics (numpy's default)."""
    if not samples:
        raise ValueError("percentile of no samples")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q must be in [0, 100], got {q}")
    ordered = sorted(samples)
    pos = (len(ordered) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summarize(samples: Sequence[float]) -> dict[str, float]:
    samples = list(samples)
    return {
        "median_ms": statistics.median(samples),
        "mean_ms": statistics.fmean(samples),
        "min_ms": min(samples),
        "max_ms": max(samples),
        "stdev_ms": statistics.stdev(samples) if len(samples) > 1 else 0.0,
    }


@dataclass
class TimingResult:
    clock: str  # "cuda_event" (GPU time) or "cpu" (host perf_counter; CPU times)
    device: str
    samples_ms: list[float]
    warmup: int
    l2_flushed: bool
    gpu_state: dict[str, Any] = field(default_factory=dict)  # {"before": nvml snapshot, "after": ...}
    details: dict[str, Any] = field(default_factory=dict)  # how the samples were formed (side-stream tail, pool)
    median_ms: float = field(init=False)
    mean_ms: float = field(init=False)
    min_ms: float = field(init=False)
    max_ms: float = field(init=False)
    stdev_ms: float = field(init=False)
    iterations: int = field(init=False)

    def __post_init__(self):
        for key, value in summarize(self.samples_ms).items():
            setattr(self, key, value)
        self.iterations = len(self.samples_ms)

    def percentile(self, q: float) -> float:
        return percentile(self.samples_ms, q)

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (json.dumps it yourself); ``median_ms`` is the reported latency."""
        return asdict(self)


# ------------------------------------------------------------------ fresh inputs


def _copy_into(dst: torch.Tensor, src: torch.Tensor) -> None:
    try:
        dst.copy_(src)
    except (RuntimeError, NotImplementedError):
        # dtypes with no copy kernel on some backends (float4_e2m1fn_x2): copy the bytes
        dst.view(torch.uint8).copy_(src.view(torch.uint8))


class FreshInputPool:
    """Rotating copies of a call's inputs: ``pool(i)`` -> the argument list for call ``i``.

    Each call gets the next slot (so its tensors sit at a different address than the
    previous call's) refilled from the pristine inputs (so a solution that changes its inputs
    in place never sees its own changes), or, when ``fresh_values`` is given, from
    ``fresh_values(i)``: new values for every call, so that a cache keyed by the values (a
    checksum, a few elements) never hits while timed. Non-tensors (Python scalars) pass through.
    The copies are bounded by ``max_bytes`` together, but there are always at least 2.
    The copy runs on the current stream and is not synchronized: the timer does that.

    With fresh values and ``calls`` (how many calls the timer will make), the values of every call are made
    here, before timing, while they fit in ``prepared_bytes`` together: each call then gets its own tensors (a
    distinct address for every call) and no input generation runs between the timed calls. Generating inputs
    right before a call evicts the host's caches, and the first call after it took 12-35 us longer to launch
    on an H200 (benchmarks/results/launch_overhead/): time a launch-bound call would have been charged for the
    harness's own work.
    """

    def __init__(self, inputs: Sequence[Any] | None = None, copies: int = DEFAULT_POOL_COPIES,
                 max_bytes: int = DEFAULT_POOL_BYTES, fresh_values: Callable[[int], Sequence[Any]] | None = None,
                 calls: int = 0, prepared_bytes: int = PREPARED_BYTES):
        if (inputs is None) == (fresh_values is None):
            raise ValueError("give either the inputs or fresh_values")
        self.fresh_values = fresh_values
        # with fresh values, call 0's values are the template and no pristine copy is kept (memory:
        # the slots plus one call's values)
        self.pristine = list(inputs) if inputs is not None else None
        self._first = list(fresh_values(0)) if fresh_values else None
        template = self.pristine if self.pristine is not None else self._first
        nbytes = sum(v.numel() * v.element_size() for v in template if isinstance(v, torch.Tensor))
        fit = max_bytes // nbytes if nbytes else copies
        self.copies = max(2, min(copies, fit))
        self.prepared: list[list[Any]] = []
        if fresh_values is not None and calls and nbytes * calls <= prepared_bytes:
            self.prepared = [self._first] + [list(fresh_values(i)) for i in range(1, calls)]
            self._first = None
        self.template = template
        self.slots: list[list[Any]] = []   # made at the first call past the prepared ones
        self._calls = 0

    @staticmethod
    def _empty_like(value: Any) -> Any:
        if not isinstance(value, torch.Tensor):
            return value
        # preserve_format keeps the strides of dense tensors; overlapping ones become contiguous
        slot = torch.empty_like(value, memory_format=torch.preserve_format)
        if value.requires_grad and slot.is_leaf:
            slot.requires_grad_(True)
        return slot

    def __call__(self, i: int | None = None) -> list[Any]:
        if self._calls < len(self.prepared):
            self._calls += 1
            return list(self.prepared[self._calls - 1])
        if not self.slots:
            self.slots = [[self._empty_like(v) for v in self.template] for _ in range(self.copies)]
        # Rotation and values follow the pool's own counter, not i, so consecutive calls always differ.
        index = self._calls % self.copies
        if self.pristine is not None:
            source = self.pristine
        elif self._first is not None:
            source, self._first = self._first, None
        else:
            source = list(self.fresh_values(self._calls))
        self._calls += 1
        with torch.no_grad():
            for k, src in enumerate(source):
                if isinstance(src, torch.Tensor):
                    _copy_into(self.slots[index][k], src)
                else:
                    self.slots[index][k] = src
        return list(self.slots[index])  # a new list: a callee mutating its argument list changes nothing here


# ------------------------------------------------------------------ GPU

_FLUSH_BUFFERS: dict[int, torch.Tensor] = {}


def _l2_flush_buffer(index: int) -> torch.Tensor:
    """A buffer of twice the L2 size, allocated once per device."""
    if index not in _FLUSH_BUFFERS:
        l2 = getattr(torch.cuda.get_device_properties(index), "L2_cache_size", 0) or FALLBACK_L2_BYTES
        _FLUSH_BUFFERS[index] = torch.empty(2 * l2, dtype=torch.uint8, device=torch.device("cuda", index))
    return _FLUSH_BUFFERS[index]


def host_ms_per_call(fn: Callable[..., Any], args: Sequence[Any], calls: int = HOST_CALLS, warmup: int = 0) -> float:
    """Host (CPU clock) ms per call of back-to-back calls with no sync between them, after `warmup` untimed
    calls: the Python and launch work of a call. Where it exceeds the GPU time, the call is launch-bound and the
    host's time is what it costs."""
    for _ in range(warmup):
        fn(*args)
    _cuda_synchronize()
    started = perf_counter()
    for _ in range(calls):
        fn(*args)
    elapsed = perf_counter() - started
    _cuda_synchronize()
    return elapsed / calls * 1e3


def _calibrate_tail(stream: torch.cuda.Stream, trials: int = CALIBRATION_TRIALS) -> float:
    """Median ms from an `end` event to an `after` event recorded once the device is idle,
    when nothing runs after `end`: the cost of synchronize's return plus one event launch."""
    sleep = getattr(torch.cuda, "_sleep", None)
    end, after = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    gaps = []
    for _ in range(trials):
        _cuda_synchronize()
        if sleep is not None:
            sleep(CALIBRATION_SLEEP_CYCLES)  # as in a real call, the host is already waiting when `end` completes
        end.record(stream)
        _cuda_synchronize()
        after.record(stream)
        after.synchronize()
        gaps.append(end.elapsed_time(after))
    return statistics.median(gaps)


def time_gpu(fn: Callable[..., Any], make_args: Callable[[int], Sequence[Any]],
             config: TimingConfig | None = None, device: Any = "cuda", observe: Observer | None = None) -> TimingResult:
    """Time ``fn(*make_args(i))`` on a CUDA device; GPU time in ms, median reported.
    ``observe(j, out)`` (optional) sees timed call j's return value once its sample is taken.

    Why the samples are formed as they are. Events on the current stream alone miss work
    ``fn`` leaves running on other streams: an `end` event recorded after ``fn`` returns is
    ordered only after the current stream's work. So, per iteration:

        synchronize device          # idle GPU: nothing of fn's has started
        flush L2 (on this stream)   # while it runs, the host is already launching fn
        start.record(); fn(*args); end.record()
        synchronize device          # waits for every stream, not just this one
        after.record(); after.synchronize()

    start->end is the precise GPU time of the call on its stream. Because the flush is still
    running when the host launches fn, the host's launch latency hides behind it as it does in
    back-to-back execution (and in triton's do_bench); only host overhead longer than the
    flush shows as a gap. A side stream that waits on the caller's stream (the correct way)
    starts after `start`; one that does not may overlap the flush by at most its length, and
    the audit flags it (unsynced-stream).
    end->after is the time from `end` until the whole device was idle and we could record
    again: with no other-stream work it is a constant (synchronize's wake-up plus one event
    launch, a few us), calibrated before timing; work still running on another stream after
    `end` adds to it one for one. Each sample is therefore

        start->end + max(0, end->after - calibrated constant)

    which is the event time when nothing escapes the stream (short kernels stay precise:
    no host timer and no fixed overhead is added) and counts escaped work in full otherwise.
    Work the call starts from a background thread after it returns is the audit's concern.
    """
    config = config or TimingConfig()
    device = torch.device(device)
    index = device.index if device.index is not None else torch.cuda.current_device()
    with torch.cuda.device(index):
        state_before = capture_gpu_state(index)
        stream = torch.cuda.current_stream()
        flush = _l2_flush_buffer(index) if config.flush_l2 else None

        calls = 0
        for _ in range(config.warmup):
            out = fn(*make_args(calls))
            calls += 1
            del out
            _cuda_synchronize()  # as in the timed loop: no call overlaps the next one's input copy
        tail_constant = _calibrate_tail(stream)

        start, end, after = (torch.cuda.Event(enable_timing=True) for _ in range(3))
        samples, in_stream, tails = [], [], []
        for _ in range(config.iterations):
            args = make_args(calls)  # the copies first, so the flush below evicts them too
            calls += 1
            _cuda_synchronize()  # nothing of this call can have started on any stream
            if flush is not None:
                flush.zero_()  # queued ahead of `start`: the host launches fn while the GPU flushes
            start.record(stream)
            out = fn(*args)
            end.record(stream)  # explicit stream: fn switching the current stream changes nothing
            _cuda_synchronize()
            after.record(stream)
            after.synchronize()
            stream_ms = start.elapsed_time(end)
            tail_ms = max(0.0, end.elapsed_time(after) - tail_constant)
            samples.append(stream_ms + tail_ms)
            in_stream.append(stream_ms)
            tails.append(tail_ms)
            if observe is not None:
                observe(len(samples) - 1, out)
            del out, args
        state_after = capture_gpu_state(index)
        host_ms = host_ms_per_call(fn, make_args(calls), warmup=HOST_WARMUP)

    details = {
        "tail_constant_ms": tail_constant,
        "stream_median_ms": statistics.median(in_stream),
        "tail_median_ms": statistics.median(tails),  # well above 0: work escaped the current stream
        "tail_max_ms": max(tails),
        "pool_copies": getattr(make_args, "copies", None),
        "flush_bytes": flush.numel() if flush is not None else 0,
        "host_ms_per_call": host_ms,
    }
    return TimingResult(clock="cuda_event", device=str(torch.device("cuda", index)), samples_ms=samples,
                        warmup=config.warmup, l2_flushed=flush is not None,
                        gpu_state={"before": state_before, "after": state_after}, details=details)


# ------------------------------------------------------------------ CPU


def time_cpu(fn: Callable[..., Any], make_args: Callable[[int], Sequence[Any]],
             config: TimingConfig | None = None, observe: Observer | None = None) -> TimingResult:
    """Time ``fn(*make_args(i))`` on the host with perf_counter: CPU times, labelled clock="cpu".

    No cache flush here: CPU times only check that the pipeline works (CI, the Triton
    interpreter) and are never compared with GPU times, so a flush would only cost CI time.
    """
    config = config or TimingConfig()
    calls = 0
    for _ in range(config.warmup):
        out = fn(*make_args(calls))
        calls += 1
        del out
    samples = []
    for _ in range(config.iterations):
        args = make_args(calls)
        calls += 1
        t0 = perf_counter()
        out = fn(*args)
        samples.append((perf_counter() - t0) * 1e3)
        if observe is not None:
            observe(len(samples) - 1, out)
        del out, args
    no_gpu = {"available": False, "reason": "timed on CPU"}
    return TimingResult(clock="cpu", device="cpu", samples_ms=samples, warmup=config.warmup, l2_flushed=False,
                        gpu_state={"before": no_gpu, "after": no_gpu},
                        details={"pool_copies": getattr(make_args, "copies", None)})


def _no_arguments(call: int) -> tuple:
    return ()


def time_callable(fn: Callable[..., Any], inputs: Sequence[Any] | None = None, device: Any = "cpu",
                  config: TimingConfig | None = None,
                  fresh_values: Callable[[int], Sequence[Any]] | None = None,
                  observe: Observer | None = None) -> TimingResult:
    """Time ``fn`` on ``device`` with, every call, fresh copies of ``inputs`` or the new values
    ``fresh_values(i)`` at a fresh address; with neither, ``fn`` takes no arguments (a training
    step, a closure that owns its data).

    Inputs must already live on ``device``; they are never handed to ``fn`` themselves. With
    fresh values, timed call j got ``fresh_values(config.warmup + j)``; ``observe(j, out)`` sees
    its return value after its sample is taken (outside the timed window).
    """
    device = torch.device(device)
    if inputs is None and fresh_values is None:
        pool = _no_arguments
    else:   # warm-up, timed calls and the host clock's one argument list
        config = config or TimingConfig()
        pool = FreshInputPool(inputs, fresh_values=fresh_values, calls=config.warmup + config.iterations + 1)
    if device.type == "cuda":
        return time_gpu(fn, pool, config, device, observe)
    return time_cpu(fn, pool, config, observe)
