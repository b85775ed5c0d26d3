"""Triton's CPU interpreter rounding float32 to bfloat16 as a GPU does: to nearest, ties to even.

On a GPU, `x.to(tl.bfloat16)` and a store of float32 values into a bfloat16 tensor round to nearest even
(`cvt.rn.bf16.f32`), as torch does. The interpreter (Triton 3.9's `cast_impl`) drops the low 16 bits
instead: every inexact value moves toward zero, by up to one bf16 ulp, on about half the elements. That
stays within a bf16 tolerance, but not where the rounded values are amplified or summed: an fp8
quantization of bf16 values (5% of the e4m3 results one step off), or a backward pass whose gradients sum
thousands of values biased the same way. A CPU evaluation then rejects kernels that are right on a
GPU, so CPU workers patch the conversion for the whole process, as kernelbench.core.emulation patches torch.
"""

from __future__ import annotations

import numpy as np

_PATCHED: list = []


def bf16_bits(bits: np.ndarray, nearest: bool = True) -> np.ndarray:
    """float32 bit patterns (uint32) -> bfloat16 bit patterns (uint16): the nearest, ties to even (else the
    one toward zero); NaN stays NaN (quiet, sign kept), overflow rounds to infinity as in IEEE rounding."""
    wide = bits.astype(np.uint64)
    if nearest:
        wide = wide + 0x7FFF + ((wide >> 16) & 1)   # a carry moves into the exponent
    nan = (bits & 0x7FFFFFFF) > 0x7F800000
    return np.where(nan, (bits >> 16) | 0x0040, wide >> 16).astype(np.uint16)


def round_bf16_as_gpus_do_for_this_process() -> None:
    """For a CPU worker: the interpreter's float32 -> bfloat16 conversions (casts, and stores into bfloat16
    tensors) round to nearest even, and conversions both ways keep subnormals (the interpreter's lose some).
    The builder's methods are patched, not the interpreter's module-level function: the interpreter copies
    its module's globals into every kernel's module (the audit would see the patch there as the solution's)."""
    if _PATCHED:
        return
    import triton.language as tl
    from triton.runtime import interpreter

    builder = interpreter.InterpreterBuilder
    cast, fp_to_fp = builder.cast_impl, builder.create_fp_to_fp

    def exact(src, dst_type, nearest=True):   # float32 <-> bfloat16 as bit operations; None: another conversion
        data = np.ascontiguousarray(src.data)
        if src.dtype.scalar == tl.float32 and dst_type.scalar == tl.bfloat16:
            converted = bf16_bits(data.view(np.uint32), nearest)
        elif src.dtype.scalar == tl.bfloat16 and dst_type.scalar == tl.float32:   # exact (subnormals too)
            converted = (data.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            return None
        return interpreter.TensorHandle(converted.reshape(np.shape(src.data)), dst_type.scalar)

    def rounding_cast(self, src, dst_type):   # also a truncation (create_fp_trunc) and a store's conversion
        converted = exact(src, dst_type)
        return cast(self, src, dst_type) if converted is None else converted

    def rounding_fp_to_fp(self, src, dst_type, rounding_mode):   # an explicit round-toward-zero truncates
        converted = exact(src, dst_type, rounding_mode != interpreter._ir.ROUNDING_MODE.RTZ)
        return fp_to_fp(self, src, dst_type, rounding_mode) if converted is None else converted

    builder.cast_impl, builder.create_fp_to_fp = rounding_cast, rounding_fp_to_fp
    _PATCHED.append(builder)
