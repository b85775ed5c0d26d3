"""The grouped_gemm family: a reference that loops over experts, multiplying the rows between consecutive
offsets by each expert's weight, becomes one kernel for all groups (Triton through the interpreter); the
offsets are read on the device, so uneven, empty and even overlapping groups (offsets out of order) give the
reference's answer without falling back to it, and a skipped branch that does work is refused.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kernelbench.core.inputs import generate_inputs
from kernelbench.core.problem import load_problem
from kernelbench.core.reference import compile_reference
from kernelbench.core.solution import load_entry_point, materialize
from kernelbench.core.statuses import PASSED
from kernelbench.generate.family import FAMILIES

from family_checks import family_match
from test_family_fused import check
from tiny_problems import write_grouped_problem

SMALL_TILES = {"block_m": 16, "block_n": 16, "block_k": 16, "num_warps": 2, "num_stages": 2}

ROUTED_SCALE = '''

@torch.no_grad()
def run(x, w, offsets, scale):
    out = x.new_empty(x.shape[0], w.shape[1])
    bounds = offsets.tolist()
    for e in range(w.shape[0]):
        lo, hi = bounds[e], bounds[e + 1]
        if hi == lo:
            continue
        out[lo:hi] = torch.mm(x[lo:hi].float(), w[e].float().t()).to(x.dtype)
    return (out.float() * scale[:, None]).to(x.dtype)
'''


def grouped(tmp_path, name, **kwargs):
    problem = load_problem(write_grouped_problem(tmp_path, name, **kwargs))
    return dataclasses.replace(problem, directory=None)   # matched in this process


def matched(problem):
    return family_match("grouped_gemm", problem)


def entry(problem, config=None):
    family = FAMILIES["grouped_gemm"]
    solution = family.render(matched(problem), config or SMALL_TILES)
    return solution, load_entry_point(solution, materialize(solution))


def reference_and_ours(problem, run, inputs):
    """The reference's output and ours (into a NaN-filled destination) on the same inputs."""
    expected = compile_reference(problem.definition).run(*[t.clone() for t in inputs])
    got = torch.full_like(expected, float("nan"))
    assert run(*inputs, got) is None
    return expected, got


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_uneven_and_empty_groups_at_two_expert_counts(tmp_path, dtype):
    # 13 rows over 3 experts, 5 rows over 7 (most experts empty): one program per shape, one kernel for both
    problem = grouped(tmp_path, f"gate_up_{dtype}", dtype=dtype)
    solution, run = entry(problem)
    match = matched(problem)
    assert sorted(p["groups"] for p in match.plan["programs"]) == [3, 7] and len(match.plan["kernels"]) == 1
    for seed in (1, 2, 3):   # other routings than the traced examples': no branch guard to fall back on
        for workload in problem.workloads:
            comparison = check(problem, solution, workload, seed=seed, run=run)
            assert comparison.status == PASSED, (workload.axes, seed, comparison.message)
    source = solution.sources[0].content
    programs = source.split("def _shape0")[1].split("_BY_SHAPE")[0]
    assert "_fallback(" not in programs and ".tolist()" not in programs and ".item()" not in programs   # no host sync
    if dtype == "float32":
        assert 'input_precision="ieee"' in source   # fp32 as the reference: no TF32


def test_a_routing_scale_after_the_loop_is_the_epilogue(tmp_path):
    problem = grouped(tmp_path, "routed", run_source=ROUTED_SCALE, shapes=((17, 4),))
    match = matched(problem)
    assert "epilogue op" in match.summary and any("tl.load(E0" in line for line in match.plan["kernels"][0]["body"])
    solution, run = entry(problem, {**SMALL_TILES, "block_m": 32})
    for seed in (1, 4):
        assert check(problem, solution, problem.workloads[0], seed=seed, run=run).status == PASSED


EXPERT_MLP = '''
import torch.nn.functional as F


@torch.no_grad()
def run(x, w, offsets, scale, w2):
    out = torch.empty_like(x)
    bounds = offsets.tolist()
    for e in range(w.shape[0]):
        lo, hi = bounds[e], bounds[e + 1]
        if hi == lo:
            continue
        gate, up = F.linear(x[lo:hi], w[e]).chunk(2, dim=-1)
        y = F.linear(F.silu(gate) * up, w2[e])
        out[lo:hi] = (y.float() * scale[lo:hi, None]).to(out.dtype)
    return out
'''


@pytest.mark.parametrize("dtype", ["float32", pytest.param("bfloat16", marks=pytest.mark.slow)])   # bf16: ~30 s
def test_an_expert_mlp_is_two_grouped_launches(tmp_path, dtype):
    # gate | up product, SwiGLU of its two column halves, down product, a routing scale of the group's rows:
    # one launch per product (the first with paired accumulators), the intermediate at the rows' own positions
    problem = grouped(tmp_path, f"mlp_{dtype}", run_source=EXPERT_MLP, dtype=dtype, down=True)
    match = matched(problem)
    assert all(len(p["launches"]) == 2 for p in match.plan["programs"])
    assert sorted(len(k["accumulators"]) for k in match.plan["kernels"]) == [1, 2]
    axes = problem.axes_for(problem.workloads[0])   # 13 rows: gate | up 20 x 24, then down 24 x 10
    assert FAMILIES["grouped_gemm"].traffic(match, axes).flops == 2.0 * 13 * (20 * 24 + 24 * 10)
    solution, run = entry(problem)
    for seed in (1, 2):
        for workload in problem.workloads:
            comparison = check(problem, solution, workload, seed=seed, run=run)
            assert comparison.status == PASSED, (workload.axes, seed, comparison.message)
    # offsets out of order: overlapping groups through both launches, each row the last group's
    x, w, offsets, scale, w2 = generate_inputs(problem, problem.workloads[0], seed=3,
                                               reference_module=compile_reference(problem.definition))
    shuffled = torch.tensor([0, 9, 4, 13], dtype=torch.int32)   # group 1 empty (9:4), group 2 overwrites 4..8
    expected, got = reference_and_ours(problem, run, [x, w, shuffled, scale, w2])
    assert torch.allclose(got.float(), expected.float(), atol=2e-2, rtol=2e-2)


def test_column_slices_of_a_product_are_its_pieces(tmp_path):
    # gate and up as column slices (`h[:, :n]`, `h[:, n:]`) instead of a chunk
    sliced = EXPERT_MLP.replace("gate, up = F.linear(x[lo:hi], w[e]).chunk(2, dim=-1)",
                                "h = F.linear(x[lo:hi], w[e])\n"
                                "        gate, up = h[:, :h.shape[1] // 2], h[:, h.shape[1] // 2:]")
    assert sliced != EXPERT_MLP
    problem = grouped(tmp_path, "sliced", run_source=sliced, dtype="float32", down=True, shapes=((11, 3),))
    assert sorted(len(k["accumulators"]) for k in matched(problem).plan["kernels"]) == [1, 2]
    solution, run = entry(problem)
    assert check(problem, solution, problem.workloads[0], seed=4, run=run).status == PASSED


def test_the_offsets_decide_the_result(tmp_path):
    # attack-style: a kernel that ignored the offsets (or cached a routing) fails here. The routing is changed at
    # run time (all rows in one expert, all in another, shuffled so groups overlap and some are skipped) and
    # every answer must be the reference's for those very offsets.
    problem = grouped(tmp_path, "offsets", dtype="float32", shapes=((12, 4),))
    _, run = entry(problem)
    workload = problem.workloads[0]
    x, w, offsets, scale = generate_inputs(problem, workload, seed=5,
                                           reference_module=compile_reference(problem.definition))
    routings = [torch.tensor([0, 12, 12, 12, 12]), torch.tensor([0, 0, 0, 12, 12]),
                torch.tensor([0, 7, 2, 12, 5]),    # group 1 skipped (2 < 7), groups 0 and 2 overlap: the later wins
                torch.tensor([3, 3, 9, 9, 11])]    # rows outside every group: left alone by both
    answers = []
    for routing in routings:
        inputs = [x, w, routing.to(torch.int32), scale]
        expected, got = reference_and_ours(problem, run, inputs)
        written = ~torch.isnan(got).all(dim=1)
        covered = torch.zeros(12, dtype=torch.bool)
        for e in range(4):
            lo, hi = routing[e].item(), routing[e + 1].item()
            covered[lo:hi] |= hi > lo
        assert torch.equal(written, covered), routing                     # exactly the rows some group writes
        assert torch.allclose(got[covered], expected[covered], atol=1e-4, rtol=1e-4), routing
        answers.append(got[covered])
    assert not torch.allclose(answers[0], answers[1])   # the same rows, another expert: another answer


def test_a_skipped_branch_that_works_is_refused(tmp_path):
    # the empty group's branch counts into the result: dropping its guard would be wrong, so no program
    works = '''

@torch.no_grad()
def run(x, w, offsets, scale):
    out = x.new_empty(x.shape[0], w.shape[1])
    bounds = offsets.tolist()
    for e in range(w.shape[0]):
        start, end = bounds[e], bounds[e + 1]
        if end > start:
            out[start:end] = x[start:end] @ w[e].t()
        else:
            scale = scale * 2
    return (out.float() * scale[:, None]).to(x.dtype)
'''
    family = FAMILIES["grouped_gemm"]
    assert family.match(grouped(tmp_path, "works", run_source=works, shapes=((9, 3),))) is None
    assert "does work of its own" in family.last_rejection


def test_an_ordinary_gemm_is_not_grouped(tmp_path):
    plain = '''

def run(x, w, offsets, scale):
    return x @ w[0].t()
'''
    family = FAMILIES["grouped_gemm"]
    assert family.match(grouped(tmp_path, "plain", run_source=plain, shapes=((9, 3),))) is None
    assert "reads no tensor values" in family.last_rejection


@pytest.mark.slow
def test_benchmark_dry_run(tmp_path):
    """benchmarks/family_grouped_gemm.py's CPU side: its shapes run through the interpreter and checked."""
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, str(root / "benchmarks" / "family_grouped_gemm.py"), str(tmp_path),
                             "--dry-run", "--configs", "2"], capture_output=True, text=True, timeout=1200,
                            env={**os.environ, "PYTHONPATH": str(root)})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    rows = json.loads((tmp_path / "family_grouped_gemm.json").read_text())["rows"]
    assert len(rows) == 2 and all(len(r["ours"]) == 2 and not r["errors"] for r in rows)
