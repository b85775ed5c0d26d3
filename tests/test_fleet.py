"""kb batch --ray: four small tasks on a local Ray instance with CPU workers give the local batch's
leaderboard, and a Ray worker killed mid-batch loses no finished result (its task runs again)."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from kernelbench.core.settings import Settings
from kernelbench.core.store import Store
from kernelbench.eval.evaluator import EvalConfig
from kernelbench.jobs import leaderboard
from kernelbench.jobs.batch import run_batch
from kernelbench.jobs.fleet import RayExecutor
from tiny_problems import write_rmsnorm_problem

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray

FAST = dict(variants=["eager"], budget_s=0)   # no search, no torch.compile (~20 s a variant on CPU)
# what does not depend on timing noise (the CPU times, and so the scores, differ run to run)
STABLE_COLUMNS = ["task", "subset", "hardware", "workloads", "workloads_passed", "solution_hash", "language",
                  "audit_status", "status", "clock", "roofline_profile"]


def config() -> EvalConfig:
    return EvalConfig(device="cpu", rounds=1, timing={"warmup": 1, "iterations": 3}, workload_timeout_s=60,
                      build_timeout_s=60)


def batch(root: Path, db: Path, **options):
    return run_batch(root, settings=Settings(db=db), device="cpu", gpus=None, config=config(), out_dir=None,
                     **FAST, **options)


def results(db: Path) -> list[tuple]:
    if not db.is_file():
        return []
    with sqlite3.connect(db) as connection:   # WAL: reads while the driver writes
        try:
            return connection.execute("SELECT id, definition, created_at FROM results ORDER BY id").fetchall()
        except sqlite3.OperationalError:      # the driver has not created the tables yet
            return []


def running_task_pids() -> list[int]:
    """Ray workers executing optimize_task (Ray titles a busy worker ray::<function>)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes().startswith(b"ray::optimize_task"):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def wait_for(condition, timeout_s: float = 60):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


@pytest.fixture
def local_ray():
    executor = RayExecutor("local", num_cpus=2)
    executor.connect()   # here, in the main thread: the batch under test runs in another one
    yield executor
    ray.shutdown()


def test_ray_batch_gives_the_local_leaderboard_and_a_killed_worker_loses_no_finished_result(tmp_path, local_ray):
    root = tmp_path / "tasks"
    names = [f"00{i}_rms{hidden}" for i, hidden in enumerate((32, 64, 96, 128), start=1)]
    for name, hidden in zip(names, (32, 64, 96, 128)):
        write_rmsnorm_problem(root, name, hidden=hidden)
    local_db, ray_db = tmp_path / "local.db", tmp_path / "ray.db"
    outcome = {}
    # the local batch runs beside the Ray one (the Ray workers leave a core idle while they start)
    local = threading.Thread(target=lambda: outcome.update(local=batch(root, local_db, resume=False)))
    driver = threading.Thread(target=lambda: outcome.update(report=batch(root, ray_db, resume=False, executor=local_ray)))
    local.start()
    driver.start()
    [finished] = wait_for(lambda: results(ray_db)[:1])
    victim = wait_for(running_task_pids)[0]
    os.kill(victim, signal.SIGKILL)                      # a worker dies in the middle of a task
    driver.join(120)
    local.join(120)
    assert sorted(outcome["local"].done) == names
    report = outcome["report"]
    assert sorted(report.done) == names and not report.failed
    rows = results(ray_db)
    assert finished in rows                              # the result committed before the kill is intact
    assert sorted(r[1] for r in rows) == names           # one result per task: the killed try left nothing
    ours = leaderboard.task_table(Store(ray_db, read_only=True))
    theirs = leaderboard.task_table(Store(local_db, read_only=True))
    assert ours[STABLE_COLUMNS].equals(theirs[STABLE_COLUMNS])
    assert (ours["sol_score"] > 0).all() and (ours["geomean_t_b_ms"] > 0).all()

    again = batch(root, ray_db, resume=True, executor=local_ray)
    assert sorted(again.skipped) == names and not again.done
    assert len(results(ray_db)) == 4
