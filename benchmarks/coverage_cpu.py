"""Coverage of the generator on the CPU (issue #12's first must-show).

For every problem under the given roots, runs

    kb --db DB optimize TASK --device cpu --workloads 1 --json --budget 0 --rounds 1 --warmup 1 --iterations 1

and records whether a generated candidate (source "template" or "llm", never the baseline) PASSED the full
evaluation on the smallest workload, which families proposed, and why not when none did. Results go to
OUT.json (one entry per task, written after each task so an interrupted run keeps what it measured, and a
rerun skips tasks already measured) and OUT.md (the table and the uncovered tasks with their reasons).
`--tasks` measures just the named tasks again and merges them into OUT.json.

    PYTHONPATH=$PWD python3 benchmarks/coverage_cpu.py --out benchmarks/results/coverage_cpu \\
        tasks235 ../shared/sol_execbench_sample --jobs 2 [--every 3]
    PYTHONPATH=$PWD python3 benchmarks/coverage_cpu.py --out benchmarks/results/coverage_cpu \\
        tasks235 ../shared/sol_execbench_sample --jobs 1 --timeout 300 --tasks L2/080_ sample/L2/004_

CPU times mean nothing here; only PASSED/not is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

QUICK = ["--device", "cpu", "--workloads", "1", "--json", "--budget", "0", "--rounds", "1", "--warmup", "1",
         "--iterations", "1"]


def problem_dirs(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.rglob("definition.json"))


def label(directory: Path, root: Path) -> str:
    return f"{root.name}/{directory.relative_to(root)}"


def measure(directory: Path, timeout_s: float) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        command = [sys.executable, "-c", "from kernelbench.cli import main; main()", "--db", f"{scratch}/kb.db", "optimize", str(directory),
                   *QUICK, "--out", f"{scratch}/out"]
        started = time.monotonic()
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return {"covered": False, "reason": f"kb optimize ran past {timeout_s:.0f} s", "seconds": timeout_s}
        seconds = round(time.monotonic() - started, 1)
    try:
        result = json.loads(done.stdout)
    except json.JSONDecodeError:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"covered": False, "reason": f"kb optimize exited {done.returncode}: {tail[0][:300]}", "seconds": seconds}
    generated = [e for e in result["evaluated"] if e["provenance"]["source"] != "baseline"]
    passed = [e for e in generated if e["status"] == "PASSED"]
    families = sorted({e["provenance"]["family"] or e["provenance"]["source"] for e in generated})
    if passed:
        reason = ""
    elif generated:
        reason = "; ".join(sorted({f"{e['provenance']['family']}: {e['status']}" for e in generated}))
    else:
        reason = "; ".join(result["notes"]) or f"no family proposed ({result['proposed']} candidates)"
    return {"covered": bool(passed), "families": families,
            "passed_families": sorted({e["provenance"]["family"] for e in passed}),
            "proposed": result["proposed"], "reason": reason[:600], "seconds": seconds}


def write_markdown(results: dict, roots: list[Path], path: Path) -> None:
    lines = [f"# Generator coverage on the CPU ({time.strftime('%Y-%m-%d')})", "",
             "A task is covered when `kb optimize TASK --device cpu --workloads 1 --json` fully evaluated a "
             "generated (not baseline) candidate that PASSED. Command: `benchmarks/coverage_cpu.py`.", "",
             "| set | tasks measured | covered | share |", "|---|---|---|---|"]
    for root in roots:
        rows = {k: v for k, v in results.items() if k.startswith(root.name + "/")}
        covered = sum(v["covered"] for v in rows.values())
        lines.append(f"| {root.name} | {len(rows)} of {len(problem_dirs(root))} | {covered} | "
                     f"{covered / max(len(rows), 1):.1%} |")
        for subset in sorted({k.split("/")[1] for k in rows}):
            part = [v for k, v in rows.items() if k.split("/")[1] == subset]
            lines.append(f"| {root.name}/{subset} | {len(part)} | {sum(v['covered'] for v in part)} | "
                         f"{sum(v['covered'] for v in part) / len(part):.1%} |")
    families: dict[str, int] = {}
    for v in results.values():
        for family in v.get("passed_families", []):
            families[family] = families.get(family, 0) + 1
    lines += ["", "Tasks with a passing candidate, by family: " +
              ", ".join(f"{f} {n}" for f, n in sorted(families.items())), "", "## Not covered", "",
              "| task | reason |", "|---|---|"]
    lines += [f"| {k} | {v['reason'].replace('|', '/')} |" for k, v in sorted(results.items()) if not v["covered"]]
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("roots", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="path prefix: OUT.json and OUT.md")
    parser.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per task")
    parser.add_argument("--only", default="", help="substring a task label must contain")
    parser.add_argument("--every", type=int, default=1, help="every Nth task of each root (a spread-out subset)")
    parser.add_argument("--tasks", nargs="+", default=[],
                        help="measure (again) just the tasks whose label contains one of these, merged into OUT.json")
    args = parser.parse_args()
    store = args.out.with_suffix(".json")
    results = json.loads(store.read_text()) if store.exists() else {}
    todo = [(label(d, root), d) for root in args.roots for d in problem_dirs(root)[::args.every]
            if args.only in label(d, root) and (any(t in label(d, root) for t in args.tasks) if args.tasks
                                                else label(d, root) not in results)]
    print(f"{len(todo)} tasks to measure ({len(results)} already in {store})", flush=True)

    def one(item):
        name, directory = item
        return name, measure(directory, args.timeout)

    with ThreadPoolExecutor(args.jobs) as pool:
        for i, (name, outcome) in enumerate(pool.map(one, todo), 1):
            results[name] = outcome
            store.write_text(json.dumps(dict(sorted(results.items())), indent=1) + "\n")
            print(f"[{i}/{len(todo)}] {name}: {'covered' if outcome['covered'] else 'NOT covered: ' + outcome['reason'][:160]}"
                  f" ({outcome['seconds']} s)", flush=True)
    write_markdown(results, args.roots, args.out.with_suffix(".md"))


if __name__ == "__main__":
    main()
