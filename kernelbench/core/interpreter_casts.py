"""Float conversions of Triton's CPU interpreter, made to round as the GPU rounds.

The interpreter (Triton 3.6 and 3.9 alike) converts float32 to bfloat16 by dropping the low mantissa bits, where a
GPU rounds to nearest even: about half the elements of a bf16 result differ by one ulp, and a kernel that passes
on the GPU fails a tight tolerance on the CPU (a SwiGLU MLP: 95% of its output within tolerance, 98% required).
Its conversions to fp8 round ties away from zero and drop the carry into the exponent, and integers or bf16 bits
are converted as raw numbers where a value is meant. `faithful_interpreter_casts()` replaces, in this process,
the interpreter's conversions that involve bf16, and those to e4m3/e5m2, by exact ones: round to nearest even
(torch's conversion), and fp8 saturating to the largest finite value as the GPU's `cvt.rn.satfinite` does.
Other conversions keep the interpreter's own (numpy's, exact). Nothing changes on a GPU: the interpreter is the
CPU's alone. kernelbench/__init__.py applies it in every process started with TRITON_INTERPRET=1.
"""

from __future__ import annotations

import numpy as np
import torch

_PATCHED: list = []   # the interpreter's own methods, once replaced


def _fp8_targets(tl) -> dict:
    """Triton's fp8 type -> (torch dtype, largest finite value)."""
    return {tl.float8e4nv: (torch.float8_e4m3fn, 448.0), tl.float8e5: (torch.float8_e5m2, 57344.0)}


def _values(handle, tl) -> np.ndarray:
    """The numbers a tensor handle holds (bf16 is stored as uint16 bits there)."""
    if handle.dtype.scalar == tl.bfloat16:
        return (handle.data.astype(np.uint32) << 16).view(np.float32)
    return handle.data


def _torch_cast(values: np.ndarray, dtype: torch.dtype, bits: np.dtype, limit: float | None = None) -> np.ndarray:
    tensor = torch.from_numpy(np.array(values, dtype=np.float32, order="C"))   # a copy: 0-d stays 0-d
    if limit is not None:
        tensor = tensor.clamp(-limit, limit)   # satfinite: +-inf and overflow to the largest finite, NaN kept
    return tensor.to(dtype).view(torch.int16 if bits == np.uint16 else torch.int8).numpy().view(bits)


def faithful_interpreter_casts() -> None:
    """Replace the interpreter's bf16 and fp8 conversions in this process (idempotent)."""
    if _PATCHED:
        return
    import triton.language as tl
    from triton._C.libtriton import ir
    from triton.runtime.interpreter import InterpreterBuilder, TensorHandle, _get_np_dtype

    cast_impl, interpreter_fp_to_fp = InterpreterBuilder.cast_impl, InterpreterBuilder.create_fp_to_fp
    fp8 = _fp8_targets(tl)

    def cast(self, src, dst_type):
        source, target = src.dtype.scalar, dst_type.scalar
        if tl.bfloat16 not in (source, target) or source == target:
            return cast_impl(self, src, dst_type)
        values = _values(src, tl)
        if target == tl.bfloat16:
            return TensorHandle(_torch_cast(values, torch.bfloat16, np.uint16), target)
        return TensorHandle(values.astype(_get_np_dtype(target)), target)   # to another float or an integer

    def fp_to_fp(self, src, dst_type, rounding_mode):
        source, target = src.dtype.scalar, dst_type.scalar
        if target in fp8 and rounding_mode in (None, ir.ROUNDING_MODE.RTNE):
            dtype, limit = fp8[target]
            return TensorHandle(_torch_cast(_values(src, tl), dtype, np.uint8, limit), target)
        if tl.bfloat16 in (source, target) and source not in fp8 and target not in fp8:
            return cast(self, src, dst_type)
        return interpreter_fp_to_fp(self, src, dst_type, rounding_mode)

    _PATCHED.extend([cast_impl, interpreter_fp_to_fp])
    InterpreterBuilder.cast_impl = cast
    InterpreterBuilder.create_fp_to_fp = fp_to_fp

