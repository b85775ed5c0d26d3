"""The timer's pipeline on CPU: fresh input pool, statistics, CPU clock, NVML state, fingerprint."""

from __future__ import annotations

import json
import sys
import time
import types

import pytest
import torch

from kernelbench.eval import gpu_state, timing
from kernelbench.eval.gpu_state import capture_gpu_state, decode_throttle_reasons, environment_info, fingerprint_hash
from kernelbench.eval.timing import FreshInputPool, TimingConfig, percentile, summarize, time_callable, time_cpu

FAST = TimingConfig(warmup=1, iterations=5)


# ------------------------------------------------------------------ pool


def test_pool_gives_a_fresh_address_every_call():
    x, y = torch.randn(64), torch.randn(8, 8)
    pool = FreshInputPool([x, y, 3, 0.5])
    assert pool.copies >= 2
    previous = None
    for i in range(7):
        args = pool(i)
        ptrs = (args[0].data_ptr(), args[1].data_ptr())
        assert x.data_ptr() not in ptrs and y.data_ptr() not in ptrs  # never the caller's own tensors
        assert ptrs != previous
        previous = ptrs
        assert args[2] == 3 and args[3] == 0.5  # Python scalars pass through


def test_pool_hands_out_pristine_values_after_in_place_changes():
    x = torch.arange(10, dtype=torch.float32)
    original = x.clone()
    pool = FreshInputPool([x], copies=2)
    for i in range(6):  # more calls than slots: slots are reused and must be refilled
        (arg,) = pool(i)
        assert torch.equal(arg, original)
        arg.mul_(-7).add_(1)  # the callee scribbles over its input
    assert torch.equal(x, original)  # and the pristine input is never handed out


def recorded_fresh_values():
    """(the calls asked for so far, fresh_values: call i's values are a tensor full of i and the scalar i / 2)."""
    made = []

    def fresh_values(i):
        made.append(i)
        return [torch.full((32,), float(i)), 0.5 * i]
    return made, fresh_values


def test_pool_with_fresh_values_gives_new_values_at_a_fresh_address_every_call():
    made, fresh_values = recorded_fresh_values()
    pool = FreshInputPool(fresh_values=fresh_values, copies=2)
    previous = None
    for i in range(5):
        x, scalar = pool(i)
        assert torch.equal(x, torch.full((32,), float(i))) and scalar == 0.5 * i   # call i gets values i
        assert x.data_ptr() != previous
        previous = x.data_ptr()
        x.mul_(-1)                                   # in-place changes never carry over
    assert made == [0, 1, 2, 3, 4]                   # call 0's values doubled as the template
    with pytest.raises(ValueError):
        FreshInputPool([torch.zeros(2)], fresh_values=fresh_values)


def test_pool_prepares_every_calls_fresh_values_before_timing_when_they_fit():
    made, fresh_values = recorded_fresh_values()
    pool = FreshInputPool(fresh_values=fresh_values, calls=4)
    assert made == [0, 1, 2, 3]                      # all made up front: nothing is generated between calls
    addresses = set()
    for i in range(4):
        x, scalar = pool(i)
        assert torch.equal(x, torch.full((32,), float(i))) and scalar == 0.5 * i
        addresses.add(x.data_ptr())
        x.mul_(-1)
    assert len(addresses) == 4                       # every call its own tensors
    x, scalar = pool(4)                              # past the prepared calls: new values through the slots
    assert torch.equal(x, torch.full((32,), 4.0)) and made == [0, 1, 2, 3, 4]
    # too large to keep every call's values: rotation through the slots, values generated per call
    made.clear()
    rotating = FreshInputPool(fresh_values=fresh_values, calls=4, prepared_bytes=64)
    assert made == [0] and not rotating.prepared
    assert [float(rotating(i)[0][0]) for i in range(3)] == [0.0, 1.0, 2.0] and made == [0, 1, 2]


def test_pool_keeps_strides_and_dtype():
    x = torch.randn(4, 6).t()  # non-contiguous but dense
    (arg,) = FreshInputPool([x])(0)
    assert arg.stride() == x.stride() and arg.dtype == x.dtype and torch.equal(arg, x)


def test_pool_memory_is_bounded_but_never_below_two_copies():
    x = torch.zeros(1024, dtype=torch.float32)  # 4 KiB
    assert FreshInputPool([x], copies=3, max_bytes=1 << 30).copies == 3
    assert FreshInputPool([x], copies=3, max_bytes=8192).copies == 2
    assert FreshInputPool([x], copies=3, max_bytes=1).copies == 2
    assert FreshInputPool([1, 2.0]).copies >= 2  # scalars only


@pytest.mark.skipif(not hasattr(torch, "float4_e2m1fn_x2"), reason="no fp4 dtype in this torch")
def test_pool_copies_dtypes_without_a_copy_kernel():
    x = torch.randint(0, 256, (16,), dtype=torch.uint8).view(torch.float4_e2m1fn_x2)
    (arg,) = FreshInputPool([x])(0)
    assert torch.equal(arg.view(torch.uint8), x.view(torch.uint8))


def test_mutating_solution_never_sees_its_own_mutation_through_the_timer():
    x = torch.ones(16)
    seen = []

    def solution(a):
        seen.append(a.sum().item())
        a.zero_()
        return a

    result = time_callable(solution, [x], "cpu", TimingConfig(warmup=2, iterations=4))
    assert seen == [16.0] * 6
    assert result.iterations == 4


# ------------------------------------------------------------------ statistics


def test_percentile_interpolates_like_numpy():
    data = [4.0, 1.0, 3.0, 2.0]
    assert percentile(data, 0) == 1.0
    assert percentile(data, 100) == 4.0
    assert percentile(data, 50) == 2.5
    assert percentile(data, 25) == pytest.approx(1.75)
    assert percentile([7.0], 90) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile(data, 101)


def test_summary_statistics():
    s = summarize([1.0, 2.0, 3.0, 4.0, 100.0])
    assert s["median_ms"] == 3.0  # the median ignores the outlier the mean does not
    assert s["mean_ms"] == 22.0
    assert (s["min_ms"], s["max_ms"]) == (1.0, 100.0)
    assert s["stdev_ms"] == pytest.approx((7610 / 4) ** 0.5)  # sample stdev (n - 1)
    assert summarize([5.0])["stdev_ms"] == 0.0


def test_config_rejects_nonsense():
    with pytest.raises(ValueError):
        TimingConfig(iterations=0)
    with pytest.raises(ValueError):
        TimingConfig(warmup=-1)


# ------------------------------------------------------------------ CPU clock


def test_time_cpu_measures_a_sleep():
    result = time_cpu(lambda: time.sleep(0.005), lambda i: [], FAST)
    assert result.clock == "cpu" and result.device == "cpu"
    assert result.iterations == 5 and len(result.samples_ms) == 5
    assert 4.9 <= result.median_ms < 30.0
    assert result.min_ms <= result.median_ms <= result.max_ms


def test_time_cpu_leaves_argument_preparation_out_of_the_window():
    def slow_args(i):
        time.sleep(0.01)
        return [i]

    result = time_cpu(lambda i: i, slow_args, FAST)
    assert result.max_ms < 5.0


def test_time_callable_on_cpu_is_labelled_and_serialisable():
    a, b = torch.randn(256), torch.randn(256)
    result = time_callable(torch.add, [a, b], "cpu", FAST)
    record = result.to_json()
    json.dumps(record)
    assert record["clock"] == "cpu" and record["iterations"] == 5 and record["warmup"] == 1
    assert record["median_ms"] == result.median_ms and len(record["samples_ms"]) == 5
    assert record["l2_flushed"] is False
    assert record["gpu_state"]["before"]["available"] is False
    assert result.percentile(50) == pytest.approx(result.median_ms)


# ------------------------------------------------------------------ NVML and environment


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_capture_gpu_state_without_gpu():
    state = capture_gpu_state(0)
    assert state["available"] is False and state["reason"]


def test_capture_gpu_state_without_pynvml(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    state = capture_gpu_state(0)
    assert state == {"available": False, "reason": state["reason"]} and "pynvml" in state["reason"]


def _fake_nvml(mask: int) -> types.ModuleType:
    nvml = types.ModuleType("pynvml")
    clocks = {1: (1755, 1980), 2: (3201, 3201)}  # NVML_CLOCK_SM, NVML_CLOCK_MEM
    nvml.NVML_CLOCK_SM, nvml.NVML_CLOCK_MEM, nvml.NVML_TEMPERATURE_GPU = 1, 2, 0
    nvml.nvmlInit = nvml.nvmlShutdown = lambda: None
    nvml.nvmlDeviceGetHandleByIndex = lambda i: ("handle", i)
    nvml.nvmlDeviceGetName = lambda h: b"NVIDIA H200"
    nvml.nvmlDeviceGetUUID = lambda h: "GPU-1234"
    nvml.nvmlSystemGetDriverVersion = lambda: "580.159.04"
    nvml.nvmlDeviceGetClockInfo = lambda h, kind: clocks[kind][0]
    nvml.nvmlDeviceGetMaxClockInfo = lambda h, kind: clocks[kind][1]
    nvml.nvmlDeviceGetTemperature = lambda h, sensor: 61
    nvml.nvmlDeviceGetPowerUsage = lambda h: 512_345
    nvml.nvmlDeviceGetEnforcedPowerLimit = lambda h: 700_000
    nvml.nvmlDeviceGetPersistenceMode = lambda h: 1

    def unsupported(h):
        raise RuntimeError("NVML_ERROR_NOT_SUPPORTED")

    nvml.nvmlDeviceGetComputeMode = unsupported  # a field the driver refuses is left out
    nvml.nvmlDeviceGetCurrentClocksEventReasons = lambda h: mask
    return nvml


def test_capture_gpu_state_reads_and_decodes_nvml(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", _fake_nvml(0x4 | 0x40))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    state = capture_gpu_state(0)
    assert state["available"] is True and state["name"] == "NVIDIA H200" and state["driver"] == "580.159.04"
    assert (state["sm_clock_mhz"], state["sm_clock_max_mhz"]) == (1755, 1980)
    assert (state["mem_clock_mhz"], state["mem_clock_max_mhz"]) == (3201, 3201)
    assert state["temperature_c"] == 61
    assert state["power_w"] == pytest.approx(512.345) and state["power_limit_w"] == 700.0
    assert state["persistence_mode"] is True and "compute_mode" not in state
    assert state["throttle_reasons"] == ["SW_POWER_CAP", "HW_THERMAL"] and state["slowed_down"] is True


def test_decode_throttle_reasons():
    assert decode_throttle_reasons(0) == []
    assert decode_throttle_reasons(0x1) == ["GPU_IDLE"]
    assert decode_throttle_reasons(0x8 | 0x20) == ["HW_SLOWDOWN", "SW_THERMAL"]
    assert decode_throttle_reasons(0x1000) == ["UNKNOWN_0x1000"]


def test_environment_fingerprint_is_only_what_makes_timings_comparable():
    env = environment_info("cpu")
    assert env["device"] == "cpu" and env["hardware"] and env["torch"] == torch.__version__ and env["python"]
    fingerprint = env["fingerprint"]
    assert set(fingerprint) == {"hardware", "device", "torch", "triton", "cuda", "driver"}
    assert not any("clock" in k or "temp" in k or "power" in k for k in fingerprint)
    assert fingerprint_hash(env) == fingerprint_hash(dict(fingerprint)) == fingerprint_hash(environment_info("cpu"))
    assert fingerprint_hash({**fingerprint, "torch": "0.0"}) != fingerprint_hash(fingerprint)
    assert gpu_state.SLOWDOWN_REASONS <= set(gpu_state.THROTTLE_REASONS.values())


def test_zero_argument_callable_is_timed_as_is():
    """The trainers time a training step: a closure that owns its data takes no arguments."""
    calls = []
    result = time_callable(lambda: calls.append(1), config=TimingConfig(warmup=2, iterations=5))
    assert len(calls) == 7 and result.iterations == 5 and result.clock == "cpu"


def test_host_time_per_call_counts_the_calls_host_work(monkeypatch):
    monkeypatch.setattr(timing, "_cuda_synchronize", lambda: None)   # the back-to-back loop, without a GPU
    calls = []

    def slow(x):   # 2 ms of host work a call
        calls.append(x)
        started = time.perf_counter()
        while time.perf_counter() - started < 0.002:
            pass
    host_ms = timing.host_ms_per_call(slow, [7], calls=5, warmup=2)
    assert calls == [7] * 7 and 2.0 <= host_ms < 20.0
