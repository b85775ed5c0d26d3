"""Evaluate every official sample problem with its own reference as a pytorch solution.

Issue 3's must-show: each sample problem without safetensors inputs PASSES with its reference
as the solution, on CPU (--device cpu --workloads 1) and on the GPU for all its workloads.
Writes a markdown table (and JSON) with the status of every workload.

    PYTHONPATH=. python3 benchmarks/sample_references.py --device cuda --out benchmarks/results/sample_references_h200
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import sys
from pathlib import Path

import torch

from kernelbench.eval.evaluator import EvalConfig, evaluate
from kernelbench.eval.gpu_state import environment_info
from kernelbench.core.inputs import missing_blobs
from kernelbench.core.problem import find_problem_dirs, load_problem
from kernelbench.core.solution import reference_solution

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "sol_execbench_sample"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", type=Path, default=SAMPLE)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--workloads", type=int, default=None, help="N smallest workloads (default all)")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--out", type=Path, required=True, help="output path without suffix")
    parser.add_argument("--only", nargs="*", default=None, help="problem names (default: all)")
    parser.add_argument("--no-shape-probe", action="store_true", help="skip the audit's shape probe")
    args = parser.parse_args()
    environment = environment_info(args.device)
    config = EvalConfig(device=args.device, rounds=args.rounds, max_workloads=args.workloads,
                        timing={"warmup": 10, "iterations": args.iterations}, shape_probe=not args.no_shape_probe)
    rows, all_traces = [], []
    for directory in find_problem_dirs(args.root):
        problem = load_problem(directory)
        if args.only and problem.name not in args.only:
            continue
        if missing_blobs(problem):
            rows.append((problem.subset, problem.name, "skipped: safetensors blobs not available", {}))
            continue
        traces = evaluate(problem, reference_solution(problem.name, problem.definition.reference), config)
        all_traces += traces
        counts = collections.Counter(str(t.evaluation.status) for t in traces)
        reasons = sorted({t.evaluation.log.strip().splitlines()[-1][:160] for t in traces
                          if t.evaluation.status != "PASSED" and t.evaluation.log.strip()})
        rows.append((problem.subset, problem.name, ", ".join(f"{k} {v}" for k, v in counts.items()),
                     {"reasons": reasons}))
        print(f"{problem.name}: {dict(counts)}", flush=True)
        write_report(args, environment, rows, all_traces)  # after every problem: a cut-off run keeps its rows
    print(write_report(args, environment, rows, all_traces))
    return 0


def write_report(args, environment, rows, all_traces) -> str:
    args.out.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"# Sample problems, reference as solution, on {environment['hardware']} ({args.device})", "",
             f"date: {dt.date.today()}  torch {torch.__version__}  libs {json.dumps(environment['libs'])}", "",
             f"command: PYTHONPATH=. python3 benchmarks/sample_references.py --device {args.device} "
             f"--rounds {args.rounds} --iterations {args.iterations}"
             + (f" --workloads {args.workloads}" if args.workloads else "")
             + (" --no-shape-probe" if args.no_shape_probe else ""), "",
             "| subset | problem | statuses (workloads) | notes |", "| --- | --- | --- | --- |"]
    for subset, name, status, extra in rows:
        lines.append(f"| {subset} | {name} | {status} | {'; '.join(extra.get('reasons', []))} |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    args.out.with_suffix(".jsonl").write_text("".join(json.dumps(t) + "\n" for t in all_traces))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
