"""The SQLite store: problems, solutions (content-hashed), traces, baselines, environments, results.

WAL mode and one committed transaction per finished item, so a kill -9 of any command loses
nothing that had finished. The schema only ever grows by appending to MIGRATIONS; a test pins
the final schema so an edit to an applied migration is caught.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from kernelbench.core.errors import KernelBenchError
from kernelbench.core.trace import Trace


@dataclass(frozen=True)
class Migration:
    name: str
    statements: tuple[str, ...]


# Applied in order, each once, recorded by name in `migrations`. Never edit one that has shipped:
# append a new one (tests/test_store.py pins the resulting schema).
MIGRATIONS: tuple[Migration, ...] = (
    Migration("0001_initial", (
        """
        CREATE TABLE environments (
            id INTEGER PRIMARY KEY,
            fingerprint TEXT NOT NULL UNIQUE,   -- hash of what makes timings comparable
            hardware TEXT NOT NULL,
            device TEXT NOT NULL,               -- cuda | cpu
            data TEXT NOT NULL,                 -- JSON: libs, driver, clocks at first sight
            created_at REAL NOT NULL
        )
        """,
        """
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
        """,
        """
        CREATE TABLE solutions (
            hash TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            definition TEXT NOT NULL,
            language TEXT NOT NULL,
            author TEXT NOT NULL,
            data TEXT NOT NULL,                 -- the solution.json
            created_at REAL NOT NULL
        )
        """,
        """
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
        """,
        """
        CREATE INDEX traces_by_definition ON traces (definition, solution_hash)
        """,
        """
        CREATE TABLE baselines (
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
        """,
        """
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
        """,
        """
        CREATE INDEX results_by_definition ON results (definition, created_at)
        """,
    )),
    Migration("0002_candidates", (
        """
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
        """,
        "CREATE INDEX candidates_by_definition ON candidates (definition, run_id)",
    )),
    Migration("0003_knowledge", (
        """
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
        """,
    )),
    Migration("0004_llm_log", (
        """
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
        """,
        "CREATE INDEX llm_exchanges_by_definition ON llm_exchanges (definition, run_id)",
    )),
    Migration("0005_training_runs", (
        """
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
        """,
        "CREATE INDEX training_runs_by_candidate ON training_runs (benchmark, candidate_hash, config_hash)",
    )),
)


def json_hash(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


class StoreError(KernelBenchError):
    """The store cannot be opened or used: the message names the path and the reason."""


class Store:
    """One connection to the store. `read_only` opens an existing file without ever writing to it."""

    def __init__(self, path: str | os.PathLike, *, read_only: bool = False):
        self.path = Path(path)
        self.read_only = read_only
        if read_only and not self.path.is_file():
            raise StoreError(f"{self.path}: no store here yet (nothing was recorded; pass --db or set KB_DB)")
        if not read_only and not self.path.parent.is_dir():
            raise StoreError(f"{self.path}: the directory {self.path.parent} does not exist")
        try:
            if read_only:
                self.db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=60,
                                          isolation_level=None, check_same_thread=False)
            else:
                self.db = sqlite3.connect(str(self.path), timeout=60, isolation_level=None, check_same_thread=False)
            self.db.row_factory = sqlite3.Row
            if read_only:
                self.db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()   # fails on a file that is no database
                self._check_schema()
            else:
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")
                self.db.execute("PRAGMA foreign_keys=ON")
                self.migrate()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot use this store: {exc}") from None

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def migrate(self) -> None:
        with self.transaction() as db:
            db.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
        for migration in MIGRATIONS:
            with self.transaction() as db:  # BEGIN IMMEDIATE: concurrent openers apply each migration once
                if db.execute("SELECT 1 FROM migrations WHERE name = ?", (migration.name,)).fetchone():
                    continue
                for statement in migration.statements:
                    db.execute(statement)
                db.execute("INSERT INTO migrations VALUES (?, ?)", (migration.name, time.time()))

    def applied_migrations(self) -> list[str]:
        return [row[0] for row in self.db.execute("SELECT name FROM migrations ORDER BY name")]

    def _check_schema(self) -> None:
        """A read-only opener cannot migrate: the file must already have every migration."""
        try:
            applied = set(self.applied_migrations())
        except sqlite3.OperationalError:
            raise StoreError(f"{self.path}: not a kernelbench store (no migrations table)") from None
        missing = [m.name for m in MIGRATIONS if m.name not in applied]
        if missing:
            raise StoreError(f"{self.path}: written by an older kernelbench (lacks {', '.join(missing)}); "
                             f"open it once with a command that records (kb eval, kb optimize) to upgrade it")

    def schema(self) -> str:
        rows = self.db.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY type DESC, name")
        return "\n".join(row[0] for row in rows)

    # ------------------------------------------------------------ writes

    def environment_id(self, fingerprint_data: dict, hardware: str, device: str, data: dict) -> int:
        fingerprint = json_hash(fingerprint_data)
        with self.transaction() as db:
            db.execute("INSERT OR IGNORE INTO environments (fingerprint, hardware, device, data, created_at) "
                       "VALUES (?, ?, ?, ?, ?)", (fingerprint, hardware, device, json.dumps(data), time.time()))
            return db.execute("SELECT id FROM environments WHERE fingerprint = ?", (fingerprint,)).fetchone()[0]

    def record_problem(self, name: str, subset: str, path: str | None, definition_hash: str, num_workloads: int) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR IGNORE INTO problems (name, subset, path, definition_hash, num_workloads, created_at) "
                       "VALUES (?, ?, ?, ?, ?, ?)", (name, subset, path, definition_hash, num_workloads, time.time()))

    def record_solution(self, solution) -> str:
        with self.transaction() as db:
            db.execute("INSERT OR IGNORE INTO solutions VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (solution.content_hash, solution.name, solution.definition, solution.language,
                        solution.author, json.dumps(solution.to_json()), time.time()))
        return solution.content_hash

    def record_traces(self, traces: list[Trace], solution_hash: str, environment_id: int | None, run_id: str) -> None:
        """Evaluated traces, kept in the official JSON (with the latencies as columns for queries)."""
        with self.transaction() as db:
            for trace in traces:
                evaluation = trace.evaluation
                performance = evaluation.performance
                db.execute(
                    "INSERT INTO traces (definition, solution_hash, workload_uuid, status, latency_ms, "
                    "reference_latency_ms, sol_ms, environment_id, run_id, data, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (trace.definition, solution_hash, trace.workload.uuid, str(evaluation.status),
                     performance.latency_ms if performance else None,
                     performance.reference_latency_ms if performance else None,
                     performance.sol_latency_ms if performance else None, environment_id, run_id,
                     json.dumps(trace.to_json()), time.time()))

    def record_baseline(self, definition: str, definition_hash: str, workload_uuid: str, environment_id: int,
                        variant: str, latency_ms: float | None, status: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO baselines (definition, definition_hash, workload_uuid, environment_id, "
                       "variant, latency_ms, status, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (definition, definition_hash, workload_uuid, environment_id, variant, latency_ms, status, time.time()))

    def record_result(self, definition: str, subset: str, solution_hash: str | None, environment_id: int | None,
                      run_id: str, status: str, sol_score: float, data: dict, created_at: float | None = None) -> None:
        """`created_at` keeps the time of a result recorded elsewhere (kb import); default: now."""
        with self.transaction() as db:
            db.execute("INSERT INTO results (definition, subset, solution_hash, environment_id, run_id, status, "
                       "sol_score, data, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (definition, subset, solution_hash, environment_id, run_id, status, sol_score,
                        json.dumps(data), time.time() if created_at is None else created_at))

    # ------------------------------------------------------------ reads

    def baselines(self, definition_hash: str, environment_id: int) -> dict[str, dict[str, float | None]]:
        """workload uuid -> {variant: latency_ms or None}."""
        out: dict[str, dict[str, float | None]] = {}
        for row in self.db.execute("SELECT workload_uuid, variant, latency_ms FROM baselines "
                                   "WHERE definition_hash = ? AND environment_id = ?", (definition_hash, environment_id)):
            out.setdefault(row["workload_uuid"], {})[row["variant"]] = row["latency_ms"]
        return out

    def results(self) -> list[sqlite3.Row]:
        return self.db.execute("SELECT r.*, e.hardware, e.device, s.language FROM results r "
                               "LEFT JOIN environments e ON e.id = r.environment_id "
                               "LEFT JOIN solutions s ON s.hash = r.solution_hash ORDER BY r.id").fetchall()

    def traces(self, definition: str | None = None, run_id: str | None = None) -> list[sqlite3.Row]:
        query, args = "SELECT * FROM traces WHERE 1=1", []
        if definition:
            query, args = query + " AND definition = ?", args + [definition]
        if run_id:
            query, args = query + " AND run_id = ?", args + [run_id]
        return self.db.execute(query + " ORDER BY id", args).fetchall()

    def record_candidate(self, definition: str, solution, provenance: dict, run_id: str, status: str | None,
                         screening: dict | None) -> None:
        self.record_solution(solution)
        with self.transaction() as db:
            db.execute("INSERT INTO candidates (definition, solution_hash, source, family, parameters, parent_hash, "
                       "proposer, run_id, status, screening, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (definition, solution.content_hash, provenance["source"], provenance.get("family"),
                        json.dumps(provenance.get("parameters") or {}), provenance.get("parent"),
                        provenance.get("proposer"), run_id, status, json.dumps(screening) if screening else None,
                        time.time()))

    def candidates(self, definition: str, *, run_id: str | None = None,
                   solution_hash: str | None = None) -> list[sqlite3.Row]:
        """Candidates recorded for a task (with their provenance and fate), oldest first."""
        query, args = "SELECT * FROM candidates WHERE definition = ?", [definition]
        for column, value in (("run_id", run_id), ("solution_hash", solution_hash)):
            if value:
                query, args = query + f" AND {column} = ?", args + [value]
        return self.db.execute(query + " ORDER BY id", args).fetchall()

    def record_knowledge(self, family: str, version: str, dtypes: str, shape_class: str, gpu: str, config: dict,
                         time_ms: float, definition: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO knowledge (family, family_version, dtypes, shape_class, gpu, config, "
                       "time_ms, definition, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (family, version, dtypes, shape_class, gpu, json.dumps(config, sort_keys=True), time_ms,
                        definition, time.time()))

    def knowledge(self, gpu: str | None = None) -> list[sqlite3.Row]:
        if gpu is None:
            return self.db.execute("SELECT * FROM knowledge ORDER BY id").fetchall()
        return self.db.execute("SELECT * FROM knowledge WHERE gpu = ? ORDER BY id", (gpu,)).fetchall()

    def latest_traces(self, definition: str, solution_hash: str, environment_id: int) -> dict[str, Trace]:
        """workload uuid -> the latest stored trace of this solution in this environment."""
        rows = self.db.execute("SELECT workload_uuid, data FROM traces WHERE definition = ? AND solution_hash = ? "
                               "AND environment_id = ? ORDER BY id", (definition, solution_hash, environment_id))
        return {row["workload_uuid"]: Trace.from_json(json.loads(row["data"])) for row in rows}

    def finished_definitions(self, environment_id: int) -> set[str]:
        return {row[0] for row in self.db.execute(
            "SELECT DISTINCT definition FROM results WHERE environment_id = ?", (environment_id,))}

    def solution(self, solution_hash: str) -> dict | None:
        """The stored solution.json of a content hash (None when the store lacks it)."""
        row = self.db.execute("SELECT data FROM solutions WHERE hash = ?", (solution_hash,)).fetchone()
        return json.loads(row["data"]) if row else None

    def problem_path(self, name: str, subset: str) -> str | None:
        """The directory a problem was last recorded from (None when unknown)."""
        row = self.db.execute("SELECT path FROM problems WHERE name = ? AND subset = ? AND path IS NOT NULL "
                              "ORDER BY id DESC", (name, subset)).fetchone()
        return row["path"] if row else None
