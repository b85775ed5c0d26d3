"""The prompts render every branch: the roofline table or why it is missing, the best solution's code and
numbers, other tasks' winners and template seeds, and the feedback for each fate of an answer."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from kernelbench.core.problem import load_problem
from kernelbench.core.solution import Solution, Source
from kernelbench.generate.llm.prompts import Outcome, describe_best, evaluation_rows, feedback_prompt, task_prompt
from tiny_problems import write_rmsnorm_problem

KERNEL = "import triton\n\ndef run(x, weight, eps):\n    return x * weight  # the best so far\n"


@pytest.fixture(scope="module")
def problem(tmp_path_factory):
    return load_problem(write_rmsnorm_problem(tmp_path_factory.mktemp("tasks"), batches=(4, 16)))


def result(problem, score: float, t_k: float, status: str = "PASSED", audit: str = "clean"):
    rows = [{"uuid": w.uuid, "axes": w.axes, "status": status, "t_k_ms": t_k if status == "PASSED" else None, "t_b_ms": 2.0, "t_sol_ms": None,
             "fraction_of_sol": 0.25 if status == "PASSED" else None, "score": score if status == "PASSED" else None,
             "speedup_vs_baseline": 2.0 / t_k if status == "PASSED" else None, "log": "" if status == "PASSED" else "Traceback ...\nValueError: boom"}
            for w in problem.workloads]
    summary = {"sol_score": score, "audit_status": audit, "workloads": len(rows), "status": status,
               "workloads_passed": sum(r["status"] == "PASSED" for r in rows), "per_workload": rows}
    solution = Solution(name="triton_rmsnorm", definition=problem.name, entry_point="kernel.py::run",
                        sources=(Source("kernel.py", KERNEL),), languages=("triton",), destination_passing_style=False)
    return SimpleNamespace(solution=solution, summary=summary, provenance={"source": "template", "proposer": "rms v1"})


def test_the_task_prompt_shows_the_best_code_and_what_won_elsewhere(problem):
    labels = {w.uuid: str(w.axes) for w in problem.workloads}
    best = describe_best(result(problem, 0.7, 1.0), {problem.workloads[0].uuid: 0.5}, labels)
    winner = {"task": "007_other_rmsnorm", "score": "0.910", "hardware": "H100", "origin": "from llm, model-x",
              "sources": [Source("kernel.py", "def run(x, weight, eps):\n    return x  # elsewhere\n")]}
    seed = {"family": "rmsnorm", "config": '{"BLOCK": 1024}', "task": "003_rmsnorm", "shape_class": "small",
            "time_ms": "0.01", "gpu": "H100"}
    prompt = task_prompt(problem, problem.workloads, sols={}, roofline_error="CountError: no count", hardware="H100",
                         device="H100", best=best, winners=[winner], seeds=[seed], families=["rmsnorm"], rounds=3)
    assert "The roofline could not be computed: CountError: no count" in prompt
    assert "triton_rmsnorm (from template, rms v1): score S 0.700, 2/2 workloads passed; audit: clean" in prompt
    assert "Screening times (ms): {'batch': 4} 0.5" in prompt and "# the best so far" in prompt
    assert '| {"batch": 16} | - | - | - | - | 2 | 1 | 25.0% | 0.700 |' in prompt
    assert "### 007_other_rmsnorm: S 0.910 on H100, from llm, model-x" in prompt and "# elsewhere" in prompt
    assert 'template family rmsnorm with {"BLOCK": 1024} won on 003_rmsnorm (small: 0.01 ms on H100)' in prompt
    assert "You have 3 rounds" in prompt


def test_feedback_for_every_fate(problem):
    labels = {w.uuid: str(w.axes) for w in problem.workloads}
    before = describe_best(result(problem, 0.5, 2.0), None, labels)
    after = describe_best(result(problem, 0.8, 0.5), None, labels)
    told = {
        "parse": feedback_prompt(Outcome("parse", "UNPARSED", problems=["no code"]), before, 2),
        "audit": feedback_prompt(Outcome("audit", "REWARD_HACK", findings=["monkeypatch: kernel.py:3"]), before, 2),
        "screening": feedback_prompt(Outcome("screening", "COMPILE_ERROR", log="SyntaxError: x"), before, 1),
        "failed": feedback_prompt(Outcome("evaluation", "RUNTIME_ERROR", score="0.000", audit="clean",
                                          rows=evaluation_rows(result(problem, 0, 1.0, "RUNTIME_ERROR").summary, before),
                                          log="ValueError: boom"), before, 1),
        "faster": feedback_prompt(Outcome("evaluation", "PASSED", score="0.800", audit="clean", became_best=True,
                                          rows=evaluation_rows(result(problem, 0.8, 0.5).summary, before),
                                          screening="{'batch': 4} 0.4 vs 1.9"), after, 1),
        "repeat": feedback_prompt(Outcome("parse", "UNPARSED", problems=["no code"], repeat_of=1), before, 1),
    }
    assert "could not be used: no code" in told["parse"] and "2 rounds left" in told["parse"]
    assert "- monkeypatch: kernel.py:3" in told["audit"] and "never be chosen" in told["audit"]
    assert "failed screening with COMPILE_ERROR" in told["screening"] and "SyntaxError: x" in told["screening"]
    assert "failed with RUNTIME_ERROR" in told["failed"] and "ValueError: boom" in told["failed"]
    assert '| {"batch": 4} | RUNTIME_ERROR | - | 2 | - | - | - |' in told["failed"]
    assert "passed every workload; score S 0.800" in told["faster"] and "It is now the best solution (S 0.800)" in told["faster"]
    assert '| {"batch": 16} | PASSED | 0.5 | 2 | 4.00x | 25.0% | 0.800 |' in told["faster"]
    assert "yours against the best so far: {'batch': 4} 0.4 vs 1.9" in told["faster"]
    assert told["repeat"].startswith("This is the same solution as your answer in round 1")
    assert all("The best so far is still" in told[k] for k in ("parse", "audit", "screening", "failed"))
