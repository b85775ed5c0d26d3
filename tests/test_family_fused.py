"""The fused family and the front end under it: which graphs it lowers, how, and that every render computes
what the reference computes (Triton through the interpreter), on shapes it traced and on shapes it did not.

The golden file (tests/golden/fused_gelu_linear.py) holds one rendered source. After an intended change to the
template or the front end, regenerate it and review the diff:

    KB_UPDATE_GOLDEN=1 PYTHONPATH=$PWD python3 -m pytest -q tests/test_family_fused.py -k golden
"""

from __future__ import annotations

import dataclasses
import os
import sys
import types
from pathlib import Path

import pytest
import torch

from audit.static import scan_solution
from kernelbench.core.correctness import as_output_list, compare
from kernelbench.core.dtypes import torch_dtype
from kernelbench.core.inputs import generate_inputs
from kernelbench.core.problem import load_problem
from kernelbench.core.reference import compile_reference
from kernelbench.core.solution import load_entry_point, materialize
from kernelbench.core.statuses import PASSED
from kernelbench.eval.evaluator import EvalConfig, evaluate
from kernelbench.generate.families.fused import writes_an_input
from kernelbench.generate.frontend import INTERPRETER_TILE, out_variant
from kernelbench.generate.family import FAMILIES

from conftest import write_problem

GOLDEN = Path(__file__).resolve().parent / "golden"


def make(tmp_path, name: str, reference: str, inputs: dict, outputs: dict, workloads: list[dict],
         axes: dict | None = None, tolerance: float = 1e-2):
    """A problem kept in memory (directory None), so the family matches in this process, not a child.
    inputs/outputs: name -> (shape or None, dtype); workloads: axes values, plus scalar values under "scalars"."""
    definition = {
        "name": name, "description": "front-end test", "op_type": "test",
        "axes": axes or {"n": {"type": "var"}, "h": {"type": "const", "value": 8}},
        "inputs": {k: {"shape": s, "dtype": d} for k, (s, d) in inputs.items()},
        "outputs": {k: {"shape": s, "dtype": d} for k, (s, d) in outputs.items()},
        "reference": reference,
    }
    lines = []
    for i, w in enumerate(workloads):
        scalars = w.get("scalars", {})
        sources = {k: ({"type": "scalar", "value": scalars[k]} if s is None else {"type": "random"})
                   for k, (s, _) in inputs.items()}
        lines.append({"uuid": f"{name}-{i}", "axes": {k: v for k, v in w.items() if k != "scalars"},
                      "inputs": sources, "tolerance": {"max_atol": tolerance, "max_rtol": tolerance}})
    problem = load_problem(write_problem(tmp_path, definition, lines, name=name))
    return dataclasses.replace(problem, directory=None)


def fused(problem):
    family = FAMILIES["fused"]
    match = family.match(problem)
    assert match is not None, family.last_rejection
    return match


def render(problem, match, config=None):
    family = FAMILIES["fused"]
    config = config or family.space(match, problem.axes_for(problem.smallest_workload()))[0]
    return family.render(match, config)


def check(problem, solution, workload, seed: int = 3, run=None):
    """Run the solution (`run`: its loaded entry point) and the reference on one round of the workload and
    compare them."""
    module = compile_reference(problem.definition)
    inputs = generate_inputs(problem, workload, seed=seed, reference_module=module)
    expected = as_output_list(module.run(*[v.clone() if isinstance(v, torch.Tensor) else v for v in inputs]),
                              len(problem.definition.outputs))
    run = run or load_entry_point(solution, materialize(solution))
    if solution.destination_passing_style:   # destinations full of NaN: every element must be written
        axes = problem.axes_for(workload)
        got = [torch.full(problem.shape_of(s, axes), float("nan")).to(torch_dtype(s.dtype))
               for s in problem.definition.outputs.values()]
        assert run(*inputs, *got) is None
    else:
        got = as_output_list(run(*inputs), len(problem.definition.outputs))
    return compare(problem, workload, got, expected)


def assert_all_pass(problem, match):
    solution = render(problem, match)
    for workload in problem.workloads:
        comparison = check(problem, solution, workload)
        assert comparison.status == PASSED, (workload.axes, comparison.message)
    return solution


ROWS = {"x": (["n", "h"], "bfloat16")}
OUT = {"y": (["n", "h"], "bfloat16")}
TWO_SHAPES = [{"n": 3}, {"n": 5}]


# ---------------------------------------------------------------------------------------------- what it lowers

def test_an_elementwise_chain_becomes_one_kernel_per_shape(tmp_path):
    reference = ("import math\nimport torch\n\ndef run(x):\n"
                 "    return torch.nn.functional.gelu(x.float() * 1.5 + 0.25, approximate='tanh').to(x.dtype)\n")
    problem = make(tmp_path, "gelu_chain", reference, ROWS, OUT, TWO_SHAPES)
    match = fused(problem)
    programs = match.plan["programs"]
    assert len(programs) == 2 and all(len(p["kernels"]) == 1 and p["launches"] == 1 for p in programs)
    assert programs[0]["fused_ops"] >= 5           # cast, mul, add, the gelu's own ops, cast back
    solution = assert_all_pass(problem, match)
    assert "1 launch(es) a call" in solution.description   # what `kb optimize --json` reports per candidate


def test_broadcast_operands_and_an_epilogue_after_a_matmul(tmp_path):
    reference = ("import torch\n\ndef run(x, w, b, scale):\n"
                 "    return torch.nn.functional.silu(x @ w.t() + b) * scale\n")
    problem = make(tmp_path, "linear_silu", reference,
                   {"x": (["n", "h"], "float32"), "w": (["h", "h"], "float32"), "b": (["h"], "float32"),
                    "scale": (["n", 1], "float32")}, {"y": (["n", "h"], "float32")}, TWO_SHAPES)
    match = fused(problem)
    lines = "\n".join(match.plan["programs"][0]["lines"])
    assert "torch.ops.aten.mm" in lines or "torch.ops.aten.addmm" in lines   # the matmul stays with the library
    assert all(len(p["kernels"]) == 1 for p in match.plan["programs"])
    assert_all_pass(problem, match)


def test_strided_inputs_take_the_runtime_stride_path(tmp_path):
    # x.t() is a non-contiguous view: the kernel indexes it with its strides, not as a flat buffer
    reference = "import torch\n\ndef run(x, y):\n    return torch.sigmoid(x.t()) * y\n"
    problem = make(tmp_path, "transposed", reference, {"x": (["h", "n"], "float32"), "y": (["n", "h"], "float32")},
                   {"out": (["n", "h"], "float32")}, TWO_SHAPES)
    match = fused(problem)
    assert_all_pass(problem, match)


def test_integer_and_boolean_work_keeps_its_types(tmp_path):
    reference = ("import torch\n\ndef run(x, k):\n"
                 "    mask = (x > 0) & (k % 3 != 1)\n"
                 "    return torch.where(mask, x * 2, torch.zeros_like(x)), (k * 7 + 1) // 2, mask.to(torch.int32)\n")
    problem = make(tmp_path, "types", reference, {"x": (["n", "h"], "float32"), "k": (["n", "h"], "int64")},
                   {"y": (["n", "h"], "float32"), "q": (["n", "h"], "int64"), "m": (["n", "h"], "int32")},
                   TWO_SHAPES)
    match = fused(problem)
    assert all(len(p["kernels"]) == 1 for p in match.plan["programs"])   # three outputs, one launch
    assert_all_pass(problem, match)


def test_a_row_reduction_and_the_work_around_it_are_one_kernel(tmp_path):
    # the softmax with its prologue and epilogue (more in tests/test_frontend_rows.py)
    reference = ("import torch\n\ndef run(x):\n"
                 "    z = torch.exp(x.float() * 0.5)\n"
                 "    return (torch.softmax(z, dim=-1) + 1.0).to(x.dtype)\n")
    problem = make(tmp_path, "around_softmax", reference, ROWS, OUT, TWO_SHAPES)
    match = fused(problem)
    program = match.plan["programs"][0]
    assert program["launches"] == 1 and "_softmax" not in "\n".join(program["lines"])
    assert_all_pass(problem, match)


def test_casts_move_through_views_and_concatenation_so_nothing_converted_is_written_out(tmp_path):
    # rotate-half RoPE as references write it: the fp32 copy of x and the fp32 concatenation never exist;
    # one kernel computes both halves in bf16 and stores the concatenation straight into the destination
    reference = ("import torch\n\ndef run(x, cos, sin):\n"
                 "    x1, x2 = x.float().chunk(2, dim=-1)\n"
                 "    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1).to(x.dtype)\n")
    problem = make(tmp_path, "rope", reference, {"x": (["n", "h"], "bfloat16"), "cos": (["n", "half"], "float32"),
                                                 "sin": (["n", "half"], "float32")}, OUT, TWO_SHAPES,
                   axes={"n": {"type": "var"}, "h": {"type": "const", "value": 8},
                         "half": {"type": "const", "value": 4}})
    match = fused(problem)
    program = match.plan["programs"][0]
    assert len(program["kernels"]) == 1 and program["launches"] == 1, program["lines"]
    assert not any("aten.cat" in line for line in program["lines"])
    assert_all_pass(problem, match)


def test_a_returned_library_result_is_written_into_its_destination(tmp_path):
    reference = "import torch\n\ndef run(x, w):\n    return x @ w, torch.relu(x) * 2.0\n"
    problem = make(tmp_path, "matmul_out", reference, {"x": (["n", "h"], "float32"), "w": (["h", "h"], "float32")},
                   {"y": (["n", "h"], "float32"), "z": (["n", "h"], "float32")}, TWO_SHAPES)
    match = fused(problem)
    lines = match.plan["programs"][0]["lines"]
    assert any(line.startswith("torch.ops.aten.mm.out(") and line.endswith("out=o0)") for line in lines), lines
    assert not any(".copy_(" in line for line in lines)
    assert_all_pass(problem, match)


def test_the_out_variant_matches_argument_types_not_only_names():
    """torch 2.11 lists sum.DimnameList_out (dim: str[1]) before sum.IntList_out: same argument names, and a
    solution that called it with integer dims failed on the GPU."""
    class Packet:
        def __init__(self, schemas):
            self.schemas = {s.overload_name: s for s in map(torch._C.parse_schema, schemas)}

        def overloads(self):
            return list(self.schemas)

        def __getattr__(self, name):
            return types.SimpleNamespace(_schema=self.schemas[name])

    packet = Packet(["aten::sum.dim_IntList(Tensor self, int[1]? dim, bool keepdim=False, *, ScalarType? dtype=None) -> Tensor",
                     "aten::sum.DimnameList_out(Tensor self, str[1] dim, bool keepdim=False, *, ScalarType? dtype=None, Tensor(a!) out) -> Tensor(a!)",
                     "aten::sum.IntList_out(Tensor self, int[1]? dim, bool keepdim=False, *, ScalarType? dtype=None, Tensor(a!) out) -> Tensor(a!)"])
    op = types.SimpleNamespace(_schema=packet.schemas["dim_IntList"], overloadpacket=packet)
    assert out_variant(op)._schema.overload_name == "IntList_out"


def test_attention_is_called_and_its_epilogue_fused(tmp_path):
    reference = ("import torch\n\ndef run(q, k, v):\n"
                 "    o = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)\n"
                 "    return o.transpose(1, 2).reshape(q.shape[0], q.shape[2], -1) * 2.0\n")
    shape = ["b", "heads", "s", "d"]
    problem = make(tmp_path, "attention", reference, {k: (shape, "float32") for k in "qkv"},
                   {"o": (["b", "s", "hd"], "float32")}, [{"b": 1, "s": 5}, {"b": 2, "s": 3}],
                   axes={"b": {"type": "var"}, "s": {"type": "var"}, "heads": {"type": "const", "value": 2},
                         "d": {"type": "const", "value": 4}, "hd": {"type": "const", "value": 8}})
    match = fused(problem)
    solution = assert_all_pass(problem, match)
    assert "def _attention(" in solution.sources[0].content


def test_small_constants_are_inlined_and_folded(tmp_path):
    reference = ("import torch\n\ndef run(x):\n"
                 "    table = torch.tensor([0.5, -1.0, 2.0, 3.0, 0.0, 1.0, 4.0, -2.0])\n"
                 "    return x * table.to(x.device) + torch.full_like(x, 0.125)\n")
    problem = make(tmp_path, "constants", reference, {"x": (["n", "h"], "float32")}, {"y": (["n", "h"], "float32")},
                   TWO_SHAPES)
    match = fused(problem)
    solution = assert_all_pass(problem, match)
    assert "_CONSTANTS" in solution.sources[0].content


# ---------------------------------------------------------------------------------------------- scalars

def test_a_scalar_taken_as_a_tensor_is_a_parameter_for_every_value(tmp_path):
    reference = "import torch\n\ndef run(x, alpha):\n    return torch.tanh(x * alpha) + alpha\n"
    problem = make(tmp_path, "scaled", reference, {"x": (["n", "h"], "float32"), "alpha": (None, "float32")},
                   {"y": (["n", "h"], "float32")}, [{"n": 3, "scalars": {"alpha": 0.5}},
                                                    {"n": 3, "scalars": {"alpha": -3.0}}])
    match = fused(problem)
    assert len(match.plan["programs"]) == 1 and not match.plan["programs"][0]["specialized"]
    assert_all_pass(problem, match)   # the second workload runs the program traced with the first one's value


def test_a_scalar_base_raised_to_tensor_powers_is_fused_with_torchs_special_cases(tmp_path):
    # RoPE's theta ** (2i / d) with theta a Python scalar traces as pow.Tensor_Tensor; the second output's bases
    # and exponents cover 0 ** 0, 0 ** n, 1 ** y, negative bases with odd and even exponents, fractional ones
    reference = ("import torch\n\ndef run(x, theta):\n"
                 "    inv = 1.0 / theta ** (torch.arange(0, 8, 2, dtype=torch.float32) / 8)\n"
                 "    b = torch.round(x * 2.0) / 2.0\n"
                 "    return x * inv.repeat(2), b ** torch.round(x.abs() * 4.0) + (b.abs() + 0.5) ** x\n")
    problem = make(tmp_path, "powers", reference, {"x": (["n", "h"], "float32"), "theta": (None, "float32")},
                   {"y": (["n", "h"], "float32"), "z": (["n", "h"], "float32")},
                   [{"n": 64, "scalars": {"theta": 10000.0}}, {"n": 64, "scalars": {"theta": 500000.0}}],
                   tolerance=1e-5)
    solution = assert_all_pass(problem, fused(problem))
    assert "aten.pow" not in solution.sources[0].content


def test_a_scalar_a_library_op_takes_as_a_tensor_is_passed_as_one(tmp_path):
    # an integer power stays a library call; the scalar base was traced as a 0-d tensor and must be passed so
    reference = "import torch\n\ndef run(n, base):\n    return base ** (n % 5)\n"
    problem = make(tmp_path, "integer_powers", reference, {"n": (["n", "h"], "int32"), "base": (None, "int32")},
                   {"y": (["n", "h"], "int32")}, [{"n": 3, "scalars": {"base": 3}}, {"n": 5, "scalars": {"base": -2}}],
                   tolerance=0.0)
    solution = assert_all_pass(problem, fused(problem))
    assert "pow.Tensor_Tensor_out(torch.tensor(a1, dtype=torch.int32), " in solution.sources[0].content


def test_upsampling_and_max_pooling_are_generated_kernels(tmp_path):
    # bilinear and nearest 2-D upsampling and max pooling are gathers, lerps and a window maximum (a row
    # reduction: the pooled indices are not read), not library calls
    reference = ("import torch\nimport torch.nn.functional as F\n\ndef run(x):\n"
                 "    up = F.interpolate(x, scale_factor=2, mode='bilinear', align_corners=True)\n"
                 "    near = F.interpolate(x, size=(7, 9), mode='nearest')\n"
                 "    return up, near, F.max_pool2d(x, 3, stride=2, padding=1)\n")
    problem = make(tmp_path, "resampled", reference, {"x": (["n", "c", "h", "w"], "float32")},
                   {"up": (["n", "c", "h2", "w2"], "float32"), "near": (["n", "c", "7", "9"], "float32"),
                    "pooled": (["n", "c", "hp", "wp"], "float32")}, [{"n": 2}],
                   axes={"n": {"type": "var"}, "c": {"type": "const", "value": 3}, "h": {"type": "const", "value": 5},
                         "w": {"type": "const", "value": 6}, "h2": {"type": "const", "value": 10},
                         "w2": {"type": "const", "value": 12}, "hp": {"type": "const", "value": 3},
                         "wp": {"type": "const", "value": 3}}, tolerance=1e-5)
    solution = assert_all_pass(problem, fused(problem))
    source = solution.sources[0].content
    assert not any(op in source for op in ("upsample", "max_pool", "max.dim", "topk")), source


def test_round_half_to_even_and_clamp_by_scalar_inputs_are_fused(tmp_path):
    # QAT fake quantization: round (halves go to the even neighbour), then clamp to integer scalar bounds
    reference = ("import torch\n\ndef run(x, qmin, qmax):\n"
                 "    halves = torch.round(x * 4.0) / 2.0\n"
                 "    return torch.clamp(torch.round(halves), qmin, qmax), torch.round(x * 3.0)\n")
    problem = make(tmp_path, "fake_quant", reference,
                   {"x": (["n", "h"], "bfloat16"), "qmin": (None, "int32"), "qmax": (None, "int32")},
                   {"y": (["n", "h"], "float32"), "z": (["n", "h"], "bfloat16")},
                   [{"n": 64, "scalars": {"qmin": -2, "qmax": 1}}, {"n": 64, "scalars": {"qmin": -8, "qmax": 7}}],
                   tolerance=0.0)
    match = fused(problem)
    solution = assert_all_pass(problem, match)
    assert all(p["launches"] == 1 for p in match.plan["programs"]), solution.sources[0].content


def test_a_scalar_needed_as_a_python_number_specializes_the_program_to_it(tmp_path):
    # `width` makes a shape: the graph holds for the traced value only, and a call with another value must not
    # run that program (it would silently compute the wrong slice)
    reference = ("import torch\n\ndef run(x, width):\n"
                 "    y = torch.zeros_like(x)\n"
                 "    y[:, :int(width)] = torch.relu(x[:, :int(width)]) * 3.0\n"
                 "    return y\n")
    problem = make(tmp_path, "sliced", reference, {"x": (["n", "h"], "float32"), "width": (None, "int32")},
                   {"y": (["n", "h"], "float32")}, [{"n": 3, "scalars": {"width": 2}},
                                                    {"n": 3, "scalars": {"width": 6}},
                                                    {"n": 4, "scalars": {"width": 6}}])
    match = fused(problem)
    programs = match.plan["programs"]
    assert len(programs) == 3 and all(p["specialized"] for p in programs)
    solution = assert_all_pass(problem, match)
    assert "_BY_CALL" in solution.sources[0].content


# ---------------------------------------------------------------------------------------------- shapes

def test_a_shape_it_never_traced_runs_the_reference(tmp_path):
    reference = "import torch\n\ndef run(x):\n    return torch.exp(x) - 1.0\n"
    problem = make(tmp_path, "untraced", reference, {"x": (["n", "h"], "float32")}, {"y": (["n", "h"], "float32")},
                   TWO_SHAPES)
    solution = render(problem, fused(problem))
    run = load_entry_point(solution, materialize(solution))
    x, out = torch.randn(11, 8), torch.full((11, 8), float("nan"))
    run(x, out)
    torch.testing.assert_close(out, torch.exp(x) - 1.0)


@pytest.mark.parametrize("config", [{"block": 16, "num_warps": 1}, {"block": 64, "num_warps": 2}])
def test_block_sizes_change_speed_not_results(tmp_path, config):
    # 40 elements over blocks of 16: the last block is partial and must be masked
    reference = "import torch\n\ndef run(x):\n    return torch.sqrt(x.abs() + 1.0) * torch.sign(x)\n"
    problem = make(tmp_path, "blocks", reference, {"x": (["n", "h"], "float32")}, {"y": (["n", "h"], "float32")},
                   [{"n": 5}])
    solution = render(problem, fused(problem), config)
    run = load_entry_point(solution, materialize(solution))
    module = sys.modules[run.__module__]
    assert module._BLOCK == INTERPRETER_TILE       # the interpreter's own block: few programs, each run in Python
    module._BLOCK = config["block"]                # the configured one, as on a GPU
    assert check(problem, solution, problem.workloads[0], run=run).status == PASSED


def test_space_and_shape_classes(tmp_path):
    reference = "import torch\n\ndef run(x):\n    return x * 2.0\n"
    problem = make(tmp_path, "space", reference, {"x": (["n", "h"], "float32")}, {"y": (["n", "h"], "float32")},
                   [{"n": 4}])
    family, match = FAMILIES["fused"], fused(problem)
    small, large = family.space(match, {"n": 4, "h": 8}), family.space(match, {"n": 1 << 20, "h": 8})
    assert small != large and all(len({str(c) for c in s}) == len(s) for s in (small, large))
    assert family.shape_class(match, {"n": 600, "h": 8}) == family.shape_class(match, {"n": 700, "h": 8})
    assert family.shape_class(match, {"n": 4, "h": 8}) != family.shape_class(match, {"n": 1 << 20, "h": 8})


# ---------------------------------------------------------------------------------------------- CUDA-graph replay

class RecordedGraph:
    """What a CUDA graph does, on the CPU: a replay reruns the captured launches on the captured buffers and
    leaves its results in the captured result tensors."""

    def __init__(self, program, buffers):
        self.program, self.buffers = program, buffers
        self.results = program(*buffers)
        self.replays = 0

    def replay(self):
        self.replays += 1
        fresh = self.program(*self.buffers)
        if isinstance(self.results, torch.Tensor):
            self.results.copy_(fresh)
        elif self.results is not None:
            for kept, new in zip(self.results, fresh):
                kept.copy_(new)


def capture_on_cpu(program, arguments):
    buffers = [a.clone() if isinstance(a, torch.Tensor) else a for a in arguments]
    graph = RecordedGraph(program, buffers)
    return buffers, graph, graph.results


@pytest.mark.parametrize("destination", [True, False])
def test_a_graph_replay_reads_every_calls_fresh_inputs(tmp_path, destination):
    """Each call's inputs (new addresses, new values) are copied into the graph's buffers and the results copied
    out: a replay on the first call's inputs (a stale graph) would fail the second and third calls."""
    returned = "" if destination else ", x.sum(dim=-1, keepdim=True)"
    reference = f"import torch\n\ndef run(x, b):\n    return (torch.relu(x + b) * 2.0).to(x.dtype){returned}\n"
    outputs = OUT if destination else {**OUT, "s": (["n", 1], "bfloat16")}
    problem = make(tmp_path, "graphed", reference, {"x": (["n", "h"], "bfloat16"), "b": (["h"], "bfloat16")},
                   outputs, TWO_SHAPES, tolerance=2e-2)
    match = fused(problem)
    small = FAMILIES["fused"].space(match, problem.axes_for(problem.smallest_workload()))
    assert small[0]["graph"]                        # launch-bound shapes try the replay first
    solution = render(problem, match, {"block": 64, "num_warps": 1, "graph": True})
    assert scan_solution(solution, problem) == []      # the static audit finds nothing to flag in the replay
    run = load_entry_point(solution, materialize(solution))
    module = sys.modules[run.__module__]
    module._capture = capture_on_cpu
    for seed in (3, 4, 5):
        assert check(problem, solution, problem.workloads[0], seed=seed, run=run).status == PASSED
    (graph_entry,) = module._GRAPHS.values()        # captured once, replayed on every later call
    assert graph_entry[1].replays == 3


def test_a_program_that_writes_into_an_input_is_never_replayed(tmp_path):
    reference = "import torch\n\ndef run(x, y):\n    x.mul_(2.0)\n    return x + y\n"
    problem = make(tmp_path, "in_place", reference, {"x": (["n", "h"], "float32"), "y": (["n", "h"], "float32")},
                   {"z": (["n", "h"], "float32")}, [{"n": 3}])
    match = fused(problem)
    assert all(writes_an_input(p) for p in match.plan["programs"])
    solution = render(problem, match, {"block": 64, "num_warps": 1, "graph": True})
    assert "_UNGRAPHED = (_shape0, )" in solution.sources[0].content


# ---------------------------------------------------------------------------------------------- what it refuses

@pytest.mark.parametrize("reference, reason", [
    ("import torch\n\ndef run(x):\n    return x @ x.t()\n", "elementwise"),
    ("import torch\n\ndef run(x):\n    return torch.from_numpy(x.numpy() * 2)\n", "calls numpy"),
])
def test_refusals_say_why(tmp_path, reference, reason):
    problem = make(tmp_path, "refused", reference, {"x": (["n", "h"], "float32")}, {"y": (["n", "n"], "float32")},
                   [{"n": 3}])
    family = FAMILIES["fused"]
    assert family.match(problem) is None
    assert reason in family.last_rejection


# ---------------------------------------------------------------------------------------------- end to end

def test_a_render_passes_the_evaluator_in_a_child(tmp_path):
    reference = "import torch\n\ndef run(x, b):\n    return torch.relu(x + b).to(x.dtype)\n"
    problem = make(tmp_path, "evaluated", reference, {"x": (["n", "h"], "bfloat16"), "b": (["h"], "bfloat16")},
                   OUT, TWO_SHAPES)
    problem = load_problem(tmp_path / "evaluated")          # from its directory: matching runs in a child
    solution = render(problem, fused(problem))
    traces = evaluate(problem, solution, EvalConfig(device="cpu", rounds=2, timing=None))
    assert [t.evaluation.status for t in traces] == [PASSED, PASSED], traces[0].evaluation.log[-2000:]


def test_golden_render(tmp_path):
    reference = ("import torch\n\ndef run(x, w, b):\n"
                 "    return torch.nn.functional.gelu(torch.nn.functional.linear(x, w, b), approximate='tanh')\n")
    problem = make(tmp_path, "gelu_linear", reference,
                   {"x": (["n", "h"], "bfloat16"), "w": (["h", "h"], "bfloat16"), "b": (["h"], "bfloat16")},
                   OUT, TWO_SHAPES)
    match = fused(problem)
    source = render(problem, match, {"block": 256, "num_warps": 2}).sources[0].content
    golden = GOLDEN / "fused_gelu_linear.py"
    if os.environ.get("KB_UPDATE_GOLDEN"):
        golden.write_text(source)
    assert source == golden.read_text(), "the render changed: regenerate the golden file and review the diff"
    assert_all_pass(problem, match)


def test_bf16_values_quantized_to_fp8_match_eager_in_a_cpu_child(tmp_path):
    # y = bf16(x + r) * 37, saturated into float8_e4m3fn: one bf16 ulp moves the e4m3 rounding of ~5% of the
    # elements by a whole step (12.5%). The kernel's bf16 rounding must be round-to-nearest-even, as on a GPU
    # and in eager, also in the CPU child's Triton interpreter (kernelbench.core.interpreter_casts).
    reference = ("import torch\n\ndef run(x, r):\n"
                 "    h = (x.float() + r.float()).to(x.dtype)\n"
                 "    return (h.float() * 37.0).clamp(-448.0, 448.0).to(torch.float8_e4m3fn), h\n")
    problem = make(tmp_path, "fp8_of_bf16", reference, {"x": (["n", "h"], "bfloat16"), "r": (["n", "h"], "bfloat16")},
                   {"y": (["n", "h"], "float8_e4m3fn"), "h_out": (["n", "h"], "bfloat16")},
                   [{"n": 64}], axes={"n": {"type": "var"}, "h": {"type": "const", "value": 128}}, tolerance=1e-5)
    problem = load_problem(tmp_path / "fp8_of_bf16")          # from its directory: matching runs in a child
    solution = render(problem, fused(problem))
    traces = evaluate(problem, solution, EvalConfig(device="cpu", rounds=1, timing=None))
    assert [t.evaluation.status for t in traces] == [PASSED], traces[0].evaluation.log[-2000:]


@pytest.mark.parametrize("centre", ["a", "a - a.mean(-1, keepdim=True)"])   # the second: a row region in the cycle
def test_regions_that_feed_each_other_through_matmuls_are_split_until_they_form_no_cycle(tmp_path, centre):
    # gelu(a) and sigmoid(a) read `a`: one region A; g * o and g * 2 read `g`: one region B. Each is convex,
    # but A -> (h @ w) -> B and B -> (q @ w.t()) -> A: the regions are split until they can be ordered.
    reference = ("import torch\n\ndef run(x, g, w):\n"
                 "    a = x @ w\n"
                 f"    o = torch.nn.functional.gelu({centre}) @ w\n"
                 "    q = g * 2.0\n"
                 "    return g * o, (q @ w.t()) * torch.sigmoid(a)\n")
    square = {"x": (["n", "h"], "float32"), "g": (["n", "h"], "float32"), "w": (["h", "h"], "float32")}
    problem = make(tmp_path, "crossing", reference, square, {"p": (["n", "h"], "float32"), "t": (["n", "h"], "float32")},
                   TWO_SHAPES)
    assert_all_pass(problem, fused(problem))


def test_a_reference_that_runs_autograd_through_layer_norm_is_traced_and_lowered(tmp_path):
    # autograd in the reference: traced as written, then functionalized; layer norm's decomposition emits
    # prims.broadcast_in_dim, which the second trace took as an aliasing custom op and refused
    reference = ("import torch\n\ndef run(x, w, b, g):\n"
                 "    with torch.enable_grad():\n"
                 "        leaves = [t.detach().requires_grad_(True) for t in (x, w, b)]\n"
                 "        y = torch.nn.functional.layer_norm(leaves[0].float(), (x.shape[-1],), leaves[1].float(),\n"
                 "                                           leaves[2].float(), 1e-5).to(x.dtype)\n"
                 "        return tuple(t.detach() for t in torch.autograd.grad(y, leaves, g))\n")
    problem = make(tmp_path, "layer_norm_backward", reference,
                   {"x": (["n", "h"], "bfloat16"), "w": (["h"], "bfloat16"), "b": (["h"], "bfloat16"),
                    "g": (["n", "h"], "bfloat16")},
                   {"dx": (["n", "h"], "bfloat16"), "dw": (["h"], "bfloat16"), "db": (["h"], "bfloat16")}, TWO_SHAPES)
    assert_all_pass(problem, fused(problem))


def test_a_view_eager_takes_of_a_permuted_layout_is_a_reshape_of_a_kernels_contiguous_result(tmp_path):
    # sigmoid of a transposed input keeps the transposed strides in eager, so transposing back and flattening
    # is a view there; the kernel stores its result contiguous, where the same view is impossible
    reference = ("import torch\n\ndef run(x):\n"
                 "    y = torch.sigmoid(x.transpose(1, 2))\n"
                 "    return y.transpose(1, 2).reshape(x.shape[0], -1) * 1\n")
    problem = make(tmp_path, "relaid", reference, {"x": (["n", "h", "s"], "float32")}, {"y": (["n", "hs"], "float32")},
                   TWO_SHAPES, axes={"n": {"type": "var"}, "h": {"type": "const", "value": 8},
                                     "s": {"type": "const", "value": 4}, "hs": {"type": "const", "value": 32}})
    assert_all_pass(problem, fused(problem))


ROUTED_FP8_MOE = """import torch


def get_inputs(axes, device):
    t = axes["seq_len"]
    e, el, h, i, blk = 16, 4, 256, 128, 128
    fp8 = torch.float8_e4m3fn
    return {"routing_logits": torch.randn(t, e), "routing_bias": (torch.randn(e) * 0.1).to(torch.bfloat16),
            "hidden_states": (torch.randn(t, h) * 2).to(fp8),
            "hidden_states_scale": torch.rand(h // blk, t) * 0.05 + 0.01,
            "gemm1_weights": (torch.randn(el, 2 * i, h) * 2).to(fp8),
            "gemm1_weights_scale": torch.rand(el, 2 * i // blk, h // blk) * 0.05 + 0.01,
            "gemm2_weights": (torch.randn(el, h, i) * 2).to(fp8),
            "gemm2_weights_scale": torch.rand(el, h // blk, i // blk) * 0.05 + 0.01,
            "local_expert_offset": 4, "routed_scaling_factor": 2.5}


@torch.no_grad()
def run(routing_logits, routing_bias, hidden_states, hidden_states_scale, gemm1_weights, gemm1_weights_scale,
        gemm2_weights, gemm2_weights_scale, local_expert_offset, routed_scaling_factor):
    # DeepSeek-V3-style routed MoE over FP8 block-scaled (128 x 128) weights: grouped top-k routing (4 groups,
    # best 2 groups, top 4 experts), then each local expert's SwiGLU MLP on its tokens, weighted and summed
    t, h = hidden_states.shape
    e = routing_logits.shape[1]
    el, two_i, _ = gemm1_weights.shape
    blk = 128
    a = hidden_states.float() * hidden_states_scale.t().repeat_interleave(blk, 1)
    w1 = gemm1_weights.float() * gemm1_weights_scale.repeat_interleave(blk, 1).repeat_interleave(blk, 2)
    w2 = gemm2_weights.float() * gemm2_weights_scale.repeat_interleave(blk, 1).repeat_interleave(blk, 2)
    scores = torch.sigmoid(routing_logits.float())
    biased = scores + routing_bias.float()
    groups = biased.view(t, 4, e // 4)
    group_score = groups.topk(2, dim=-1).values.sum(-1)
    keep = torch.zeros_like(group_score).scatter_(1, group_score.topk(2, dim=-1).indices, 1.0)
    masked = biased.masked_fill(keep.repeat_interleave(e // 4, 1) == 0, float("-inf"))
    chosen = masked.topk(4, dim=-1).indices
    weights = scores.gather(1, chosen)
    weights = weights / weights.sum(-1, keepdim=True) * routed_scaling_factor
    out = torch.zeros(t, h)
    for local in range(el):
        expert = local_expert_offset + local
        hit = chosen == expert
        rows = hit.any(-1).nonzero().squeeze(-1)
        if rows.numel() == 0:
            continue
        x = a[rows]
        up_gate = x @ w1[local].t()
        up, gate = up_gate[:, : two_i // 2], up_gate[:, two_i // 2:]
        y = (torch.nn.functional.silu(gate) * up) @ w2[local].t()
        out[rows] += y * (weights * hit).sum(-1, keepdim=True)[rows]
    return out.to(torch.bfloat16)
"""


@pytest.mark.slow   # the interpreter over 4 experts' FP8 GEMMs: 15 s (the default suite is near its time limit)
def test_a_flashinfer_style_routed_fp8_moe_loop(tmp_path):
    # FlashInfer-Bench's MoE form at small sizes: DeepSeek grouped top-k routing, FP8 weights with 128 x 128 block
    # scales dequantized in the reference, and a Python loop over the local experts whose token rows depend on the
    # routing (traced along its branches)
    e, h, i = 16, 256, 128
    axes = {"seq_len": {"type": "var"}, **{n: {"type": "const", "value": v} for n, v in (
        ("num_experts", e), ("num_local_experts", 4), ("hidden_size", h), ("intermediate_size", i),
        ("gemm1_out_size", 2 * i), ("num_hidden_blocks", h // 128), ("num_intermediate_blocks", i // 128),
        ("num_gemm1_out_blocks", 2 * i // 128))}}
    spec = {"routing_logits": (["seq_len", "num_experts"], "float32"), "routing_bias": (["num_experts"], "bfloat16"),
            "hidden_states": (["seq_len", "hidden_size"], "float8_e4m3fn"),
            "hidden_states_scale": (["num_hidden_blocks", "seq_len"], "float32"),
            "gemm1_weights": (["num_local_experts", "gemm1_out_size", "hidden_size"], "float8_e4m3fn"),
            "gemm1_weights_scale": (["num_local_experts", "num_gemm1_out_blocks", "num_hidden_blocks"], "float32"),
            "gemm2_weights": (["num_local_experts", "hidden_size", "intermediate_size"], "float8_e4m3fn"),
            "gemm2_weights_scale": (["num_local_experts", "num_hidden_blocks", "num_intermediate_blocks"], "float32"),
            "local_expert_offset": (None, "int32"), "routed_scaling_factor": (None, "float32")}
    definition = {"name": "routed_fp8_moe", "op_type": "moe", "axes": axes, "reference": ROUTED_FP8_MOE,
                  "custom_inputs_entrypoint": "get_inputs",
                  "inputs": {n: {"shape": s, "dtype": t} for n, (s, t) in spec.items()},
                  "outputs": {"output": {"shape": ["seq_len", "hidden_size"], "dtype": "bfloat16"}}}
    workloads = [{"uuid": f"moe-{t}", "axes": {"seq_len": t}, "inputs": {n: {"type": "custom"} for n in spec},
                  "tolerance": {"max_atol": 1.0, "max_rtol": 0.3, "required_matched_ratio": 0.9}} for t in (7, 24)]
    problem = load_problem(write_problem(tmp_path, definition, workloads))
    assert_all_pass(problem, fused(problem))
