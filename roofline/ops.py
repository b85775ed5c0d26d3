"""FLOPs of one aten op, by the unit that must do them.

Matrix work (mm, bmm, addmm, baddbmm, mv, dot, _int_mm, _scaled_mm, grouped mm, convolution)
counts dense-equivalent FLOPs, 2*M*N*K, in the tensor-core class of its operands (the class
is chosen by the counter from the operands' precision, see counter.py). Everything else runs
on CUDA cores: one FLOP per output element for elementwise ops, one per input element for
reductions (a lower bound: no op is counted above its cheapest correct implementation), and
transcendentals (exp, log, tanh, sigmoid, erf, rsqrt, sqrt, sin, cos, pow ...) separately as
SFU results. Pure data movement (views, copies, casts, gathers) is free here: its cost is
the DRAM bytes, counted once for the whole workload.
"""

from __future__ import annotations

import math

import torch

# ------------------------------------------------------------------------------ precision
# Rank of the narrowest precision a value can be held in; matrix classes by rank.
RANK = {torch.float4_e2m1fn_x2: 0, torch.int8: 1, torch.float8_e4m3fn: 2, torch.float8_e5m2: 2,
        torch.float16: 3, torch.bfloat16: 3, torch.float32: 4, torch.float64: 5}
NEUTRAL = 9  # integers (other than int8), bool, uint8: indices and masks carry no precision
TENSOR_CLASS = {0: "fp4", 1: "int8", 2: "fp8", 3: "bf16", 4: "tf32", 5: "fp64"}


def rank_of(dtype: torch.dtype) -> int:
    return RANK.get(dtype, NEUTRAL)


def cuda_class(dtypes) -> str:
    """CUDA-core class of an op: the widest float type it touches (ints run at the fp32 rate)."""
    floats = [d for d in dtypes if d.is_floating_point]
    if any(d == torch.float64 for d in floats):
        return "fp64"
    if floats and all(d in (torch.float16, torch.bfloat16) for d in floats):
        return "fp16"
    return "fp32"


# ------------------------------------------------------------------------------ op tables
# Pure data movement: no arithmetic (value-preserving; origins flow through them).
MOVEMENT = {
    "_to_copy", "to", "clone", "contiguous", "copy", "lift_fresh", "lift_fresh_copy", "detach",
    "alias", "_unsafe_view", "view", "reshape", "_reshape_alias", "expand", "permute", "transpose",
    "t", "squeeze", "unsqueeze", "slice", "select", "narrow", "unbind", "split", "split_with_sizes",
    "chunk", "index", "index_select", "embedding", "gather", "as_strided", "movedim",
    "expand_copy", "view_copy", "permute_copy", "t_copy", "transpose_copy", "unsqueeze_copy",
    "squeeze_copy", "slice_copy", "select_copy", "_unsafe_index",
}
# Creation, copies and layout changes: no FLOPs (their inputs, if any, are consumed).
FREE = MOVEMENT | {
    "empty", "empty_like", "empty_strided", "empty_permuted", "new_empty", "new_empty_strided",
    "zeros", "zeros_like", "new_zeros", "ones", "ones_like", "new_ones", "full", "full_like",
    "new_full", "scalar_tensor", "arange", "linspace", "eye", "zero", "fill", "copy_", "cat",
    "stack", "repeat", "repeat_interleave", "flip", "roll", "constant_pad_nd", "pad",
    "index_put", "index_put_", "_index_put_impl", "scatter", "slice_scatter", "select_scatter",
    "as_strided_scatter", "diagonal", "unfold", "tril", "triu", "_local_scalar_dense",
    "set_", "resize_", "item", "view_as_real", "view_as_complex", "_conj", "resolve_conj",
    "resolve_neg", "split_copy", "unbind_copy", "masked_scatter", "nonzero", "masked_select",
    "_assert_async", "_assert_scalar", "sym_constrain_range_for_size", "_functional_assert_async",
    "record_stream", "tolist", "sort_indices",
}
# Transcendental results per output element (SFU / MUFU work); extra CUDA FLOPs per element.
SFU = {
    "exp": (1, 0), "exp2": (1, 0), "expm1": (1, 1), "log": (1, 0), "log2": (1, 0),
    "log10": (1, 1), "log1p": (1, 1), "sigmoid": (1, 1), "tanh": (1, 0), "sin": (1, 0),
    "cos": (1, 0), "tan": (1, 0), "erf": (1, 0), "erfc": (1, 1), "erfinv": (1, 0),
    "rsqrt": (1, 0), "sqrt": (1, 0), "reciprocal": (1, 0), "silu": (1, 2), "gelu": (1, 3),
    "softplus": (2, 2), "mish": (3, 2), "elu": (1, 2), "celu": (1, 2), "selu": (1, 3),
    "logit": (1, 2), "atan": (1, 0), "atan2": (1, 1), "asin": (1, 0), "acos": (1, 0),
    "sinh": (1, 1), "cosh": (1, 1), "asinh": (1, 1), "acosh": (1, 1), "atanh": (1, 1),
    "digamma": (1, 0), "lgamma": (1, 0), "logaddexp": (2, 2), "logaddexp2": (2, 2),
    "xlogy": (1, 1), "special_xlog1py": (1, 1), "sigmoid_backward": (0, 3),
    "log_sigmoid_forward": (2, 2), "glu": (1, 2), "sinc": (1, 2), "special_erfcx": (1, 2),
}
# Reductions: CUDA FLOPs per INPUT element, SFU per input element.
REDUCTION = {
    "sum": (1, 0), "mean": (1, 0), "amax": (1, 0), "amin": (1, 0), "max": (1, 0), "min": (1, 0),
    "aminmax": (1, 0), "prod": (1, 0), "argmax": (1, 0), "argmin": (1, 0), "any": (1, 0),
    "all": (1, 0), "var": (2, 0), "std": (2, 0), "var_mean": (2, 0), "std_mean": (2, 0),
    "norm": (2, 0), "linalg_vector_norm": (2, 0), "cumsum": (1, 0), "cumprod": (1, 0),
    "logcumsumexp": (2, 2), "logsumexp": (2, 1), "sort": (1, 0), "topk": (1, 0), "msort": (1, 0),
    "argsort": (1, 0), "kthvalue": (1, 0), "median": (1, 0), "nanmedian": (1, 0), "mode": (1, 0),
    "bincount": (1, 0), "histc": (1, 0), "count_nonzero": (1, 0), "unique": (1, 0),
    "_unique2": (1, 0), "unique_consecutive": (1, 0), "unique_dim": (1, 0), "cummax": (1, 0),
    "cummin": (1, 0), "nansum": (1, 0), "nanmean": (1, 0),
    "_softmax": (3, 1), "_safe_softmax": (3, 1), "softmax": (3, 1), "_log_softmax": (3, 1),
    "log_softmax": (3, 1), "_softmax_backward_data": (3, 0), "_log_softmax_backward_data": (3, 1),
    "native_layer_norm": (5, 0), "native_group_norm": (5, 0), "native_batch_norm": (5, 0),
    "_native_batch_norm_legit": (5, 0), "_native_batch_norm_legit_no_training": (4, 0),
    "_fused_rms_norm": (3, 0), "rms_norm": (3, 0), "layer_norm": (5, 0), "group_norm": (5, 0),
    "native_layer_norm_backward": (8, 0), "native_dropout": (2, 0),
    "scatter_add": (1, 0), "scatter_reduce": (1, 0), "index_add": (1, 0), "index_reduce": (1, 0),
    "embedding_bag": (1, 0), "_embedding_bag": (1, 0), "_embedding_bag_forward_only": (1, 0), "segment_reduce": (1, 0),
    "searchsorted": (1, 0), "bucketize": (1, 0),
}
# Normalizations: one rsqrt per row (their last output holds one value per row).
NORMS = {"native_layer_norm", "_fused_rms_norm", "native_group_norm", "native_batch_norm",
         "_native_batch_norm_legit", "_native_batch_norm_legit_no_training"}
SOFTMAX_LIKE = {"_softmax", "_safe_softmax", "softmax", "_log_softmax", "log_softmax", "logsumexp"}


MATMULS = {"mm", "_int_mm", "addmm", "bmm", "baddbmm", "addbmm", "mv", "addmv", "dot", "vdot", "inner",
           "_scaled_mm", "_grouped_mm", "_scaled_grouped_mm", "convolution", "_convolution"}


class Work:
    """What one op costs: tensor-core FLOPs (class -> n), CUDA FLOPs (class -> n), SFU results."""
    __slots__ = ("tensor", "cuda", "sfu", "operands")

    def __init__(self, tensor=None, cuda=None, sfu=0.0, operands=()):
        self.tensor = tensor or {}
        self.cuda = cuda or {}
        self.sfu = sfu
        self.operands = operands   # the matrix operands (their precision picks the class)


def _numel(t) -> int:
    return t.numel() if isinstance(t, torch.Tensor) else 1


def matmul_flops(name: str, args, out) -> tuple[int, tuple, int] | None:
    """(dense FLOPs, matrix operands, epilogue FLOPs) of a matrix op, or None if it isn't one."""
    a = args
    if name in ("mm", "_int_mm"):
        return 2 * a[0].shape[0] * a[0].shape[1] * a[1].shape[1], (a[0], a[1]), 0
    if name == "addmm":
        m, k, n = a[1].shape[0], a[1].shape[1], a[2].shape[1]
        return 2 * m * n * k, (a[1], a[2]), m * n
    if name == "bmm":
        b, m, k = a[0].shape
        return 2 * b * m * k * a[1].shape[2], (a[0], a[1]), 0
    if name in ("baddbmm", "addbmm"):
        b, m, k = a[1].shape
        n = a[2].shape[2]
        return 2 * b * m * n * k, (a[1], a[2]), _numel(out)
    if name == "mv":
        return 2 * a[0].numel(), (a[0], a[1]), 0
    if name == "addmv":
        return 2 * a[1].numel(), (a[1], a[2]), a[1].shape[0]
    if name in ("dot", "vdot", "inner"):
        return 2 * a[0].numel(), (a[0], a[1]), 0
    if name == "_scaled_mm":
        k = a[0].shape[1] * (2 if a[0].dtype == torch.float4_e2m1fn_x2 else 1)
        return 2 * a[0].shape[0] * k * a[1].shape[1], (a[0], a[1]), _numel(out)
    if name in ("_grouped_mm", "_scaled_grouped_mm"):
        mat_a, mat_b = a[0], a[1]
        k = mat_a.shape[-1] * (2 if mat_a.dtype == torch.float4_e2m1fn_x2 else 1)
        if mat_a.dim() == 2 and mat_b.dim() == 2:            # K split into groups: sum of K = K
            return 2 * mat_a.shape[0] * mat_b.shape[-1] * k, (mat_a, mat_b), 0
        return 2 * _numel(out) * k, (mat_a, mat_b), 0
    if name in ("convolution", "_convolution", "convolution_overrideable", "cudnn_convolution",
                "mkldnn_convolution", "_slow_conv2d_forward", "slow_conv3d_forward"):
        x, w = a[0], a[1]
        transposed = bool(a[6]) if len(a) > 6 and name in ("convolution", "_convolution") else False
        taps = math.prod(w.shape[2:])
        if transposed:  # weight (C_in, C_out/groups, k...): every input element feeds C_out/groups * taps MACs
            return 2 * x.numel() * w.shape[1] * taps, (x, w), _numel(out)
        return 2 * _numel(out) * w.shape[1] * taps, (x, w), _numel(out)
    return None


def work_of(name: str, args, kwargs, outs: list) -> Work:
    """The Work of one aten op given its (overload-packet) name, arguments and outputs."""
    tensors_in = [a for a in args if isinstance(a, torch.Tensor)]
    for a in args:
        if isinstance(a, (list, tuple)):
            tensors_in.extend(x for x in a if isinstance(x, torch.Tensor))
    out = outs[0] if outs else None
    dtypes = [t.dtype for t in tensors_in] + [o.dtype for o in outs]
    cls = cuda_class(dtypes)
    half = 0.5 if cls == "fp16" else 1.0   # packed half2 SFU variants (ex2.approx.f16x2 ...)

    mm = matmul_flops(name, args, out)
    if mm is not None:
        flops, operands, epilogue = mm
        return Work(tensor={"?": flops}, cuda={cls: epilogue} if epilogue else None, operands=operands)
    if name in FREE:
        return Work()
    if name in REDUCTION:
        per, sfu = REDUCTION[name]
        n_in = max((t.numel() for t in tensors_in), default=0)
        if "embedding_bag" in name:                  # one add per looked-up row element, not per table element
            n_in = args[1].numel() * args[0].shape[-1]
        rows = 0                                     # one rsqrt / log per row
        if name in NORMS:
            rows = _numel(outs[-1]) if len(outs) > 1 else 0
        elif name in ("_log_softmax", "log_softmax"):
            rows = n_in // max(tensors_in[0].shape[args[1]] if tensors_in[0].dim() else 1, 1)
        elif name == "logsumexp":
            rows = _numel(out)
        return Work(cuda={cls: per * n_in}, sfu=(n_in * sfu + rows) * half)
    n_out = sum(_numel(o) for o in outs[:1]) if outs else 0
    if name in SFU:
        sfu, extra = SFU[name]
        if name == "gelu" and kwargs.get("approximate", "none") == "tanh":
            extra = 6
        return Work(cuda={cls: n_out * max(extra, 0)}, sfu=n_out * sfu * half)
    if name == "pow":
        exponent = args[1] if len(args) > 1 else kwargs.get("exponent")
        if isinstance(exponent, (int, float)) and not isinstance(exponent, bool):
            if float(exponent).is_integer() and exponent >= 0:
                return Work(cuda={cls: n_out * max(1, math.ceil(math.log2(max(exponent, 2))))})
            if exponent in (0.5, -0.5, -1):
                return Work(sfu=n_out * half)
        return Work(cuda={cls: n_out}, sfu=2 * n_out * half)   # exp2(y * log2(x))
    if name in ("addcmul", "addcdiv", "lerp", "hardtanh_backward", "threshold_backward"):
        return Work(cuda={cls: 2 * n_out})
    # Default: one operation per output element (add, mul, where, comparisons, clamp, ...).
    return Work(cuda={cls: n_out})
