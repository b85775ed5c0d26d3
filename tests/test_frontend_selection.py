"""Selection ops in the front end (kernelbench.generate.selection): argmax/argmin, max/min(dim) and top-k lowered
to generated kernels (a split and a merge for long rows), checked against the reference through the Triton
interpreter: first index on ties, NaN as the extreme, k not a power of two, reductions over a leading dimension."""

from __future__ import annotations

import torch
from test_family_fused import assert_all_pass, check, fused, make, render

from kernelbench.core.inputs import generate_inputs
from kernelbench.core.solution import load_entry_point, materialize
from kernelbench.core.statuses import PASSED
from kernelbench.generate import rowfusion, selection

LONG = {"n": {"type": "var"}, "h": {"type": "const", "value": 3000}}     # a split row (TILE 256): 2 launches
SHORT = {"n": {"type": "var"}, "h": {"type": "const", "value": 160}}     # one tile: 1 launch
FEW_ROWS = [{"n": 1}, {"n": 3}]


def lines(match) -> str:
    return "\n".join(line for p in match.plan["programs"] for line in p["lines"])


def launches(match) -> list[int]:
    return [p["launches"] for p in match.plan["programs"]]


def selected(tmp_path, name, reference, inputs, outputs, axes, workloads=FEW_ROWS, expected=None):
    """The problem's match with no selection left to the library, `expected` launches a call; every workload
    passes exactly."""
    problem = make(tmp_path, name, reference, inputs, outputs, workloads, axes=axes, tolerance=0.0)
    match = fused(problem)
    text = lines(match)
    assert not any(f"aten.{op}" in text for op in ("argmax", "argmin", "topk", "max.dim", "min.dim", "sort")), text
    if expected is not None:
        assert launches(match) == [expected] * len(workloads), text
    assert_all_pass(problem, match)
    return match


def test_a_bare_argmax_over_a_long_row_is_split_and_merged(tmp_path, monkeypatch):
    monkeypatch.setattr(selection, "TILE", 256)
    monkeypatch.setattr(rowfusion, "MAX_ROW_BLOCK", 1024)   # else the row and its prologue fit one row kernel
    monkeypatch.setattr(selection, "TARGET_PROGRAMS", 16)
    # truncation makes ties (the first index must win) and the NaNs must win over every number, as torch ranks them
    reference = ("import torch\n\ndef run(x):\n"
                 "    return torch.argmax(torch.where(x > 3.5, float('nan'), x.int().float()), dim=-1)\n")
    match = selected(tmp_path, "argmax_long", reference, {"x": (["n", "h"], "float32")}, {"i": (["n"], "int64")},
                     LONG, expected=3)   # the where/cast region, the split, the merge
    assert "(_cdiv(1, 1), 24)](" in lines(match)   # one row: tiles halved until 16 programs run (24 of 128)


def test_argmin_and_min_over_rows_in_one_tile(tmp_path):
    # a NaN value fails any check, so min's values come from NaN-free ties and argmin's NaN shows in its index
    reference = ("import torch\n\ndef run(x):\n"
                 "    y = (x * 2).int().float()\n"
                 "    v, i = y.min(dim=-1)\n"
                 "    return torch.argmin(torch.where(x < -2.5, float('nan'), y), dim=-1, keepdim=True), v, i\n")
    selected(tmp_path, "argmin_short", reference, {"x": (["n", "h"], "float32")},
             {"a": (["n", 1], "int64"), "v": (["n"], "float32"), "i": (["n"], "int64")}, SHORT,
             workloads=[{"n": 4}, {"n": 37}])


def test_topk_over_a_long_row_in_both_directions(tmp_path, monkeypatch):
    monkeypatch.setattr(selection, "TILE", 256)
    # k = 5 is not a power of two: tiles keep their top 8, the merge keeps the first 5
    reference = ("import torch\n\ndef run(x):\n"
                 "    v, i = torch.topk(x, 5, dim=-1)\n"
                 "    w, j = torch.topk(x, 3, dim=-1, largest=False)\n"
                 "    return v, i, w, j\n")
    selected(tmp_path, "topk_long", reference, {"x": (["n", "h"], "float32")},
             {"v": (["n", 5], "float32"), "i": (["n", 5], "int64"), "w": (["n", 3], "float32"),
              "j": (["n", 3], "int64")}, LONG, expected=4)


def test_the_bitonic_top_k_of_larger_k(tmp_path, monkeypatch):
    # the GPU's path (tl.topk of the keys) run through the interpreter on small tiles: the same values and order
    monkeypatch.setattr(selection, "TILE", 64)
    monkeypatch.setattr(selection, "ROUNDS_MAX_K", 2)
    reference = "import torch\n\ndef run(x):\n    return torch.topk(x, 5, dim=-1, largest=False)\n"
    problem = make(tmp_path, "bitonic", reference, {"x": (["n", "h"], "float32")},
                   {"v": (["n", 5], "float32"), "i": (["n", 5], "int64")}, [{"n": 2}], axes=SHORT, tolerance=0.0)
    solution = render(problem, fused(problem))
    assert "tl.topk(key, 8)" in solution.sources[0].content
    run = load_entry_point(solution, materialize(solution))
    run.__globals__["_INTERPRETED"] = False
    assert check(problem, solution, problem.workloads[0], run=run).status == PASSED


def test_a_top_k_beyond_max_k_is_a_radix_select(tmp_path, monkeypatch):
    # k = 37 of 3000 over 12 tiles of 256, in both directions
    monkeypatch.setattr(selection, "TILE", 256)
    monkeypatch.setattr(selection, "MAX_K", 4)
    reference = ("import torch\n\ndef run(x):\n"
                 "    v, i = torch.topk(x, 37, dim=-1)\n"
                 "    w, j = torch.topk(x, 37, dim=-1, largest=False)\n"
                 "    return v, i, w, j\n")
    outputs = {"v": (["n", 37], "float32"), "i": (["n", 37], "int64"), "w": (["n", 37], "float32"),
               "j": (["n", 37], "int64")}
    match = selected(tmp_path, "radix", reference, {"x": (["n", "h"], "float32")}, outputs, LONG, expected=14)
    assert "tl.histogram(" in "\n".join(line for p in match.plan["programs"] for k in p["kernels"] for line in k["body"])
    # values truncated to a few integers: hundreds tie with the k-th, across tiles, and the lowest columns must be
    # taken, equal values in column order (CUDA's order; the CPU's topk orders ties otherwise, so this is checked
    # against a stable sort), by the interpreter's rounds and by the GPU's tl.sort
    ties = make(tmp_path, "radix_ties", reference, {"x": (["n", "h"], "float32")}, outputs, [{"n": 2}], axes=LONG)
    solution = render(ties, fused(ties))
    assert "tl.sort(key, 1, True)" in solution.sources[0].content
    torch.manual_seed(0)
    y = (torch.randn(2, 3000) * 1.5).int().float()
    for interpreted in (True, False):
        run = load_entry_point(solution, materialize(solution))
        run.__globals__["_INTERPRETED"] = interpreted
        got = [torch.empty(2, 37), torch.empty(2, 37, dtype=torch.int64), torch.empty(2, 37),
               torch.empty(2, 37, dtype=torch.int64)]
        run(y, *got)
        for descending, (values, indices) in ((True, got[:2]), (False, got[2:])):
            expected = torch.sort(y, dim=-1, descending=descending, stable=True)
            assert torch.equal(values, expected.values[:, :37]) and torch.equal(indices, expected.indices[:, :37])


def test_a_router_softmax_topk_renormalize(tmp_path):
    reference = ("import torch\n\ndef run(logits):\n"
                 "    p = torch.softmax(logits.float(), dim=-1)\n"
                 "    w, ids = torch.topk(p, 6, dim=-1)\n"
                 "    return w / w.sum(-1, keepdim=True), ids.to(torch.int32)\n")
    problem = make(tmp_path, "router", reference, {"logits": (["n", "h"], "float32")},
                   {"w": (["n", 6], "float32"), "ids": (["n", 6], "int32")}, [{"n": 1}, {"n": 19}], axes=SHORT,
                   tolerance=1e-5)
    match = fused(problem)
    assert "aten.topk" not in lines(match)
    assert_all_pass(problem, match)


def test_sort_and_stable_argsort_of_short_rows(tmp_path):
    # truncated values tie: a stable argsort keeps them in index order, ascending and descending
    reference = ("import torch\n\ndef run(x):\n"
                 "    v, i = torch.sort(x, dim=-1, descending=True)\n"
                 "    t = (x * 2).int()\n"
                 "    return v, i, torch.argsort(t, dim=-1, stable=True), torch.sort(t, descending=True, stable=True)[1]\n")
    selected(tmp_path, "sorts", reference, {"x": (["n", "h"], "float32")},
             {"v": (["n", "h"], "float32"), "i": (["n", "h"], "int64"), "a": (["n", "h"], "int64"),
              "d": (["n", "h"], "int64")}, {"n": {"type": "var"}, "h": {"type": "const", "value": 48}},
             workloads=[{"n": 3}])


def test_max_over_a_leading_dimension_of_half_values(tmp_path):
    reference = "import torch\n\ndef run(x):\n    v, i = torch.max(x, dim=0)\n    return v, i\n"
    selected(tmp_path, "max_dim0", reference, {"x": (["n", "h"], "float16")},
             {"v": (["h"], "float16"), "i": (["h"], "int64")}, SHORT, workloads=[{"n": 5}, {"n": 33}], expected=1)


def test_equal_values_come_lowest_index_first(tmp_path):
    # CUDA's topk orders equal values by index; the CPU's does not, so the render is checked against a stable sort
    reference = "import torch\n\ndef run(x):\n    return torch.topk(x, 12, dim=-1)\n"
    problem = make(tmp_path, "ties", reference, {"x": (["n", "h"], "float32")},
                   {"v": (["n", 12], "float32"), "i": (["n", 12], "int64")}, [{"n": 6}], axes=SHORT, tolerance=0.0)
    solution = render(problem, fused(problem))
    run = load_entry_point(solution, materialize(solution))
    (x,) = generate_inputs(problem, problem.workloads[0], seed=1)
    x = (x * 0.7).round()   # a handful of distinct values in 160 columns
    values, indices = torch.empty(6, 12), torch.empty(6, 12, dtype=torch.int64)
    run(x, values, indices)
    expected_values, expected_indices = torch.sort(x, dim=-1, descending=True, stable=True)
    assert torch.equal(values, expected_values[:, :12]) and torch.equal(indices, expected_indices[:, :12])


def test_what_it_does_not_take_stays_with_the_library(tmp_path, monkeypatch):
    monkeypatch.setattr(selection, "MAX_K", 4)
    monkeypatch.setattr(selection, "RADIX_MAX_K", 4)
    reference = ("import torch\n\ndef run(x):\n"
                 "    v, i = torch.topk(x, 5, dim=-1)\n"
                 "    w, j = torch.topk(x.double(), 2, dim=-1)\n"
                 "    u, k = torch.topk(x, 2, dim=-1, sorted=False)\n"
                 "    return v, i, w.float(), j, u, k\n")
    problem = make(tmp_path, "refused", reference, {"x": (["n", "h"], "float32")},
                   {"v": (["n", 5], "float32"), "i": (["n", 5], "int64"), "w": (["n", 2], "float32"),
                    "j": (["n", 2], "int64"), "u": (["n", 2], "float32"), "k": (["n", 2], "int64")},
                   [{"n": 3}], axes=SHORT)
    assert lines(fused(problem)).count("aten.topk") == 3   # k over RADIX_MAX_K, fp64, sorted=False
