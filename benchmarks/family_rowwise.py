"""The rowwise family on a GPU, beside torch.compile and Liger-Kernel (one H100, under 4 minutes).

    PYTHONPATH=. python3 benchmarks/family_rowwise.py OUT_DIR [--configs 3] [--budget-s 180]
    PYTHONPATH=. python3 benchmarks/family_rowwise.py OUT_DIR --dry-run      # CPU, Triton interpreter, tiny sizes

Five ops, three sizes each: RMSNorm (tasks235 L1/001, Llama-3 bf16), LayerNorm (L1/024, Whisper fp16 with
bias), fused residual add + RMSNorm (L1/022, hidden 8192), softmax (a plain bf16 softmax problem written into
OUT_DIR/problems) and cross-entropy over a 128k vocabulary (L1/036, mean over non-ignored tokens). For each:
  ours           the family's render of the first `--configs` configurations of its space, best one kept
  torch.compile  the problem's reference under torch.compile(mode="max-autotune-no-cudagraphs", dynamic=False)
  Liger-Kernel   liger_kernel.transformers.functional's kernel for the op (targeted: liger-kernel 0.8.5;
                 skipped, and said so, when it does not import)
  eager          the reference as written
Each is timed by kernelbench.eval.timing (inputs copied to a fresh address and L2 flushed before every call,
CUDA events around the call plus a device-wide sync, so host overhead counts as it does in the evaluator),
and every output is compared with the reference's on the same inputs. GB/s uses the bytes the family declares
(= the roofline's count, tests/test_family_rowwise.py), % of SOL is (bytes / 3.35e12 B/s, the H100 SXM
datasheet) / time. Writes OUT_DIR/family_rowwise.md and OUT_DIR/family_rowwise.json.

--dry-run runs the CPU-side path on this machine: every case matched, rendered, run once through the Triton
interpreter on its smallest size and checked; no timings, no torch.compile.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

if "--dry-run" in sys.argv:
    os.environ.setdefault("TRITON_INTERPRET", "1")   # before triton is imported

import torch

from kernelbench.core.correctness import as_output_list, compare
from kernelbench.core.dtypes import torch_dtype
from kernelbench.core.inputs import generate_inputs
from kernelbench.core.problem import Problem, Workload, load_problem
from kernelbench.core.reference import compile_reference
from kernelbench.core.solution import load_entry_point, materialize
from kernelbench.core.statuses import PASSED
from kernelbench.eval.timing import TimingConfig, time_callable
from kernelbench.generate.family import FAMILIES
import kernelbench.generate.families  # noqa: F401  (registers the families)
from report import Report

ROOT = Path(__file__).resolve().parents[1]
H100_BYTES_PER_S = 3.35e12
LIGER_VERSION = "0.8.5"

try:
    from liger_kernel.transformers import functional as liger
except Exception as exc:  # noqa: BLE001 - any import failure means "not measured", with the reason
    liger, LIGER_ERROR = None, f"{type(exc).__name__}: {exc}"
else:
    LIGER_ERROR = ""

SOFTMAX_REFERENCE = '''import torch


@torch.no_grad()
def run(x):
    return torch.softmax(x.to(torch.float32), dim=-1).to(x.dtype)
'''


@dataclass
class Case:
    op: str
    problem: Path
    sizes: list[dict[str, int]]           # var axes of the timed workloads
    tiny: dict[str, int]                  # var axes for --dry-run
    liger: Callable[..., Any] | None      # the op through Liger, on the problem's inputs (value-returning)


def softmax_problem(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    definition = {"name": "softmax_bf16", "description": "softmax over the last dimension, fp32 math, bf16 out",
                  "axes": {"rows": {"type": "var"}, "cols": {"type": "var"}},
                  "inputs": {"x": {"shape": ["rows", "cols"], "dtype": "bfloat16"}},
                  "outputs": {"y": {"shape": ["rows", "cols"], "dtype": "bfloat16"}},
                  "reference": SOFTMAX_REFERENCE}
    sizes = [(16384, 1024), (4096, 4096), (64, 131072), (8, 1024), (2, 4096)]
    (directory / "definition.json").write_text(json.dumps(definition, indent=2))
    (directory / "workload.jsonl").write_text("".join(
        json.dumps({"uuid": f"softmax-{r}x{c}", "axes": {"rows": r, "cols": c}, "inputs": {"x": {"type": "random"}},
                    "tolerance": {"max_atol": 1e-5, "max_rtol": 2e-2}}) + "\n" for r, c in sizes))
    return directory


def cases(out: Path) -> list[Case]:
    l1 = ROOT / "tasks235" / "L1"
    with_liger = liger is not None
    return [
        Case("RMSNorm", l1 / "001_llama3_8b_rmsnorm",
             [{"batch_size": 1, "seq_len": 1}, {"batch_size": 1, "seq_len": 2048}, {"batch_size": 8, "seq_len": 2048}],
             {"batch_size": 1, "seq_len": 1},
             (lambda x, w, eps: liger.liger_rms_norm(x, w, eps, 0.0, "llama", False)) if with_liger else None),
        Case("LayerNorm", l1 / "024_whisper_large_v3_layernorm",
             [{"batch_size": 16, "seq_len": 1}, {"batch_size": 1, "seq_len": 1500},
              {"batch_size": 32, "seq_len": 1500}],
             {"batch_size": 1, "seq_len": 1},
             (lambda x, w, b, eps: liger.liger_layer_norm(x, w, b, eps)) if with_liger else None),
        Case("fused add + RMSNorm", l1 / "022_llama3_1_70b_fused_add_rmsnorm",
             [{"num_tokens": 1}, {"num_tokens": 256}, {"num_tokens": 8192}], {"num_tokens": 1},
             (lambda x, r, w, eps: liger.liger_fused_add_rms_norm(x, r, w, eps, 0.0, "llama", False))
             if with_liger else None),
        Case("softmax", softmax_problem(out / "problems" / "softmax_bf16"),
             [{"rows": 16384, "cols": 1024}, {"rows": 4096, "cols": 4096}, {"rows": 64, "cols": 131072}],
             {"rows": 2, "cols": 4096},
             (lambda x: liger.liger_softmax(x)) if with_liger else None),
        Case("cross-entropy (128k vocab)", l1 / "036_llama3_8b_cross_entropy",
             [{"num_tokens": 4}, {"num_tokens": 512}, {"num_tokens": 4096}], {"num_tokens": 4},
             (lambda logits, labels: liger.liger_cross_entropy(logits, labels, ignore_index=-100, reduction="mean"))
             if with_liger else None),
    ]


def workload_with(problem: Problem, axes: dict[str, int]) -> Workload:
    for workload in problem.workloads:
        if workload.axes == axes:
            return workload
    raise SystemExit(f"{problem.name} has no workload with axes {axes}")


def allocate_outputs(problem: Problem, workload: Workload, device: str) -> list[torch.Tensor]:
    axes = problem.axes_for(workload)
    return [torch.full(problem.shape_of(s, axes), float("nan"), dtype=torch_dtype(s.dtype), device=device)
            for s in problem.definition.outputs.values()]


def checked(problem: Problem, workload: Workload, outputs: Any, expected: list[Any], peer: bool = False) -> str:
    """"ok" or why not; a peer's outputs are compared in the reference's dtypes (Liger returns the loss in the
    logits' dtype, a cast that is not part of what is timed)."""
    outputs = as_output_list(outputs, len(expected))
    if peer:
        outputs = [o.to(e.dtype) if isinstance(o, torch.Tensor) and isinstance(e, torch.Tensor) else o
                   for o, e in zip(outputs, expected)]
    result = compare(problem, workload, outputs, expected)
    return "ok" if result.status == PASSED else f"{result.status}: {result.message}"


def time_ms(fn: Callable, inputs: list[Any], iterations: int) -> float:
    config = TimingConfig(warmup=max(3, iterations // 5), iterations=iterations)
    return time_callable(fn, inputs, "cuda", config).median_ms


def measure(case: Case, axes: dict[str, int], args, started: float, matched: dict) -> dict:
    family = FAMILIES["rowwise"]
    if case.op not in matched:   # matching traces and verifies: once per problem
        problem = load_problem(case.problem)
        matched[case.op] = (problem, family.match(problem))
    problem, match = matched[case.op]
    if match is None:
        return {"op": case.op, "axes": axes, "error": f"not matched: {family.last_rejection}"}
    device = "cpu" if args.dry_run else "cuda"
    workload = workload_with(problem, axes)
    module = compile_reference(problem.definition)
    inputs = generate_inputs(problem, workload, device=device, seed=0, reference_module=module)
    with torch.no_grad():
        expected = as_output_list(module.run(*[v.clone() if isinstance(v, torch.Tensor) else v for v in inputs]),
                                  len(problem.definition.outputs))
    traffic = family.traffic(match, problem.axes_for(workload))
    row = {"op": case.op, "problem": problem.name, "axes": axes, "bytes": traffic.bytes,
           "sol_ms": traffic.bytes / H100_BYTES_PER_S * 1e3, "results": {}}
    outputs = allocate_outputs(problem, workload, device)
    space = family.space(match, problem.axes_for(workload))
    over_budget = time.monotonic() - started > args.budget_s
    sweep = space[:1] if args.dry_run or over_budget else space[:args.configs]
    best = None
    for config in sweep:
        solution = family.render(match, config)
        run = load_entry_point(solution, materialize(solution))
        run(*inputs, *outputs)
        status = checked(problem, workload, outputs, expected)
        if args.dry_run or status != "ok":
            best = best or {"config": config, "check": status, "ms": None}
            continue
        ms = time_ms(lambda *a, run=run: run(*a, *outputs), inputs, 10)
        if best is None or best["ms"] is None or ms < best["ms"]:
            best = {"config": config, "check": status, "ms": ms, "run": run}
    if best.get("run") is not None:
        run = best.pop("run")
        best["ms"] = time_ms(lambda *a: run(*a, *outputs), inputs, 30)
    best.pop("run", None)
    best["swept"] = len(sweep)
    row["results"]["ours"] = best
    others: dict[str, Callable | None] = {"eager": module.run}
    if args.dry_run:
        row["results"]["torch.compile"] = {"ms": None, "check": "not run in a dry run"}
    else:
        others["torch.compile"] = None if over_budget else \
            torch.compile(module.run, mode="max-autotune-no-cudagraphs", dynamic=False)
    others["liger"] = case.liger
    for name, fn in others.items():
        if fn is None:
            reason = f"liger-kernel {LIGER_VERSION} not importable: {LIGER_ERROR}" if name == "liger" else "over budget"
            row["results"][name] = {"ms": None, "check": reason}
            continue
        try:
            with torch.no_grad():
                status = checked(problem, workload, fn(*[v.clone() if isinstance(v, torch.Tensor) else v
                                                         for v in inputs]), expected, peer=True)
                ms = None if args.dry_run else time_ms(fn, inputs, 30)
        except Exception as exc:  # noqa: BLE001 - a peer that fails on a shape is reported, not fatal
            status, ms = f"failed: {type(exc).__name__}: {str(exc)[:200]}", None
        row["results"][name] = {"ms": ms, "check": status}
    return row


def markdown(rows: list[dict], header: dict) -> str:
    lines = [f"# rowwise family vs torch.compile vs Liger-Kernel ({header['device']})", "",
             f"torch {header['torch']}, triton {header['triton']}, liger-kernel {header['liger']}; "
             f"{header['date']}. Times: median ms (kernelbench.eval.timing: cold L2, fresh addresses, host overhead "
             "included). GB/s over the compulsory bytes; % SOL = (bytes / 3.35 TB/s) / time.", "",
             "| op | shape | MB | ours ms | GB/s | % SOL | torch.compile ms | % SOL | Liger ms | % SOL | eager ms "
             "| our config |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]

    def cell(result: dict, row: dict) -> tuple[str, str, str]:
        ms = result.get("ms")
        if ms is None:
            return ("untimed" if result.get("check", "ok") == "ok" else result.get("check", "n/a")[:40]), "", ""
        note = "" if result.get("check") == "ok" else " (wrong)"
        return f"{ms:.4f}{note}", f"{row['bytes'] / ms / 1e6:.0f}", f"{100 * row['sol_ms'] / ms:.1f}"

    for row in rows:
        if "error" in row:
            lines.append(f"| {row['op']} | {row['axes']} | | {row['error']} | | | | | | | | |")
            continue
        r = row["results"]
        ours, compiled, liger_cell = cell(r["ours"], row), cell(r.get("torch.compile", {}), row), cell(r["liger"], row)
        shape = ", ".join(f"{k}={v}" for k, v in row["axes"].items())
        config = json.dumps(r["ours"].get("config"), sort_keys=True).replace("|", "/")
        lines.append(f"| {row['op']} | {shape} | {row['bytes'] / 1e6:.2f} | {ours[0]} | {ours[1]} | {ours[2]} | "
                     f"{compiled[0]} | {compiled[2]} | {liger_cell[0]} | {liger_cell[2]} | "
                     f"{cell(r['eager'], row)[0]} | `{config}` |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="directory for family_rowwise.md and .json")
    parser.add_argument("--configs", type=int, default=3, help="configurations of the space swept per shape")
    parser.add_argument("--budget-s", type=float, default=180.0,
                        help="past this many seconds: first configuration only, no more torch.compile")
    parser.add_argument("--dry-run", action="store_true", help="CPU, interpreter, smallest sizes, no timing")
    args = parser.parse_args()
    if not args.dry_run and not torch.cuda.is_available():
        raise SystemExit("no GPU: run with --dry-run on CPU")
    report = Report(args.out, "family_rowwise", "rowwise family", args.dry_run,
                    liger=LIGER_VERSION if liger is not None else f"not installed ({LIGER_ERROR[:80]})")
    matched = {}
    for case in cases(args.out):
        for axes in ([case.tiny] if args.dry_run else case.sizes):
            report.add(measure(case, axes, args, report.started, matched))
    report.finish(markdown(report.rows, report.header))
    failures = [r for r in report.rows if "error" in r or r["results"]["ours"].get("check") != "ok"]
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
