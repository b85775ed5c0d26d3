"""The conv family: which graphs it takes (one convolution with an elementwise epilogue), why it refuses the
others, and that every render computes what the reference computes (Triton through the interpreter) at tiny
shapes: 1-d, 2-d, 3-d, stride, padding (the convolution's and F.pad's), dilation, groups, depthwise,
transposed, half precision, ragged tiles, and a shape it never traced.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from kernelbench.core.problem import load_problem
from kernelbench.core.solution import materialize
from kernelbench.core.statuses import PASSED
from kernelbench.eval.evaluator import EvalConfig, evaluate
from kernelbench.generate.family import FAMILIES

from family_checks import family_match, family_passes_everywhere
from test_family_fused import check, make

AXES = {"n": {"type": "var"}}
SHAPES = [{"n": 1}, {"n": 2}]
# pinned tiles (the interpreter would otherwise grow them to whole dimensions): ragged edges, several K steps
SMALL_TILES = {"block_m": 16, "block_n": 16, "block_k": 16, "num_warps": 2, "num_stages": 2, "interpreter_tiles": False}
HEADER = "import torch\nimport torch.nn.functional as F\n\n"


def conv_problem(tmp_path, name, body, inputs, output, dtype="float32", shapes=SHAPES, tolerance=1e-2):
    """A problem whose reference is `def run(<inputs>): return <body>`; shapes are lists of sizes ("n" the batch)."""
    reference = HEADER + f"def run({', '.join(inputs)}):\n    return {body}\n"
    spec = {k: ([str(d) for d in s], dtype) for k, s in inputs.items()}
    return make(tmp_path, name, reference, spec, {"y": ([str(d) for d in output], dtype)}, shapes, axes=AXES,
                tolerance=tolerance)


def matched(problem):
    return family_match("conv", problem)


def assert_all_pass(problem, config=None):
    return family_passes_everywhere("conv", problem, config)


# ---------------------------------------------------------------------------------------------- what it takes

def test_conv2d_bias_and_activation_become_one_kernel(tmp_path):
    problem = conv_problem(tmp_path, "relu_conv", "torch.relu(F.conv2d(x, w, b, padding=1))",
                           {"x": ["n", 5, 7, 9], "w": [6, 5, 3, 3], "b": [6]}, ["n", 6, 7, 9])
    match, solution = assert_all_pass(problem)
    assert len(match.plan["programs"]) == 2 and len(match.plan["kernels"]) == 1
    assert "implicit-GEMM" in match.summary and "2 epilogue op(s)" in match.summary   # bias add, relu
    assert 'input_precision="ieee"' in solution.sources[0].content                    # fp32: no TF32


@pytest.mark.parametrize("block_k, channels_last", [(16, False), (16, True), (64, False)])
def test_stride_dilation_asymmetric_padding_and_groups_fp16(tmp_path, block_k, channels_last):
    # 24 channels a group: two tap-major K steps (one ragged) from an NCHW or a channels-last copy; one flat-K tile
    problem = conv_problem(tmp_path, f"grouped{block_k}{channels_last}",
                           "F.conv2d(x, w, b, stride=(2, 1), padding=(1, 2), dilation=(2, 1), groups=2)",
                           {"x": ["n", 48, 9, 8], "w": [20, 24, 3, 2], "b": [20]}, ["n", 20, 4, 11], "float16")
    assert_all_pass(problem, {**SMALL_TILES, "block_k": block_k, "channels_last": channels_last})


def test_conv1d_stride_two_with_gelu_in_bf16(tmp_path):
    # bf16 runs through the interpreter-only fp32 widening (the interpreter's bf16 tl.dot is wrong)
    problem = conv_problem(tmp_path, "conv1d", "F.gelu(F.conv1d(x, w, stride=2, padding=1))",
                           {"x": ["n", 16, 21], "w": [18, 16, 3]}, ["n", 18, 11], "bfloat16", tolerance=2e-2)
    _, solution = assert_all_pass(problem, SMALL_TILES)
    assert "if INTERPRETED:" in solution.sources[0].content


def test_conv3d_after_a_cached_frame_concatenation_and_spatial_padding(tmp_path):
    # a causal video conv: cached frames concatenated in time (a host copy), F.pad of height and width folded
    problem = conv_problem(tmp_path, "conv3d", "F.conv3d(F.pad(torch.cat([c, x], 2), (1, 1, 1, 1, 0, 0)), w, b)",
                           {"x": ["n", 6, 2, 5, 4], "c": ["n", 6, 2, 5, 4], "w": [7, 6, 3, 3, 3], "b": [7]},
                           ["n", 7, 2, 5, 4])
    match, _ = assert_all_pass(problem, SMALL_TILES)
    lines = "\n".join(match.plan["programs"][0]["lines"])
    assert "torch.cat([a1, a0], 2)" in lines and "constant_pad" not in lines
    assert "'padding': [0, 1, 1]" in match.plan["programs"][0]["arguments"]


def test_transposed_convolution_in_its_gather_form(tmp_path):
    problem = conv_problem(tmp_path, "transposed",
                           "F.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1, groups=2, dilation=2)",
                           {"x": ["n", 32, 5, 4], "w": [32, 9, 3, 3], "b": [18]}, ["n", 18, 12, 10], "bfloat16",
                           tolerance=2e-2)
    assert_all_pass(problem)


def test_depthwise_takes_the_direct_kernel(tmp_path):
    # MobileNet's depthwise stride-2 conv with TensorFlow SAME padding (F.pad after only) and ReLU6
    problem = conv_problem(tmp_path, "depthwise", "F.conv2d(F.pad(x, (0, 1, 0, 1)), w, b, stride=2, groups=6)"
                           ".clamp(0.0, 6.0)", {"x": ["n", 6, 9, 8], "w": [6, 1, 3, 3], "b": [6]}, ["n", 6, 4, 4],
                           "float16")
    match, solution = assert_all_pass(problem, {"block_p": 16, "block_c": 4, "num_warps": 1, "interpreter_tiles": False})
    assert "depthwise" in match.summary and "tl.dot" not in solution.sources[0].content
    # a channel multiplier of 2 (each input channel feeds two outputs), 7x7, bf16
    multiplier = conv_problem(tmp_path, "multiplier", "F.conv2d(x, w, padding=3, groups=4)",
                              {"x": ["n", 4, 9, 10], "w": [8, 1, 7, 7]}, ["n", 8, 9, 10], "bfloat16", tolerance=2e-2)
    assert_all_pass(multiplier)   # the interpreter's whole-dimension tile


def test_a_token_layout_output_and_a_residual(tmp_path):
    # a patch embedding flattened to [N, tokens, channels] plus a residual in that layout: both strided views
    problem = conv_problem(tmp_path, "patches", "F.conv2d(x, w, stride=4).flatten(2).transpose(1, 2) + r",
                           {"x": ["n", 3, 8, 12], "w": [20, 3, 4, 4], "r": ["n", 6, 20]}, ["n", 6, 20], "float16")
    match, _ = assert_all_pass(problem, SMALL_TILES)
    assert any(".permute(0, 2, 1)" in line for line in match.plan["programs"][0]["lines"])


def test_a_shape_it_never_traced_runs_the_reference(tmp_path):
    problem = conv_problem(tmp_path, "untraced", "F.conv2d(x, w, padding=1)", {"x": ["n", 4, 5, 5], "w": [8, 4, 3, 3]},
                           ["n", 8, 5, 5])
    family = FAMILIES["conv"]
    solution = family.render(matched(problem), SMALL_TILES)
    wider = conv_problem(tmp_path, "wider", "F.conv2d(x, w, padding=1)", {"x": ["n", 4, 5, 5], "w": [8, 4, 3, 3]},
                         ["n", 8, 5, 5], shapes=[{"n": 3}])
    assert check(wider, solution, wider.workloads[0]).status == PASSED


@pytest.mark.parametrize("body, reason", [
    ("F.conv2d(F.conv2d(x, w, padding=1), w, padding=1)", "2 convolutions"),
    ("F.conv2d(x * 2.0, w, padding=1)", "feeds the convolution"),
    ("F.conv2d(F.pad(x, (1, 1, 1, 1), value=1.0), w)", "padding with 1.0"),
    ("torch.softmax(F.conv2d(x, w, padding=1), dim=1)", "after the product"),
])
def test_what_it_refuses_and_why(tmp_path, body, reason):
    problem = conv_problem(tmp_path, "refused", body, {"x": ["n", 8, 5, 5], "w": [8, 8, 3, 3]}, ["n", 8, 5, 5])
    family = FAMILIES["conv"]
    assert family.match(problem) is None
    assert reason in family.last_rejection


def test_space_shape_classes_and_traffic(tmp_path):
    problem = conv_problem(tmp_path, "traffic", "F.conv2d(x, w, padding=1)", {"x": ["n", 4, 6, 6], "w": [8, 4, 3, 3]},
                           ["n", 8, 6, 6])
    family = FAMILIES["conv"]
    match = matched(problem)
    axes = problem.axes_for(problem.workloads[1])
    traffic = family.traffic(match, axes)
    assert traffic.flops == 2.0 * (2 * 8 * 36) * 4 * 9        # outputs x C_in x taps multiply-adds
    assert traffic.bytes == 4 * (2 * 4 * 36 + 8 * 4 * 9 + 2 * 8 * 36)
    configs = family.space(match, axes)
    assert configs and all(c["block_n"] == 16 for c in configs)   # 8 output channels: the narrowest dot tile
    assert family.shape_class(match, axes).startswith("gemm,")


@pytest.mark.slow   # Triton's full compilation to a cubin: ~20 s
def test_the_gpu_path_compiles_for_sm90_without_the_interpreter_branch(tmp_path):
    """Triton's compiler (no GPU needed) builds the bf16 kernel for sm_90 in a process without TRITON_INTERPRET,
    where _INTERPRETED is False and the fp32 widening is never compiled."""
    problem = conv_problem(tmp_path, "gpu", "F.conv2d(x, w, b, padding=1)",
                           {"x": ["n", 32, 6, 6], "w": [32, 32, 3, 3], "b": [32]}, ["n", 32, 6, 6], "bfloat16")
    family = FAMILIES["conv"]
    directory = materialize(family.render(matched(problem), {**SMALL_TILES, "block_k": 32}))
    script = (
        "import torch, triton, kernel\n"
        "from triton.backends.compiler import GPUTarget\n"
        "assert kernel._INTERPRETED is False\n"
        "seen = []\n"
        "class Recorder:\n"
        "    def __getitem__(self, grid):\n"
        "        return lambda *args, **kw: seen.append((args, kw))\n"
        "fn, kernel._c0_main = kernel._c0_main, Recorder()\n"
        "bf = torch.bfloat16\n"
        "kernel.run(torch.randn(1, 32, 6, 6, dtype=bf), torch.randn(32, 32, 3, 3, dtype=bf), torch.randn(32, dtype=bf),"
        " torch.empty(1, 32, 6, 6, dtype=bf))\n"
        "(args, kw), = seen\n"
        "sig = {n: ('*bf16' if isinstance(a, torch.Tensor) else 'i64') for n, a in zip(fn.arg_names, args)}\n"
        "consts = {n: v for n, v in kw.items() if n in fn.arg_names}\n"
        "sig.update({n: 'constexpr' for n in consts})\n"
        "compiled = triton.compile(triton.compiler.ASTSource(fn, signature=sig, constexprs=consts),\n"
        "                          target=GPUTarget('cuda', 90, 32), options={'num_warps': kw['num_warps']})\n"
        "import re\n"
        "dots = re.findall(r'tt.dot .*', compiled.asm['ttir'])\n"
        "print(bool(dots) and all('bf16' in d for d in dots), 'mma' in compiled.asm['ptx'])\n")
    environment = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, "-c", script], cwd=directory, env=environment, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-2:] == ["True", "True"]   # every dot multiplies bf16 tiles (no widening), on MMA


# ---------------------------------------------------------------------------------------------- end to end

def test_a_render_passes_the_evaluator_in_a_child(tmp_path):
    conv_problem(tmp_path, "evaluated", "F.silu(F.conv2d(x, w, b, padding=1))",
                 {"x": ["n", 16, 6, 6], "w": [16, 16, 3, 3], "b": [16]}, ["n", 16, 6, 6], "bfloat16", tolerance=2e-2)
    problem = load_problem(tmp_path / "evaluated")          # from its directory: matching runs in a child
    family = FAMILIES["conv"]
    match = matched(problem)
    solution = family.render(match, family.space(match, problem.axes_for(problem.workloads[0]))[0])
    traces = evaluate(problem, solution, EvalConfig(device="cpu", rounds=2, timing=None))
    assert [t.evaluation.status for t in traces] == [PASSED, PASSED], traces[0].evaluation.log[-2000:]
