"""How often a branch-guarded program (kernelbench.generate.branch_guards) runs its own kernels rather than
the reference, on each workload's fresh inputs.

The program was traced along the branches of round 0's inputs; on round r it falls back exactly when the
reference, on round r's inputs, asks some question of its data differently: then the set of answers (the
guards) recorded by tracing round r differs from round 0's. So each round is traced (real tensors on DEVICE,
no kernel runs) and its guards compared with round 0's.

    PYTHONPATH=$PWD python3 benchmarks/branch_guards.py --out DIR [--rounds 10] [--device cuda] \\
        [--max-workloads N] TASK_DIR ...

writes DIR/branch_guards.json: per task and workload, the guard count and the fraction of rounds 1..R whose
branches match round 0's (1.0: the kernels always run; 0.0: the reference always does).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from kernelbench.core.dtypes import torch_dtype
from kernelbench.core.problem import load_problem
from kernelbench.core.reference import compile_reference
from kernelbench.generate.graph import example_capture, workload_scalar


def guards_of(problem, workload, module, seed: int, device: str):
    specs = {n: s for n, s in problem.definition.inputs.items() if s.is_scalar}
    values = {n: workload_scalar(problem, workload, n) for n in specs}
    as_tensors = {n: torch.tensor(v, dtype=torch_dtype(specs[n].dtype)) for n, v in values.items()}
    try:
        return example_capture(problem, workload, module, as_tensors, seed, device)[1]
    except Exception:  # noqa: BLE001 - as capture_at does: Python numbers next
        if not specs:
            raise
        return example_capture(problem, workload, module, values, seed, device)[1]


def measure(directory: Path, rounds: int, device: str, max_workloads: int) -> list[dict]:
    problem = load_problem(directory)
    module = compile_reference(problem.definition)
    rows = []
    for workload in sorted(problem.workloads, key=problem.workload_size)[:max_workloads]:
        started = time.monotonic()
        try:
            first = guards_of(problem, workload, module, 0, device)
            same = [guards_of(problem, workload, module, seed, device) == first for seed in range(1, rounds + 1)]
        except Exception as exc:  # noqa: BLE001 - reported, the next workload goes on
            rows.append({"uuid": workload.uuid, "axes": workload.axes, "error": f"{type(exc).__name__}: {exc}"[:300]})
            continue
        rows.append({"uuid": workload.uuid, "axes": workload.axes, "guards": len(first),
                     "kernels_run_fraction": sum(same) / len(same), "seconds": round(time.monotonic() - started, 1)})
        print(directory.name, rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tasks", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-workloads", type=int, default=1000)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    for directory in args.tasks:
        results[directory.name] = measure(directory, args.rounds, args.device, args.max_workloads)
        (args.out / "branch_guards.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
