"""Indexed reads in the front end (kernelbench.generate.gathers): gathers as loads of a region at computed
addresses, embedding bags as a segmented-reduction kernel; every render checked against the reference through
the Triton interpreter, and the launches counted."""

from __future__ import annotations

import pytest
import torch
from test_family_fused import assert_all_pass, fused, make, render

from kernelbench.core.solution import load_entry_point, materialize
from kernelbench.generate import gathers

AXES = {"n": {"type": "var"}, "v": {"type": "const", "value": 64}, "h": {"type": "const", "value": 24}}
TWO = [{"n": 3}, {"n": 5}]
TABLE = {"idx": (["n"], "int64"), "w": (["v", "h"], "bfloat16")}


def launches(match) -> list[int]:
    return [p["launches"] for p in match.plan["programs"]]


def lines(match) -> str:
    return "\n".join(line for p in match.plan["programs"] for line in p["lines"])


def kernel_text(match) -> str:
    return "\n".join(line for p in match.plan["programs"] for k in p["kernels"] for line in k["body"])


def lowered(tmp_path, name, reference, inputs, outputs, expected, workloads=TWO, axes=AXES):
    """The problem's match: `expected` launches a call, no aten gather left, and every workload passes."""
    problem = make(tmp_path, name, reference, inputs, outputs, workloads, axes=axes)
    match = fused(problem)
    assert launches(match) == [expected] * len(workloads), lines(match)
    assert "aten.index" not in lines(match) and "aten.gather" not in lines(match) \
        and "embedding" not in lines(match), lines(match)
    assert_all_pass(problem, match)
    return problem, match


def test_a_bare_embedding_is_one_generated_kernel(tmp_path):
    reference = "import torch\n\ndef run(idx, w):\n    return w[idx]\n"
    lowered(tmp_path, "lookup", reference, TABLE, {"y": (["n", "h"], "bfloat16")}, 1, workloads=[{"n": 1}, {"n": 5}])


def test_an_embedding_with_its_scale_and_rmsnorm_is_one_row_kernel(tmp_path):
    reference = ("import torch\n\ndef run(idx, w, g):\n"
                 "    x = torch.nn.functional.embedding(idx, w).float() * 4.0\n"
                 "    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)\n"
                 "    return (x * g).to(torch.bfloat16)\n")
    _, match = lowered(tmp_path, "embed_norm", reference, {**TABLE, "g": (["h"], "float32")},
                       {"y": (["n", "h"], "bfloat16")}, 1)
    assert any("row_mask" in line for line in kernel_text(match).splitlines())


def test_two_lookups_and_their_sum_are_one_kernel(tmp_path):
    # token + position embedding (the position table indexed by another id tensor)
    reference = ("import torch\n\ndef run(idx, pos, w, p):\n"
                 "    return (w[idx].float() + p[pos].float()).to(torch.float16)\n")
    lowered(tmp_path, "two_tables", reference,
            {"idx": (["n"], "int64"), "pos": (["n"], "int32"), "w": (["v", "h"], "bfloat16"),
             "p": (["v", "h"], "float16")}, {"y": (["n", "h"], "float16")}, 1)


def test_negative_indices_wrap_as_torch_does(tmp_path):
    reference = "import torch\n\ndef run(idx, w):\n    return w[idx - 64] * 2\n"   # ids in [-64, 0)
    _, match = lowered(tmp_path, "negative", reference, TABLE, {"y": (["n", "h"], "bfloat16")}, 2)
    assert "< 0" in kernel_text(match)


@pytest.mark.parametrize("body, out_shape", [
    ("x[:, i, j]", ["m", "n"]),          # adjacent index tensors: their dims replace theirs in place
    ("x[i, :, j]", ["n", "m"]),          # separated: the broadcast dims come first (numpy's rule)
    ("x[i[:, None], :, j[None, :]]", ["n", "n", "m"]),   # broadcast together to [n, n]
    ("x[..., j] + 1", ["m", "v", "n"]),   # None slices before a trailing index
])
def test_index_tensor_placement_follows_torch(tmp_path, body, out_shape):
    axes = {"n": {"type": "var"}, "m": {"type": "const", "value": 3}, "v": {"type": "const", "value": 64}}
    reference = f"import torch\n\ndef run(i, j, x):\n    return {body}\n"
    shapes = {"x[:, i, j]": ["m", "v", "v"], "x[i, :, j]": ["v", "m", "v"],
              "x[i[:, None], :, j[None, :]]": ["v", "m", "v"], "x[..., j] + 1": ["m", "v", "v"]}
    lowered(tmp_path, "placement", reference,
            {"i": (["n"], "int64"), "j": (["n"], "int64"), "x": (shapes[body], "float32")},
            {"y": (out_shape, "float32")}, 1, axes=axes)


def test_index_select_and_gather(tmp_path):
    axes = {"n": {"type": "var"}, "v": {"type": "const", "value": 64}, "k": {"type": "const", "value": 5}}
    reference = ("import torch\n\ndef run(idx, x, pick):\n"
                 "    rows = torch.index_select(x, 1, idx).sum(0)\n"
                 "    return rows, torch.gather(x, 1, pick) * 0.5\n")
    problem = make(tmp_path, "select_gather", reference,
                   {"idx": (["n"], "int64"), "x": (["v", "v"], "float32"), "pick": (["v", "k"], "int64")},
                   {"rows": (["n"], "float32"), "picked": (["v", "k"], "float32")}, TWO, axes=axes)
    match = fused(problem)
    assert "aten.gather" not in lines(match) and "index_select" not in lines(match), lines(match)
    assert_all_pass(problem, match)


def test_a_table_computed_at_the_gathers_shape_stays_outside_its_region(tmp_path):
    # y and the gather have one shape: a region computes values at its own coordinates, so y is stored and
    # the gather reads it (two kernels), never fused into one that would read y where it is not computed
    axes = {"n": {"type": "const", "value": 8}, "v": {"type": "const", "value": 64}}
    reference = "import torch\n\ndef run(x, idx):\n    y = x * 3\n    return torch.gather(y, 1, idx) + x\n"
    problem = make(tmp_path, "own_table", reference, {"x": (["n", "v"], "float32"), "idx": (["n", "v"], "int64")},
                   {"y": (["n", "v"], "float32")}, [{}], axes=axes)
    match = fused(problem)
    assert launches(match) == [2], lines(match)
    assert_all_pass(problem, match)


def test_out_of_range_indices_read_nothing_outside_the_table(tmp_path):
    """torch raises; the kernel masks the load (zeros) and asserts under Triton's debug mode (the interpreter
    ignores device asserts, so only the masked load shows here)."""
    reference = "import torch\n\ndef run(idx, w):\n    return w[idx] + 1\n"
    problem = make(tmp_path, "out_of_range", reference, {"idx": (["n"], "int64"), "w": (["v", "h"], "float32")},
                   {"y": (["n", "h"], "float32")}, TWO, axes=AXES)
    match = fused(problem)
    assert "tl.device_assert" in kernel_text(match)
    solution = render(problem, match)
    run = load_entry_point(solution, materialize(solution))
    w = torch.randn(64, 24)
    idx = torch.tensor([5, 64, -65])
    out = torch.full((3, 24), float("nan"))
    run(idx, w, out)
    assert torch.equal(out[0], w[5] + 1) and torch.equal(out[1:], torch.ones(2, 24))


def test_a_boolean_mask_index_is_not_a_gather():
    # x[mask] selects a data-dependent number of elements (a nonzero): no gather of fixed shape
    node = _index_node(torch.zeros(8, 64, dtype=torch.bool))
    assert not gathers.is_gather(node)
    with pytest.raises(Exception, match="bool"):
        gathers.describe(node)


def _index_node(mask: torch.Tensor) -> torch.fx.Node:
    graph = torch.fx.Graph()
    x, m = graph.placeholder("x"), graph.placeholder("m")
    x.meta["val"], m.meta["val"] = torch.zeros(8, 64), mask
    node = graph.call_function(torch.ops.aten.index.Tensor, (x, [m]))
    node.meta["val"] = torch.zeros(3)
    return node


# ---------------------------------------------------------------------------------------------- embedding bags

BAG_AXES = {"t": {"type": "var"}, "b": {"type": "var"}, "v": {"type": "const", "value": 64},
            "h": {"type": "const", "value": 40}}
BAGS = [{"t": 12, "b": 3}, {"t": 40, "b": 7}]


def bag_reference(options: str, weights: bool = False, last: bool = True) -> str:
    # bag i spans [5i - 3, 5i + 2) clamped to the ids (bag 0 is empty) and the last one runs to the end (torch's
    # CPU and CUDA kernels disagree on a mean over a last offset short of it)
    count = "b + 1" if last else "b"
    return ("import torch\nimport torch.nn.functional as F\n\n"
            f"def run(idx, w{', psw' if weights else ''}):\n"
            f"    b = {'BAGS'}\n"
            f"    starts = torch.arange({count}, device=idx.device)\n"
            f"    offsets = torch.where(starts == b, idx.shape[0], torch.clamp(starts * 5 - 3, 0, idx.shape[0]))\n"
            f"    return F.embedding_bag(idx, w, offsets, {options}{', per_sample_weights=psw' if weights else ''}"
            f", include_last_offset={last})\n")


@pytest.mark.parametrize("options, weights, last", [
    ("mode='sum'", False, True),
    ("mode='mean'", False, True),
    ("mode='max'", False, True),
    ("mode='mean', padding_idx=3", False, False),
    ("mode='sum'", True, False),
])
def test_embedding_bag_modes(tmp_path, options, weights, last):
    workloads = [{"t": 12, "b": 3}, {"t": 40, "b": 7}]
    inputs = {"idx": (["t"], "int64"), "w": (["v", "h"], "float32")}
    if weights:
        inputs["psw"] = (["t"], "float32")
    for workload in workloads:   # the bag count is the workload's: one problem per count
        reference = bag_reference(options, weights, last).replace("BAGS", str(workload["b"]))
        problem = make(tmp_path, f"bag{workload['b']}", reference, inputs, {"y": (["b", "h"], "float32")},
                       [workload], axes=BAG_AXES)
        match = fused(problem)
        assert "embedding_bag" not in lines(match), lines(match)
        assert any("for first in range(start, end, BLOCK_T)" in line for line in kernel_text(match).splitlines())
        assert_all_pass(problem, match)


def test_a_bag_whose_other_results_are_used_stays_a_library_call(tmp_path):
    graph = torch.fx.Graph()
    w, i, o = (graph.placeholder(n) for n in "wio")
    bag = graph.call_function(torch.ops.aten._embedding_bag_forward_only.default, (w, i, o, False, 1))
    first = graph.call_function(__import__("operator").getitem, (bag, 0))
    sizes = graph.call_function(__import__("operator").getitem, (bag, 2))
    graph.output((first, sizes))
    gathers.rewrite_bags(graph)
    assert bag in graph.nodes


# ---------------------------------------------------------------------------------------------- scatters

SCATTER_AXES = {"n": {"type": "var"}, "t": {"type": "const", "value": 64}, "h": {"type": "const", "value": 24}}


def test_moe_combine_adds_its_weighted_rows_atomically_in_the_kernel_that_weighs_them(tmp_path):
    reference = ("import torch\n\ndef run(x, w, idx):\n"
                 "    out = torch.zeros(64, x.shape[1], dtype=torch.float32, device=x.device)\n"
                 "    out.index_add_(0, idx, x.float() * w.float().unsqueeze(-1))\n"
                 "    return out.to(x.dtype)\n")
    problem = make(tmp_path, "combine", reference,
                   {"x": (["n", "h"], "bfloat16"), "w": (["n"], "float32"), "idx": (["n"], "int64")},
                   {"y": (["t", "h"], "bfloat16")}, [{"n": 40}, {"n": 200}], axes=SCATTER_AXES)
    match = fused(problem)
    # the zeros, one kernel weighing and adding, the cast (the library: zeros, mul, index_add, cast)
    assert launches(match) == [3, 3] and "index_add" not in lines(match), lines(match)
    assert "tl.atomic_add" in kernel_text(match)
    assert_all_pass(problem, match)


def test_scatter_add_into_a_returned_zeros_fills_the_destination(tmp_path):
    reference = ("import torch\n\ndef run(src, idx):\n"
                 "    return torch.zeros(src.shape[0], 64, device=src.device).scatter_add(1, idx, src * 2)\n")
    problem = make(tmp_path, "scatter", reference, {"src": (["n", "h"], "float32"), "idx": (["n", "h"], "int64")},
                   {"y": (["n", "t"], "float32")}, TWO, axes=SCATTER_AXES)
    match = fused(problem)
    assert launches(match) == [2, 2] and "o0.fill_(0" in lines(match), lines(match)
    assert_all_pass(problem, match)


def test_an_accumulating_index_put_on_an_input_leaves_the_input_alone(tmp_path):
    reference = ("import torch\n\ndef run(x, idx, vals):\n"
                 "    return torch.index_put(x, (idx,), vals, accumulate=True)\n")
    problem = make(tmp_path, "index_put", reference,
                   {"x": (["t", "h"], "float32"), "idx": (["n"], "int64"), "vals": (["n", "h"], "float32")},
                   {"y": (["t", "h"], "float32")}, TWO, axes=SCATTER_AXES)
    match = fused(problem)
    assert "index_put" not in lines(match) and "tl.atomic_add" in kernel_text(match), lines(match)
    solution = assert_all_pass(problem, match)
    run = load_entry_point(solution, materialize(solution))
    x, idx, vals = torch.randn(64, 24), torch.tensor([3, 3, 7]), torch.randn(3, 24)
    before, out = x.clone(), torch.empty(64, 24)
    run(x, idx, vals, out)
    assert torch.equal(x, before)
    assert torch.allclose(out, torch.index_put(x, (idx,), vals, accumulate=True))


def test_a_half_precision_scatter_stays_the_library_op(tmp_path):
    # no fp32 atomics into a bf16 tensor: the library's index_add keeps its own rounding
    reference = ("import torch\n\ndef run(x, idx):\n"
                 "    return torch.zeros(64, x.shape[1], dtype=x.dtype, device=x.device).index_add(0, idx, x * 2)\n")
    problem = make(tmp_path, "half", reference, {"x": (["n", "h"], "bfloat16"), "idx": (["n"], "int64")},
                   {"y": (["t", "h"], "bfloat16")}, TWO, axes=SCATTER_AXES)
    match = fused(problem)
    assert "aten.index_put" in lines(match) and "tl.atomic_add" not in kernel_text(match)
    assert_all_pass(problem, match)
