"""Store: the pinned schema, idempotent migrations, WAL mode, and nothing lost to a kill -9."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from kernelbench.core import store as store_module
from kernelbench.core.solution import Solution, Source
from kernelbench.core.settings import Settings
from kernelbench.core.trace import Trace
from kernelbench.core.store import MIGRATIONS, Store, StoreError

# The final schema after every migration. Changing an applied migration, or adding one, changes
# this text: update the pin only together with a NEW migration appended to MIGRATIONS.
PINNED_SCHEMA = """CREATE TABLE baselines (
            id INTEGER PRIMARY KEY,
            definition TEXT NOT NULL,
            definition_hash TEXT NOT NULL,
            workload_uuid TEXT NOT NULL,
            environment_id INTEGER NOT NULL REFERENCES environments(id),
            variant TEXT NOT NULL,              -- eager | compile | cudagraphs
            latency_ms REAL,                    -- NULL when the variant failed
            status TEXT NOT NULL,
            created_at REAL NOT NULL,
            UNIQUE (definition_hash, workload_uuid, environment_id, variant)
        )
CREATE TABLE candidates (
            id INTEGER PRIMARY KEY,
            definition TEXT NOT NULL,
            solution_hash TEXT NOT NULL REFERENCES solutions(hash),
            source TEXT NOT NULL,               -- baseline | template | llm | user
            family TEXT,                        -- template family, or NULL
            parameters TEXT NOT NULL,           -- JSON: the configuration rendered
            parent_hash TEXT,                   -- the candidate this one was derived from
            proposer TEXT,                      -- model name, template version, user
            run_id TEXT,
            status TEXT,                        -- screening or evaluation outcome
            screening TEXT,                     -- JSON: per-workload screening times and statuses
            created_at REAL NOT NULL
        )
CREATE TABLE environments (
            id INTEGER PRIMARY KEY,
            fingerprint TEXT NOT NULL UNIQUE,   -- hash of what makes timings comparable
            hardware TEXT NOT NULL,
            device TEXT NOT NULL,               -- cuda | cpu
            data TEXT NOT NULL,                 -- JSON: libs, driver, clocks at first sight
            created_at REAL NOT NULL
        )
CREATE TABLE knowledge (
            id INTEGER PRIMARY KEY,
            family TEXT NOT NULL,
            family_version TEXT NOT NULL,
            dtypes TEXT NOT NULL,               -- the problem's input and output dtypes, in order
            shape_class TEXT NOT NULL,
            gpu TEXT NOT NULL,                  -- canonical hardware name, or cpu
            config TEXT NOT NULL,               -- JSON: the winning configuration
            time_ms REAL NOT NULL,              -- its screening time on the class's workload
            definition TEXT NOT NULL,           -- the task it won on
            created_at REAL NOT NULL,
            UNIQUE (family, family_version, dtypes, shape_class, gpu, definition)
        )
CREATE TABLE llm_exchanges (
            id INTEGER PRIMARY KEY,
            definition TEXT NOT NULL,
            run_id TEXT NOT NULL,
            model TEXT NOT NULL,
            round INTEGER NOT NULL,
            families TEXT NOT NULL,             -- JSON: the task's families (template families, op_type)
            prompt TEXT NOT NULL,               -- JSON: the chat messages sent
            response TEXT,                      -- the model's answer; NULL when the call failed
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            latency_s REAL,
            attempts INTEGER,                   -- HTTP requests made (retries included)
            error TEXT,                         -- why the call failed or the answer could not be parsed
            candidate_hash TEXT,                -- the solution the answer became
            stage TEXT NOT NULL,                -- how far it got: call | parse | audit | screening | evaluation
            status TEXT NOT NULL,               -- its fate there: CALL_FAILED, UNPARSED, a screening or trace status
            detail TEXT,                        -- JSON: screening times, evaluation summary, audit findings
            created_at REAL NOT NULL
        )
CREATE TABLE migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)
CREATE TABLE problems (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            subset TEXT NOT NULL,
            path TEXT,
            definition_hash TEXT NOT NULL,
            num_workloads INTEGER NOT NULL,
            created_at REAL NOT NULL,
            UNIQUE (name, definition_hash)
        )
CREATE TABLE results (
            id INTEGER PRIMARY KEY,
            definition TEXT NOT NULL,
            subset TEXT NOT NULL,
            solution_hash TEXT REFERENCES solutions(hash),
            environment_id INTEGER REFERENCES environments(id),
            run_id TEXT NOT NULL,
            status TEXT NOT NULL,               -- PASSED when every workload passed
            sol_score REAL NOT NULL,
            data TEXT NOT NULL,                 -- JSON summary: per-workload T_k, T_b, T_SOL, scores
            created_at REAL NOT NULL
        )
CREATE TABLE solutions (
            hash TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            definition TEXT NOT NULL,
            language TEXT NOT NULL,
            author TEXT NOT NULL,
            data TEXT NOT NULL,                 -- the solution.json
            created_at REAL NOT NULL
        )
CREATE TABLE traces (
            id INTEGER PRIMARY KEY,
            definition TEXT NOT NULL,
            solution_hash TEXT NOT NULL REFERENCES solutions(hash),
            workload_uuid TEXT NOT NULL,
            status TEXT NOT NULL,
            latency_ms REAL,
            reference_latency_ms REAL,
            sol_ms REAL,
            environment_id INTEGER REFERENCES environments(id),
            run_id TEXT,
            data TEXT NOT NULL,                 -- the trace in the official schema
            created_at REAL NOT NULL
        )
CREATE TABLE training_runs (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL,               -- one kb train invocation (all its seeds)
            benchmark TEXT NOT NULL,            -- fixed-budget | speedrun
            candidate TEXT NOT NULL,            -- the candidate file's stem
            candidate_hash TEXT NOT NULL,       -- sha256 of its source
            config_hash TEXT NOT NULL,          -- what makes runs comparable (budget, data, hardware, target...)
            seed INTEGER NOT NULL,
            status TEXT NOT NULL,
            val_bpb REAL,
            val_loss REAL,
            time_to_target_s REAL,              -- speedrun; NULL when the target was not reached
            train_s REAL,
            data TEXT NOT NULL,                 -- JSON: the full result and the configuration
            created_at REAL NOT NULL
        )
CREATE INDEX candidates_by_definition ON candidates (definition, run_id)
CREATE INDEX llm_exchanges_by_definition ON llm_exchanges (definition, run_id)
CREATE INDEX results_by_definition ON results (definition, created_at)
        
CREATE INDEX traces_by_definition ON traces (definition, solution_hash)
        
CREATE INDEX training_runs_by_candidate ON training_runs (benchmark, candidate_hash, config_hash)"""


def test_schema_pin(tmp_path):
    store = Store(tmp_path / "kb.db")
    assert store.schema() == PINNED_SCHEMA
    store.close()


def test_migrations_recorded_and_idempotent(tmp_path):
    path = tmp_path / "kb.db"
    first = Store(path)
    first.record_result("d", "L1", None, None, "run-1", "PASSED", 1.0, {"k": 1})
    names = first.applied_migrations()
    assert names == [m.name for m in MIGRATIONS] == sorted(names)   # tracked by name, in order
    first.close()
    second = Store(path)  # opening again applies nothing and keeps the data
    assert second.schema() == PINNED_SCHEMA
    assert second.applied_migrations() == names
    assert len(second.results()) == 1
    second.migrate()
    assert second.db.execute("SELECT COUNT(*) FROM migrations").fetchone()[0] == len(MIGRATIONS)
    second.close()


def test_two_open_connections(tmp_path):
    a, b = Store(tmp_path / "kb.db"), Store(tmp_path / "kb.db")
    a.record_result("d", "L1", None, None, "r", "PASSED", 0.5, {})
    assert len(b.results()) == 1
    a.close()
    b.close()


def test_wal_mode(tmp_path):
    store = Store(tmp_path / "kb.db")
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()
    raw = sqlite3.connect(tmp_path / "kb.db")  # WAL is persistent in the file
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    raw.close()


def test_db_path_from_the_environment_only_at_the_edge(tmp_path):
    environ = {"KB_DB": str(tmp_path / "from_env.db")}
    assert Settings.from_environment(environ).db == tmp_path / "from_env.db"
    assert Settings.from_environment(environ, db=tmp_path / "explicit.db").db == tmp_path / "explicit.db"
    assert Settings.from_environment({}).db == Path("kernelbench.db")


def test_missing_parent_directory_is_an_error_not_created(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        Store(tmp_path / "a" / "b" / "kb.db")
    assert not (tmp_path / "a").exists()


def test_corrupt_file_is_one_error_naming_the_path_and_untouched(tmp_path):
    path = tmp_path / "kb.db"
    path.write_bytes(b"this is not a database" * 100)
    before = path.read_bytes()
    for read_only in (False, True):
        with pytest.raises(StoreError) as info:
            Store(path, read_only=read_only)
        assert str(path) in str(info.value)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["kb.db"]


def test_read_only_open_never_creates_a_file(tmp_path):
    with pytest.raises(StoreError, match="no store here"):
        Store(tmp_path / "kb.db", read_only=True)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_location_is_one_error_naming_the_path(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    # root writes through permissions: /proc takes no new files from anyone
    target = locked / "kb.db" if not os.access(locked, os.W_OK) else Path("/proc/kernelbench-test.db")
    try:
        with pytest.raises(StoreError) as info:
            Store(target)
        assert str(target) in str(info.value)
    finally:
        locked.chmod(0o700)


def test_read_only_store_reads_results(tmp_path):
    writer = Store(tmp_path / "kb.db")
    writer.record_result("d", "L1", None, None, "run-1", "PASSED", 1.0, {"k": 1})
    writer.close()
    reader = Store(tmp_path / "kb.db", read_only=True)
    assert len(reader.results()) == 1
    with pytest.raises(sqlite3.OperationalError):
        reader.record_result("d", "L1", None, None, "run-2", "PASSED", 1.0, {})
    reader.close()


def test_records_round_trip(tmp_path):
    store = Store(tmp_path / "kb.db")
    solution = Solution(name="s", definition="d", entry_point="k.py::run", sources=(Source("k.py", "x=1"),),
                        author="me")
    digest = store.record_solution(solution)
    assert digest == solution.content_hash
    assert store.record_solution(solution) == digest  # content-hashed: stored once
    assert store.db.execute("SELECT COUNT(*) FROM solutions").fetchone()[0] == 1
    env = store.environment_id({"gpu": "H100"}, "NVIDIA H100", "cuda", {"torch": "2"})
    assert store.environment_id({"gpu": "H100"}, "NVIDIA H100", "cuda", {"torch": "2"}) == env
    store.record_problem("d", "L1", "/x", "hash", 4)
    store.record_problem("d", "L1", "/x", "hash", 4)
    assert store.db.execute("SELECT COUNT(*) FROM problems").fetchone()[0] == 1
    trace = Trace.from_json({"definition": "d", "workload": {"uuid": "w1", "axes": {}, "inputs": {}},
                             "evaluation": {"status": "PASSED", "environment": {}, "timestamp": "2026-12-06T00:00:00Z",
                                            "performance": {"latency_ms": 1.5, "reference_latency_ms": 3.0}}})
    store.record_traces([trace], digest, env, "run-1")
    [row] = store.traces("d", "run-1")
    assert row["status"] == "PASSED" and row["latency_ms"] == 1.5 and json.loads(row["data"]) == trace.to_json()
    assert store.latest_traces("d", digest, env) == {"w1": trace}
    store.record_baseline("d", "hash", "w1", env, "eager", 3.0, "PASSED")
    store.record_baseline("d", "hash", "w1", env, "eager", 2.5, "PASSED")  # replaced, not duplicated
    store.record_baseline("d", "hash", "w1", env, "compile", None, "RUNTIME_ERROR")
    assert store.baselines("hash", env) == {"w1": {"eager": 2.5, "compile": None}}
    store.record_result("d", "L1", digest, env, "run-1", "PASSED", 0.7, {"w1": 0.7})
    [result] = store.results()
    assert result["sol_score"] == 0.7 and result["language"] == "pytorch" and result["hardware"] == "NVIDIA H100"
    assert store.finished_definitions(env) == {"d"}
    store.close()


def test_failed_transaction_rolls_back(tmp_path):
    store = Store(tmp_path / "kb.db")
    with pytest.raises(RuntimeError):
        with store.transaction() as db:
            db.execute("INSERT INTO results (definition, subset, run_id, status, sol_score, data, created_at) "
                       "VALUES ('d', 'L1', 'r', 'PASSED', 1, '{}', 0)")
            raise RuntimeError("boom")
    assert store.results() == []
    store.close()


CHILD = textwrap.dedent("""
    import sys, time
    from kernelbench.core.store import Store
    store = Store(sys.argv[1])
    for i in range(10000):
        store.record_result("defn", "L1", None, None, "run-kill", "PASSED", float(i), {"i": i})
        print(i, flush=True)   # printed only after the commit returned
        time.sleep(0.005)
""")


def test_kill_9_loses_nothing_committed(tmp_path):
    path = tmp_path / "kb.db"
    Store(path).close()
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, cwd=str(Path(store_module.__file__).parents[2]))  # the repository root
    reported = []
    try:
        deadline = time.monotonic() + 30
        while len(reported) < 8 and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            reported.append(int(line))
        assert len(reported) >= 8, child.stderr.read()
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        # lines the child printed before dying were committed too
        reported += [int(line) for line in child.stdout.read().split()]
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    assert reported == list(range(len(reported)))
    store = Store(path)
    saved = [int(row["sol_score"]) for row in store.results()]
    store.close()
    assert set(reported) <= set(saved)
    assert saved == list(range(len(saved)))            # no hole, no torn row
    assert len(saved) <= len(reported) + 1              # at most the one in flight when killed


def test_concurrent_first_open_does_not_apply_a_migration_twice(tmp_path, monkeypatch):
    path = tmp_path / "kb.db"
    original = Store.transaction
    raced = []

    def transaction_after_another_process_migrated(self):
        if not raced:
            raced.append(True)
            Store(path).close()  # another process finishes migrating between our read and our BEGIN
        return original(self)

    monkeypatch.setattr(Store, "transaction", transaction_after_another_process_migrated)
    store = Store(path)
    assert store.schema() == PINNED_SCHEMA
    store.close()
