"""Soundness of the roofline on a real GPU: no passing measurement may beat T_SOL.

Reads every PASSED trace (baseline variants and candidates) of the tasks under ROOT from the
store that `kb batch` filled on this GPU, computes T_SOL with the named profile (default: the
measured profile from `kb calibrate`), and reports per task the smallest T_measured / T_SOL
(must be >= 1), plus the distribution of T_SOL / T_b per subset (how much headroom the
baseline leaves).

    KB_DB=kb.db PYTHONPATH=. python3 benchmarks/roofline_soundness.py tasks235 --profile measured \
        --out benchmarks/results/roofline_soundness_h200.md
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import statistics
import sys
from pathlib import Path

from kernelbench.core.problem import find_problem_dirs, load_problem
from kernelbench.jobs.session import roofline_hardware
from kernelbench.core.store import Store
from roofline import sol_for_problem


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("root", type=Path)
    parser.add_argument("--profile", default="measured")
    parser.add_argument("--db", default=None)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    store = Store(args.db)
    environments = {row["id"]: json.loads(row["data"]) for row in store.db.execute("SELECT * FROM environments")}
    gpu_envs = {i: e for i, e in environments.items() if e.get("device") == "cuda"}
    if not gpu_envs:
        print("no GPU measurements in the store", file=sys.stderr)
        return 2
    hardware = roofline_hardware(next(iter(gpu_envs.values())))
    rows, ratios_by_subset, violations = [], collections.defaultdict(list), []
    for directory in find_problem_dirs(args.root):
        problem = load_problem(directory)
        sols = {s.uuid: s for s in sol_for_problem(problem, hardware, args.profile) if s.t_sol_s is not None}
        traces = [t for t in store.traces(problem.name) if t["status"] == "PASSED" and t["environment_id"] in gpu_envs
                  and t["latency_ms"] is not None and t["workload_uuid"] in sols]
        if not traces:
            rows.append((problem.subset, problem.name, 0, None, None, ""))
            continue
        worst = min(traces, key=lambda t: t["latency_ms"] / (sols[t["workload_uuid"]].t_sol_s * 1e3))
        sol = sols[worst["workload_uuid"]]
        min_ratio = worst["latency_ms"] / (sol.t_sol_s * 1e3)
        for t in traces:
            if t["latency_ms"] < sols[t["workload_uuid"]].t_sol_s * 1e3:
                violations.append((problem.name, t["workload_uuid"], t["latency_ms"], sols[t["workload_uuid"]].t_sol_s * 1e3))
        best_by_workload = collections.defaultdict(lambda: float("inf"))
        for t in traces:
            best_by_workload[t["workload_uuid"]] = min(best_by_workload[t["workload_uuid"]], t["latency_ms"])
        for uuid, t_b in best_by_workload.items():
            ratios_by_subset[problem.subset].append(sols[uuid].t_sol_s * 1e3 / t_b)
        rows.append((problem.subset, problem.name, len(traces), min_ratio, sol.binding, json.dumps(worst and sol.axes)))
    lines = [f"# Roofline soundness on {hardware} ({args.profile} profile)", "",
             f"date: {dt.date.today()}; store: {store.path}; environments: "
             + "; ".join(f"{e['hardware']} torch {e['libs'].get('torch')}" for e in gpu_envs.values()), "",
             f"command: PYTHONPATH=. python3 benchmarks/roofline_soundness.py {args.root} --profile {args.profile}", "",
             f"Passing measurements below T_SOL: **{len(violations)}**", ""]
    lines += [f"- {name} {uuid[:8]}: {t:.4g} ms < T_SOL {s:.4g} ms" for name, uuid, t, s in violations]
    lines += ["", "| subset | task | passing measurements | min T_measured / T_SOL | binding there | axes there |",
              "| --- | --- | --- | --- | --- | --- |"]
    for subset, name, count, ratio, binding, axes in rows:
        lines.append(f"| {subset} | {name} | {count} | {'-' if ratio is None else f'{ratio:.2f}'} | {binding or '-'} | {axes} |")
    lines += ["", "T_SOL / T_b (T_b = the best passing measurement per workload), per subset:", "",
              "| subset | workloads | min | median | max |", "| --- | --- | --- | --- | --- |"]
    for subset, ratios in sorted(ratios_by_subset.items()):
        lines.append(f"| {subset} | {len(ratios)} | {min(ratios):.3f} | {statistics.median(ratios):.3f} | {max(ratios):.3f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
