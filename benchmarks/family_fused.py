"""The fused family (the front end) on a GPU, beside the eager reference and torch.compile.

    PYTHONPATH=. python3 benchmarks/family_fused.py OUT_DIR [TASK_DIR ...] [--part k/n] [--configs 3] [--budget-s 420]
    PYTHONPATH=. python3 benchmarks/family_fused.py OUT_DIR --dry-run     # CPU: match, render, check; no timings

With no TASK_DIR: the memory-bound tasks235 problems (benchmarks/memory_bound.py: most workloads' T_SOL binds
on DRAM or the launch floor), in name order, or every n-th of them with --part k/n. For each task, on its smallest and its largest workload:
  ours           the family's render at the first `--configs` configurations of its space, best one kept
  torch.compile  the reference under torch.compile(dynamic=False)
  eager          the reference as written
each timed by kernelbench.eval.timing (fresh input addresses, L2 flushed, events around the call plus a
device-wide sync: host overhead counts as in the evaluator), every output checked against the reference.
Also per render: launches per call (from the program the front end wrote) and the host time per call
(back-to-back calls with no sync, CPU clock: when it exceeds the GPU time the workload is launch-bound).
% of SOL = T_SOL (roofline, H100 datasheet) / time. Writes OUT_DIR/family_fused.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

if "--dry-run" in sys.argv:
    os.environ.setdefault("TRITON_INTERPRET", "1")   # before triton is imported

import torch

import kernelbench.generate.families  # noqa: F401  (registers the families)
from kernelbench.core.correctness import as_output_list, compare
from kernelbench.core.inputs import generate_inputs
from kernelbench.core.problem import Problem, Workload, load_problem
from kernelbench.core.reference import compile_reference
from kernelbench.core.solution import load_entry_point, materialize
from kernelbench.core.statuses import PASSED
from kernelbench.eval.buffers import allocate_outputs
from kernelbench.eval.timing import TimingConfig, host_ms_per_call, time_callable
from kernelbench.generate.family import FAMILIES
from memory_bound import memory_bound_tasks, part
from report import Report
from roofline import sol_for_workload

ROOT = Path(__file__).resolve().parents[1]
HOST_CALLS = 200


def checked(problem: Problem, workload: Workload, outputs, expected) -> str:
    got = as_output_list(outputs, len(problem.definition.outputs))
    comparison = compare(problem, workload, [o.cpu() if isinstance(o, torch.Tensor) else o for o in got],
                         [e.cpu() if isinstance(e, torch.Tensor) else e for e in expected])
    return "" if comparison.status == PASSED else comparison.message[:200]



def matched(directory: Path):
    """(problem, match, why not): matching traces in a child, so several run at once."""
    problem = load_problem(directory)
    family = FAMILIES["fused"]
    match = family.match(problem)
    return problem, match, family.last_rejection


def measure(directory: Path, problem: Problem, match, args) -> dict:
    family = FAMILIES["fused"]
    module = compile_reference(problem.definition)
    ordered = sorted(problem.workloads, key=problem.workload_size)
    rows = []
    # the smallest and the largest (the interpreter's dry run: the smallest alone)
    for workload in ordered[:1] if args.dry_run or len(ordered) == 1 else ordered[:1] + ordered[-1:]:
        axes = problem.axes_for(workload)
        device = "cpu" if args.dry_run else "cuda"
        inputs = generate_inputs(problem, workload, seed=1, device=device, reference_module=module)
        expected = as_output_list(module.run(*[v.clone() if isinstance(v, torch.Tensor) else v for v in inputs]),
                                  len(problem.definition.outputs))
        row = {"axes": axes, "ours": {}, "errors": {}}
        shapes = [list(problem.shape_of(s, axes)) for s in problem.definition.inputs.values() if not s.is_scalar]
        program = next((p for p in match.plan["programs"] if p["shapes"] == shapes), None)
        row["launches"] = program["launches"] if program else None
        for config in family.space(match, axes)[:args.configs]:
            solution = family.render(match, config)
            run = returning(solution, problem, workload, device)
            error = checked(problem, workload, run(*inputs), expected)
            name = json.dumps(config, sort_keys=True)
            if error:
                row["errors"][name] = error
            elif not args.dry_run:
                row["ours"][name] = time_ms(run, inputs, args.iterations)
                row.setdefault("host_ms", host_ms_per_call(run, inputs, HOST_CALLS, warmup=1))
        if not args.dry_run:
            row["eager_ms"] = time_ms(module.run, inputs, args.iterations)
            compiled = torch.compile(module.run, dynamic=False)
            row["compile_ms"] = time_ms(compiled, inputs, args.iterations)
            t_sol_s = sol_for_workload(problem, workload, "H100").t_sol_s
            row["sol_ms"] = t_sol_s * 1e3 if t_sol_s else None
        rows.append(row)
    return {"task": directory.name, "summary": match.summary, "rows": rows}


def returning(solution, problem: Problem, workload: Workload, device: str):
    """The solution as a function returning its outputs (a destination-passing one fills buffers allocated
    once, outside the timed calls, as the evaluator does)."""
    run = load_entry_point(solution, materialize(solution))
    if not solution.destination_passing_style:
        return run
    outputs = allocate_outputs(problem, workload, torch.device(device))

    def call(*inputs):
        run(*inputs, *outputs)
        return outputs
    return call


def time_ms(fn, inputs, iterations: int) -> float:
    return time_callable(fn, inputs, "cuda", TimingConfig(warmup=max(3, iterations // 5),
                                                          iterations=iterations)).median_ms


def markdown(results: list[dict], header: str) -> str:
    lines = [header, "", "| task | axes | launches | ours (ms) | compile (ms) | eager (ms) | T_SOL (ms) | ours % of SOL "
             "| ours / compile | host ms/call |", "|---|---|---|---|---|---|---|---|---|---|"]
    for result in results:
        for row in result.get("rows", []):
            best = min(row["ours"].values(), default=None)
            sol = row.get("sol_ms")
            cells = [result["task"], json.dumps(row["axes"]), str(row["launches"]),
                     f"{best:.4f}" if best else "failed: " + "; ".join(row["errors"].values())[:80]
                     if row["errors"] else "checked, not timed",
                     f"{row.get('compile_ms', 0):.4f}", f"{row.get('eager_ms', 0):.4f}",
                     f"{sol:.4f}" if sol else "-", f"{sol / best:.1%}" if sol and best else "-",
                     f"{row['compile_ms'] / best:.2f}x" if best and row.get("compile_ms") else "-",
                     f"{row.get('host_ms', 0):.4f}"]
            lines.append("| " + " | ".join(cells) + " |")
    skipped = [r for r in results if "skipped" in r]
    if skipped:
        lines += ["", "Not matched: " + "; ".join(f"{r['task']} ({r['skipped'][:120]})" for r in skipped)]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("tasks", nargs="*", type=Path)
    parser.add_argument("--configs", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--budget-s", type=float, default=420.0, help="no new task starts after this long")
    parser.add_argument("--part", default="1/1", help="k/n: every n-th memory-bound task from the k-th")
    parser.add_argument("--jobs", type=int, default=8, help="tasks matched (traced) at once, ahead of the timing")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    report = Report(args.out, "family_fused", "fused family", args.dry_run)
    tasks = args.tasks or part(memory_bound_tasks(ROOT / "tasks235"), args.part)
    started = time.monotonic()
    with ThreadPoolExecutor(args.jobs) as pool:   # tracing on the CPU cores while the GPU times the previous task
        matches = [pool.submit(matched, directory) for directory in tasks]
        for directory, future in zip(tasks, matches):
            if time.monotonic() - started > args.budget_s:
                report.add({"task": directory.name, "skipped": "out of time budget"})
                future.cancel()
                continue
            try:
                problem, match, rejection = future.result()
                result = measure(directory, problem, match, args) if match else \
                    {"task": directory.name, "skipped": rejection[:300]}
            except Exception as exc:  # noqa: BLE001 - one task's failure is a row, not the end of the run
                result = {"task": directory.name, "skipped": f"{type(exc).__name__}: {exc}"[:300]}
            report.add(result)
    report.finish(markdown(report.rows, report.heading))
    return 0


if __name__ == "__main__":
    sys.exit(main())
