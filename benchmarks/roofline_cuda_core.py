"""Where would the reference's own CUDA-core work, counted as written, raise T_SOL?

    python benchmarks/roofline_cuda_core.py [ROOT ...] [--hardware H200] [--out FILE]

Analytic only (no GPU, no timing): for every workload of every problem under the roots
(default tasks235 and ../shared/sol_execbench_sample), T_cuda = the reference's CUDA-core
FLOPs / the profile's CUDA-core rates, against T_SOL without it (max of tensor, SFU and DRAM
time). Lists every workload where T_cuda would bind; docs/ROOFLINE.md explains why T_SOL leaves
it out. Writes a Markdown report.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kernelbench.core.problem import find_problem_dirs, load_problem  # noqa: E402
from roofline import load_profile, sol_for_problem  # noqa: E402

DEFAULT_ROOTS = [ROOT / "tasks235", ROOT.parent / "shared" / "sol_execbench_sample"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("roots", nargs="*", type=Path, default=DEFAULT_ROOTS)
    parser.add_argument("--hardware", default="H200")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "roofline_cuda_core.md")
    args = parser.parse_args()
    profile = load_profile(args.hardware, "datasheet")

    workloads, binding = 0, []
    for root in args.roots:
        for directory in find_problem_dirs(root):
            problem = load_problem(directory)
            for sol in sol_for_problem(problem, profile):
                workloads += 1
                if sol.t_sol_s is None:
                    continue
                without = sol.t_sol_s - sol.launch_floor_s
                if sol.times_s["cuda"] > without:
                    binding.append((f"{directory.parent.name}/{directory.name}", sol, sol.times_s["cuda"] / without))

    per_task = collections.defaultdict(list)
    for task, sol, ratio in binding:
        per_task[task].append((sol, ratio))
    lines = [f"# Reference CUDA-core work vs T_SOL ({profile.profile_id})", "",
             f"date: {datetime.date.today().isoformat()}  command: `python benchmarks/roofline_cuda_core.py"
             f"{' --hardware ' + args.hardware if args.hardware != 'H200' else ''}`", "",
             f"{workloads} workloads under {', '.join(os.path.relpath(r, ROOT) for r in args.roots)}; on {len(binding)} of them "
             f"({len(per_task)} problems) the reference's CUDA-core FLOPs, counted as written, would take longer "
             "than every term of T_SOL. Why they are left out of the bound: docs/ROOFLINE.md.", "",
             "| problem | workloads where it would bind | largest T_cuda / T_SOL | T_cuda, T_SOL at that workload (us) |",
             "| --- | --- | --- | --- |"]
    for task, rows in sorted(per_task.items()):
        sol, ratio = max(rows, key=lambda r: r[1])
        lines.append(f"| {task} | {len(rows)} | {ratio:.2f} | {sol.times_s['cuda'] * 1e6:.3g}, {sol.t_sol_s * 1e6:.3g} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
