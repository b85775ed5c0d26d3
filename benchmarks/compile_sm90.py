"""Every generated Triton kernel compiled for Hopper (sm_90) on this machine, no GPU needed: the pre-flight
before GPU time is spent.

    python3 benchmarks/compile_sm90.py OUT_DIR [TASK_DIR ...] [--families fused,gemm,rowwise] [--jobs 2]
    PYTHONPATH=/tmp/triton36:. python3 benchmarks/compile_sm90.py ...   # with the GPU machine's Triton version

For each task (default: every tasks235 problem) and each family that matches it: every configuration that
the family's space proposes for any of the task's workloads is rendered, and the solution is run once on the
smallest workload's inputs (CPU tensors) inside kernelbench.eval.cross_compile.CrossCompile, so each kernel
launch compiles for sm_90 instead of running. A configuration changes speed, never results, so every one is
legal at the smallest shape. Writes OUT_DIR/compile_sm90.{json,md}: per task and family, kernels compiled and
each compiler error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, TimeoutError as FutureTimeout
from pathlib import Path

os.environ.pop("TRITON_INTERPRET", None)   # before triton is imported: kernels must compile, not interpret

import torch
import triton
from triton.backends.compiler import GPUTarget

import kernelbench.generate.families  # noqa: F401  (registers the families)
from kernelbench.core.inputs import generate_inputs
from kernelbench.core.problem import load_problem
from kernelbench.core.reference import compile_reference
from kernelbench.core.solution import load_entry_point, materialize
from kernelbench.eval.buffers import allocate_outputs
from kernelbench.eval.cross_compile import CrossCompile
from kernelbench.generate.family import FAMILIES

ROOT = Path(__file__).resolve().parents[1]
TARGET = GPUTarget("cuda", 90, 32)


def check_task(directory: Path, families: list[str]) -> dict:
    problem = load_problem(directory)
    smallest = min(problem.workloads, key=problem.workload_size)
    module = compile_reference(problem.definition)
    inputs = None
    row = {"task": f"{directory.parent.name}/{directory.name}", "families": {}}
    for name in families:
        family = FAMILIES[name]
        match = family.match(problem)
        if match is None:
            continue
        configs = []
        for workload in problem.workloads:
            for config in family.space(match, problem.axes_for(workload)):
                if config not in configs:
                    configs.append(config)
        if inputs is None:
            inputs = generate_inputs(problem, smallest, seed=1, device="cpu", reference_module=module)
        compiler, errors = CrossCompile(TARGET), []
        for config in configs:
            solution = family.render(match, config)
            run = load_entry_point(solution, materialize(solution))
            outputs = allocate_outputs(problem, smallest, torch.device("cpu")) \
                if solution.destination_passing_style else []
            try:
                with compiler:
                    run(*[v.clone() if isinstance(v, torch.Tensor) else v for v in inputs], *outputs)
            except Exception as exc:  # noqa: BLE001 - host code on unwritten outputs may fail after its launches
                errors.append(f"{json.dumps(config, sort_keys=True)}: host {type(exc).__name__}: {exc}"[:300])
        row["families"][name] = {
            "configs": len(configs), "kernels": len(compiler.results),
            "failures": [{"kernel": f.kernel, "signature": f.signature, "error": f.error}
                         for f in compiler.failures],
            "host_errors": errors}
    return row


def markdown(rows: list[dict], header: str) -> str:
    lines = [header, "", "| task | family | configs | kernels compiled | failed | host errors |", "|---|---|---|---|---|---|"]
    failures = []
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['task']} | - | - | - | - | {row['error'][:120]} |")
            continue
        for name, f in row["families"].items():
            lines.append(f"| {row['task']} | {name} | {f['configs']} | {f['kernels']} | {len(f['failures'])} "
                         f"| {len(f['host_errors'])} |")
            failures += [f"### {row['task']} {name} `{x['kernel']}({x['signature'][:200]})`\n\n```\n{x['error']}\n```"
                         for x in f["failures"]]
    return "\n".join(lines + [""] + failures) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("tasks", nargs="*", type=Path)
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per task")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    tasks = args.tasks or sorted(p.parent for p in (ROOT / "tasks235").glob("*/*/definition.json"))
    families = args.families.split(",")
    rows = []
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = {pool.submit(check_task, t, families): t for t in tasks}
        for future, directory in futures.items():
            try:
                rows.append(future.result(timeout=args.timeout))
            except FutureTimeout:
                rows.append({"task": directory.name, "error": f"ran past {args.timeout:.0f} s"})
            except Exception as exc:  # noqa: BLE001 - one task's failure is a row
                rows.append({"task": directory.name, "error": f"{type(exc).__name__}: {exc}"[:300]})
            print(json.dumps(rows[-1])[:300], flush=True)
            write(args.out, rows)   # after every task: a run cut short keeps what it checked
    return 0


def write(out: Path, rows: list[dict]) -> None:
    header = (f"# Generated kernels compiled for sm_90 on the CPU, {time.strftime('%Y-%m-%d')}: "
              f"torch {torch.__version__}, triton {triton.__version__}")
    (out / "compile_sm90.json").write_text(json.dumps({"header": header, "results": rows}, indent=1))
    (out / "compile_sm90.md").write_text(markdown(rows, header))


if __name__ == "__main__":
    sys.exit(main())
