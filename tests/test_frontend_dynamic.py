"""References whose sizes depend on tensor values (`.item()` offsets, `nonzero`, `bincount`): traced once with
unbacked symbols, the fused family's program must hold for any data at the traced input shapes. Each render
is run (Triton through the interpreter) on fresh inputs whose data-dependent sizes differ from call to call,
and compared with the reference.
"""

from __future__ import annotations

import itertools
import re

import torch
from test_family_fused import fused, make, render

from kernelbench.core.correctness import as_output_list
from kernelbench.core.dtypes import torch_dtype
from kernelbench.core.reference import compile_reference
from kernelbench.core.solution import load_entry_point, materialize

SEEDS = range(4)


def random_offsets(total: int, segments: int, generator: torch.Generator) -> torch.Tensor:
    """cu_seqlens: `segments` non-empty runs covering `total` tokens, cut at random."""
    cuts = torch.randperm(total - 1, generator=generator)[:segments - 1].add(1).sort().values
    return torch.cat([torch.tensor([0]), cuts, torch.tensor([total])]).to(torch.int32)


def assert_matches_reference(problem, solution, inputs_for) -> set:
    """The solution against the reference on each workload, with each seed's inputs (inputs_for(generator,
    axes)); returns the data-dependent sizes seen (a test asserts they vary, or it proves nothing about
    fresh data)."""
    module = compile_reference(problem.definition)
    run = load_entry_point(solution, materialize(solution))
    seen = set()
    for seed, workload in itertools.product(SEEDS, problem.workloads):
        axes = problem.axes_for(workload)
        inputs, size = inputs_for(torch.Generator().manual_seed(seed), axes)
        seen.add(size)
        expected = as_output_list(module.run(*[t.clone() for t in inputs]), len(problem.definition.outputs))
        got = [torch.full(problem.shape_of(s, axes), float("nan")).to(torch_dtype(s.dtype))
               for s in problem.definition.outputs.values()]
        assert run(*inputs, *got) is None
        for g, e in zip(got, expected):
            torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-4, msg=f"seed {seed}, size {size}")
    return seen


def kernels_and_lines(match, program: int = 0) -> tuple[int, str]:
    """The kernels a program launches (its own and those deduplicated into an earlier program's), its lines."""
    lines = match.plan["programs"][program]["lines"]
    launched = {m.group(1) for line in lines if (m := re.match(r"\s*_lean\((_s\d+_k\w+)\)\[", line))}
    return len(launched), "\n".join(lines)


def test_segments_sliced_by_offsets_read_with_item_int_and_tolist(tmp_path):
    reference = ("import torch\n\ndef run(x, cu_seqlens):\n"
                 "    y = torch.tanh(x) * 3.0\n"
                 "    bounds = cu_seqlens.tolist()\n"
                 "    means = []\n"
                 "    for i in range(cu_seqlens.shape[0] - 1):\n"
                 "        start, end = int(cu_seqlens[i]), bounds[i + 1]\n"
                 "        length = (cu_seqlens[i + 1] - cu_seqlens[i]).item()\n"
                 "        means.append(y[start:end].mean(0) * float(cu_seqlens[i]) + length)\n"
                 "    return torch.stack(means) * 0.5\n")
    problem = make(tmp_path, "varlen", reference, {"x": (["t", "h"], "float32"), "cu_seqlens": (["b1"], "int32")},
                   {"y": (["b", "h"], "float32")}, [{"t": 13, "b": 3}],
                   axes={"t": {"type": "var"}, "h": {"type": "const", "value": 8}, "b": {"type": "var"},
                         "b1": {"type": "expr", "expression": "b + 1"}})
    match = fused(problem)
    kernels, lines = kernels_and_lines(match)
    assert kernels >= 1 and "_local_scalar_dense" in lines        # tanh * 3 fused; the offsets read at run time

    def inputs(generator, axes):
        cu = random_offsets(13, 3, generator)
        return [torch.randn(13, 8, generator=generator), cu], tuple(cu.tolist())
    assert len(assert_matches_reference(problem, render(problem, match), inputs)) > 1


def test_rows_picked_by_nonzero_and_a_boolean_mask(tmp_path):
    reference = ("import torch\n\ndef run(x, keep):\n"
                 "    scaled = x * 1.5 + 0.25\n"
                 "    rows = torch.nonzero(keep).flatten()\n"
                 "    added = torch.zeros_like(scaled).index_add(0, rows, torch.relu(scaled[rows]))\n"
                 "    masked = scaled[keep].sum(0)\n"
                 "    return torch.sigmoid(added) + masked\n")
    problem = make(tmp_path, "masked", reference, {"x": (["n", "h"], "float32"), "keep": (["n"], "bool")},
                   {"y": (["n", "h"], "float32")}, [{"n": 11}, {"n": 13}])
    match = fused(problem)
    kernels, lines = kernels_and_lines(match, program=1)   # the kernels it shares with the first were deduplicated
    # the affine head, the relu of the picked rows (a kernel told its element count at run time), the tail
    assert kernels == 3 and "nonzero" in lines and ".shape[0]) > 0:" in lines

    def inputs(generator, axes):
        keep = torch.rand(axes["n"], generator=generator) < 0.5
        return [torch.randn(axes["n"], 8, generator=generator), keep], int(keep.sum())
    assert len(assert_matches_reference(problem, render(problem, match), inputs)) > 1
    # a size read from the data syncs with the host: such a program never replays as a CUDA graph
    assert all(p["reads_data"] for p in match.plan["programs"])
    graphed = render(problem, match, {"block": 64, "num_warps": 1, "graph": True}).sources[0].content
    assert "_UNGRAPHED = (_shape0, _shape1, )" in graphed


def test_moe_counts_from_bincount_and_repeat_interleave(tmp_path):
    reference = ("import torch\n\nEXPERTS = 4\n\ndef run(x, ids):\n"
                 "    order = torch.sort(ids, stable=True).indices\n"
                 "    counts = torch.bincount(ids, minlength=EXPERTS)\n"
                 "    offsets = torch.cat([counts.new_zeros(1), counts.cumsum(0)])\n"
                 "    experts = torch.arange(counts.shape[0])\n"
                 "    expert_of_row = torch.repeat_interleave(experts, counts, output_size=ids.shape[0])\n"
                 "    routed = torch.nn.functional.silu(x[order]) * (expert_of_row.float() + 1.0).unsqueeze(1)\n"
                 "    return routed * 2.0, offsets.to(torch.int32)\n")
    problem = make(tmp_path, "moe", reference, {"x": (["n", "h"], "float32"), "ids": (["n"], "int64")},
                   {"y": (["n", "h"], "float32"), "offsets": (["e1"], "int32")}, [{"n": 9}],
                   axes={"n": {"type": "var"}, "h": {"type": "const", "value": 8}, "e1": {"type": "const", "value": 5}})
    match = fused(problem)
    kernels, lines = kernels_and_lines(match)
    assert kernels >= 1 and "bincount" in lines and "repeat_interleave" in lines

    def inputs(generator, axes):
        ids = torch.randint(0, 4, (9,), generator=generator)
        return [torch.randn(9, 8, generator=generator), ids], tuple(torch.bincount(ids, minlength=4).tolist())
    assert len(assert_matches_reference(problem, render(problem, match), inputs)) > 1


def test_a_size_assumed_positive_is_checked_and_the_reference_runs_where_it_is_not(tmp_path):
    # logsumexp asks whether its input is empty: traced with the window width assumed >= 1, the program
    # checks that width at run time and hands an empty window to the reference
    reference = ("import torch\n\ndef run(x, lengths):\n"
                 "    window = (x * 2.0)[:, :int(lengths.max())]\n"
                 "    return torch.sigmoid(torch.logsumexp(window, dim=1))\n")
    problem = make(tmp_path, "window", reference, {"x": (["n", "h"], "float32"), "lengths": (["n"], "int64")},
                   {"y": (["n"], "float32")}, [{"n": 5}])
    match = fused(problem)
    kernels, lines = kernels_and_lines(match)
    assert kernels >= 1 and "return _fallback(a0, a1, o0)" in lines

    def inputs(generator, axes):
        lengths = torch.randint(1, 9, (5,), generator=generator) if generator.initial_seed() else torch.zeros(5).long()
        return [torch.randn(5, 8, generator=generator), lengths], int(lengths.max())
    assert 0 in assert_matches_reference(problem, render(problem, match), inputs)
