"""Scan kernels (kernelbench.generate.scans) on a GPU, beside torch.compile and eager: bare cumsum / cumprod /
logcumsumexp / cummax over rows short and long, and tasks235 problems that scan (one H100, a few minutes).

    PYTHONPATH=. python3 benchmarks/family_scans.py OUT_DIR [--configs 2] [--budget-s 240]
    PYTHONPATH=. python3 benchmarks/family_scans.py OUT_DIR --dry-run      # CPU, Triton interpreter

Cases: synthetic problems (built here, one op each, fp32 / bf16 / bool rows of 128 to 1048576 columns: one tile,
swept in passes, or split into chunks over many programs: 1 x 1048576) and tasks235 L1/076 (mamba2 chunk
cumsum), L1/077 (MoE capacity cumsum), L1/078 (top-p filter), L1/091 (chunk cumsum backward), every
workload (or --sizes N first ones). For each: the fused family's render (the front end with the scan
kernels) over the first --configs configurations of its space, best kept;
torch.compile(mode="max-autotune-no-cudagraphs", dynamic=False) of the reference; the reference as written
(eager). Timing, checks, GB/s and % SOL as benchmarks/family_selection.py does them (compulsory bytes, 3.35 TB/s).
Writes OUT_DIR/family_scans.json and OUT_DIR/family_scans.md.

--dry-run: each case matched, rendered and run once through the interpreter on its smallest workload and
checked; no timing, no torch.compile.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

if "--dry-run" in sys.argv:
    os.environ.setdefault("TRITON_INTERPRET", "1")   # before triton is imported

import torch

from family_selection import markdown, measure  # the same timing, checks and table

import kernelbench.generate.families  # noqa: F401  (registers the families)
from kernelbench.core.problem import load_problem
from kernelbench.generate.family import FAMILIES
from report import Report

ROOT = Path(__file__).resolve().parents[1]
TASKS = {"mamba2 chunk cumsum": "L1/076_mamba2_2_7b_chunk_cumsum", "capacity cumsum": "L1/077_switch_base_128_capacity_cumsum",
         "top-p filter": "L1/078_llama3_8b_top_p_filter", "chunk cumsum bwd": "L1/091_mamba2_2_7b_chunk_cumsum_backward"}
# name -> (expression of x, input dtype, output dtype); rows x width below
SYNTHETIC = {"cumsum fp32": ("torch.cumsum(x, -1)", "float32", "float32"),
             "cumsum bf16": ("torch.cumsum(x, -1)", "bfloat16", "bfloat16"),
             "cumsum mask": ("torch.cumsum(x > 0, -1)", "float32", "int64"),
             "cumprod fp32": ("torch.cumprod(1.0 + 0.001 * x, -1)", "float32", "float32"),
             "logcumsumexp fp32": ("torch.logcumsumexp(x, -1)", "float32", "float32"),
             "cummax idx fp32": ("torch.cummax(x, -1)[1]", "float32", "int64")}
SHAPES = [(4096, 128), (1024, 4096), (64, 131072), (1, 1048576)]


def synthetic(directory: Path, name: str, expression: str, dtype: str, out_dtype: str):
    """A problem directory: run(x) = expression over [rows, width] rows, one workload per SHAPES entry."""
    path = directory / name.replace(" ", "_")
    path.mkdir(parents=True, exist_ok=True)
    definition = {"name": path.name, "description": f"bare {name}", "op_type": "scan",
                  "axes": {"rows": {"type": "var"}, "width": {"type": "var"}},
                  "inputs": {"x": {"shape": ["rows", "width"], "dtype": dtype}},
                  "outputs": {"y": {"shape": ["rows", "width"], "dtype": out_dtype}},
                  "reference": f"import torch\n\ndef run(x):\n    return {expression}\n"}
    (path / "definition.json").write_text(json.dumps(definition, indent=1))
    (path / "workload.jsonl").write_text("".join(
        json.dumps({"uuid": f"w{i}", "axes": {"rows": r, "width": w}, "inputs": {"x": {"type": "random"}},
                    "tolerance": {"max_atol": 1e-2, "max_rtol": 1e-2}}) + "\n"
        for i, (r, w) in enumerate(SHAPES)))
    return load_problem(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="directory for family_scans.json and .md")
    parser.add_argument("--configs", type=int, default=2, help="configurations of the fused space tried per shape")
    parser.add_argument("--sizes", type=int, default=None, help="the first N workloads of each case (default all)")
    parser.add_argument("--budget-s", type=float, default=240.0,
                        help="past this many seconds: first configuration only, no more torch.compile")
    parser.add_argument("--dry-run", action="store_true", help="CPU, interpreter, smallest workload, no timing")
    args = parser.parse_args()
    if not args.dry_run and not torch.cuda.is_available():
        raise SystemExit("no GPU: run with --dry-run on CPU")
    report = Report(args.out, "family_scans", "scan kernels", args.dry_run)
    with tempfile.TemporaryDirectory() as scratch:
        cases = {name: synthetic(Path(scratch), name, *spec) for name, spec in SYNTHETIC.items()}
        cases.update({name: load_problem(ROOT / "tasks235" / task) for name, task in TASKS.items()})
        for op, problem in cases.items():
            match = FAMILIES["fused"].match(dataclasses.replace(problem, directory=None))
            workloads = sorted(problem.workloads, key=problem.workload_size)
            workloads = workloads[:1] if args.dry_run else workloads[:args.sizes]
            for workload in workloads:
                if match is None:
                    row = {"op": op, "axes": workload.axes,
                           "error": f"not matched: {FAMILIES['fused'].last_rejection}"}
                else:
                    row = measure(op, problem, {"ours": match}, workload, args,
                                  time.monotonic() - report.started > args.budget_s)
                report.add(row)
    report.finish(markdown(report.rows, report.header))
    return 1 if any("error" in r or r["results"]["ours"].get("check") != "ok" for r in report.rows) else 0


if __name__ == "__main__":
    sys.exit(main())
