"""The scaled_gemm family: fp8 products written as dequantize-then-matmul, with per-tensor, per-row and block
scales, proven from the graph and computed with the scales applied where the maths allows (Triton through the
interpreter). Every render must compute what the reference computes, on ragged shapes and in split-K, and must
read each scale block where it applies: a perturbed block changes exactly its own outputs, and a kernel reading
a wrong block is caught by the checker.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from kernelbench.core.reference import compile_reference
from kernelbench.core.solution import load_entry_point, materialize
from kernelbench.core.statuses import PASSED
from kernelbench.generate.family import FAMILIES
from kernelbench.generate.graph import capture_at
from kernelbench.generate.scaled_operands import SCALED_MM, rewrite_scaled_products

from family_checks import family_match, family_passes_everywhere
from test_family_fused import check, make

AXES = {"m": {"type": "var"}, "n": {"type": "const", "value": 40}, "k": {"type": "const", "value": 96},
        "kb": {"type": "const", "value": 3}, "nb": {"type": "const", "value": 2}}
SHAPES = [{"m": 8}, {"m": 33}]         # 33 x 40: partial tiles on both edges
SMALL_TILES = {"block_m": 16, "block_n": 32, "block_k": 64, "split_k": 1, "num_warps": 2, "num_stages": 2}

PER_TENSOR_BIAS = """import torch

def run(x8, xs, w8, ws, b):
    x = x8.to(torch.float32) * xs.to(torch.float32)
    w = w8.to(torch.float32).mul_(ws.to(torch.float32))
    return (x @ w.t() + b.to(torch.float32)).to(torch.bfloat16)
"""
PER_ROW = """import torch

def run(x8, xs, w8, ws):
    return (x8.float() * xs) @ (w8.float() * ws).t()
"""
# 1x32 activation blocks and 32x32 weight blocks (DeepSeek's 1x128 / 128x128 at test size), broadcast by
# repeat_interleave and cut to the operand (40 columns: the last weight block is partial)
BLOCKS = """import torch

def run(x8, xs, w8, ws):
    m, k = x8.shape
    n = w8.shape[0]
    x = x8.to(torch.float32) * xs.repeat_interleave(32, dim=1)[:, :k]
    s = ws.repeat_interleave(32, dim=0).repeat_interleave(32, dim=1)
    return ((x @ (w8.to(torch.float32) * s[:n, :k]).t()) * 0.5).to(torch.float16)
"""
BLOCK_INPUTS = {"x8": (["m", "k"], "float8_e4m3fn"), "xs": (["m", "kb"], "float32"),
                "w8": (["n", "k"], "float8_e4m3fn"), "ws": (["nb", "kb"], "float32")}


def matched(problem):
    return family_match("scaled_gemm", problem)


def assert_all_pass(problem, config=None):
    return family_passes_everywhere("scaled_gemm", problem, config)


def test_per_tensor_scales_with_bias_and_a_bf16_cast(tmp_path):
    problem = make(tmp_path, "per_tensor", PER_TENSOR_BIAS,
                   {"x8": (["m", "k"], "float8_e4m3fn"), "xs": (["1"], "float32"), "w8": (["n", "k"], "float8_e4m3fn"),
                    "ws": (["1"], "float32"), "b": (["n"], "bfloat16")}, {"y": (["m", "n"], "bfloat16")}, SHAPES,
                   axes=AXES)
    match, solution = assert_all_pass(problem, SMALL_TILES)
    kernel = match.plan["kernels"][0]
    # scales constant over K: applied once to the accumulator, then the bias and the cast in the epilogue
    assert kernel["scaled"] == {"a_type": "float8_e4m3fn", "b_type": "float8_e4m3fn", "a_grouped": False,
                                "b_grouped": False}
    assert any("+ x0" in line for line in kernel["body"]) and "k_group=0" in solution.sources[0].content


@pytest.mark.parametrize("split_k", [1, 2])
def test_per_row_scales_mixed_fp8_types_and_split_k(tmp_path, split_k):
    # per-token activation scales [m, 1] and per-channel weight scales [n, 1]; e5m2 x e4m3 (a dgrad's types)
    problem = make(tmp_path, f"per_row{split_k}", PER_ROW,
                   {"x8": (["m", "k"], "float8_e5m2"), "xs": (["m", 1], "float32"), "w8": (["n", "k"], "float8_e4m3fn"),
                    "ws": (["n", 1], "float32")}, {"y": (["m", "n"], "float32")}, SHAPES, axes=AXES)
    match, _ = assert_all_pass(problem, {**SMALL_TILES, "block_k": 32, "split_k": split_k})
    program = match.plan["programs"][1]   # m = 33: A's scale one per row, B's one per column
    assert "scales=(SA, 1, 1, 96, 0, SB, 96, 0, 1, 1)" in program["arguments"]


def test_block_scales_are_applied_per_k_block(tmp_path):
    problem = make(tmp_path, "blocks", BLOCKS, BLOCK_INPUTS, {"y": (["m", "n"], "float16")}, SHAPES, axes=AXES)
    # a configured K tile of 64 is cut to the scales' K block of 32 at launch
    match, solution = assert_all_pass(problem, SMALL_TILES)
    kernel = match.plan["kernels"][0]
    assert kernel["scaled"]["a_grouped"] and kernel["scaled"]["b_grouped"]
    assert "scales=(SA, 1, 3, 32, 1, SB, 32, 1, 32, 3), k_group=32" in match.plan["programs"][1]["arguments"]


def test_block_scales_through_a_block_reshape(tmp_path):
    # the sample problems' form: the operand reshaped to (M/bm, bm, K/bk, bk) and scales unsqueezed into it
    reference = """import torch

def run(x8, xs, w8, ws):
    m, k = x8.shape
    n = w8.shape[0]
    x = (x8.float().reshape(m, 1, k // 32, 32) * xs.unsqueeze(1).unsqueeze(3)).reshape(m, k)
    w = (w8.float().reshape(n // 32, 32, k // 32, 32) * ws.unsqueeze(1).unsqueeze(3)).reshape(n, k)
    return x @ w.T
"""
    axes = {**AXES, "n": {"type": "const", "value": 64}}
    problem = make(tmp_path, "reshaped", reference, BLOCK_INPUTS, {"y": (["m", "n"], "float32")}, SHAPES, axes=axes)
    assert_all_pass(problem, SMALL_TILES)


SCALED_AFTER = """import torch

def run(x8, xs, w8, ws):
    return ((x8.to(torch.float32) @ w8.to(torch.float32).t()) * (xs * ws)).to(torch.bfloat16)
"""
QUANTIZE_THEN_SCALE_PRODUCT = """import torch

def run(x, w8, ws):
    xf = x.float()
    s = (xf.abs().max() / 448.0).clamp(min=1e-12)
    x8 = (xf / s).clamp(-448.0, 448.0).to(torch.float8_e4m3fn)
    return (torch.matmul(x8.to(torch.float32), w8.to(torch.float32).t()) * (s * ws)).to(torch.bfloat16)
"""


def test_per_tensor_scales_applied_to_the_product_instead_of_the_operands(tmp_path):
    # (x8 @ w8^T) * (xs * ws): unscaled fp8 operands (a unit scale in the kernel), the scales in the epilogue
    problem = make(tmp_path, "scaled_after", SCALED_AFTER,
                   {"x8": (["m", "k"], "float8_e4m3fn"), "xs": ([], "float32"), "w8": (["n", "k"], "float8_e4m3fn"),
                    "ws": ([], "float32")}, {"y": (["m", "n"], "bfloat16")}, SHAPES, axes=AXES)
    match, solution = assert_all_pass(problem, SMALL_TILES)
    assert match.plan["form"] == "gemm" and match.plan["kernels"][0]["dot_dtype"] == "fp8"
    assert solution.sources[0].content.count("_scale_vector(None, 0, A.device)") == 2 * len(match.plan["programs"])
    # the fused form: the activation quantized in the problem, its per-tensor scale applied after the product
    problem = make(tmp_path, "quantize_then_scale", QUANTIZE_THEN_SCALE_PRODUCT,
                   {"x": (["m", "k"], "bfloat16"), "w8": (["n", "k"], "float8_e4m3fn"), "ws": ([], "float32")},
                   {"y": (["m", "n"], "bfloat16")}, SHAPES, axes=AXES)
    match = matched(problem)
    assert match.plan["form"] == "fused"
    assert all(sum("_scaled_mm(" in line and ", None, None, " in line for line in p["lines"]) == 1
               for p in match.plan["programs"])
    solution = FAMILIES["scaled_gemm"].render(match, {**FAMILIES["scaled_gemm"].space(
        match, problem.axes_for(problem.workloads[0]))[0], "gemm": SMALL_TILES})
    for workload in problem.workloads:
        comparison = check(problem, solution, workload)
        assert comparison.status == PASSED, (workload.axes, comparison.message)


QUANTIZE_PER_TOKEN = """import torch

def run(x, w8, ws):
    xf = x.float()
    s = xf.abs().amax(dim=-1, keepdim=True).clamp(min=1e-12) / 448.0
    x8 = (xf / s).clamp(-448.0, 448.0).to(torch.float8_e4m3fn)
    return ((x8.float() * s) @ (w8.float() * ws).t()).to(torch.bfloat16)
"""
QUANTIZE_PER_GROUP = """import torch

def run(x, w8, ws):
    m, k = x.shape
    g = x.float().reshape(m, k // 32, 32)
    s = g.abs().amax(dim=-1, keepdim=True).clamp(min=1e-4) / 448.0
    x8 = (g / s).clamp(-448.0, 448.0).to(torch.float8_e4m3fn)
    w = w8.float() * ws.repeat_interleave(32, dim=0).repeat_interleave(32, dim=1)[:w8.shape[0], :k]
    return ((x8.float() * s).reshape(m, k) @ w.t()).to(torch.bfloat16)
"""


@pytest.mark.parametrize("reference, scale_shape", [(QUANTIZE_PER_TOKEN, ["n", 1]), (QUANTIZE_PER_GROUP, ["nb", "kb"])])
def test_a_quantization_inside_the_problem_stays_in_the_front_end(tmp_path, reference, scale_shape):
    # the activation's amax, scale and fp8 cast are the fused front end's kernels; only the product becomes the
    # fp8 kernel, fed the fp8 tensor and scales they computed (no dequantized fp32 copy)
    problem = make(tmp_path, "quantized_inside", reference,
                   {"x": (["m", "k"], "bfloat16"), "w8": (["n", "k"], "float8_e4m3fn"), "ws": (scale_shape, "float32")},
                   {"y": (["m", "n"], "bfloat16")}, SHAPES, axes=AXES)
    family = FAMILIES["scaled_gemm"]
    match = matched(problem)
    assert match.plan["form"] == "fused"
    config = family.space(match, problem.axes_for(problem.workloads[1]))[0]
    solution = family.render(match, {**config, "gemm": {**SMALL_TILES, "split_k": 2}})
    assert [s.path for s in solution.sources][-1] == "scaled_mm.py"
    assert all(sum("_scaled_mm(" in line for line in p["lines"]) == 1 for p in match.plan["programs"])
    assert not any("aten.mm" in line for p in match.plan["programs"] for line in p["lines"])
    for workload in problem.workloads:
        comparison = check(problem, solution, workload)
        assert comparison.status == PASSED, (workload.axes, comparison.message)


def test_each_scale_block_is_read_where_it_applies(tmp_path):
    """The attack: a solution ignoring the scales, or indexing the wrong block, must not pass. Perturbing one
    block scale changes exactly the outputs of that block; a kernel reading block 0 for every K step fails."""
    problem = make(tmp_path, "attack", BLOCKS, BLOCK_INPUTS, {"y": (["m", "n"], "float16")}, [{"m": 33}], axes=AXES)
    family = FAMILIES["scaled_gemm"]
    solution = family.render(matched(problem), SMALL_TILES)
    run = load_entry_point(solution, materialize(solution))
    torch.manual_seed(0)
    x8 = torch.randn(33, 96).to(torch.float8_e4m3fn)
    w8 = torch.randn(40, 96).to(torch.float8_e4m3fn)
    xs, ws = torch.rand(33, 3) + 0.5, torch.rand(2, 3) + 0.5

    def result(xs, ws):
        out = torch.empty(33, 40, dtype=torch.float16)
        run(x8, xs, w8, ws, out)
        return out

    base = result(xs, ws)
    bumped = ws.clone()
    bumped[1, 2] *= 2          # weight rows 32..39, K block 64..95
    changed = (result(xs, bumped) != base).nonzero()
    assert len(changed) and set(changed[:, 1].tolist()) <= set(range(32, 40))
    bumped = xs.clone()
    bumped[5, 1] *= 2          # activation row 5, K block 32..63
    changed = (result(bumped, ws) != base).nonzero()
    assert len(changed) and set(changed[:, 0].tolist()) == {5}
    # the checker catches a kernel that reads K block 0 of the activation's scales for every step
    source = solution.sources[0].content
    assert source.count("sa_rows + (k // SA_bk) * SA_sk") == 1
    wrong = dataclasses.replace(solution, sources=[dataclasses.replace(
        solution.sources[0], content=source.replace("sa_rows + (k // SA_bk) * SA_sk", "sa_rows"))] + list(solution.sources[1:]))
    assert check(problem, wrong, problem.workloads[0]).status != PASSED
    assert check(problem, solution, problem.workloads[0]).status == PASSED


def test_the_rewrite_proves_maps_from_the_graph(tmp_path):
    problem = make(tmp_path, "proof", BLOCKS, BLOCK_INPUTS, {"y": (["m", "n"], "float16")}, [{"m": 33}], axes=AXES)
    capture = capture_at(problem, problem.workloads[0])
    assert rewrite_scaled_products(capture) == 1
    node = next(n for n in capture.module.graph.nodes if n.target is SCALED_MM)
    # A [33, 96] contiguous; B = W^T [96, 40]; scales: A (r, k // 32) of [33, 3], B (k // 32, n // 32) of [2, 3]
    assert node.args[4:] == ([0, 96, 1], [0, 1, 96], [0, 1, 3, 32, 1], [0, 32, 1, 32, 3], 33, 40, 96)
    x8, w8 = torch.randn(33, 96).to(torch.float8_e4m3fn), torch.randn(40, 96).to(torch.float8_e4m3fn)
    xs, ws = torch.rand(33, 3), torch.rand(2, 3)
    expected = compile_reference(problem.definition).run(x8, xs, w8, ws)
    torch.testing.assert_close(capture.module(x8, xs, w8, ws), expected)   # the node computes what the graph did


@pytest.mark.parametrize("reference, reason", [
    # a scale block shifted by 16 columns: not aligned at 0, so no K block holds one scale
    ("import torch\n\ndef run(x8, xs, w8, ws):\n"
     "    return (x8.float() * xs[:, :4].repeat_interleave(32, dim=1)[:, 16:112]) @ (w8.float() * ws[:1, :1]).t()\n",
     "no matrix product of scaled fp8 operands"),
    # scales constant over K blocks of 8: shorter than any K tile
    ("import torch\n\ndef run(x8, xs, w8, ws):\n"
     "    return (x8.float() * xs[:, :12].repeat_interleave(8, dim=1)) @ (w8.float() * ws[:1, :1]).t()\n",
     "K blocks of 8"),
    # an fp8 operand times a float32 one: no fp8 product
    ("import torch\n\ndef run(x8, xs, w8, ws):\n"
     "    return xs @ w8.float().t()\n",
     "no matrix product of scaled fp8 operands"),
    # dequantized in bfloat16: the reference rounds each product, which the kernel would not
    ("import torch\n\ndef run(x8, xs, w8, ws):\n"
     "    return ((x8.bfloat16() * xs[:, :1].bfloat16()) @ (w8.bfloat16() * ws[:1, :1].bfloat16()).t()).float()\n",
     "no matrix product of scaled fp8 operands"),
])
def test_what_it_refuses_and_why(tmp_path, reference, reason):
    problem = make(tmp_path, "refused", reference, {**BLOCK_INPUTS, "xs": (["m", "k"], "float32")},
                   {"y": (["m", "n"], "float32")}, [{"m": 8}], axes=AXES)
    family = FAMILIES["scaled_gemm"]
    assert family.match(problem) is None and reason in family.last_rejection


def test_the_interpreter_widening_is_no_part_of_the_gpu_path(tmp_path):
    problem = make(tmp_path, "gpu_path", BLOCKS, BLOCK_INPUTS, {"y": (["m", "n"], "float16")}, [{"m": 8}], axes=AXES)
    source = FAMILIES["scaled_gemm"].render(matched(problem), SMALL_TILES).sources[0].content
    helper = source[source.index("def _fp8_dot("):source.index("@triton.jit", source.index("def _fp8_dot("))]
    # a GPU with fp8 tensor cores multiplies the fp8 tiles themselves
    assert "if INTERPRETED:" in helper and "elif FP8_DOT:\n        return tl.dot(a, b, acc)" in helper
