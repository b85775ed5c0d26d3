"""`kb leaderboard`: one row per task (or per workload) from the stored results, built with pandas.

Per task and hardware the row is the best audit-clean result that passed every workload; a
task with no such result keeps its latest result with score 0 and the reason in
`audit_status` / `status`, so a flagged solution is visible but never ranked.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict

import pandas as pd

from kernelbench.core.score import benchmark_score
from kernelbench.core.store import Store

TASK_COLUMNS = ["task", "subset", "hardware", "workloads", "workloads_passed", "geomean_t_k_ms", "geomean_t_b_ms",
                "geomean_t_sol_ms", "sol_score", "fraction_of_sol", "speedup_vs_baseline", "solution_hash",
                "language", "audit_status", "status", "clock", "roofline_profile", "timestamp"]
WORKLOAD_COLUMNS = ["task", "subset", "hardware", "uuid", "axes", "status", "t_k_ms", "t_b_ms", "t_sol_ms", "score",
                    "fraction_of_sol", "speedup_vs_baseline", "solution_hash", "language", "audit_status", "timestamp",
                    "host_ms"]   # appended: the columns before it keep their order


def _rows(store: Store) -> list[dict]:
    rows = []
    for result in store.results():
        summary = json.loads(result["data"])
        rows.append({**summary, "task": result["definition"], "subset": result["subset"],
                     "hardware": summary.get("hardware") or result["hardware"], "status": result["status"],
                     "sol_score": result["sol_score"], "solution_hash": result["solution_hash"],
                     "run_id": result["run_id"], "created_at": result["created_at"],
                     "timestamp": dt.datetime.fromtimestamp(result["created_at"], dt.timezone.utc).isoformat(),
                     "ranked": result["status"] == "PASSED" and summary.get("audit_status") == "clean"})
    return rows


def _by_task(rows: list[dict]) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["task"], row["hardware"])].append(row)
    return groups


def leaderboard_rows(store: Store) -> list[dict]:
    """Per (task, hardware): the best ranked result, else the latest one with score 0 (never ranked).
    Each row is the stored summary plus the result's columns and `ranked`; sorted by subset, task."""
    chosen = []
    for group in _by_task(_rows(store)).values():
        ranked = [r for r in group if r["ranked"]]
        chosen.append(max(ranked, key=lambda r: r["sol_score"]) if ranked else {**group[-1], "sol_score": 0.0})
    return sorted(chosen, key=lambda r: (r["subset"], r["task"], r["hardware"]))


def task_history(store: Store) -> dict[tuple, list[dict]]:
    """(task, hardware) -> every stored result, oldest first, scores as recorded."""
    return dict(_by_task(_rows(store)))


def task_table(store: Store) -> pd.DataFrame:
    return pd.DataFrame(leaderboard_rows(store), columns=TASK_COLUMNS)


def workload_table(store: Store) -> pd.DataFrame:
    records = []
    for row in leaderboard_rows(store):
        for workload in row.get("per_workload", []):
            records.append({**{k: row.get(k) for k in ("task", "subset", "hardware", "solution_hash", "language",
                                                        "audit_status", "timestamp")},
                            **workload, "axes": json.dumps(workload.get("axes", {}))})
    return pd.DataFrame(records, columns=WORKLOAD_COLUMNS)


def mean_score(table: pd.DataFrame) -> float:
    return benchmark_score(table["sol_score"].tolist()) if len(table) else 0.0
