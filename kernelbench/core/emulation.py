"""CPU emulation of what the CPU build of torch lacks or runs impractically slowly: FP4 scaled matrix
products, and half-precision convolution.

The CPU build of torch has no kernel for ``torch._scaled_mm`` on packed fp4 operands. On a
CPU run, `emulated_scaled_mm()` routes such calls to a dequantize-then-matmul in fp32 with the
same semantics: ``float4_e2m1fn_x2`` operands (two e2m1 values per byte, low nibble first,
packed along K) and block scales in cuBLAS's 128x4 "blocked" layout (e4m3 scales per 16
values, or e8m0 per 32). A GPU without FP4 units is not emulated: there such a workload is
reported as unsupported (INVALID_REFERENCE), since timing an emulation as the baseline would
mean nothing.

A float16 convolution on a CPU without fp16 arithmetic runs a scalar path: a 9-GFLOP convolution took
25-60 s on two cores, several minutes per evaluation of a problem whose reference holds two. On CPU it
is computed in fp32 and rounded once to fp16, which is what that path does too (fp32 accumulation) and
what cuDNN does on a GPU: the two differ only in summation order (one fp16 ulp at rounding ties, on
0.1-0.2% of elements), and neither is closer to the exact product.
"""

from __future__ import annotations

import contextlib
import math

import torch

# The 16 e2m1 code points: sign bit 3, exponent bits 2..1, mantissa bit 0.
E2M1_VALUES = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0,
                            -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0])


def unpack_fp4(packed: torch.Tensor) -> torch.Tensor:
    """(..., n) packed fp4x2 -> (..., 2n) float32, low nibble first."""
    raw = packed.contiguous().view(torch.uint8)
    codes = torch.stack([raw & 0xF, raw >> 4], dim=-1).flatten(-2).long()
    return E2M1_VALUES.to(packed.device)[codes]


def unblock_scales(flat: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Invert the 128x4 blocked scale layout: flat -> (rows, cols) float32 (padding dropped)."""
    row_blocks, col_blocks = math.ceil(rows / 128), math.ceil(cols / 4)
    tiles = flat.reshape(-1).float().reshape(row_blocks * col_blocks, 32, 4, 4).transpose(1, 2)
    grid = tiles.reshape(row_blocks, col_blocks, 128, 4).permute(0, 2, 1, 3)
    return grid.reshape(row_blocks * 128, col_blocks * 4)[:rows, :cols]


def _dequantize(values: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """values (rows, K) float32 times per-block scales (rows, K // block)."""
    rows, k = values.shape
    block = 16 if scales.dtype == torch.float8_e4m3fn else 32
    grid = unblock_scales(scales, rows, k // block)
    return (values.reshape(rows, k // block, block) * grid.unsqueeze(-1)).reshape(rows, k)


def scaled_mm_fp4(mat_a, mat_b, scale_a, scale_b, bias=None, scale_result=None, out_dtype=None,
                  use_fast_accum=False):
    a = _dequantize(unpack_fp4(mat_a), scale_a)              # (M, K)
    b = _dequantize(unpack_fp4(mat_b.t()), scale_b)          # mat_b is (K/2, N) packed along K
    out = a @ b.t()
    if scale_result is not None:
        out = out * scale_result.float()
    if bias is not None:
        out = out + bias.float()
    return out.to(out_dtype or torch.bfloat16)


def _dispatcher(native):
    def dispatch(mat_a, mat_b, *args, **kwargs):
        if mat_a.dtype == torch.float4_e2m1fn_x2:
            return scaled_mm_fp4(mat_a, mat_b, *args, **kwargs)
        return native(mat_a, mat_b, *args, **kwargs)

    return dispatch


# The op as a program calls it (`aten._scaled_mm.default(...)`), and as a fake tensor mode that carries real
# tensors (kernelbench.generate.branch_guards) runs it on them: both call the overload's `_op`.
_SCALED_MM_OP = torch.ops.aten._scaled_mm.default


def _real_cpu_fp4(mat_a) -> bool:
    """Plain fp4 data on the CPU, outside any tracing: a fake, functional or traced operand must reach the
    native op, so that a trace records `_scaled_mm` itself and never the emulation's ops."""
    return (type(mat_a) is torch.Tensor and mat_a.dtype == torch.float4_e2m1fn_x2 and mat_a.device.type == "cpu"
            and not torch._is_functional_tensor(mat_a)
            and torch._C._get_dispatch_mode(torch._C._TorchDispatchModeKey.PROXY) is None)


class _OpDispatcher:
    """Stands in for the overload's `_op`, hashing as it does: the overload hashes as its `_op`, and fx graphs
    and op tables built before or after the swap must find it again."""

    def __init__(self, native):
        self.native = native

    def __call__(self, mat_a, *args, **kwargs):
        if _real_cpu_fp4(mat_a):
            return scaled_mm_fp4(mat_a, *args, **kwargs)
        return self.native(mat_a, *args, **kwargs)

    def __hash__(self):
        return hash(self.native)


@contextlib.contextmanager
def emulated_scaled_mm_op():
    """Within the block, the aten op `_scaled_mm` on real fp4 CPU operands runs the emulation above; traces
    still record the op (the example capture of a reference runs it on real tensors while tracing)."""
    native = _SCALED_MM_OP._op
    _SCALED_MM_OP._op = _OpDispatcher(native)
    try:
        yield
    finally:
        _SCALED_MM_OP._op = native


@contextlib.contextmanager
def emulated_scaled_mm():
    """Within the block, torch._scaled_mm and the aten op on fp4 operands run the emulation above."""
    native = torch._scaled_mm
    torch._scaled_mm = _dispatcher(native)
    try:
        with emulated_scaled_mm_op():
            yield
    finally:
        torch._scaled_mm = native


def emulate_scaled_mm_for_this_process() -> None:
    """For a CPU worker: the emulation stays for the process's whole life (reference and solution alike)."""
    torch._scaled_mm = _dispatcher(torch._scaled_mm)
    if not isinstance(_SCALED_MM_OP._op, _OpDispatcher):
        _SCALED_MM_OP._op = _OpDispatcher(_SCALED_MM_OP._op)


_HALF_CONVOLUTION: list = []   # the library registration, kept alive for the process's life


def _convolution(input, weight, bias, stride, padding, dilation, transposed, output_padding, groups):
    """aten::convolution on CPU: float16 through fp32 (see above), every other type as torch does it."""
    half = input.dtype == torch.float16
    widen = (lambda t: t.float()) if half else (lambda t: t)
    out = torch.ops.aten._convolution.default(
        widen(input), widen(weight), None if bias is None else widen(bias), stride, padding, dilation, transposed,
        output_padding, groups, torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
        torch.backends.cudnn.enabled, torch.backends.cudnn.allow_tf32)
    return out.to(torch.float16) if half else out


def emulate_half_convolution_for_this_process() -> None:
    """For a CPU worker: float16 convolutions of the whole process (reference and solution alike) run as above."""
    if not _HALF_CONVOLUTION:
        library = torch.library.Library("aten", "IMPL")
        library.impl("convolution", _convolution, "CPU")
        _HALF_CONVOLUTION.append(library)


def reference_context(device: torch.device | str):
    """The context a reference runs in on `device`: FP4 emulation on CPU, nothing on GPUs."""
    return emulated_scaled_mm() if torch.device(device).type == "cpu" else contextlib.nullcontext()
