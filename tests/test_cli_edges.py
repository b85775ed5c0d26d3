"""The sharp edges a new user hits, each with the behaviour that replaced it (issue 9)."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner

import kernelbench.cli.jobs as jobs
from kernelbench.cli import main
from tiny_problems import RMSNORM_REFERENCE, write_rmsnorm_problem

FAST = ["--device", "cpu", "--rounds", "2", "--warmup", "1", "--iterations", "2"]


def kb(*args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env, catch_exceptions=False)


def write_solution(path, source, dps=False, language="pytorch"):
    path.write_text(json.dumps({"name": "mine", "definition": "001_tiny_rmsnorm", "author": "me", "spec": {
        "languages": [language], "entry_point": "main.py::run", "destination_passing_style": dps},
        "sources": [{"path": "main.py", "content": source}]}))
    return path


@pytest.fixture
def task(tmp_path):
    return write_rmsnorm_problem(tmp_path / "tasks")


def test_timeout_bounds_the_first_workload_too(tmp_path, task):
    """A looping solution with --timeout 10 ends as TIMEOUT in under a minute (the build has its own limit)."""
    looping = write_solution(tmp_path / "loop.json", "def run(x, weight, eps):\n    while True:\n        pass\n")
    started = time.monotonic()
    result = kb("--db", tmp_path / "kb.db", "eval", task, "--solution", looping, "--timeout", 10, "--workloads", 1,
                "--json", *FAST)
    elapsed = time.monotonic() - started
    assert result.exit_code == 0, result.output
    [trace] = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert trace["evaluation"]["status"] == "TIMEOUT" and elapsed < 60


def test_import_that_hangs_is_bounded_by_the_build_timeout(tmp_path, task):
    hangs = write_solution(tmp_path / "hang.json", "while True:\n    pass\n\ndef run(x, weight, eps):\n    return x\n")
    started = time.monotonic()
    result = kb("--db", tmp_path / "kb.db", "eval", task, "--solution", hangs, "--build-timeout", 5, "--json", *FAST)
    statuses = [json.loads(line)["evaluation"]["status"] for line in result.output.splitlines() if line.startswith("{")]
    assert statuses == ["TIMEOUT", "TIMEOUT"] and time.monotonic() - started < 60   # one build, not one per workload


@pytest.mark.parametrize("source, shown", [
    ("def run(x, weight, eps):\n    raise ValueError('boom')\n", "ValueError: boom (at main.py"),
    ("def other(x, weight, eps):\n    return x\n", "defines no callable 'run'"),
])
def test_the_table_shows_the_solutions_own_error(tmp_path, task, source, shown):
    result = kb("--db", tmp_path / "kb.db", "eval", task, "--solution", write_solution(tmp_path / "s.json", source),
                "--workloads", 1, *FAST)
    assert result.exit_code == 0, result.output
    assert shown in result.output


def test_triton_on_cpu_needs_no_setup(tmp_path, task, monkeypatch):
    """The evaluator's child picks Triton's interpreter itself: no TRITON_INTERPRET in the user's environment."""
    from test_screening import TRITON_RMSNORM

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    solution = write_solution(tmp_path / "t.json", TRITON_RMSNORM, dps=True, language="triton")
    result = kb("--db", tmp_path / "kb.db", "eval", task, "--solution", solution, "--workloads", 1, "--json", *FAST)
    [trace] = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert trace["evaluation"]["status"] == "PASSED", trace["evaluation"]["log"]


def test_eval_shows_tb_and_score_and_records_an_entry(tmp_path, task):
    solution = write_solution(tmp_path / "s.json", RMSNORM_REFERENCE)
    db = tmp_path / "kb.db"
    result = kb("--db", db, "eval", task, "--solution", solution, "--record", *FAST)
    assert result.exit_code == 0, result.output
    assert "T_b (ms)" in result.output and "S of the task" in result.output and "recorded as a leaderboard entry" in result.output
    board = tmp_path / "board.csv"
    assert kb("--db", db, "leaderboard", "--csv", board).exit_code == 0
    [row] = board.read_text().splitlines()[1:]
    assert row.startswith("001_tiny_rmsnorm,L1,")


def test_read_only_commands_create_no_store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KB_DB", raising=False)
    result = kb("leaderboard")
    assert result.exit_code == 2 and "kernelbench.db: no store here yet" in result.output
    assert list(tmp_path.iterdir()) == []


def test_corrupt_store_is_one_line_and_untouched(tmp_path, task):
    db = tmp_path / "kb.db"
    db.write_bytes(b"garbage" * 1000)
    for args in (["leaderboard"], ["eval", task, "--solution", write_solution(tmp_path / "s.json", RMSNORM_REFERENCE),
                                   *FAST]):
        result = kb("--db", db, *args)
        assert result.exit_code == 2 and str(db) in result.output and "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) == 1
    assert db.read_bytes() == b"garbage" * 1000


def test_store_in_a_missing_directory_is_an_error(tmp_path, task):
    db = tmp_path / "nowhere" / "kb.db"
    result = kb("--db", db, "eval", task, "--solution", write_solution(tmp_path / "s.json", RMSNORM_REFERENCE), *FAST)
    assert result.exit_code == 2 and "does not exist" in result.output and not (tmp_path / "nowhere").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_without_cuda_is_a_clear_error(tmp_path, task):
    result = kb("--db", tmp_path / "kb.db", "eval", task, "--solution",
                write_solution(tmp_path / "s.json", RMSNORM_REFERENCE), "--device", "cuda")
    assert result.exit_code == 2 and "no usable CUDA GPU" in result.output and "Traceback" not in result.output


def test_batch_prints_one_line_per_finished_task_when_piped(tmp_path):
    root = tmp_path / "tasks"
    for name in ("001_first_task_with_a_long_name_that_a_narrow_table_would_cut", "002_second"):
        write_rmsnorm_problem(root, name)
    result = kb("--db", tmp_path / "kb.db", "batch", root, "--budget", 0, *FAST)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("L1/")]
    assert [line.split(":")[0] for line in lines] == ["L1/001_first_task_with_a_long_name_that_a_narrow_table_would_cut",
                                                      "L1/002_second"]


def test_cpu_defaults_keep_a_batch_practical(monkeypatch, tmp_path, task):
    """On CPU, unless asked otherwise: 3 rounds, 2 + 10 iterations and no search (the interpreter's times rank
    nothing a GPU would); what the user passes wins."""
    seen = []
    monkeypatch.setattr(jobs, "run_batch", lambda root, **kw: seen.append(kw) or SimpleNamespace(done=[], skipped=[],
                                                                                                   failed={}))
    for extra in ([], ["--rounds", "5", "--iterations", "7", "--budget", "30"]):
        seen.clear()
        kb("--db", tmp_path / "kb.db", "batch", task.parent, "--device", "cpu", *extra)
        config, budget = seen[0]["config"], seen[0]["budget_s"]
        got = (config.rounds, config.timing["warmup"], config.timing["iterations"], budget)
        assert got == ((3, 2, 10, 0.0) if not extra else (5, 2, 7, 30.0))
