"""Issue #12's GPU must-show in one table: every `kb batch` run over memory-bound tasks merged, per task and per
family (the task's op_type), with launches a call and host time per call where the run recorded them.

    python3 benchmarks/memory_bound_report.py benchmarks/results/memory_bound_batch --root tasks235

Every store (*.db) in the folder is imported into one fresh store (`kb import`), and the leaderboard's rule picks
each task's row: its best audit-clean result that passed every workload (kernelbench.jobs.leaderboard). A
leaderboard CSV whose run's store was not kept adds the tasks no store has. Writes OUT.md, OUT.csv and OUT.png
(S per task by family), OUT = FOLDER/summary unless --out says otherwise. Scores from different GPUs are never
mixed in one row, but the mean is over every task measured, on whichever GPU measured it; the hardware column says
which.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

import pandas as pd

from kernelbench.core.problem import load_problem
from kernelbench.core.score import benchmark_score
from kernelbench.core.store import Store
from kernelbench.jobs.exchange import import_store
from kernelbench.jobs.leaderboard import leaderboard_rows
from memory_bound import memory_bound_tasks

LAUNCHES = re.compile(r"(\d+) launch\(es\) a call")


def merged_rows(folder: Path) -> list[dict]:
    """One row per (task, hardware) over every store and leaderboard CSV in `folder`."""
    with tempfile.TemporaryDirectory() as scratch:
        store = Store(Path(scratch) / "merged.db")
        for db in sorted(folder.glob("*.db")):
            import_store(store, db)
        rows = leaderboard_rows(store)
        for row in rows:
            solution = store.solution(row["solution_hash"]) or {}
            row["launches"] = _launches(solution.get("description", ""))
            row["source"] = "stores"
        store.close()
    stored = {(r["task"], r["hardware"]) for r in rows}
    for csv in sorted(folder.glob("*.csv")):
        if csv.name.endswith("_per_workload.csv") or csv.stem == "summary":
            continue
        for row in pd.read_csv(csv).to_dict("records"):
            if (row["task"], row["hardware"]) not in stored:   # a run whose store was not returned
                rows.append({**row, "launches": None, "per_workload": [], "source": csv.name})
                stored.add((row["task"], row["hardware"]))
    return rows


def _launches(description: str) -> int | None:
    found = LAUNCHES.search(description or "")
    return int(found.group(1)) if found else None


def summarize(rows: list[dict], root: Path) -> tuple[pd.DataFrame, list[str]]:
    """The per-task table (op_type, S, % of SOL, launches, host ms a call on launch-bound workloads) over the
    memory-bound tasks of `root`, and the memory-bound tasks not measured yet."""
    tasks = {t.name: t for t in memory_bound_tasks(root)}
    records = []
    for row in rows:
        if row["task"] not in tasks:
            continue
        launch_bound = [w for w in row.get("per_workload", []) if w.get("binding") == "launch"]
        hosts = [w["host_ms"] for w in row.get("per_workload", []) if w.get("host_ms") is not None]
        records.append({
            "task": f"{tasks[row['task']].parent.name}/{row['task']}",
            "op_type": load_problem(tasks[row["task"]]).definition.op_type or "?",
            "hardware": row["hardware"], "sol_score": row["sol_score"],
            "fraction_of_sol": row.get("fraction_of_sol"), "speedup_vs_baseline": row.get("speedup_vs_baseline"),
            "geomean_t_k_ms": row.get("geomean_t_k_ms"), "geomean_t_b_ms": row.get("geomean_t_b_ms"),
            "geomean_t_sol_ms": row.get("geomean_t_sol_ms"), "launches": row["launches"],
            "launch_bound_workloads": len(launch_bound),
            "max_host_ms": max(hosts) if hosts else None, "source": row["source"]})
    table = pd.DataFrame(records).sort_values(["op_type", "task"]) if records else pd.DataFrame()
    measured = set(table["task"]) if len(table) else set()
    missing = sorted(f"{t.parent.name}/{name}" for name, t in tasks.items() if f"{t.parent.name}/{name}" not in measured)
    return table, missing


def markdown(table: pd.DataFrame, missing: list[str], total: int, folder: Path) -> str:
    lines = ["# Memory-bound tasks of tasks235 through `kb batch` (issue #12), merged", "",
             f"Command: `python3 benchmarks/memory_bound_report.py {folder} --root tasks235`. "
             f"Tasks measured: {len(table)} of {total}.", ""]
    if len(table):
        lines += [f"**Mean S over the {len(table)} measured: {benchmark_score(table['sol_score'].tolist()):.3f}** "
                  "(goal 0.75 over all of them).", "",
                  "| family (op_type) | tasks | mean S | median % of SOL | median launches a call |",
                  "|---|---|---|---|---|"]
        for op_type, group in table.groupby("op_type"):
            launches = group["launches"].dropna()
            lines.append(f"| {op_type} | {len(group)} | {benchmark_score(group['sol_score'].tolist()):.3f} | "
                         f"{100 * group['fraction_of_sol'].median():.1f}% | "
                         f"{int(launches.median()) if len(launches) else '-'} |")
        lines += ["", "| task | op_type | GPU | S | % of SOL | speedup vs T_b | T_k (ms) | T_b (ms) | T_SOL (ms) | "
                  "launches | launch-bound workloads | max host ms a call | from |", "|---" * 13 + "|"]
        for r in table.itertuples():
            lines.append(f"| {r.task} | {r.op_type} | {r.hardware} | {r.sol_score:.3f} | {100 * r.fraction_of_sol:.1f}% "
                         f"| {r.speedup_vs_baseline:.2f}x | {r.geomean_t_k_ms:.4f} | {r.geomean_t_b_ms:.4f} | "
                         f"{r.geomean_t_sol_ms:.4f} | {_cell(r.launches, 'd')} | {r.launch_bound_workloads} | "
                         f"{_cell(r.max_host_ms, '.4f')} | {r.source} |")
    lines += ["", f"Not measured yet ({len(missing)}): " + ", ".join(missing), ""]
    return "\n".join(lines)


def _cell(value, form: str) -> str:
    return "-" if value is None or pd.isna(value) else format(int(value) if form == "d" else value, form)


def plot(table: pd.DataFrame, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ordered = table.sort_values(["op_type", "sol_score"])
    families = list(dict.fromkeys(ordered["op_type"]))
    colors = {f: plt.cm.tab20(i % 20) for i, f in enumerate(families)}
    fig, ax = plt.subplots(figsize=(max(6, 0.28 * len(ordered)), 4.5))
    ax.bar(range(len(ordered)), ordered["sol_score"], color=[colors[f] for f in ordered["op_type"]])
    ax.axhline(0.5, color="grey", lw=0.8, ls="--", label="baseline (0.5)")
    ax.axhline(0.75, color="black", lw=0.8, label="goal (0.75)")
    ax.set_xticks(range(len(ordered)), [t.split("/")[1][:22] for t in ordered["task"]], rotation=90, fontsize=6)
    ax.set_ylim(0, 1)
    ax.set_ylabel("S")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colors[f]) for f in families]
    ax.legend(handles + ax.get_legend_handles_labels()[0], families + ["baseline (0.5)", "goal (0.75)"],
              fontsize=6, ncol=4, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="the runs' stores (*.db) and leaderboard CSVs")
    parser.add_argument("--root", type=Path, default=Path("tasks235"))
    parser.add_argument("--out", type=Path, help="OUT.md, OUT.csv, OUT.png (default FOLDER/summary)")
    args = parser.parse_args()
    if not args.folder.is_dir():
        raise SystemExit(f"{args.folder}: not a folder")
    out = args.out or args.folder / "summary"
    out.parent.mkdir(parents=True, exist_ok=True)
    table, missing = summarize(merged_rows(args.folder), args.root)
    total = len(table) + len(missing)
    out.with_suffix(".md").write_text(markdown(table, missing, total, args.folder))
    table.to_csv(out.with_suffix(".csv"), index=False)
    if len(table):
        plot(table, out.with_suffix(".png"))
    print(out.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
