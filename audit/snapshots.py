"""What the runtime guard snapshots at install and compares later: the identities of the functions
and classes a measurement relies on, the process-wide numerics and backend flags, and the
interpreter's tracing and torch's dispatch state."""

from __future__ import annotations

import _thread
import builtins
import gc
import json
import math
import os
import sys
import threading
import time
import types
from typing import Any

import torch

EVALUATOR_ROOTS = ("kernelbench", "audit", "kb_reference_")


def watched_namespaces() -> list[tuple[str, Any]]:
    """(label, module or class) whose attributes the solution must leave alone."""
    import torch.nn.functional as F

    found: list[tuple[str, Any]] = [
        ("torch", torch), ("torch.Tensor", torch.Tensor), ("torch.nn.functional", F), ("torch.cuda", torch.cuda),
        ("torch.cuda.Event", torch.cuda.Event), ("torch.cuda.Stream", torch.cuda.Stream), ("torch._C", torch._C),
        ("torch.linalg", torch.linalg), ("torch.fft", torch.fft), ("torch.special", torch.special),
        ("torch.testing", torch.testing), ("torch.library", torch.library), ("time", time), ("gc", gc),
        ("sys", sys), ("os", os), ("json", json), ("builtins", builtins), ("threading", threading),
        ("_thread", _thread), ("math", math),
    ]
    for name in ("torch._C._VariableFunctions", "torch._tensor", "torch.functional", "numpy", "triton",
                 "triton.testing", "triton.language", "triton.runtime.jit"):
        module = sys.modules.get(name)
        if module is not None:
            found.append((name, module))
    for name, module in list(sys.modules.items()):
        if isinstance(module, types.ModuleType) and name.startswith(EVALUATOR_ROOTS):
            found.append((name, module))
            for value in list(vars(module).values()):
                if isinstance(value, type) and getattr(value, "__module__", None) == name:
                    found.append((f"{name}.{value.__qualname__}", value))
    return found


# hooks test runners and debuggers swap per phase; replacing them does not touch a measurement
UNWATCHED = {"sys.excepthook", "sys.unraisablehook", "sys.displayhook", "sys.breakpointhook",
             "threading.excepthook", "builtins._"}


def snapshot_identities(namespaces) -> dict[str, tuple]:
    """label.name -> (namespace, name, value, value.__code__) for every function, class and module."""
    snapshot = {}
    for label, namespace in namespaces:
        for name, value in list(vars(namespace).items()):
            if not (callable(value) or isinstance(value, types.ModuleType)) or f"{label}.{name}" in UNWATCHED:
                continue
            if isinstance(namespace, type) and name in ("__dict__", "__weakref__", "__doc__"):
                continue
            code = getattr(value, "__code__", None) if isinstance(value, types.FunctionType) else None
            snapshot[f"{label}.{name}"] = (namespace, name, value, code)
    return snapshot


def backend_flags(device: torch.device) -> dict[str, tuple[Any, str]]:
    """Process-wide numerics and backend settings: name -> (value, rule that a change breaks)."""
    flags: dict[str, tuple[Any, str]] = {}

    def add(name: str, getter, rule: str) -> None:
        try:
            value = getter()
        except Exception:
            return
        flags[name] = (value if isinstance(value, (bool, int, float, str, type(None))) else str(value), rule)

    b = torch.backends
    precision = "precision-downgrade"
    add("torch.get_float32_matmul_precision()", torch.get_float32_matmul_precision, precision)
    for flag in ("allow_tf32", "allow_fp16_reduced_precision_reduction", "allow_bf16_reduced_precision_reduction",
                 "allow_fp16_accumulation", "fp32_precision"):
        add(f"torch.backends.cuda.matmul.{flag}", lambda f=flag: getattr(b.cuda.matmul, f), precision)
    add("torch.backends.cudnn.allow_tf32", lambda: b.cudnn.allow_tf32, precision)
    for path in ("cudnn", "cudnn.conv", "cudnn.rnn", "mkldnn", "mkldnn.matmul", "mkldnn.conv", ""):
        def getter(path=path):
            owner = b
            for part in filter(None, path.split(".")):
                owner = getattr(owner, part)
            return owner.fp32_precision
        add(f"torch.backends.{path + '.' if path else ''}fp32_precision", getter, precision)
    for kind in ("cpu", "cuda"):
        add(f"torch.is_autocast_enabled({kind!r})", lambda k=kind: torch.is_autocast_enabled(k), precision)
        add(f"torch.get_autocast_dtype({kind!r})", lambda k=kind: torch.get_autocast_dtype(k), precision)
    state = "global-state"
    add("torch.backends.cudnn.benchmark", lambda: b.cudnn.benchmark, state)
    add("torch.backends.cudnn.deterministic", lambda: b.cudnn.deterministic, state)
    add("torch.backends.cudnn.enabled", lambda: b.cudnn.enabled, state)
    add("torch.backends.mkldnn.enabled", lambda: b.mkldnn.enabled, state)
    add("torch.are_deterministic_algorithms_enabled()", torch.are_deterministic_algorithms_enabled, state)
    add("torch.get_num_threads()", torch.get_num_threads, state)
    add("torch.get_num_interop_threads()", torch.get_num_interop_threads, state)
    add("torch.get_default_dtype()", torch.get_default_dtype, state)
    add("torch.get_default_device()", torch.get_default_device, state)
    add("torch.is_grad_enabled()", torch.is_grad_enabled, state)
    add("sys.getswitchinterval()", sys.getswitchinterval, state)
    for sdp in ("flash_sdp_enabled", "mem_efficient_sdp_enabled", "math_sdp_enabled", "cudnn_sdp_enabled"):
        add(f"torch.backends.cuda.{sdp}()", lambda s=sdp: getattr(b.cuda, s)(), state)
    add("torch.backends.cuda.preferred_linalg_library()", b.cuda.preferred_linalg_library, state)
    if device.type == "cuda" and torch.cuda.is_available():
        add("torch.backends.cuda.preferred_blas_library()", b.cuda.preferred_blas_library, state)
        add("torch.cuda.get_sync_debug_mode()", torch.cuda.get_sync_debug_mode, state)
    return flags


def set_flag(name: str, value: Any) -> None:
    """Put one of backend_flags' settings back (best effort: some can be set only once)."""
    b = torch.backends
    setters = {
        "torch.get_float32_matmul_precision()": torch.set_float32_matmul_precision,
        "torch.get_num_threads()": torch.set_num_threads,
        "torch.get_default_dtype()": torch.set_default_dtype,
        "torch.get_default_device()": torch.set_default_device,
        "torch.is_grad_enabled()": torch.set_grad_enabled,
        "torch.are_deterministic_algorithms_enabled()": torch.use_deterministic_algorithms,
        "sys.getswitchinterval()": sys.setswitchinterval,
        "torch.backends.cuda.preferred_linalg_library()": b.cuda.preferred_linalg_library,
    }
    try:
        if name in setters:
            setters[name](value)
        elif name.startswith("torch.backends.") and name.endswith("_enabled()"):
            getattr(b.cuda, "enable_" + name.split(".")[-1][: -len("_enabled()")])(value)
        elif name.startswith("torch.backends.") and not name.endswith(")"):
            owner = torch
            parts = name.split(".")[1:]
            for part in parts[:-1]:
                owner = getattr(owner, part)
            setattr(owner, parts[-1], value)
        elif name.startswith("torch.is_autocast_enabled("):
            torch.set_autocast_enabled(name.split("'")[1], value)
    except Exception:
        pass


def dispatch_state() -> dict[str, Any]:
    state: dict[str, Any] = {"trace": sys.gettrace(), "profile": sys.getprofile()}
    try:
        state["torch dispatch mode stack"] = torch._C._len_torch_dispatch_stack()
        state["torch function mode stack"] = torch._C._len_torch_function_stack()
    except Exception:
        pass
    impls = getattr(torch.library, "_impls", None)
    if isinstance(impls, set):
        state["aten impls"] = frozenset(i for i in impls if i.split("/")[0] == "aten")
    return state
