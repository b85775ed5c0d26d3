"""What the GPU was doing when a number was measured, and what makes two numbers comparable.

``capture_gpu_state`` reads NVML (clocks, temperature, power, throttle reasons) and is attached
to every timing, so a slow number can be explained by a hot or power-capped card. It only
reads: kernelbench never changes clocks, power limits or modes.

``environment_info`` describes the software and hardware; its ``fingerprint`` keeps only what
makes timings comparable (hardware, device type, torch/triton/CUDA versions, driver), never
clocks or temperature, which change from minute to minute on the same machine.
"""

from __future__ import annotations

import hashlib
import json
import platform
from typing import Any

# NVML's clock-event ("throttle") reason bits. Fixed by the NVML ABI; spelled out here because
# pynvml renamed its constants (ClocksThrottleReason* -> ClocksEventReason*) across releases.
THROTTLE_REASONS = {
    0x1: "GPU_IDLE",
    0x2: "APPLICATIONS_CLOCKS_SETTING",
    0x4: "SW_POWER_CAP",
    0x8: "HW_SLOWDOWN",
    0x10: "SYNC_BOOST",
    0x20: "SW_THERMAL",
    0x40: "HW_THERMAL",
    0x80: "HW_POWER_BRAKE",
    0x100: "DISPLAY_CLOCK_SETTING",
}

# Reasons that mean the card ran slower than it could have for this measurement
# (GPU_IDLE is normal between kernels; the settings reasons are configuration, not load).
SLOWDOWN_REASONS = frozenset({"SW_POWER_CAP", "HW_SLOWDOWN", "SW_THERMAL", "HW_THERMAL", "HW_POWER_BRAKE"})


def decode_throttle_reasons(mask: int) -> list[str]:
    """Names of the set bits of an NVML clock-event mask; unknown bits as hex."""
    names = [name for bit, name in THROTTLE_REASONS.items() if mask & bit]
    unknown = mask & ~sum(THROTTLE_REASONS)
    if unknown:
        names.append(f"UNKNOWN_0x{unknown:x}")
    return names


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _nvml_handle(nvml, device_index: int):
    """NVML handle of torch's CUDA device ``device_index``.

    NVML numbers every GPU of the host while CUDA numbers only the visible ones
    (CUDA_VISIBLE_DEVICES), so match by UUID when torch can tell it, else by index.
    """
    try:
        import torch

        if torch.cuda.is_available():
            uuid = str(torch.cuda.get_device_properties(device_index).uuid)
            return nvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith("GPU-") else "GPU-" + uuid)
    except Exception:  # older torch without .uuid, MIG instances, ...: fall back to the index
        pass
    return nvml.nvmlDeviceGetHandleByIndex(device_index)


def capture_gpu_state(device_index: int = 0) -> dict[str, Any]:
    """NVML snapshot of one GPU; ``{"available": False, "reason": ...}`` without NVML or GPU.

    Each field is read on its own: a field the driver does not support is left out
    rather than losing the whole snapshot.
    """
    try:
        import pynvml as nvml  # lazily: CPU-only machines need not have it working
    except ImportError as exc:
        return {"available": False, "reason": f"pynvml not importable: {exc}"}
    try:
        nvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound / DriverNotLoaded / NoPermission
        return {"available": False, "reason": f"NVML init failed: {exc}"}
    try:
        try:
            handle = _nvml_handle(nvml, device_index)
        except Exception as exc:
            return {"available": False, "reason": f"no GPU {device_index} in NVML: {exc}"}

        state: dict[str, Any] = {"available": True, "device_index": device_index}

        def read(key, fn, *args, convert=lambda v: v):
            try:
                state[key] = convert(fn(*args))
            except Exception:
                pass

        read("name", nvml.nvmlDeviceGetName, handle, convert=_text)
        read("uuid", nvml.nvmlDeviceGetUUID, handle, convert=_text)
        read("driver", nvml.nvmlSystemGetDriverVersion, convert=_text)
        read("sm_clock_mhz", nvml.nvmlDeviceGetClockInfo, handle, nvml.NVML_CLOCK_SM)
        read("sm_clock_max_mhz", nvml.nvmlDeviceGetMaxClockInfo, handle, nvml.NVML_CLOCK_SM)
        read("mem_clock_mhz", nvml.nvmlDeviceGetClockInfo, handle, nvml.NVML_CLOCK_MEM)
        read("mem_clock_max_mhz", nvml.nvmlDeviceGetMaxClockInfo, handle, nvml.NVML_CLOCK_MEM)
        read("temperature_c", nvml.nvmlDeviceGetTemperature, handle, nvml.NVML_TEMPERATURE_GPU)
        read("power_w", nvml.nvmlDeviceGetPowerUsage, handle, convert=lambda mw: mw / 1000.0)
        read("power_limit_w", nvml.nvmlDeviceGetEnforcedPowerLimit, handle, convert=lambda mw: mw / 1000.0)
        read("persistence_mode", nvml.nvmlDeviceGetPersistenceMode, handle, convert=bool)
        read("compute_mode", nvml.nvmlDeviceGetComputeMode, handle)

        reasons = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None) or \
            nvml.nvmlDeviceGetCurrentClocksThrottleReasons
        read("throttle_mask", reasons, handle)
        if "throttle_mask" in state:
            state["throttle_reasons"] = decode_throttle_reasons(state["throttle_mask"])
            state["slowed_down"] = bool(SLOWDOWN_REASONS & set(state["throttle_reasons"]))
        return state
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:
            pass


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def environment_info(device: Any = "cpu") -> dict[str, Any]:
    """Hardware and software of a measurement, with ``fingerprint``: the comparable subset.

    Two timings may be compared (and a stored baseline reused) only when their
    fingerprints are equal.
    """
    import torch

    device = torch.device(device)
    info: dict[str, Any] = {
        "device": device.type,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "triton": None,
        "driver": None,
    }
    try:
        import triton

        info["triton"] = triton.__version__
    except Exception:
        pass

    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        info["device_index"] = index
        props = torch.cuda.get_device_properties(index)
        info["hardware"] = props.name
        info["compute_capability"] = f"{props.major}.{props.minor}"
        info["sm_count"] = props.multi_processor_count
        info["memory_bytes"] = props.total_memory
        info["l2_cache_bytes"] = getattr(props, "L2_cache_size", None)
        state = capture_gpu_state(index)
        info["driver"] = state.get("driver")
        # the host's CPU too: a launch-bound call's time is mostly host time (Python and launch work), so a
        # baseline measured beside another CPU model is not this one's
        info["host_cpu"] = cpu_model()
    else:
        info["hardware"] = cpu_model()

    info["fingerprint"] = {k: info.get(k) for k in ("hardware", "device", "torch", "triton", "cuda", "driver",
                                                    *(("host_cpu",) if device.type == "cuda" else ()))}
    info["libs"] = {k: info[k] for k in ("torch", "triton", "cuda", "driver") if info.get(k)}
    return info


def fingerprint_hash(fingerprint: dict[str, Any]) -> str:
    """Short stable key of a fingerprint (e.g. to index stored baselines)."""
    if "fingerprint" in fingerprint:  # accept a whole environment_info() too
        fingerprint = fingerprint["fingerprint"]
    blob = json.dumps(fingerprint, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
