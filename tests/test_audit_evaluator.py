"""End to end: exploits through kernelbench.evaluator.evaluate (parent scan + sandboxed child) on CPU."""

from __future__ import annotations

from pathlib import Path

import pytest

from kernelbench import statuses
from kernelbench.evaluator import EvalConfig, evaluate
from kernelbench.problem import load_problem
from kernelbench.solution import load_solution

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
    return [t["evaluation"] for t in evaluate(problem, load_solution(EXPLOITS / f"{name}.json"), QUICK)]


@pytest.mark.parametrize("name, rule", [
    ("monkeypatch__021_rmsnorm_h128", "monkeypatch"),            # the parent's static scan: nothing runs
    ("input-mutation__021_rmsnorm_h128", "input-mutation"),      # the child's runtime guard
])
def test_exploits_get_reward_hack_with_rule_and_evidence(rmsnorm, name, rule):
    for evaluation in evaluations(rmsnorm, name):
        assert evaluation["status"] == statuses.REWARD_HACK
        assert f"{rule}: " in evaluation["log"]
        assert rule in {f["rule"] for f in evaluation["audit"]}


def test_an_honest_triton_kernel_passes_through_the_evaluator(rmsnorm, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    for evaluation in evaluations(rmsnorm, "honest-triton__021_rmsnorm_h128"):
        assert evaluation["status"] == statuses.PASSED, evaluation["log"]
        assert evaluation["audit"] == []


@pytest.mark.xfail(strict=False, reason="the worker reports a failed same-address probe as INCORRECT_NUMERICAL; "
                                        "audit.checks.check_same_address turns it into stale-output (REWARD_HACK)")
def test_a_pointer_cache_hidden_from_the_scanner_is_a_reward_hack(rmsnorm):
    for evaluation in evaluations(rmsnorm, "stale-output__021_rmsnorm_h128"):
        assert evaluation["status"] == statuses.REWARD_HACK
        assert "stale-output" in evaluation["log"]
