"""The memory-bound tasks of a task root: those where most workloads' T_SOL binds on DRAM or the launch floor
(roofline, H100 datasheet). Issue #12's GPU must-show scores the generator over them, a part at a time:

    python3 benchmarks/memory_bound.py tasks235                 # one "subset/name" per line
    python3 benchmarks/memory_bound.py tasks235 --part 2/6      # the second sixth, as `kb batch --only` options
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kernelbench.core.problem import load_problem
from roofline import sol_for_workload


def memory_bound_tasks(root: Path) -> list[Path]:
    chosen = []
    for definition in sorted(root.rglob("definition.json")):
        problem = load_problem(definition.parent)
        try:
            bindings = [sol_for_workload(problem, w, "H100").binding for w in problem.workloads]
        except Exception:  # noqa: BLE001 - no T_SOL, no place in a % of SOL table
            continue
        if 2 * sum(b in ("dram", "launch") for b in bindings) > len(bindings):
            chosen.append(definition.parent)
    return chosen


def part(items: list, which: str) -> list:
    """Part "k/n" of `items`: every n-th item from the k-th, so each part mixes the subsets."""
    k, n = (int(x) for x in which.split("/"))
    if not 1 <= k <= n:
        raise SystemExit(f"--part {which}: k must be in 1..n")
    return items[k - 1::n]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--part", default="1/1", help="k/n: every n-th task from the k-th, as `kb batch --only` options")
    args = parser.parse_args()
    tasks = part(memory_bound_tasks(args.root), args.part)
    names = [f"{t.parent.name}/{t.name}" for t in tasks]
    print(" ".join(f"--only {n}" for n in names) if args.part != "1/1" else "\n".join(names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
