"""kb export / kb import: official files out, the same leaderboard back in; the official field rules."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from kernelbench.cli import main
from kernelbench.core import statuses
from kernelbench.core.problem import load_problem
from kernelbench.core.settings import Settings
from kernelbench.core.solution import Solution, Source
from kernelbench.core.store import Store
from kernelbench.eval.evaluator import EvalConfig, evaluate
from kernelbench.jobs import exchange, leaderboard
from kernelbench.jobs.baseline import measure_baseline
from kernelbench.jobs.batch import run_batch
from kernelbench.jobs.session import Session
from kernelbench.jobs.summary import Evaluated, record, summarize
from tiny_problems import write_rmsnorm_problem

FAST = dict(variants=["eager"], budget_s=0)   # no search, no torch.compile (~20 s a variant on CPU)
WRONG = "def run(x, weight, eps):\n    return x * 2\n"

VALID_SOLUTION = {
    "name": "rms_v1", "definition": "rms", "author": "me", "description": None,
    "spec": {"languages": ["triton"], "target_hardware": ["LOCAL"], "entry_point": "main.py::run",
             "dependencies": ["torch"], "destination_passing_style": False},
    "sources": [{"path": "main.py", "content": "def run(x):\n    return x\n"}],
}
VALID_TRACE = {
    "definition": "rms", "solution": "rms_v1",
    "workload": {"uuid": "w1", "axes": {"batch": 4}, "inputs": {"x": {"type": "random"}, "eps": {"type": "scalar", "value": 1e-5}}},
    "evaluation": {"status": "PASSED", "log": "", "timestamp": "2026-01-01T00:00:00Z",
                   "environment": {"hardware": "NVIDIA_B200", "libs": {"torch": "2.9"}},
                   "correctness": {"max_relative_error": 0.0, "max_absolute_error": 0.0},
                   "performance": {"latency_ms": 0.5, "reference_latency_ms": 1.0, "speedup_factor": 2.0}},
}


def config(**overrides):
    values = dict(device="cpu", rounds=2, timing={"warmup": 1, "iterations": 3}, workload_timeout_s=60, build_timeout_s=60)
    return EvalConfig(**{**values, **overrides})


def tables(db: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    store = Store(db, read_only=True)
    return leaderboard.task_table(store), leaderboard.workload_table(store)


@pytest.fixture(scope="module")
def filled_store(tmp_path_factory) -> Path:
    """Two optimized tasks, and one whose only result is a wrong solution (failed workloads with a known T_b)."""
    root = tmp_path_factory.mktemp("tasks")
    db = tmp_path_factory.mktemp("store") / "kb.db"
    write_rmsnorm_problem(root, "001_good")
    write_rmsnorm_problem(root, "002_good", subset="L2", hidden=32)
    report = run_batch(root, settings=Settings(db=db), device="cpu", gpus=None, resume=False, config=config(),
                       out_dir=None, **FAST)
    assert sorted(report.done) == ["001_good", "002_good"]
    problem = load_problem(write_rmsnorm_problem(root, "003_wrong"))
    session = Session.open(Settings(db=db), "cpu")
    t_b = measure_baseline(session, problem, config(), "wrong-run", ["eager"]).t_b
    wrong = Solution("doubled", problem.name, "main.py::run", (Source("main.py", WRONG),), destination_passing_style=False)
    session.store.record_solution(wrong)
    traces = evaluate(problem, wrong, config(), environment=session.trace_environment(), baseline_ms=t_b)
    session.store.record_traces(traces, wrong.content_hash, session.environment_id, "wrong-run")
    record(session, problem, Evaluated(wrong, traces, summarize(problem, wrong, traces, t_b, session)), "wrong-run")
    # a candidate the search screened and dropped: its solution has no trace, only its candidate row
    screened_out = Solution("screened_out", "001_good", "main.py::run", (Source("main.py", WRONG),),
                            destination_passing_style=False)
    run_id = next(r["run_id"] for r in session.store.results() if r["definition"] == "001_good")
    session.store.record_candidate("001_good", screened_out, {"source": "template", "family": "fused"}, run_id,
                                   "INCORRECT_NUMERICAL", {"rung": 0})
    return db


def test_export_then_import_into_a_fresh_store_gives_the_same_leaderboard(filled_store, tmp_path):
    out = tmp_path / "export"
    report = exchange.export_results(Store(filled_store, read_only=True), out)
    assert len(report.written) == 3 and not report.skipped
    for directory in report.written:
        assert not exchange.solution_violations(json.loads((directory / "solution.json").read_text()))
        traces = [json.loads(line) for line in (directory / "traces.jsonl").read_text().splitlines()]
        assert traces and not [v for t in traces for v in exchange.trace_violations(t)]
    wrong = [d for d in report.written if d.name == "003_wrong"][0]
    failed = json.loads((wrong / "traces.jsonl").read_text().splitlines()[0])["evaluation"]
    assert failed["status"] == statuses.INCORRECT_NUMERICAL and failed["performance"] is None
    assert wrong.parent.name == "L1" and report.written[0].parent.parent.parent == out  # OUT/<hardware>/<subset>/<task>

    fresh = tmp_path / "fresh.db"
    imported = exchange.import_results(Store(fresh), out)
    assert len(imported.imported) == 3 and not imported.skipped and not imported.warnings
    before, after = tables(filled_store), tables(fresh)
    pd.testing.assert_frame_equal(before[0], after[0])
    pd.testing.assert_frame_equal(before[1], after[1])
    # the failed task's T_b came back although its official traces carry no performance
    assert after[0].set_index("task").loc["003_wrong", "geomean_t_b_ms"] > 0
    again = exchange.import_results(Store(fresh), out)
    assert len(again.already) == 3 and not again.imported
    assert len(Store(fresh).results()) == 3


def test_import_of_official_run_dataset_output(tmp_path):
    """SOL-ExecBench's run_dataset layout: <category>/<problem>/{solution.json, traces.json}, first-format spec."""
    directory = tmp_path / "out" / "L1" / "rms"
    directory.mkdir(parents=True)
    solution = copy.deepcopy(VALID_SOLUTION)
    solution["spec"] = {"language": "python", "target_hardware": ["B200"], "entry_point": "main.py::run"}
    (directory / "solution.json").write_text(json.dumps(solution))
    second = copy.deepcopy(VALID_TRACE)
    second["workload"]["uuid"] = "w2"
    second["evaluation"]["performance"] = {"latency_ms": 1.0, "reference_latency_ms": 1.0, "speedup_factor": 1.0}
    (directory / "traces.json").write_text(json.dumps([VALID_TRACE, second]))
    report = exchange.import_results(Store(tmp_path / "kb.db"), tmp_path / "out")
    assert report.imported == ["rms (rms_v1)"] and not report.skipped
    row = leaderboard.task_table(Store(tmp_path / "kb.db", read_only=True)).iloc[0]
    assert (row["task"], row["subset"], row["hardware"], row["clock"], row["language"]) == \
        ("rms", "L1", "NVIDIA_B200", "cuda", "pytorch")
    assert row["sol_score"] == pytest.approx((1 / 1.5 + 0.5) / 2)   # no T_SOL: S = 1 / (1 + T_k / T_b)
    assert row["timestamp"].startswith("2026-01-01T00:00:00")


def test_gpu_traces_without_t_sol_get_it_from_the_roofline(tmp_path):
    problem = load_problem(write_rmsnorm_problem(tmp_path / "problems", "rms"))
    directory = tmp_path / "out" / "L1" / "rms"
    directory.mkdir(parents=True)
    (directory / "solution.json").write_text(json.dumps(VALID_SOLUTION))
    traces = []
    for workload in problem.workloads:
        trace = copy.deepcopy(VALID_TRACE)
        trace["workload"].update(uuid=workload.uuid, axes=workload.axes)
        traces.append(trace)
    (directory / "traces.json").write_text(json.dumps(traces))
    exchange.import_results(Store(tmp_path / "kb.db"), tmp_path / "out", problems_root=tmp_path / "problems")
    row = leaderboard.task_table(Store(tmp_path / "kb.db", read_only=True)).iloc[0]
    assert row["roofline_profile"] == "B200/datasheet" and 0 < row["geomean_t_sol_ms"] < 0.5
    per_workload = leaderboard.workload_table(Store(tmp_path / "kb.db", read_only=True))
    expected = [1 / (1 + (0.5 - t_sol) / (1.0 - t_sol)) for t_sol in per_workload["t_sol_ms"]]   # T_k 0.5, T_b 1.0
    assert row["sol_score"] == pytest.approx(sum(expected) / 2)
    # a GPU row goes out and back in unchanged too (T_SOL and binding unit from the traces and summary.json)
    exported = exchange.export_results(Store(tmp_path / "kb.db", read_only=True), tmp_path / "again")
    assert len(exported.written) == 1 and not exported.skipped
    exchange.import_results(Store(tmp_path / "back.db"), tmp_path / "again")
    pd.testing.assert_frame_equal(tables(tmp_path / "kb.db")[0], tables(tmp_path / "back.db")[0])
    pd.testing.assert_frame_equal(tables(tmp_path / "kb.db")[1], tables(tmp_path / "back.db")[1])
    elsewhere = exchange.import_results(Store(tmp_path / "other.db"), tmp_path / "out", problems_root=tmp_path / "nowhere")
    assert elsewhere.warnings == ["rms: no T_SOL (the problem is not under the problems root): scored with T_SOL = 0"]


def test_import_refuses_traces_that_break_the_official_rules(tmp_path):
    directory = tmp_path / "L1" / "rms"
    directory.mkdir(parents=True)
    (directory / "solution.json").write_text(json.dumps(VALID_SOLUTION))
    broken = copy.deepcopy(VALID_TRACE)
    broken["evaluation"]["performance"] = None   # PASSED without performance
    orphan = copy.deepcopy(VALID_TRACE)
    orphan["solution"] = "someone_else"
    (directory / "traces.jsonl").write_text(json.dumps(broken) + "\n" + json.dumps(orphan) + "\n")
    report = exchange.import_results(Store(tmp_path / "kb.db"), tmp_path)
    assert not report.imported
    assert "evaluation.performance: required when status is PASSED" in report.skipped[f"{directory / 'traces.jsonl'}:1"]
    assert "no solution named 'someone_else'" in report.skipped["rms (someone_else)"]


@pytest.mark.parametrize("mutate, message", [
    (lambda s: s.update(author=""), "author: must be a non-empty string"),
    (lambda s: s["spec"].update(languages=["python"]), "spec.languages: must list languages"),
    (lambda s: s["spec"].update(languages=["triton", "cuda_cpp"]), "cannot be mixed"),
    (lambda s: s["spec"].update(target_hardware=[]), "spec.target_hardware"),
    (lambda s: s["spec"].update(target_hardware=["H100"]), "spec.target_hardware"),
    (lambda s: s["spec"].update(entry_point="main.py:run"), "spec.entry_point"),
    (lambda s: s["spec"].update(entry_point="main.cu::run"), "Python languages need a .py entry file"),
    (lambda s: s["spec"].update(entry_point="other.py::run"), "is not among the sources"),
    (lambda s: s["spec"].update(binding="pybind"), "spec.binding"),
    (lambda s: s["sources"].append({"path": "../evil.py", "content": "x"}), "must be relative"),
    (lambda s: s["sources"].append({"path": "main.py", "content": "x"}), "repeats"),
    (lambda s: s["sources"].append({"path": "empty.py", "content": ""}), "needs a non-empty path and content"),
])
def test_solution_rules(mutate, message):
    assert exchange.solution_violations(VALID_SOLUTION) == []
    solution = copy.deepcopy(VALID_SOLUTION)
    mutate(solution)
    assert any(message in v for v in exchange.solution_violations(solution)), exchange.solution_violations(solution)


@pytest.mark.parametrize("mutate, message", [
    (lambda t: t.update(definition=""), "definition"),
    (lambda t: t["workload"].update(uuid=""), "workload.uuid"),
    (lambda t: t["workload"]["axes"].update(batch=-1), "workload.axes"),
    (lambda t: t["workload"]["inputs"].update(x={"type": "file"}), "workload.inputs.x.type"),
    (lambda t: t["workload"]["inputs"].update(x={"type": "safetensors", "path": "a"}), "tensor_key"),
    (lambda t: t["workload"]["inputs"].update(x={"type": "custom"}), "custom and other inputs cannot be mixed"),
    (lambda t: t["evaluation"].update(status="FAST"), "evaluation.status"),
    (lambda t: t["evaluation"]["environment"].update(hardware=""), "environment.hardware"),
    (lambda t: t["evaluation"]["environment"]["libs"].update(triton=None), "environment.libs"),
    (lambda t: t["evaluation"].update(timestamp=""), "evaluation.timestamp"),
    (lambda t: t["evaluation"].update(correctness=None), "evaluation.correctness: required"),
    (lambda t: t["evaluation"]["performance"].update(latency_ms=-1.0), "performance.latency_ms"),
    (lambda t: t["evaluation"]["performance"].update(reference_latency_ms=None), "reference_latency_ms"),
    (lambda t: t["evaluation"].update(status="RUNTIME_ERROR"), "evaluation.performance: must be null"),
])
def test_trace_rules(mutate, message):
    assert exchange.trace_violations(VALID_TRACE) == []
    trace = copy.deepcopy(VALID_TRACE)
    mutate(trace)
    assert any(message in v for v in exchange.trace_violations(trace)), exchange.trace_violations(trace)


def test_export_and_import_commands(filled_store, tmp_path):
    out, fresh = tmp_path / "out", tmp_path / "fresh.db"
    result = CliRunner().invoke(main, ["--db", str(filled_store), "export", "001_good", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert [p.parent.name for p in out.rglob("solution.json")] == ["001_good"]
    result = CliRunner().invoke(main, ["--db", str(fresh), "import", str(out)])
    assert result.exit_code == 0 and "1 imported" in result.output, result.output
    result = CliRunner().invoke(main, ["--db", str(filled_store), "export", "no_such_task", "--out", str(out)])
    assert result.exit_code == 2 and "no stored result for no_such_task" in result.output


def test_another_store_merges_into_one_leaderboard(filled_store, tmp_path):
    fresh = tmp_path / "fresh.db"
    result = CliRunner().invoke(main, ["--db", str(fresh), "import", str(filled_store)])
    assert result.exit_code == 0 and "3 imported" in result.output, result.output
    before, after = tables(filled_store), tables(fresh)
    pd.testing.assert_frame_equal(before[0], after[0])
    pd.testing.assert_frame_equal(before[1], after[1])
    for table in ("baselines", "candidates", "solutions"):   # a screened-out candidate comes with its solution
        count = f"SELECT COUNT(*) FROM {table}"
        assert Store(fresh).db.execute(count).fetchone() == \
            Store(filled_store, read_only=True).db.execute(count).fetchone(), table
    result = CliRunner().invoke(main, ["--db", str(fresh), "import", str(filled_store)])
    assert result.exit_code == 0 and "0 imported, 3 already in the store" in result.output, result.output
