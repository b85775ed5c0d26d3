"""Every tasks235 reference on every workload on the GPU: T_b (eager, optionally torch.compile) and T_SOL.

One process, no sandbox, the evaluator's own timer (fresh input addresses, L2 flush, device-wide
sync): a sweep to show that every reference runs everywhere, to record T_b beside T_SOL, and to
check the roofline's soundness (no measurement may beat T_SOL). Rows are appended and flushed one
by one, so a crash loses nothing already measured, and --resume skips rows already in the CSV.

    PYTHONPATH=. python3 benchmarks/tasks235_sweep.py tasks235 --out benchmarks/results/tasks235_baseline.csv [--compile]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import torch

from kernelbench.core.emulation import reference_context
from kernelbench.eval.gpu_state import environment_info
from kernelbench.core.inputs import generate_inputs
from kernelbench.core.problem import find_problem_dirs, load_problem
from kernelbench.core.reference import compile_reference
from kernelbench.jobs.session import roofline_hardware
from kernelbench.eval.timing import TimingConfig, time_callable
from roofline import sol_for_problem

COLUMNS = ["subset", "task", "uuid", "axes", "status", "t_eager_ms", "t_compile_ms", "t_b_ms", "t_sol_ms",
           "t_sol_measured_ms", "binding", "t_b_over_t_sol", "hardware", "error"]


def time_reference(run, inputs, config: TimingConfig) -> float:
    with reference_context("cuda"):
        return time_callable(run, inputs, "cuda", config).median_ms


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("root", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile of each reference")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    environment = environment_info("cuda")
    hardware = roofline_hardware(environment)
    config = TimingConfig(warmup=args.warmup, iterations=args.iterations)
    done = set()
    if args.resume and args.out.exists():
        done = {(r["task"], r["uuid"]) for r in csv.DictReader(args.out.open())}
    new_file = not args.out.exists() or not args.resume
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sink = args.out.open("w" if new_file else "a", newline="")
    writer = csv.DictWriter(sink, fieldnames=COLUMNS)
    if new_file:
        writer.writeheader()
    start = time.monotonic()
    for directory in find_problem_dirs(args.root):
        problem = load_problem(directory)
        module = compile_reference(problem.definition)
        sols = {s.uuid: s for s in sol_for_problem(problem, hardware, "datasheet")}
        try:
            measured = {s.uuid: s for s in sol_for_problem(problem, hardware, "measured")}
        except Exception:
            measured = {}
        compiled = torch.compile(module.run) if args.compile else None
        for workload in problem.workloads:
            if (problem.name, workload.uuid) in done:
                continue
            row = {"subset": problem.subset, "task": problem.name, "uuid": workload.uuid,
                   "axes": json.dumps(workload.axes), "hardware": environment["hardware"], "status": "ok",
                   "t_sol_ms": sols[workload.uuid].t_sol_s * 1e3, "binding": sols[workload.uuid].binding,
                   "t_sol_measured_ms": measured[workload.uuid].t_sol_s * 1e3 if workload.uuid in measured else None}
            try:
                inputs = generate_inputs(problem, workload, device="cuda", seed=0, reference_module=module)
                row["t_eager_ms"] = time_reference(module.run, inputs, config)
                if compiled is not None:
                    try:
                        row["t_compile_ms"] = time_reference(compiled, inputs, config)
                    except Exception as exc:  # a compile failure is not the reference's
                        row["error"] = f"compile: {type(exc).__name__}: {str(exc)[:200]}"
                times = [t for t in (row.get("t_eager_ms"), row.get("t_compile_ms")) if t]
                row["t_b_ms"] = min(times)
                row["t_b_over_t_sol"] = row["t_b_ms"] / row["t_sol_ms"]
                if row["t_b_ms"] < (row["t_sol_measured_ms"] or row["t_sol_ms"]):
                    row["status"] = "BELOW_T_SOL"
            except Exception as exc:
                row["status"], row["error"] = "error", f"{type(exc).__name__}: {str(exc)[:300]}"
            finally:
                inputs = None
                torch.cuda.empty_cache()
            writer.writerow(row)
            sink.flush()
        print(f"{time.monotonic() - start:7.1f}s {problem.subset}/{problem.name}", flush=True)
    sink.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
