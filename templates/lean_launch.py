"""Triton launches with less host work per call; shipped verbatim beside a generated kernel.py.

`kernel[grid](*args, **options)` makes Triton re-derive the kernel's specialization from every argument on
every call (types, 16-byte alignment of pointers, integers equal to 1 or divisible by 16), format its
options into a cache key and look the compiled kernel up. `lean(kernel)[grid](...)` remembers, per key
(device, each tensor's dtype and 16-byte alignment, every other argument's value, the keyword arguments),
the compiled kernel Triton launched the first time, and afterwards calls that kernel's binary launcher
directly. The key is at least as fine as Triton's own, so the kernel found is the one Triton would launch.
Triton's own path runs under the interpreter, while a launch hook is set (profilers, cross-compilation), for a grid
given as a function and for arguments that cannot be part of a key.
"""

import os

import torch
import triton
from triton.runtime.driver import driver

_INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
_MAX_KEYS = 64   # a site whose keys keep changing (a float argument that varies) stops remembering


class _Site:
    __slots__ = ("kernel", "compiled")

    def __init__(self, kernel):
        self.kernel = kernel
        self.compiled = {}   # key -> (compiled kernel, the values of the parameters after the positional ones)

    def __getitem__(self, grid):
        if _INTERPRETED or callable(grid):
            return self.kernel[grid]
        return lambda *args, **options: self.launch(grid, args, options)

    def launch(self, grid, args, options):
        if _hooked():   # Triton's path, nothing remembered: a profiler's hook must see every launch
            self.kernel[grid](*args, **options)
            return
        device = driver.active.get_current_device()
        try:
            key = (device, len(args), *[(a.dtype, a.data_ptr() % 16 == 0) if isinstance(a, torch.Tensor) else a
                                        for a in args], *options.items())
            found = self.compiled.get(key)
        except TypeError:   # an unhashable argument
            self.kernel[grid](*args, **options)
            return
        if found is None:
            compiled = self.kernel[grid](*args, **options)   # Triton's path: compiles at the first call, launches
            if len(self.compiled) < _MAX_KEYS:
                self.compiled[key] = (compiled, self._tail(len(args), options))
            return
        compiled, tail = found
        stream = driver.active.get_current_stream(device)
        compiled.run(grid[0], grid[1] if len(grid) > 1 else 1, grid[2] if len(grid) > 2 else 1, stream,
                     compiled.function, compiled.packed_metadata, None, None, None, *args, *tail)

    def _tail(self, positional: int, options: dict) -> tuple:
        """The launcher takes every parameter in order (constexprs too): those after the positional
        arguments come from the keywords, else the parameter's default."""
        return tuple(options[p.name] if p.name in options else p.default for p in self.kernel.params[positional:])


def _hooked() -> bool:
    """A launch hook is registered (Triton's hooks are chains, empty unless a profiler adds one)."""
    hook = triton.knobs.runtime.launch_enter_hook
    return hook is not None and bool(getattr(hook, "calls", True))


_SITES = {}


def cdiv(a: int, b: int) -> int:
    """Ceiling division on the host. triton.cdiv is a constexpr function whose every call unwraps its arguments:
    a few microseconds of host time per grid (benchmarks/launch_overhead.py), where this is a tenth of one."""
    return -(-a // b)


def next_power_of_2(n: int) -> int:
    """triton.next_power_of_2 in plain Python (the same reason): the least power of two >= n, 0 for 0."""
    return 1 << (n - 1).bit_length() if n > 0 else 0


def lean(kernel) -> _Site:
    """The launch site of `kernel` (one per kernel, kept for the module's life)."""
    site = _SITES.get(kernel)
    if site is None:
        site = _SITES[kernel] = _Site(kernel)
    return site
