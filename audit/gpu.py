"""GPU-side probes for the runtime guard: the persisting-L2 set-aside, a stream's access-policy
window, and whether outputs were complete when the call returned.

The CUDA runtime (libcudart, the one torch loaded) or, failing that, the driver (libcuda) is
reached through ctypes; where neither is present (CPU builds) every probe answers None.
"""

from __future__ import annotations

import ctypes
import glob
import os
import sys
from functools import lru_cache

import torch

from .tensors import same_bits

CUDA_LIMIT_PERSISTING_L2_CACHE_SIZE = 0x06  # cudaLimitPersistingL2CacheSize == CU_LIMIT_PERSISTING_L2_CACHE_SIZE
STREAM_ATTRIBUTE_ACCESS_POLICY_WINDOW = 1   # cudaStreamAttributeAccessPolicyWindow == CU_..._ACCESS_POLICY_WINDOW


class _AccessPolicyWindow(ctypes.Structure):
    _fields_ = [("base_ptr", ctypes.c_void_p), ("num_bytes", ctypes.c_size_t), ("hitRatio", ctypes.c_float),
                ("hitProp", ctypes.c_int), ("missProp", ctypes.c_int)]


class _StreamAttrValue(ctypes.Union):  # cudaStreamAttrValue / CUstreamAttrValue: 64 bytes in CUDA 12
    _fields_ = [("accessPolicyWindow", _AccessPolicyWindow), ("pad", ctypes.c_char * 256)]


@lru_cache(maxsize=None)
def _libraries() -> tuple[object | None, object | None]:
    """(cudart, libcuda), each None when it cannot be loaded."""
    if not torch.cuda.is_available():
        return None, None
    cudart = None
    candidates = ["libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0", "libcudart.so"]
    for root in sys.path:
        candidates += sorted(glob.glob(os.path.join(root, "nvidia", "cuda_runtime", "lib", "libcudart.so*")))
        candidates += sorted(glob.glob(os.path.join(root, "nvidia", "cu*", "lib", "libcudart.so*")))
    for name in candidates:
        try:
            cudart = ctypes.CDLL(name)
            break
        except OSError:
            continue
    try:
        driver = ctypes.CDLL("libcuda.so.1")
    except OSError:
        driver = None
    return cudart, driver


def persisting_l2_limit() -> int | None:
    """Bytes of L2 set aside for persisting accesses on the current device (None: unknown)."""
    cudart, driver = _libraries()
    value = ctypes.c_size_t(0)
    if cudart is not None and cudart.cudaDeviceGetLimit(ctypes.byref(value), CUDA_LIMIT_PERSISTING_L2_CACHE_SIZE) == 0:
        return int(value.value)
    if driver is not None and driver.cuCtxGetLimit(ctypes.byref(value), CUDA_LIMIT_PERSISTING_L2_CACHE_SIZE) == 0:
        return int(value.value)
    return None


def access_policy_window(stream: torch.cuda.Stream | None = None) -> tuple[int, int, float] | None:
    """(base address, bytes, hit ratio) of the stream's access-policy window; None if unknown or unset."""
    cudart, driver = _libraries()
    if cudart is None and driver is None:
        return None
    handle = ctypes.c_void_p((stream or torch.cuda.current_stream()).cuda_stream)
    value = _StreamAttrValue()
    status = -1
    if cudart is not None:
        status = cudart.cudaStreamGetAttribute(handle, STREAM_ATTRIBUTE_ACCESS_POLICY_WINDOW, ctypes.byref(value))
    if status != 0 and driver is not None:
        status = driver.cuStreamGetAttribute(handle, STREAM_ATTRIBUTE_ACCESS_POLICY_WINDOW, ctypes.byref(value))
    window = value.accessPolicyWindow
    if status != 0 or not window.num_bytes:
        return None
    return int(window.base_ptr or 0), int(window.num_bytes), float(window.hitRatio)


def unsettled_outputs(outputs: list) -> list[int]:
    """Indices of CUDA outputs that changed between the caller's stream reaching this point and a
    device-wide synchronize: work that was not ordered before the caller's stream (a side stream
    never joined back). Call right after the solution returns, before anything synchronizes.

    A snapshot is copied on the caller's current stream (so it sees exactly what stream-ordered
    consumers would see), then the device is synchronized and the outputs compared bit for bit.
    Properly joined side streams finish before the copy, so honest code never differs.
    """
    cuda = [(i, o) for i, o in enumerate(outputs) if type(o) is torch.Tensor and o.is_cuda and o.numel()]
    if not cuda:
        return []
    snapshots = [(i, o, o.detach().clone()) for i, o in cuda]
    torch.cuda.synchronize()
    return [i for i, o, snap in snapshots if not same_bits(o, snap)]


def pending_streams(streams: list) -> list:
    """The streams that still have work once the caller's current stream has drained: work that a
    timer stopping on the caller's stream would not count. Call first thing after the solution returns."""
    if not streams:
        return []
    drained = torch.cuda.Event()
    drained.record()
    drained.synchronize()
    return [s for s in streams if not s.query()]
