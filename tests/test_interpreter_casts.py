"""Triton's CPU interpreter rounds float casts as the GPU does (kernelbench.core.interpreter_casts).

conftest.py sets TRITON_INTERPRET=1 before kernelbench is imported, so the patch is on in this process; the
interpreter's own conversion (kept in _PATCHED) is called too, to show what the patch corrects."""

import numpy as np
import pytest
import torch
import triton
import triton.language as tl

from kernelbench.core import interpreter_casts


@triton.jit
def _cast_kernel(x, y, N: tl.constexpr):
    offsets = tl.arange(0, N)
    tl.store(y + offsets, tl.load(x + offsets).to(y.dtype.element_ty))


@triton.jit
def _through_bf16(x, half, integer, N: tl.constexpr):
    offsets = tl.arange(0, N)
    value = tl.load(x + offsets).to(tl.bfloat16)
    tl.store(half + offsets, value.to(tl.float16))
    tl.store(integer + offsets, value.to(tl.int32))


def _values() -> torch.Tensor:
    x = torch.randn(4096, generator=torch.Generator().manual_seed(0)) * 3
    x[:6] = torch.tensor([float("nan"), float("inf"), -float("inf"), -1e6, 1e-40, 2.6019])
    return x


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    a, b = a.float(), b.float()
    return bool(((a == b) | (a.isnan() & b.isnan())).all())


@pytest.mark.parametrize("dtype, limit", [(torch.bfloat16, None), (torch.float16, None),
                                          (torch.float8_e4m3fn, 448.0), (torch.float8_e5m2, 57344.0)])
def test_casts_round_to_nearest_even(dtype, limit):
    x = _values()
    y = torch.empty(x.shape, dtype=dtype)
    _cast_kernel[(1,)](x, y, N=x.numel())
    # the GPU: round to nearest even; fp8 saturates to the largest finite value (cvt.rn.satfinite)
    expected = (x if limit is None else x.clamp(-limit, limit)).to(dtype)
    assert _same(y, expected)


@pytest.mark.parametrize("dtype", [torch.float8_e4m3fn, torch.float8_e5m2])
def test_fp8_widens_exactly(dtype):
    # fp8 -> fp32 and fp8 -> bf16 are the interpreter's own (exact) conversions, reached through the patch
    x = _values().nan_to_num(0.0).clamp(-400, 400).to(dtype)
    for wide in (torch.float32, torch.bfloat16):
        y = torch.empty(x.shape, dtype=wide)
        _cast_kernel[(1,)](x, y, N=x.numel())
        assert torch.equal(y, x.to(wide))


def test_bf16_to_half_and_integer_convert_values():
    x = _values()[6:]
    x = torch.cat((x, x[:6]))   # a power of two long again, finite values only
    half, integer = torch.empty(x.shape, dtype=torch.float16), torch.empty(x.shape, dtype=torch.int32)
    _through_bf16[(1,)](x, half, integer, N=x.numel())
    assert _same(half, x.to(torch.bfloat16).to(torch.float16))
    assert torch.equal(integer, x.to(torch.bfloat16).to(torch.int32))


def test_the_interpreter_alone_truncates_bf16():
    """The defect the patch removes: the interpreter's own fp32 -> bf16 drops the low bits (2.6019 -> 2.59375,
    where the GPU and torch give 2.609375), on about half of all values."""
    from triton.runtime.interpreter import InterpreterBuilder, TensorHandle
    original_cast = interpreter_casts._PATCHED[0]
    x = _values()[6:].numpy()   # finite
    truncated = original_cast(InterpreterBuilder(), TensorHandle(x, tl.float32), tl.bfloat16)
    as_float = torch.from_numpy((truncated.data.astype(np.uint32) << 16).view(np.float32))
    differs = (as_float != torch.from_numpy(x).to(torch.bfloat16).float()).float().mean().item()
    assert 0.3 < differs < 0.7
    patched = InterpreterBuilder.cast_impl(InterpreterBuilder(), TensorHandle(x, tl.float32), tl.bfloat16)
    assert np.array_equal(patched.data, torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16))
