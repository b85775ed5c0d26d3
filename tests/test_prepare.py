"""kb batch's preparation: every task's untimed work done ahead, in parallel, and never a reason to fail."""

from __future__ import annotations

import os
import threading

from kernelbench.core.settings import Settings
from kernelbench.eval.evaluator import EvalConfig
from kernelbench.generate import traced
from kernelbench.jobs import prepare as prepare_module
from kernelbench.jobs.batch import run_batch
from kernelbench.jobs.prepare import prepare
from tiny_problems import write_rmsnorm_problem


def test_on_a_gpu_each_task_is_planned_and_its_compiled_variants_run_once_untimed_in_parallel(tmp_path, monkeypatch):
    root = tmp_path / "tasks"
    directories = [write_rmsnorm_problem(root, f"00{i}_task") for i in (1, 2)]
    both_at_once = threading.Barrier(2, timeout=20)    # serial preparation would break it
    planned, evaluated = [], []

    def plan(problem, time_limit_s):
        both_at_once.wait()
        planned.append(problem.name)

    def evaluate(problem, solution, config):
        evaluated.append((problem.name, solution.name, config.rounds, config.timing,
                          os.environ.get("TORCHINDUCTOR_COMPILE_THREADS")))
        if problem.name == "002_task":
            raise RuntimeError("out of memory")
    monkeypatch.setattr(prepare_module, "plan_ahead", plan)
    monkeypatch.setattr(prepare_module, "evaluate", evaluate)
    monkeypatch.delenv("TORCHINDUCTOR_COMPILE_THREADS", raising=False)
    done = []
    prepared = prepare(directories, EvalConfig(device="cuda:0"), workers=2, on_done=done.append)
    assert sorted(planned) == ["001_task", "002_task"] and sorted(done) == ["001_task", "002_task"]
    first = [e for e in evaluated if e[0] == "001_task"]
    assert [e[1].rsplit("__", 1)[1] for e in first] == ["torch_compile_default", "torch_compile_reduce-overhead"]
    assert all(e[2:] == (1, None, "1") for e in evaluated)          # one round, untimed, one compile thread
    assert "TORCHINDUCTOR_COMPILE_THREADS" not in os.environ        # restored afterwards
    assert list(prepared.failed) == ["002_task"] and "out of memory" in prepared.failed["002_task"]


def test_a_batch_prepared_ahead_plans_in_children_and_scores_as_before(tmp_path, monkeypatch):
    root = tmp_path / "tasks"
    write_rmsnorm_problem(root, "001_good")
    write_rmsnorm_problem(root, "002_hangs", reference="def run(x, weight, eps):\n    while True:\n        pass\n")
    monkeypatch.setattr(traced, "_PLANS", {})
    children = []
    real_call = traced.call_in_child
    monkeypatch.setattr(traced, "call_in_child", lambda *a: children.append(a[0]) or real_call(*a))
    config = EvalConfig(device="cpu", rounds=2, timing={"warmup": 1, "iterations": 3}, workload_timeout_s=5,
                        build_timeout_s=30)
    report = run_batch(root, settings=Settings(db=str(tmp_path / "kb.db")), device="cpu", gpus=None, resume=False,
                       config=config, out_dir=None, variants=["eager"], budget_s=0, prepare_workers=2)
    assert children == [f"{traced.__name__}:plans_of_all"] * 2     # planned ahead once each, not again by the run
    assert sorted(report.done) == ["001_good", "002_hangs"] and report.prepare_s > 0
    assert report.scores["001_good"] >= 0.5 and report.scores["002_hangs"] == 0
