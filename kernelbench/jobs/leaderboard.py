"""`kb leaderboard`: one row per task (or per workload) from the stored results, built with pandas.

Per task and hardware the row is the best audit-clean result that passed every workload; a
task with no such result keeps its latest result with score 0 and the reason in
`audit_status` / `status`, so a flagged solution is visible but never ranked.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from pathlib import Path

import pandas as pd

from kernelbench.core.score import benchmark_score
from kernelbench.core.store import Store

TASK_COLUMNS = ["task", "subset", "hardware", "workloads", "workloads_passed", "geomean_t_k_ms", "geomean_t_b_ms",
                "geomean_t_sol_ms", "sol_score", "fraction_of_sol", "speedup_vs_baseline", "solution_hash",
                "language", "audit_status", "status", "clock", "roofline_profile", "timestamp"]
WORKLOAD_COLUMNS = ["task", "subset", "hardware", "uuid", "axes", "status", "t_k_ms", "t_b_ms", "t_sol_ms", "score",
                    "fraction_of_sol", "speedup_vs_baseline", "solution_hash", "language", "audit_status", "timestamp"]


def _rows(store: Store) -> list[dict]:
    rows = []
    for result in store.results():
        summary = json.loads(result["data"])
        rows.append({**summary, "task": result["definition"], "subset": result["subset"],
                     "hardware": summary.get("hardware") or result["hardware"], "status": result["status"],
                     "sol_score": result["sol_score"], "solution_hash": result["solution_hash"],
                     "timestamp": dt.datetime.fromtimestamp(result["created_at"], dt.timezone.utc).isoformat(),
                     "_ranked": result["status"] == "PASSED" and summary.get("audit_status") == "clean"})
    return rows


def _best_per_task(rows: list[dict]) -> list[dict]:
    """Per (task, hardware): the best ranked result, else the latest one."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["task"], row["hardware"])].append(row)
    chosen = []
    for group in groups.values():
        ranked = [r for r in group if r["_ranked"]]
        chosen.append(max(ranked, key=lambda r: r["sol_score"]) if ranked else group[-1])
    return sorted(chosen, key=lambda r: (r["subset"], r["task"], r["hardware"]))


def task_table(store: Store) -> pd.DataFrame:
    rows = _best_per_task(_rows(store))
    for row in rows:
        if not row["_ranked"]:
            row["sol_score"] = 0.0
    return pd.DataFrame(rows, columns=TASK_COLUMNS)


def workload_table(store: Store) -> pd.DataFrame:
    records = []
    for row in _best_per_task(_rows(store)):
        for workload in row.get("per_workload", []):
            records.append({**{k: row.get(k) for k in ("task", "subset", "hardware", "solution_hash", "language",
                                                        "audit_status", "timestamp")},
                            **workload, "axes": json.dumps(workload.get("axes", {}))})
    return pd.DataFrame(records, columns=WORKLOAD_COLUMNS)


def mean_score(table: pd.DataFrame) -> float:
    return benchmark_score(table["sol_score"].tolist()) if len(table) else 0.0


def write_html(tasks: pd.DataFrame, workloads: pd.DataFrame, path) -> None:
    """A self-contained report: the task table, SOL score per task, and T_k against T_b and T_SOL."""
    import base64
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (scores, times) = plt.subplots(1, 2, figsize=(14, max(4, 0.25 * len(tasks))))
    ordered = tasks.sort_values("sol_score")
    scores.barh(ordered["task"], ordered["sol_score"], color="tab:blue")
    scores.axvline(0.5, color="gray", linestyle="--", label="baseline (0.5)")
    scores.set_xlim(0, 1)
    scores.set_xlabel("SOL score")
    scores.legend(loc="lower right")
    measured = workloads.dropna(subset=["t_k_ms"])
    if len(measured):
        times.loglog(measured["t_b_ms"], measured["t_k_ms"], "o", label="T_k vs T_b", alpha=0.7)
        with_sol = measured.dropna(subset=["t_sol_ms"])
        times.loglog(with_sol["t_sol_ms"], with_sol["t_k_ms"], "x", label="T_k vs T_SOL", alpha=0.7)
        low, high = measured[["t_b_ms", "t_k_ms"]].min().min() / 2, measured[["t_b_ms", "t_k_ms"]].max().max() * 2
        times.plot([low, high], [low, high], color="gray", linestyle="--", label="equal")
        times.set_xlabel("reference time (ms)")
        times.set_ylabel("kernel time T_k (ms)")
        times.legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    image = base64.b64encode(buffer.getvalue()).decode()
    html = (f"<html><head><meta charset='utf-8'><title>kernelbench SOL leaderboard</title></head><body>"
            f"<h1>SOL leaderboard</h1><p>{len(tasks)} tasks, mean SOL score {mean_score(tasks):.3f} "
            f"(0.5 = optimized PyTorch baseline, 1.0 = speed of light)</p>"
            f"<img src='data:image/png;base64,{image}'/>"
            f"{tasks.to_html(index=False, float_format=lambda v: f'{v:.4g}', na_rep='-')}</body></html>")
    Path(path).write_text(html)
