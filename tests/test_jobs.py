"""The three jobs end to end on CPU: optimize, batch (with broken tasks) and the leaderboard."""

from __future__ import annotations

import csv
import json

from click.testing import CliRunner

from kernelbench.core import statuses
from kernelbench.core.settings import Settings
from kernelbench.jobs.batch import run_batch
from kernelbench.cli import main
from kernelbench.eval.evaluator import EvalConfig
from kernelbench.jobs.optimize import optimize
from kernelbench.core.problem import load_problem
from kernelbench.jobs.session import Session, definition_hash
from tiny_problems import RMSNORM_REFERENCE, write_rmsnorm_problem

SEGFAULT = "import faulthandler\n\ndef run(x, weight, eps):\n    faulthandler._sigsegv()\n"  # a real SIGSEGV
FAST = dict(variants=["eager"], budget_s=0)  # no search: these tests are about the jobs, not the generator


def config(**overrides):
    values = dict(device="cpu", rounds=2, timing={"warmup": 1, "iterations": 3}, workload_timeout_s=60,
                  build_timeout_s=60)
    return EvalConfig(**{**values, **overrides})


def test_optimize_scores_the_reference_near_one_half(tmp_path):
    problem = load_problem(write_rmsnorm_problem(tmp_path / "tasks"))
    session = Session.open(Settings(db=tmp_path / "kb.db"), "cpu")
    scores = []
    for _ in range(2):
        result = optimize(session, problem, config(), out_dir=tmp_path / "out", **FAST)
        assert result.best is not None and result.best.ranked
        summary = result.best.summary
        assert summary["workloads_passed"] == 2 and summary["clock"] == "cpu"
        scores.append(summary["sol_score"])
    # On CPU T_b is measured in the same run as T_k: the eager reference against itself scores 0.5 exactly,
    # run after run (a T_b stored from another run scored it 0.604, then 0.392, on a noisy CPU clock).
    assert scores == [0.5, 0.5]
    written = json.loads((tmp_path / "out" / problem.name / "solution.json").read_text())
    assert written["spec"]["entry_point"] == "reference.py::run"
    stored = session.store.baselines(definition_hash(problem), session.environment_id)
    assert set(stored) == {w.uuid for w in problem.workloads}


def test_batch_survives_broken_tasks_and_resumes(tmp_path):
    root = tmp_path / "tasks"
    write_rmsnorm_problem(root, "001_good")
    write_rmsnorm_problem(root, "002_segfault", reference=SEGFAULT)
    write_rmsnorm_problem(root, "003_hangs", reference="def run(x, weight, eps):\n    while True:\n        pass\n")
    broken = write_rmsnorm_problem(root, "004_malformed")
    (broken / "workload.jsonl").write_text('{"uuid": "x", "axes": {}}\n')
    db = str(tmp_path / "kb.db")
    report = run_batch(root, settings=Settings(db=db), device="cpu", gpus=None, resume=False, config=config(workload_timeout_s=5, build_timeout_s=5),
                       out_dir=None, **FAST)
    assert sorted(report.done) == ["001_good", "002_segfault", "003_hangs"]
    assert list(report.failed) == ["004_malformed"] and "var axis has no value" in report.failed["004_malformed"]
    assert report.scores["001_good"] > 0 and report.scores["002_segfault"] == 0 == report.scores["003_hangs"]
    session = Session.open(Settings(db=db), "cpu")
    results = {r["definition"]: r for r in session.store.results()}
    traces = {t["definition"]: t["status"] for t in session.store.traces()}
    assert results["001_good"]["status"] == statuses.PASSED
    assert traces["002_segfault"] == statuses.RUNTIME_ERROR and traces["003_hangs"] == statuses.TIMEOUT
    again = run_batch(root, settings=Settings(db=db), device="cpu", gpus=None, resume=True, config=config(), out_dir=None,
                      **FAST)
    assert sorted(again.skipped) == ["001_good", "002_segfault", "003_hangs"] and not again.done


def test_leaderboard_csv_columns_and_flagged_rows(tmp_path):
    root = tmp_path / "tasks"
    write_rmsnorm_problem(root, "001_good")
    db = str(tmp_path / "kb.db")
    run_batch(root, settings=Settings(db=db), device="cpu", gpus=None, resume=False, config=config(), out_dir=None, **FAST)
    session = Session.open(Settings(db=db), "cpu")
    session.store.record_result("002_flagged", "L1", None, session.environment_id, "test", statuses.REWARD_HACK, 0.9,
                                {"hardware": "cpu", "audit_status": "REWARD_HACK: output-cache", "workloads": 1,
                                 "workloads_passed": 1, "status": statuses.REWARD_HACK, "per_workload": []})
    out = tmp_path / "board.csv"
    result = CliRunner().invoke(main, ["--db", db, "leaderboard", "--csv", str(out)])
    assert result.exit_code == 0, result.output
    rows = {r["task"]: r for r in csv.DictReader(out.open())}
    assert list(rows["001_good"])[:11] == ["task", "subset", "hardware", "workloads", "workloads_passed",
                                           "geomean_t_k_ms", "geomean_t_b_ms", "geomean_t_sol_ms", "sol_score",
                                           "fraction_of_sol", "speedup_vs_baseline"]
    assert float(rows["001_good"]["sol_score"]) > 0
    assert float(rows["002_flagged"]["sol_score"]) == 0.0  # never ranked, and the reason is shown
    assert rows["002_flagged"]["audit_status"] == "REWARD_HACK: output-cache"
    html = tmp_path / "board.html"
    assert CliRunner().invoke(main, ["--db", db, "leaderboard", "--html", str(html)]).exit_code == 0
    assert "data:image/png;base64," in html.read_text() and "001_good" in html.read_text()
    long = tmp_path / "long.csv"
    assert CliRunner().invoke(main, ["--db", db, "leaderboard", "--per-workload", "--csv", str(long)]).exit_code == 0
    assert len(list(csv.DictReader(long.open()))) == 2


def test_batch_only_selects_by_glob(tmp_path):
    from kernelbench.jobs.batch import select_tasks

    for name in ("001_a", "002_b"):
        write_rmsnorm_problem(tmp_path, name)
    write_rmsnorm_problem(tmp_path, "001_c", subset="L2")
    assert [d.name for d in select_tasks(tmp_path, ("L1/00*",))] == ["001_a", "002_b"]
    assert [d.name for d in select_tasks(tmp_path, ("*/001_*",))] == ["001_a", "001_c"]


def test_eval_cli_prints_json_traces(tmp_path):
    problem_dir = write_rmsnorm_problem(tmp_path / "tasks")
    solution = tmp_path / "solution.json"
    solution.write_text(json.dumps({"name": "ref", "definition": "001_tiny_rmsnorm", "spec": {
        "languages": ["pytorch"], "entry_point": "main.py::run", "destination_passing_style": False},
        "sources": [{"path": "main.py", "content": RMSNORM_REFERENCE}]}))
    result = CliRunner().invoke(main, ["--db", str(tmp_path / "kb.db"), "eval", str(problem_dir), "--solution",
                                       str(solution), "--device", "cpu", "--workloads", "1", "--rounds", "2",
                                       "--warmup", "1", "--iterations", "3", "--json"])
    assert result.exit_code == 0, result.output
    traces = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert len(traces) == 1 and traces[0]["evaluation"]["status"] == statuses.PASSED


def test_bad_task_name_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("KB_TASKS_ROOT", str(tmp_path))
    result = CliRunner().invoke(main, ["--db", str(tmp_path / "kb.db"), "optimize", "no_such_task"])
    assert result.exit_code == 2 and "no problem directory or task named 'no_such_task'" in result.output
