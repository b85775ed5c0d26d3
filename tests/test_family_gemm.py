"""The gemm family: which graphs it takes (one matrix product with an elementwise epilogue), why it refuses
the others, and that every render computes what the reference computes (Triton through the interpreter),
on shapes it traced, on ragged edges, with split-K, and on shapes it did not trace.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from kernelbench.core.problem import load_problem
from kernelbench.core.solution import load_entry_point, materialize
from kernelbench.core.statuses import PASSED
from kernelbench.eval.evaluator import EvalConfig, evaluate
from kernelbench.generate.family import FAMILIES

from family_checks import family_match, family_passes_everywhere
from test_family_fused import check, make

AXES = {"m": {"type": "var"}, "n": {"type": "const", "value": 40}, "k": {"type": "const", "value": 70},
        "b": {"type": "const", "value": 2}}
SHAPES = [{"m": 8}, {"m": 33}]             # 8x40x70 and a ragged 33x40x70: partial tiles on every edge
SMALL_TILES = {"block_m": 16, "block_n": 32, "block_k": 16, "split_k": 1, "num_warps": 2, "num_stages": 2}


def matched(problem):
    return family_match("gemm", problem)


def assert_all_pass(problem, config=None):
    return family_passes_everywhere("gemm", problem, config)


def linear_problem(tmp_path, name, reference, dtype, extra=None, out_dtype=None):
    inputs = {"x": (["m", "k"], dtype), "w": (["n", "k"], dtype), **(extra or {})}
    return make(tmp_path, name, reference, inputs, {"y": (["m", "n"], out_dtype or dtype)}, SHAPES, axes=AXES)


# ---------------------------------------------------------------------------------------------- what it takes

def test_linear_bias_and_activation_become_one_kernel(tmp_path):
    reference = ("import torch\nimport torch.nn.functional as F\n\n"
                 "def run(x, w, b):\n    return F.gelu(F.linear(x, w, b))\n")
    problem = linear_problem(tmp_path, "linear_gelu", reference, "float32", {"b": (["n"], "float32")})
    match, solution = assert_all_pass(problem)
    assert len(match.plan["programs"]) == 2 and len(match.plan["kernels"]) == 1   # two shapes share the kernels
    assert "2 epilogue op(s)" in match.summary                                    # bias add, gelu
    source = solution.sources[0].content
    assert 'input_precision="ieee"' in source and "tl.erf(" in source              # fp32: no TF32


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_with_a_residual_epilogue(tmp_path, dtype):
    # bf16 runs through the interpreter-only fp32 widening (the interpreter's bf16 tl.dot is wrong)
    reference = ("import torch\n\ndef run(x, w, r):\n"
                 "    return (torch.relu(x @ w.t()).float() * 0.5 + r.float()).to(x.dtype)\n")
    problem = linear_problem(tmp_path, f"residual_{dtype}", reference, dtype, {"r": (["m", "n"], dtype)})
    assert_all_pass(problem)


def test_transposed_batched_and_cast_operands(tmp_path):
    transposed = make(tmp_path, "transposed", "import torch\n\ndef run(x, w):\n    return x.t() @ w\n",
                      {"x": (["k", "m"], "float16"), "w": (["k", "n"], "float16")}, {"y": (["m", "n"], "float16")},
                      SHAPES, axes=AXES)
    assert "permute.default(a0, [1, 0])" in "\n".join(assert_all_pass(transposed)[0].plan["programs"][0]["lines"])
    # a batched product whose output is a transposed view: the destination is indexed through its strides
    batched = make(tmp_path, "batched", "import torch\n\ndef run(x, w):\n    return torch.bmm(x, w).transpose(0, 1)\n",
                   {"x": (["b", "m", "k"], "float32"), "w": (["b", "k", "n"], "float32")},
                   {"y": (["m", "b", "n"], "float32")}, SHAPES, axes=AXES)
    assert assert_all_pass(batched)[0].plan["programs"][0]["batch"] == 2
    # bf16 operands cast to fp32 before the product (a router GEMM): cast in the kernel, fp32 product
    router = linear_problem(tmp_path, "router", "import torch\n\ndef run(x, w):\n    return x.float() @ w.float().t()\n",
                            "bfloat16", out_dtype="float32")
    kernel = assert_all_pass(router)[0].plan["kernels"][0]
    assert kernel["dot_dtype"] == "float32" and kernel["a_casts"] == ["a = a.to(tl.float32)"]


def test_a_scalar_input_and_two_outputs_in_two_layouts(tmp_path):
    # alpha taken as a tensor: one kernel parameter serves every value
    scaled = make(tmp_path, "scaled", "import torch\n\ndef run(x, w, alpha):\n    return torch.tanh(x @ w.t() * alpha)\n",
                  {"x": (["m", "k"], "float32"), "w": (["n", "k"], "float32"), "alpha": (None, "float32")},
                  {"y": (["m", "n"], "float32")}, [{"m": 8, "scalars": {"alpha": 0.5}}, {"m": 8, "scalars": {"alpha": -2.0}}],
                  axes=AXES)
    assert len(assert_all_pass(scaled)[0].plan["programs"]) == 1
    # the product and a transposed activation of it: both stored by the one epilogue, each through its strides
    two = make(tmp_path, "two", "import torch\n\ndef run(x, w):\n    y = x @ w.t()\n    return y, torch.relu(y).t()\n",
               {"x": (["m", "k"], "float16"), "w": (["n", "k"], "float16")},
               {"y": (["m", "n"], "float16"), "z": (["n", "m"], "float16")}, SHAPES, axes=AXES)
    assert len(assert_all_pass(two, SMALL_TILES)[0].plan["kernels"][0]["stores"]) == 2


def test_elementwise_work_on_inputs_is_computed_in_the_epilogue(tmp_path):
    # (b1 + b2) * gate: broadcast vectors combined before they meet the product, computed per element in the
    # epilogue rather than refused
    reference = ("import torch\n\ndef run(x, w, b1, b2, gate):\n"
                 "    return torch.relu(x @ w.t() + (b1 + b2) * torch.sigmoid(gate))\n")
    problem = linear_problem(tmp_path, "combined_bias", reference, "float32",
                             {"b1": (["n"], "float32"), "b2": (["n"], "float32"), "gate": (["m", "1"], "float32")})
    match, _ = assert_all_pass(problem, SMALL_TILES)
    body = match.plan["kernels"][0]["body"]
    assert sum(line.startswith("c") for line in body) == 3   # b1 + b2, sigmoid(gate), their product


@pytest.mark.parametrize("split_k", [1, 3])
def test_tile_sizes_and_split_k_change_speed_not_results(tmp_path, split_k):
    # K = 70 over BLOCK_K 16 in 3 splits: uneven slices, the last one partial
    reference = "import torch\nimport torch.nn.functional as F\n\ndef run(x, w, b):\n    return F.linear(x, w, b)\n"
    problem = linear_problem(tmp_path, f"split{split_k}", reference, "bfloat16", {"b": (["n"], "bfloat16")})
    _, solution = assert_all_pass(problem, {**SMALL_TILES, "split_k": split_k})
    assert f"_SPLIT_K = {split_k}" in solution.sources[0].content


def test_the_interpreter_grows_tiles_only_there_and_results_hold(tmp_path):
    # the interpreter runs each program and K step in Python: a big product takes few large tiles there,
    # a GPU keeps the configured ones, and grown tiles (with split-K) compute what the reference computes
    reference = "import torch\nimport torch.nn.functional as F\n\ndef run(x, w, b):\n    return F.linear(x, w, b)\n"
    problem = linear_problem(tmp_path, "grown", reference, "bfloat16", {"b": (["n"], "bfloat16")})
    solution = FAMILIES["gemm"].render(matched(problem), {**SMALL_TILES, "split_k": 3})
    kernel = load_entry_point(solution, materialize(solution)).__globals__
    assert kernel["_INTERPRETED"] and kernel["_tiles"](33, 40, 70) == (16, 32, 16)   # small: as configured
    grown = kernel["_tiles"](512, 8192, 2048)
    assert max(grown) <= 512 and -(-512 // grown[0]) * -(-8192 // grown[1]) * -(-2048 // grown[2]) <= 64
    kernel["_INTERPRETED"] = False                                                    # a GPU: the configuration
    assert kernel["_tiles"](512, 8192, 2048) == (16, 32, 16)
    kernel["_INTERPRETED"], kernel["_INTERPRETER_STEPS"] = True, 1                    # grow even 33x40x70
    assert kernel["_tiles"](33, 40, 70) == (64, 64, 128)
    for workload in problem.workloads:
        comparison = check(problem, solution, workload, run=kernel["run"])
        assert comparison.status == PASSED, (workload.axes, comparison.message)


GEMV_TILES = {**SMALL_TILES, "gemv_n": 16, "gemv_k": 32}


@pytest.mark.parametrize("dtype, gemv_split", [("bfloat16", 0), ("float32", 3)])
def test_few_rows_take_the_cuda_core_kernel_with_its_epilogue(tmp_path, dtype, gemv_split):
    # rows 1 and 3 (<= _GEMV_ROWS) on the few-rows kernel, 33 on the tiled one; N 40 over 16-column programs and
    # K 70 over 32-deep steps leave partial tiles on every edge; split 3: uneven K slices, the reduce pass
    reference = ("import torch\nimport torch.nn.functional as F\n\n"
                 "def run(x, w, b):\n    return F.silu(F.linear(x, w, b))\n")
    inputs = {"x": (["m", "k"], dtype), "w": (["n", "k"], dtype), "b": (["n"], dtype)}
    problem = make(tmp_path, f"gemv_{dtype}", reference, inputs, {"y": (["m", "n"], dtype)},
                   [{"m": 1}, {"m": 3}, {"m": 33}], axes=AXES)
    _, solution = assert_all_pass(problem, {**GEMV_TILES, "gemv_split": gemv_split})
    kernel = load_entry_point(solution, materialize(solution)).__globals__
    launched = []
    for name in ("_g0_gemv", "_g0_main"):   # which kernel each row count reaches
        original = kernel[name]
        kernel[name] = type("Probe", (), {"__getitem__": lambda self, grid, n=name, o=original: (
            launched.append(n), o[grid])[1]})()
    x, w, b = (torch.randn(*shape, dtype=getattr(torch, dtype)) for shape in ((1, 70), (40, 70), (40,)))
    for rows in (1, 3, 33):   # the traced shapes (any other runs the reference)
        y = torch.empty(rows, 40, dtype=x.dtype)
        kernel["run"](x.expand(rows, 70).contiguous(), w, b, y)
    assert launched == ["_g0_gemv", "_g0_gemv", "_g0_main"]
    assert kernel["_gemv_tiles"](1, 3, 40, 70, torch.device("cpu"))[:3] == (4, 16, 32)
    # a product of many steps grows its tiles in the interpreter alone (a GPU keeps the configuration)
    assert kernel["_gemv_tiles"](1, 1, 4096, 4096, torch.device("cpu")) == (1, 512, 512, 1)
    kernel["_INTERPRETED"] = False
    assert kernel["_gemv_tiles"](1, 1, 4096, 4096, torch.device("cpu"))[:3] == (1, 16, 32)


def test_a_weight_contiguous_along_columns_and_no_gemv_by_default(tmp_path):
    # x @ w with w [K, N]: B's tile is contiguous along its columns, not along K
    problem = make(tmp_path, "gemv_kn", "import torch\n\ndef run(x, w):\n    return x @ w\n",
                   {"x": (["m", "k"], "float16"), "w": (["k", "n"], "float16")}, {"y": (["m", "n"], "float16")},
                   [{"m": 2}], axes=AXES)
    assert_all_pass(problem, GEMV_TILES)
    source = FAMILIES["gemm"].render(matched(problem), SMALL_TILES).sources[0].content
    assert "_GEMV_N = 0" in source   # a configuration without gemv_n keeps every row count on the tiled kernel


def test_a_shape_it_never_traced_runs_the_reference(tmp_path):
    reference = "import torch\n\ndef run(x, w):\n    return torch.sigmoid(x @ w.t())\n"
    problem = linear_problem(tmp_path, "untraced", reference, "float32")
    family = FAMILIES["gemm"]
    match = matched(problem)
    solution = family.render(match, family.space(match, {"m": 8, "n": 40, "k": 70})[0])
    run = load_entry_point(solution, materialize(solution))
    x, w, out = torch.randn(11, 70), torch.randn(40, 70), torch.full((11, 40), float("nan"))
    run(x, w, out)
    torch.testing.assert_close(out, torch.sigmoid(x @ w.t()))


# ---------------------------------------------------------------------------------------------- what it refuses

@pytest.mark.parametrize("reference, reason", [
    ("import torch\n\ndef run(x, w):\n    return torch.relu(x)[:, :40] + w[:, 0]\n", "0 matrix products"),
    ("import torch\n\ndef run(x, w):\n    return x @ w.t() + x @ w.t()\n", "2 matrix products"),
    ("import torch\n\ndef run(x, w):\n    return torch.softmax(x @ w.t(), dim=-1)\n", "after the product"),
    ("import torch\n\ndef run(x, w):\n    return (x * 2.0) @ w.t()\n", "feeds the matrix product"),
])
def test_what_it_refuses_and_why(tmp_path, reference, reason):
    problem = linear_problem(tmp_path, "refused", reference, "float32")
    family = FAMILIES["gemm"]
    assert family.match(problem) is None
    assert reason in family.last_rejection, family.last_rejection


# ---------------------------------------------------------------------------------------------- configurations

def test_space_shape_classes_and_traffic(tmp_path):
    # traced on fake tensors: large shapes cost nothing to match
    reference = "import torch\nimport torch.nn.functional as F\n\ndef run(x, w):\n    return F.linear(x, w)\n"
    axes = {"m": {"type": "var"}, "n": {"type": "const", "value": 4096}, "k": {"type": "const", "value": 4096}}
    problem = make(tmp_path, "sizes", reference, {"x": (["m", "k"], "bfloat16"), "w": (["n", "k"], "bfloat16")},
                   {"y": (["m", "n"], "bfloat16")}, [{"m": 1}, {"m": 8192}], axes=axes)
    family, match = FAMILIES["gemm"], matched(problem)
    decode, large = ({"m": 1, "n": 4096, "k": 4096}, {"m": 8192, "n": 4096, "k": 4096})
    first = family.space(match, decode)[0]
    assert first["block_m"] == 16 and first["split_k"] > 1          # 64 column tiles alone leave SMs idle
    assert family.space(match, large)[0]["block_m"] >= 128
    assert family.shape_class(match, decode) != family.shape_class(match, large)
    assert family.shape_class(match, decode) == family.shape_class(match, {**decode, "m": 2})
    traffic = family.traffic(match, large)
    assert traffic.flops == 2.0 * 8192 * 4096 * 4096
    assert traffic.bytes == 2 * (8192 * 4096 + 4096 * 4096 + 8192 * 4096)


def test_the_interpreter_widening_is_no_part_of_the_gpu_path(tmp_path):
    reference = "import torch\n\ndef run(x, w):\n    return x @ w.t()\n"
    family = FAMILIES["gemm"]
    solution = family.render(matched(linear_problem(tmp_path, "bf16", reference, "bfloat16")), SMALL_TILES)
    source = solution.sources[0].content
    # the fp32 widening sits under a constexpr branch taken only when INTERPRETED...
    lines = source.splitlines()
    widened = [i for i, line in enumerate(lines) if "_widen_bf16(a)" in line]
    assert widened and all(lines[i - 1].strip() == "if INTERPRETED:" for i in widened)
    assert "INTERPRETED=_INTERPRETED" in source
    # ...which is False in a process without TRITON_INTERPRET=1 (a GPU run): Triton compiles no code for it
    directory = materialize(solution)
    environment = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    flag = subprocess.run([sys.executable, "-c", "import kernel; print(kernel._INTERPRETED)"], cwd=directory,
                          env=environment, capture_output=True, text=True, timeout=120)
    assert flag.stdout.strip() == "False", flag.stderr[-2000:]
    fp16 = family.render(matched(linear_problem(tmp_path, "fp16", reference, "float16")), SMALL_TILES).sources[0]
    lines = fp16.content.splitlines()   # fp16: widened in the interpreter alone too (numpy's fp16 product is slow)
    widened = [i for i, line in enumerate(lines) if "a.to(tl.float32), b.to(tl.float32)" in line]
    assert widened and all(lines[i - 1].strip() == "if INTERPRETED:" for i in widened)
    fp32 = family.render(matched(linear_problem(tmp_path, "fp32", reference, "float32")), SMALL_TILES)
    assert "if INTERPRETED:" not in fp32.sources[0].content          # fp32 needs no workaround


# ---------------------------------------------------------------------------------------------- end to end

def test_a_render_passes_the_evaluator_in_a_child(tmp_path):
    reference = "import torch\nimport torch.nn.functional as F\n\ndef run(x, w, b):\n    return F.silu(F.linear(x, w, b))\n"
    linear_problem(tmp_path, "evaluated", reference, "bfloat16", {"b": (["n"], "bfloat16")})
    problem = load_problem(tmp_path / "evaluated")          # from its directory: matching runs in a child
    family = FAMILIES["gemm"]
    solution = family.render(matched(problem), SMALL_TILES)
    traces = evaluate(problem, solution, EvalConfig(device="cpu", rounds=2, timing=None))
    assert [t.evaluation.status for t in traces] == [PASSED, PASSED], traces[0].evaluation.log[-2000:]
