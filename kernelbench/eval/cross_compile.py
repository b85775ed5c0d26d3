"""Compile a solution's Triton kernels for a GPU this machine does not have.

    with CrossCompile(GPUTarget("cuda", 90, 32)) as compiled:
        run(*cpu_inputs)                  # every `kernel[grid](...)` compiles for sm_90 instead of launching
    compiled.failures                     # [Compiled(kernel, signature, error)], empty when all compiled

Triton compiles ahead of time without a driver when it is given a target, so a CPU machine (CI, a laptop)
finds what the GPU's compiler rejects (layouts, types, unsupported ops) before any GPU time is spent. Nothing
is launched: outputs are left unwritten, so later kernels see garbage values, which only matters to a program
that reads its data back to the host to size what follows. Each argument is typed as Triton's launcher types
it (pointer element type, i32 or i64 ints, fp32 floats, constexprs by value), with the launcher's 16-byte
divisibility hints, so the code generated is the code a GPU launch would compile.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass, field

import torch

# torch dtype -> Triton's pointer element type name
POINTEE = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16", torch.float64: "fp64",
           torch.int64: "i64", torch.int32: "i32", torch.int16: "i16", torch.int8: "i8", torch.uint8: "u8",
           torch.bool: "i1", torch.float8_e4m3fn: "fp8e4nv", torch.float8_e5m2: "fp8e5"}
LAUNCH_OPTIONS = ("num_warps", "num_stages", "num_ctas", "maxnreg")
DIVISIBILITY = 16
# Shared memory one block may take (opt-in maximum, bytes), by compute capability: a kernel over it compiles but
# fails at its first launch with "out of resource", which only a GPU would otherwise show.
SHARED_MEMORY = {80: 166912, 86: 101376, 89: 101376, 90: 232448, 100: 232448}


@dataclass(frozen=True)
class Compiled:
    kernel: str
    signature: str
    error: str = ""      # empty: it compiled


@dataclass
class CrossCompile:
    """Within the block, every JIT kernel launch compiles for `target` instead (each distinct signature once)."""
    target: object
    results: list[Compiled] = field(default_factory=list)
    _seen: set = field(default_factory=set)

    @property
    def failures(self) -> list[Compiled]:
        return [r for r in self.results if r.error]

    def __enter__(self) -> "CrossCompile":
        if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
            raise RuntimeError("cross-compiling needs TRITON_INTERPRET unset: the interpreter compiles nothing")
        from triton.runtime.jit import JITFunction
        self._jit, self._run = JITFunction, JITFunction.run
        compile_launch = self._compile_launch

        def run(kernel, *args, grid, warmup, **kwargs):
            compile_launch(kernel, args, kwargs)
        JITFunction.run = run
        _launch_hooks().add(_cross_compiling)   # generated launchers (templates/lean_launch.py) then take Triton's path
        return self

    def __exit__(self, *exc) -> None:
        self._jit.run = self._run
        _launch_hooks().remove(_cross_compiling)

    def _compile_launch(self, kernel, args: tuple, kwargs: dict) -> None:
        import triton
        from triton.compiler import ASTSource

        options = {k: kwargs.pop(k) for k in LAUNCH_OPTIONS if k in kwargs}
        bound = inspect.signature(kernel.fn).bind(*args, **kwargs)
        bound.apply_defaults()
        signature, constexprs, attrs = {}, {}, {}
        for index, param in enumerate(kernel.params):
            value = bound.arguments[param.name]
            if param.is_constexpr or value is None:
                signature[param.name] = "constexpr"
                constexprs[param.name] = value
                continue
            signature[param.name], divisible = argument_type(value)
            if divisible and not param.do_not_specialize:
                attrs[(index,)] = [["tt.divisibility", DIVISIBILITY]]
        name = kernel.fn.__name__
        key = (name, kernel.src, repr(sorted(signature.items())), repr(sorted(constexprs.items(), key=str)),
               repr(sorted(attrs.items())), repr(sorted(options.items())))
        if key in self._seen:
            return
        self._seen.add(key)
        described = ", ".join(f"{k}={constexprs[k]!r}" if v == "constexpr" else f"{k}:{v}" for k, v in signature.items())
        try:
            binary = triton.compile(ASTSource(kernel, signature, constexprs, attrs), target=self.target,
                                    options=options)
        except Exception as exc:   # the compiler's own error is the finding
            self.results.append(Compiled(name, described, f"{type(exc).__name__}: {exc}"[:2000]))
            return
        limit = SHARED_MEMORY.get(self.target.arch)
        if limit is not None and binary.metadata.shared > limit:
            self.results.append(Compiled(name, described, f"out of resource: {binary.metadata.shared} bytes of shared "
                                                          f"memory, sm_{self.target.arch} has {limit}"))
        else:
            self.results.append(Compiled(name, described))


def _launch_hooks():
    import triton
    return triton.knobs.runtime.launch_enter_hook


def _cross_compiling(*args) -> None:
    """A launch hook that is never called (nothing launches): its presence sends every lean launcher through
    JITFunction.run, which the block replaced."""


def argument_type(value) -> tuple[str, bool]:
    """(Triton type, 16-divisible) of a launch argument, as the launcher specializes it."""
    if isinstance(value, torch.Tensor):
        if value.dtype not in POINTEE:
            raise TypeError(f"no Triton pointer type for {value.dtype}")
        return "*" + POINTEE[value.dtype], value.data_ptr() % DIVISIBILITY == 0
    if isinstance(value, bool):
        return "i1", False
    if isinstance(value, int):
        return ("i32" if -2**31 <= value < 2**31 else "i64"), value % DIVISIBILITY == 0 and value != 0
    if isinstance(value, float):
        return "fp32", False
    raise TypeError(f"no Triton type for a {type(value).__name__} argument")
