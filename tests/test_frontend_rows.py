"""Row regions in the front end (kernelbench.generate.rowfusion): a reduction over the innermost dimensions
fused with the elementwise work before and after it into one kernel; every render checked against the
reference through the Triton interpreter, and the launches counted with and without row fusion."""

from __future__ import annotations

import pytest
from test_family_fused import assert_all_pass, fused, make

from kernelbench.generate import remap, rowfusion
from kernelbench.generate.frontend import Unsupported

AXES = {"n": {"type": "var"}, "h": {"type": "const", "value": 24}}
ROWS = [{"n": 3}, {"n": 5}]


def launches(match) -> list[int]:
    return [p["launches"] for p in match.plan["programs"]]


def launches_without_row_fusion(problem, monkeypatch, remapping: bool = True) -> list[int]:
    with monkeypatch.context() as patch:
        patch.setattr(rowfusion, "fuse_rows", lambda partition: None)
        if not remapping:
            patch.setattr(remap, "fuse", lambda partition: None)
        return launches(fused(problem))


def row_kernels(match) -> int:
    return sum(any("row_mask" in line for line in k["body"]) for p in match.plan["programs"] for k in p["kernels"])


def fuses(tmp_path, monkeypatch, name, reference, inputs, outputs, expected, workloads=ROWS, axes=AXES):
    """The problem's match: `expected` launches a call (fewer than without row fusion), and every workload passes."""
    problem = make(tmp_path, name, reference, inputs, outputs, workloads, axes=axes)
    before = launches_without_row_fusion(problem, monkeypatch)
    match = fused(problem)
    assert launches(match) == [expected] * len(workloads), (before, match.plan["programs"][0]["lines"])
    assert all(b > expected for b in before), before
    assert row_kernels(match) >= 1
    assert_all_pass(problem, match)
    return match


BF16_ROWS = {"x": (["n", "h"], "bfloat16")}
BF16_OUT = {"y": (["n", "h"], "bfloat16")}


def test_rmsnorm_before_a_matmul_is_one_kernel_and_the_matmul(tmp_path, monkeypatch):
    reference = ("import torch\n\ndef run(x, w, proj):\n"
                 "    h = x.float()\n"
                 "    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6)\n"
                 "    return (h * w).to(x.dtype) @ proj\n")
    fuses(tmp_path, monkeypatch, "rmsnorm_mm", reference,
          {"x": (["n", "h"], "bfloat16"), "w": (["h"], "float32"), "proj": (["h", "h"], "bfloat16")}, BF16_OUT, 2)


def test_layer_norm_before_a_matmul(tmp_path, monkeypatch):
    # layer_norm decomposes into prims.var and prims.sum over the same rows: both in the one kernel
    reference = ("import torch\n\ndef run(x, w, b, proj):\n"
                 "    return torch.nn.functional.layer_norm(x, (x.shape[-1],), w, b, 1e-5) @ proj\n")
    fuses(tmp_path, monkeypatch, "layernorm_mm", reference,
          {"x": (["n", "h"], "float32"), "w": (["h"], "float32"), "b": (["h"], "float32"),
           "proj": (["h", "h"], "float32")}, {"y": (["n", "h"], "float32")}, 2)


def test_softmax_with_a_scale_and_mask_prologue(tmp_path, monkeypatch):
    reference = ("import torch\n\ndef run(x, m):\n"
                 "    s = x.float() * 0.125\n"
                 "    return torch.softmax(s.masked_fill(m, float('-inf')), dim=-1).to(x.dtype), "
                 "torch.log_softmax(s, dim=-1)\n")
    fuses(tmp_path, monkeypatch, "masked_softmax", reference, {"x": (["n", "h"], "float16"), "m": (["h"], "bool")},
          {"y": (["n", "h"], "float16"), "z": (["n", "h"], "float32")}, 1)


def test_residual_add_and_norm_return_both(tmp_path, monkeypatch):
    reference = ("import torch\n\ndef run(x, r, w):\n"
                 "    h = x + r\n"
                 "    f = h.float()\n"
                 "    y = f * torch.rsqrt(f.pow(2).mean(-1, keepdim=True) + 1e-5) * w.float()\n"
                 "    return y.to(x.dtype), h\n")
    # w.float() is recomputed where it is read, not a launch of its own
    fuses(tmp_path, monkeypatch, "add_rmsnorm", reference,
          {"x": (["n", "h"], "bfloat16"), "r": (["n", "h"], "bfloat16"), "w": (["h"], "bfloat16")},
          {"y": (["n", "h"], "bfloat16"), "h": (["n", "h"], "bfloat16")}, 1)


def test_a_row_longer_than_the_registers_hold_is_swept_in_passes(tmp_path, monkeypatch):
    monkeypatch.setattr(rowfusion, "MAX_ROW_BLOCK", 16)
    monkeypatch.setattr(rowfusion, "LOOP_BLOCK", 8)
    monkeypatch.setattr(rowfusion, "MIN_LOOPED_ROWS", 1)
    reference = ("import torch\n\ndef run(x, w):\n"
                 "    v, mu = torch.var_mean(x.float(), dim=-1, keepdim=True)\n"
                 "    y = (x.float() - mu) * torch.rsqrt(v + 1e-5) * w\n"
                 "    return (y.to(x.dtype), torch.softmax(x.float() * 2.0, dim=-1), x.float().amax(-1),\n"
                 "            torch.log_softmax(x, dim=-1))\n")
    match = fuses(tmp_path, monkeypatch, "long_rows", reference, {"x": (["n", "h"], "bfloat16"), "w": (["h"], "float32")},
                  {"y": (["n", "h"], "bfloat16"), "p": (["n", "h"], "float32"), "m": (["n"], "float32"),
                   "l": (["n", "h"], "bfloat16")}, 1)
    body = [line for k in match.plan["programs"][0]["kernels"] for line in k["body"]]
    assert any(line.startswith("for start in range(0, 24, BLOCK_D)") for line in body)


def test_a_transposed_row_input_is_read_with_its_strides(tmp_path, monkeypatch):
    reference = ("import torch\n\ndef run(x):\n"
                 "    t = x.t() * 3.0\n"
                 "    return t - t.amax(-1, keepdim=True), t.sum(-1)\n")
    fuses(tmp_path, monkeypatch, "transposed_rows", reference, {"x": (["h", "n"], "float32")},
          {"y": (["n", "h"], "float32"), "s": (["n"], "float32")}, 1)


def test_argmax_of_a_computed_row(tmp_path, monkeypatch):
    reference = "import torch\n\ndef run(x, b):\n    return torch.argmax(torch.tanh(x) + b, dim=-1)\n"
    fuses(tmp_path, monkeypatch, "argmax_rows", reference, {"x": (["n", "h"], "float32"), "b": (["h"], "float32")},
          {"i": (["n"], "int64")}, 1)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_results_are_rounded_as_eager_rounds_them(tmp_path, monkeypatch, dtype):
    # every intermediate is half: the sum must add the rounded squares, and the mean be rounded before the eps
    reference = ("import torch\n\ndef run(x):\n"
                 "    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + 1e-3) + 1.0\n")
    fuses(tmp_path, monkeypatch, f"half_{dtype}", reference, {"x": (["n", "h"], dtype)}, {"y": (["n", "h"], dtype)}, 1)


def test_a_reduction_over_a_leading_dimension_stays_with_the_library(tmp_path):
    reference = "import torch\n\ndef run(x):\n    return torch.exp(x) / torch.exp(x).sum(0, keepdim=True)\n"
    problem = make(tmp_path, "columns", reference, {"x": (["n", "h"], "float32")}, {"y": (["n", "h"], "float32")},
                   ROWS, axes=AXES)
    match = fused(problem)
    assert row_kernels(match) == 0
    assert any("aten.sum" in line for line in match.plan["programs"][0]["lines"])
    assert_all_pass(problem, match)


def test_a_reduction_over_the_two_innermost_dimensions(tmp_path, monkeypatch):
    reference = ("import torch\n\ndef run(x):\n"
                 "    s = (x.float() * x.float()).sum(dim=(-2, -1))\n"
                 "    return torch.sqrt(s + 1.0), x.float() / s[:, None, None]\n")
    fuses(tmp_path, monkeypatch, "two_dims", reference, {"x": (["n", "a", "b"], "float16")},
          {"r": (["n"], "float32"), "y": (["n", "a", "b"], "float32")}, 1,
          axes={"n": {"type": "var"}, "a": {"type": "const", "value": 4}, "b": {"type": "const", "value": 6}})


def test_what_the_row_kernel_cannot_express_falls_back_to_its_parts(tmp_path, monkeypatch):
    def refuse(self):
        raise Unsupported("refused for the test")
    monkeypatch.setattr(rowfusion.RowKernel, "emit", refuse)
    reference = ("import torch\n\ndef run(x, w):\n"
                 "    v, mu = torch.var_mean(x.float(), dim=-1, keepdim=True)\n"
                 "    return ((x.float() - mu) * torch.rsqrt(v + 1e-5) * w.float()).to(x.dtype)\n")
    problem = make(tmp_path, "fallback", reference, {"x": (["n", "h"], "bfloat16"), "w": (["h"], "bfloat16")},
                   BF16_OUT, ROWS, axes=AXES)
    match = fused(problem)
    # the parts as the elementwise partition made them (remapping, which could recompute the small [n, 1] part
    # in its reader, runs after row fusion and leaves a row region's parts as they are)
    assert row_kernels(match) == 0 and launches(match) == launches_without_row_fusion(problem, monkeypatch, False)
    assert_all_pass(problem, match)


def test_indices_are_int64_when_the_rows_pass_two_to_the_31(tmp_path):
    # traced with fake tensors: a 2**32-element problem costs nothing to lower (it is never run here)
    reference = "import torch\n\ndef run(x):\n    return torch.softmax(x * 0.5, dim=-1)\n"
    problem = make(tmp_path, "huge_rows", reference, {"x": (["n", "h"], "float16")}, {"y": (["n", "h"], "float16")},
                   [{"n": 1 << 20}], axes={"n": {"type": "var"}, "h": {"type": "const", "value": 4096}})
    kernel = fused(problem).plan["programs"][0]["kernels"][0]
    assert kernel["body"][0].startswith("row = tl.program_id(0).to(tl.int64)")
