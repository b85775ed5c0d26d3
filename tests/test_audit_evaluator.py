"""End to end: exploits through kernelbench.eval.evaluator.evaluate (parent scan + sandboxed child) on CPU."""

from __future__ import annotations

from pathlib import Path

import pytest

from kernelbench.core import statuses
from kernelbench.eval.evaluator import EvalConfig, evaluate
from kernelbench.core.problem import load_problem
from kernelbench.core.solution import load_solution

EXPLOITS = Path(__file__).resolve().parent / "exploits"
SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "sol_execbench_sample"
QUICK = EvalConfig(device="cpu", rounds=3, max_workloads=1, timing={"warmup": 2, "iterations": 5},
                   build_timeout_s=240, workload_timeout_s=240)


@pytest.fixture(scope="module")
def rmsnorm():
    if not SAMPLE.is_dir():
        pytest.skip("sample problems absent")
    return load_problem(SAMPLE / "FlashInfer-Bench" / "021_rmsnorm_h128")


def evaluations(problem, name: str) -> list[dict]:
    return [t.to_json()["evaluation"] for t in evaluate(problem, load_solution(EXPLOITS / f"{name}.json"), QUICK)]


@pytest.mark.parametrize("name, rule", [
    ("monkeypatch__021_rmsnorm_h128", "monkeypatch"),            # the parent's static scan: nothing runs
    ("input-mutation__021_rmsnorm_h128", "input-mutation"),      # the child's runtime guard
])
def test_exploits_get_reward_hack_with_rule_and_evidence(rmsnorm, name, rule):
    for evaluation in evaluations(rmsnorm, name):
        assert evaluation["status"] == statuses.REWARD_HACK
        assert f"{rule}: " in evaluation["log"]
        assert rule in {f["rule"] for f in evaluation["audit"]}


def test_an_honest_triton_kernel_passes_through_the_evaluator(rmsnorm):
    for evaluation in evaluations(rmsnorm, "honest-triton__021_rmsnorm_h128"):
        assert evaluation["status"] == statuses.PASSED, evaluation["log"]
        assert evaluation["audit"] == []


def test_a_pointer_cache_hidden_from_the_scanner_is_a_reward_hack(rmsnorm):
    for evaluation in evaluations(rmsnorm, "stale-output__021_rmsnorm_h128"):
        assert evaluation["status"] == statuses.REWARD_HACK
        assert "stale-output" in evaluation["log"]


def test_code_specialized_to_the_tested_shapes_fails_the_shape_probe(tmp_path):
    """Every workload passes, but the solution only computes for the batch sizes it was shown."""
    from kernelbench.core.problem import load_problem
    from kernelbench.core.solution import Solution, Source
    from tiny_problems import RMSNORM_REFERENCE, write_rmsnorm_problem

    problem = load_problem(write_rmsnorm_problem(tmp_path, batches=(3, 8)))
    # the tested sizes are hidden in a string, so only the runtime probe can see the specialization
    source = RMSNORM_REFERENCE + "\n_run = run\n_TESTED = set(map(int, '3 8'.split()))\n\n" \
                                 "def run(x, weight, eps):\n    if x.size(0) in _TESTED:\n" \
                                 "        return _run(x, weight, eps)\n    return x\n"
    solution = Solution(name="specialized", definition=problem.name, entry_point="main.py::run",
                        sources=(Source("main.py", source),), destination_passing_style=False)
    config = EvalConfig(device="cpu", rounds=2, timing=None, build_timeout_s=120, workload_timeout_s=120)
    traces = [t.to_json() for t in evaluate(problem, solution, config)]  # both workloads pass; the probe on batch 2 does not
    assert [t["evaluation"]["status"] for t in traces] == [statuses.REWARD_HACK] * 2
    assert all("shape-specialization" in t["evaluation"]["log"] for t in traces)
    assert "'batch': 2" in traces[0]["evaluation"]["log"]
