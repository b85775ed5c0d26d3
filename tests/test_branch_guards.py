"""References that branch in Python on tensor values (kernelbench.generate.branch_guards): traced along the
branches one example takes, the program checks a guard per branch and runs the reference where one fails.
Each test attacks the guards with inputs that take other branches: the solution must fall back there (and
still match the reference), and run its own kernels where the example's branches are taken again.
"""

from __future__ import annotations

import pytest
import torch
from test_family_fused import fused, make, render

from kernelbench.core.correctness import as_output_list
from kernelbench.core.dtypes import torch_dtype
from kernelbench.core.reference import compile_reference
from kernelbench.core.solution import load_entry_point, materialize
from kernelbench.generate.traced import trace_programs


def traced_on(problem, examples: dict, monkeypatch):
    """The fused family's match, the workload's example inputs named in `examples` set to those tensors."""
    from kernelbench.core import inputs
    random = inputs.random_tensor
    monkeypatch.setattr(inputs, "random_tensor", lambda name, *args, **kwargs:
                        examples[name].clone() if name in examples else random(name, *args, **kwargs))
    match = fused(problem)
    monkeypatch.undo()
    return match


class Solved:
    """A rendered solution, loaded, whose `_fallback` counts its calls."""

    def __init__(self, problem, solution):
        self.problem = problem
        self.reference = compile_reference(problem.definition)
        self.run = load_entry_point(solution, materialize(solution))
        module = self.run.__globals__
        self.fallbacks = 0
        original = module["_fallback"]

        def counted(*args):
            self.fallbacks += 1
            return original(*args)
        module["_fallback"] = counted

    def fell_back(self, inputs: list, tol: float = 1e-4) -> bool:
        """Runs the solution on `inputs`, checks it against the reference, and says whether it fell back."""
        workload = self.problem.smallest_workload()
        axes = self.problem.axes_for(workload)
        expected = as_output_list(self.reference.run(*[t.clone() if isinstance(t, torch.Tensor) else t for t in inputs]), len(self.problem.definition.outputs))
        got = [torch.full(self.problem.shape_of(s, axes), float("nan")).to(torch_dtype(s.dtype))
               for s in self.problem.definition.outputs.values()]
        before = self.fallbacks
        assert self.run(*inputs, *got) is None
        for g, e in zip(got, expected):
            torch.testing.assert_close(g, e, rtol=tol, atol=tol)
        return self.fallbacks > before


def test_an_if_on_an_item_takes_the_example_branch_and_falls_back_on_the_other(tmp_path):
    reference = ("import torch\n\ndef run(x, flags):\n"
                 "    if flags[0].item() > 0:\n"
                 "        return torch.tanh(x) * 2.0\n"
                 "    return torch.sigmoid(x) + 1.0\n")
    problem = make(tmp_path, "branchy", reference, {"x": (["n", "h"], "float32"), "flags": (["n"], "int32")},
                   {"y": (["n", "h"], "float32")}, [{"n": 3}])
    match = fused(problem)
    lines = "\n".join(match.plan["programs"][0]["lines"])
    assert "_local_scalar_dense" in lines and "return _fallback(a0, a1, o0)" in lines
    solved = Solved(problem, render(problem, match))
    x = torch.randn(3, 8)
    positive = solved.fell_back([x, torch.tensor([5, 0, 0], dtype=torch.int32)])
    negative = solved.fell_back([x, torch.tensor([-2, 0, 0], dtype=torch.int32)])
    assert positive != negative     # one branch runs the kernels, the other (the attack) the reference
    assert solved.fell_back([x, torch.tensor([7, 1, 1] if negative else [0, 1, 1], dtype=torch.int32)]) == positive


def test_a_branch_on_a_reduction_flag_falls_back_where_the_flag_flips(tmp_path):
    problem = make(tmp_path, "flag", "import torch\n\ndef run(x):\n    return x * 2 if x.sum() > 0 else x - 1\n",
                   {"x": (["n", "h"], "float32")}, {"y": (["n", "h"], "float32")}, [{"n": 3}])
    solved = Solved(problem, render(problem, fused(problem)))
    x = torch.randn(3, 8).abs()
    assert solved.fell_back([x]) != solved.fell_back([-x])


GROUPED = ("import torch\n\ndef run(x, offsets):\n"
           "    out = torch.zeros_like(x)\n"
           "    bounds = offsets.tolist()\n"
           "    for e in range(offsets.shape[0] - 1):\n"
           "        start, end = bounds[e], bounds[e + 1]\n"
           "        if end > start:\n"
           "            out[start:end] = torch.tanh(x[start:end]) * (e + 1.0)\n"
           "    return out\n")


def offsets(*counts: int) -> torch.Tensor:
    return torch.tensor([0, *torch.tensor(counts).cumsum(0).tolist()], dtype=torch.int32)


def test_groups_skipped_when_empty_guard_each_group_not_its_length(tmp_path, monkeypatch):
    problem = make(tmp_path, "grouped", GROUPED, {"x": (["n", "h"], "float32"), "offsets": (["g"], "int32")},
                   {"y": (["n", "h"], "float32")}, [{"n": 16, "g": 4}],
                   axes={"n": {"type": "var"}, "h": {"type": "const", "value": 8}, "g": {"type": "var"}})
    match = traced_on(problem, {"offsets": offsets(3, 0, 9)}, monkeypatch)     # group 1 empty
    program = match.plan["programs"][0]["lines"]
    assert sum("return _fallback" in line for line in program) == 3    # one guard per group: empty or not
    solved = Solved(problem, render(problem, match))
    x = torch.randn(16, 8)
    assert not solved.fell_back([x, offsets(3, 0, 9)])
    assert not solved.fell_back([x, offsets(1, 0, 15)])     # other lengths, same branches: the kernels run
    for attack in [(3, 2, 9), (0, 0, 9), (3, 0, 0), (16, 0, 0)]:
        assert solved.fell_back([x, offsets(*attack)])


def test_nonzero_per_expert_with_continue_on_empty(tmp_path):
    reference = ("import torch\n\ndef run(x, ids):\n"
                 "    out = torch.zeros_like(x)\n"
                 "    for e in range(3):\n"
                 "        rows = torch.nonzero(ids == e).flatten()\n"
                 "        if rows.numel() == 0:\n"
                 "            continue\n"
                 "        out.index_add_(0, rows, torch.sigmoid(x[rows]) * (e + 2.0))\n"
                 "    return out\n")
    problem = make(tmp_path, "routed", reference, {"x": (["n", "h"], "float32"), "ids": (["n"], "int64")},
                   {"y": (["n", "h"], "float32")}, [{"n": 6}])
    match = fused(problem)
    solved = Solved(problem, render(problem, match))
    x = torch.randn(6, 8)
    choices = [torch.tensor(ids) for ids in ([0, 1, 2, 0, 1, 2], [0, 0, 0, 0, 0, 0], [1, 1, 2, 2, 1, 1],
                                             [5, 5, 5, 5, 5, 5], [0, 2, 0, 2, 2, 0], [1, 0, 1, 0, 1, 1])]
    fell = [solved.fell_back([x, ids]) for ids in choices]    # every one matches the reference
    assert not all(fell), "no routing took the example's branches"
    assert any(fell)


def test_an_assert_on_data_becomes_a_check_and_the_reference_raises(tmp_path, monkeypatch):
    reference = ("import torch\n\ndef run(x, indptr):\n"
                 "    assert indptr[-1].item() == x.shape[0]\n"
                 "    return torch.exp(x) * 0.5\n")
    problem = make(tmp_path, "asserting", reference, {"x": (["n", "h"], "float32"), "indptr": (["n"], "int32")},
                   {"y": (["n", "h"], "float32")}, [{"n": 3}])
    match = traced_on(problem, {"indptr": torch.tensor([0, 2, 3], dtype=torch.int32)}, monkeypatch)
    solved = Solved(problem, render(problem, match))
    x = torch.randn(3, 8)
    assert not solved.fell_back([x, torch.tensor([0, 1, 3], dtype=torch.int32)])
    with pytest.raises(AssertionError):    # the attack: the guard fails, the reference runs and raises
        solved.run(x, torch.tensor([0, 1, 2], dtype=torch.int32), torch.empty(3, 8))
    assert solved.fallbacks == 1


def test_a_lowering_that_ignores_the_guards_is_refused(tmp_path):
    reference = ("import torch\n\ndef run(x, flags):\n"
                 "    if flags[0].item() > 0:\n"
                 "        return x * 2.0\n"
                 "    return x + 1.0\n")
    problem = make(tmp_path, "ignored", reference, {"x": (["n", "h"], "float32"), "flags": (["n"], "int32")},
                   {"y": (["n", "h"], "float32")}, [{"n": 3}])
    seen = []

    def unguarded(capture, index):     # what a family that knows nothing of guards would return
        seen.append(capture.guards)
        return {"lines": ["return a0 * 2.0"]}
    traced = trace_programs(problem, unguarded)
    assert seen and seen[0] and not traced.programs
    assert "does not check" in traced.reasons[0]
