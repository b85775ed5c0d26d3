"""templates/lean_launch.py: a launch site reuses Triton's compiled kernel only under the same key.

The fast path needs a GPU; here a recording stand-in plays Triton's JIT function and compiled kernel, so
what the site launches, and through which path, is checked exactly (benchmarks/launch_overhead.py times it)."""

from __future__ import annotations

import inspect
from types import SimpleNamespace

import pytest
import torch

from templates import lean_launch


class Compiled:
    function, packed_metadata = "function", "metadata"

    def __init__(self):
        self.launches = []

    def run(self, *arguments):
        self.launches.append(arguments)


class Kernel:
    """Triton's JITFunction as the site sees it: params, and kernel[grid](...) compiling and launching."""

    def __init__(self, signature: str):
        namespace = {}
        exec(f"def kernel({signature}): pass", namespace)
        self.params = [SimpleNamespace(name=p.name, default=p.default)
                       for p in inspect.signature(namespace["kernel"]).parameters.values()]
        self.slow, self.compiled = [], Compiled()

    def __getitem__(self, grid):
        def launch(*args, **options):
            self.slow.append((grid, args, options))
            return self.compiled
        return launch


@pytest.fixture
def gpu_like(monkeypatch):
    """A driver with a current device and stream, and no interpreter."""
    monkeypatch.setattr(lean_launch, "_INTERPRETED", False)
    monkeypatch.setattr(lean_launch, "driver", SimpleNamespace(active=SimpleNamespace(
        get_current_device=lambda: 0, get_current_stream=lambda device: 1234)))
    monkeypatch.setattr(lean_launch, "_SITES", {})


def test_the_second_call_with_the_same_key_goes_straight_to_the_compiled_kernel(gpu_like):
    kernel = Kernel("x, out, n, stride, C: 'tl.constexpr', BLOCK: 'tl.constexpr' = 128")
    x, out = torch.zeros(64), torch.zeros(64)
    lean_launch.lean(kernel)[(4,)](x, out, 64, 1, C=True, num_warps=2)
    assert len(kernel.slow) == 1 and kernel.compiled.launches == []
    y, out2 = torch.ones(64), torch.zeros(64)     # new tensors, same dtype and alignment
    lean_launch.lean(kernel)[(4, 2)](y, out2, 64, 1, C=True, num_warps=2)
    assert len(kernel.slow) == 1
    (launch,) = kernel.compiled.launches
    # grid padded to three, the current stream, no hooks, then every parameter in order (constexprs too)
    assert launch[:9] == (4, 2, 1, 1234, "function", "metadata", None, None, None)
    assert launch[9:11] == (y, out2) and launch[11:] == (64, 1, True, 128)


@pytest.mark.parametrize("change", ["alignment", "dtype", "integer", "keyword"])
def test_a_different_key_takes_tritons_path(gpu_like, change):
    kernel = Kernel("x, n, BLOCK: 'tl.constexpr'")
    base = torch.zeros(64, dtype=torch.float16)
    lean_launch.lean(kernel)[(1,)](base, 64, BLOCK=64)
    x, n, block = base, 64, 64
    if change == "alignment":      # 2 bytes off: Triton would compile without the 16-byte alignment assumption
        x = base[1:]
    elif change == "dtype":
        x = base.float()
    elif change == "integer":      # Triton specializes integers equal to 1 or divisible by 16
        n = 1
    else:
        block = 32
    lean_launch.lean(kernel)[(1,)](x, n, BLOCK=block)
    assert len(kernel.slow) == 2 and kernel.compiled.launches == []


def test_a_registered_launch_hook_always_takes_tritons_path(gpu_like, monkeypatch):
    kernel = Kernel("x, n")
    x = torch.zeros(8)
    lean_launch.lean(kernel)[(1,)](x, 8)
    monkeypatch.setattr(lean_launch, "_hooked", lambda: True)
    lean_launch.lean(kernel)[(1,)](x, 8)
    assert len(kernel.slow) == 2 and kernel.compiled.launches == []


def test_callable_grids_unhashable_arguments_and_the_interpreter_take_tritons_path(gpu_like, monkeypatch):
    kernel = Kernel("x, n")
    x = torch.zeros(8)
    for _ in range(2):
        lean_launch.lean(kernel)[lambda meta: (1,)](x, 8)
        lean_launch.lean(kernel)[(1,)](x, [8])
    monkeypatch.setattr(lean_launch, "_INTERPRETED", True)
    for _ in range(2):
        lean_launch.lean(kernel)[(1,)](x, 8)
    assert len(kernel.slow) == 6 and kernel.compiled.launches == []


def test_a_site_stops_remembering_after_max_keys(gpu_like, monkeypatch):
    monkeypatch.setattr(lean_launch, "_MAX_KEYS", 2)
    kernel = Kernel("x, scale")
    x = torch.zeros(8)
    for scale in (0.5, 0.25, 0.125, 0.125):
        lean_launch.lean(kernel)[(1,)](x, scale)
    assert len(lean_launch.lean(kernel).compiled) == 2 and len(kernel.slow) == 4


def test_hook_chains_without_hooks_are_not_hooks():
    import triton
    hook = triton.knobs.runtime.launch_enter_hook
    assert lean_launch._hooked() == (hook is not None and bool(getattr(hook, "calls", True)))
    if hasattr(hook, "add"):
        probe = lambda metadata: None  # noqa: E731
        hook.add(probe)
        try:
            assert lean_launch._hooked()
        finally:
            hook.remove(probe)
