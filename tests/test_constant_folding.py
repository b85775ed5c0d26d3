"""Input-free subgraphs folded into constants when the program is generated
(kernelbench.generate.constant_folding): what is folded, what is left alone and why, and that the programs
that read a folded constant still match eager (Triton through the interpreter)."""

from __future__ import annotations

import torch
from test_family_fused import assert_all_pass, fused, make
from torch.fx.experimental.proxy_tensor import make_fx

from kernelbench.generate.constant_folding import fold_input_free


def folded(function, *example):
    module = make_fx(function, tracing_mode="fake")(*example)
    count = fold_input_free(module)
    module.graph.eliminate_dead_code()
    targets = [str(n.target) for n in module.graph.nodes if n.op == "call_function"]
    constants = [getattr(module, n.target) for n in module.graph.nodes if n.op == "get_attr"]
    return count, targets, constants


def test_an_index_built_from_fills_becomes_one_constant_of_its_exact_values():
    def section_gather(x):
        index = torch.cat([torch.full((2,), 1), torch.full((3,), 0), torch.arange(3) * 2 % 3])
        return x[index]
    count, targets, constants = folded(section_gather, torch.randn(4))
    assert count == 1 and targets == ["aten.index.Tensor"]
    assert constants[0].tolist() == [1, 1, 0, 0, 0, 0, 2, 1]


def test_views_of_a_folded_value_stay_views_of_the_constant():
    def viewed(x):
        return x * torch.cat([torch.full((2,), 1.0), torch.full((2,), 2.0)]).view(1, 4).expand(3, 4)
    count, targets, constants = folded(viewed, torch.randn(3, 4))
    assert count == 1 and constants[0].shape == (4,)
    assert "aten.view.default" in targets and "aten.expand.default" in targets


def test_random_values_floating_arithmetic_returned_values_and_inline_literals_are_left_alone():
    def left_alone(x):
        noise = torch.randint(0, 3, (5,))                 # a new draw every call
        scaled = torch.arange(5.0).exp()                 # the CPU may round exp differently than the GPU
        literal = torch.full((5,), 3.0)                  # read by an elementwise op: an inline literal already
        return x[noise] + scaled + literal, torch.cat([torch.full((2,), 1), torch.full((3,), 0)])  # returned
    count, targets, _ = folded(left_alone, torch.randn(5))
    assert count == 0
    assert {"aten.randint.low", "aten.exp.default", "aten.full.default", "aten.cat.default"} <= set(targets)


def test_a_base_that_a_scatter_updates_is_left_alone():
    def scattered(x):   # the kept constant would be written into by the scatter, call after call
        base = torch.cat([torch.zeros(3), torch.ones(2)])
        return base.scatter_add(0, torch.tensor([0, 0, 4]), x)
    count, targets, _ = folded(scattered, torch.randn(3))
    assert count == 0 and "aten.scatter_add.default" in targets


def test_a_folded_section_index_saves_its_launches_and_matches_eager(tmp_path):
    # multimodal RoPE's section index: column c of the table takes its position from axis index[c]
    reference = ("import torch\n\ndef run(x, pos):\n"
                 "    index = torch.cat([torch.full((n,), i % 3, dtype=torch.int64) for i, n in enumerate([2, 3, 3] * 2)])\n"
                 "    angle = pos.float().unsqueeze(-1) * torch.ones(16)\n"
                 "    table = torch.gather(angle, 0, index.view(1, 1, 16).expand(1, *angle.shape[1:])).squeeze(0)\n"
                 "    return (x.float() * table.cos()).to(x.dtype)\n")
    axes = {"n": {"type": "var"}, "three": {"type": "const", "value": 3}, "d": {"type": "const", "value": 16}}
    problem = make(tmp_path, "section_index", reference,
                   {"x": (["n", "d"], "bfloat16"), "pos": (["three", "n"], "int64")},
                   {"y": (["n", "d"], "bfloat16")}, [{"n": 2}, {"n": 5}], axes=axes)
    match = fused(problem)
    for program in match.plan["programs"]:
        text = "\n".join(program["lines"])
        assert "_constant(0" in text and "aten.full" not in text and "aten.cat" not in text, text
    assert_all_pass(problem, match)


def test_each_shapes_program_reads_its_own_folded_constant(tmp_path):
    # the folded index differs per traced shape: every program must index the constant made at its own shape
    reference = ("import torch\n\ndef run(x):\n"
                 "    return x[torch.arange(x.shape[0]).flip(0)] * 2\n")
    problem = make(tmp_path, "reversed_rows", reference, {"x": (["n", "h"], "float32")}, {"y": (["n", "h"], "float32")},
                   [{"n": 2}, {"n": 5}])
    match = fused(problem)
    texts = ["\n".join(p["lines"]) for p in match.plan["programs"]]
    assert all("_constant(" in t and "flip" not in t for t in texts), texts
    assert_all_pass(problem, match)
