"""Selection ops (kernelbench.generate.selection) on a GPU, beside torch.compile and eager: argmax, top-k and an
MoE router, decode to prefill sizes (one H100, a few minutes).

    PYTHONPATH=. python3 benchmarks/family_selection.py OUT_DIR [--configs 2] [--budget-s 240]
    PYTHONPATH=. python3 benchmarks/family_selection.py OUT_DIR --dry-run      # CPU, Triton interpreter

Cases (tasks235, every workload of each, or --sizes N first ones):
  argmax   L1/063: greedy decoding over Qwen3's 151936-entry vocab, fp32, 1-1024 rows (split + merge kernels)
  top-k    L1/074: top-50 of Llama-3's 128256 logits, sorted, 1-1024 rows (per-tile bitonic top-k + merge)
  router   L1/073: gpt-oss top-4 of 32 experts then softmax, 1-131072 tokens (one tile a row: one launch)
  top-2048 heldout/L1/006: DeepSeek-V3.2's indexer keeps 2048 of up to 131072 keys (k > MAX_K: the radix select)
For each: the fused family's render (the front end with the selection kernels) over the first --configs
configurations of its space, best kept (for top-k also "ours (rounds)": every tile's top-50 by 50 rounds of max
instead of the bitonic tl.topk, which decides selection.ROUNDS_MAX_K); torch.compile(mode="max-autotune-no-cudagraphs", dynamic=False) of the
reference; the reference as written (eager). Timed by kernelbench.eval.timing (fresh input addresses, L2 flushed,
host overhead included); every output checked against the reference's. GB/s uses the compulsory bytes (inputs
read once, outputs written once); % SOL = (bytes / 3.35 TB/s, H100 SXM datasheet) / time. Writes
OUT_DIR/family_selection.json and OUT_DIR/family_selection.md.

--dry-run: each case matched, rendered and run once through the interpreter on its smallest workload and
checked; no timing, no torch.compile.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
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
from kernelbench.generate import selection
from report import Report

ROOT = Path(__file__).resolve().parents[1]
H100_BYTES_PER_S = 3.35e12
CASES = {"argmax": "tasks235/L1/063_qwen3_8b_greedy_argmax",
         "top-k": "tasks235/L1/074_llama3_8b_sampling_topk_vocab",
         "router": "tasks235/L1/073_gpt_oss_20b_router_topk_softmax",
         "top-2048": "heldout/L1/006_deepseek_v3_2_indexer_topk"}


def outputs_for(problem: Problem, workload: Workload, device: str) -> list[torch.Tensor]:
    axes = problem.axes_for(workload)
    return [torch.full(problem.shape_of(s, axes), -1, dtype=torch_dtype(s.dtype), device=device)
            for s in problem.definition.outputs.values()]


def compulsory_bytes(inputs: list[Any], outputs: list[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in [*inputs, *outputs] if isinstance(t, torch.Tensor))


def checked(problem: Problem, workload: Workload, outputs: Any, expected: list[Any]) -> str:
    result = compare(problem, workload, as_output_list(outputs, len(expected)), expected)
    return "ok" if result.status == PASSED else f"{result.status}: {result.message}"


def time_ms(fn: Callable, inputs: list[Any], iterations: int) -> float:
    return time_callable(fn, inputs, "cuda", TimingConfig(warmup=max(3, iterations // 5),
                                                          iterations=iterations)).median_ms


def matched(problem: Problem, rounds_max_k: int):
    """The fused family's match, planned in this process (so ROUNDS_MAX_K applies), or None."""
    default, selection.ROUNDS_MAX_K = selection.ROUNDS_MAX_K, rounds_max_k
    try:
        return FAMILIES["fused"].match(dataclasses.replace(problem, directory=None))
    finally:
        selection.ROUNDS_MAX_K = default


def measure(op: str, problem: Problem, matches: dict, workload: Workload, args, over_budget: bool) -> dict:
    family = FAMILIES["fused"]
    device = "cpu" if args.dry_run else "cuda"
    module = compile_reference(problem.definition)
    inputs = generate_inputs(problem, workload, device=device, seed=0, reference_module=module)
    with torch.no_grad():
        expected = as_output_list(module.run(*[v.clone() if isinstance(v, torch.Tensor) else v for v in inputs]),
                                  len(problem.definition.outputs))
    outputs = outputs_for(problem, workload, device)
    row = {"op": op, "problem": problem.name, "axes": workload.axes, "bytes": compulsory_bytes(inputs, outputs),
           "results": {}}
    row["sol_ms"] = row["bytes"] / H100_BYTES_PER_S * 1e3
    for variant, match in matches.items():
        space = family.space(match, problem.axes_for(workload))
        best = None
        for config in space[:1] if args.dry_run or over_budget else space[:args.configs]:
            solution = family.render(match, config)
            run = load_entry_point(solution, materialize(solution))
            run(*inputs, *outputs)
            status = checked(problem, workload, outputs, expected)
            ms = None if args.dry_run or status != "ok" else time_ms(lambda *a, r=run: r(*a, *outputs), inputs, 30)
            if best is None or (ms is not None and (best["ms"] is None or ms < best["ms"])):
                best = {"config": config, "check": status, "ms": ms}
        row["results"][variant] = best
    peers: dict[str, Callable | None] = {"eager": module.run}
    if not args.dry_run:
        peers["torch.compile"] = None if over_budget else \
            torch.compile(module.run, mode="max-autotune-no-cudagraphs", dynamic=False)
    for name, fn in peers.items():
        if fn is None:
            row["results"][name] = {"ms": None, "check": "over budget"}
            continue
        try:
            with torch.no_grad():
                status = checked(problem, workload, fn(*[v.clone() if isinstance(v, torch.Tensor) else v
                                                         for v in inputs]), expected)
                ms = None if args.dry_run else time_ms(fn, inputs, 30)
        except Exception as exc:  # noqa: BLE001 - a peer failing on a shape is reported, not fatal
            status, ms = f"failed: {type(exc).__name__}: {str(exc)[:200]}", None
        row["results"][name] = {"ms": ms, "check": status}
    return row


def markdown(rows: list[dict], header: dict) -> str:
    lines = [f"# {header['title']} vs torch.compile vs eager ({header['device']})", "",
             f"torch {header['torch']}, triton {header['triton']}; {header['date']}. Median ms (cold L2, fresh "
             "addresses, host overhead included); GB/s over the compulsory bytes; % SOL = (bytes / 3.35 TB/s) / time.",
             "", "| op | shape | MB | ours ms | GB/s | % SOL | ours (rounds) ms | torch.compile ms | % SOL | eager ms "
             "| % SOL |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]

    def cell(result: dict, row: dict) -> tuple[str, str, str]:
        ms = result.get("ms")
        if ms is None:
            return ("untimed" if result.get("check", "ok") == "ok" else result.get("check", "n/a")[:40]), "", ""
        return f"{ms:.4f}", f"{row['bytes'] / ms / 1e6:.0f}", f"{100 * row['sol_ms'] / ms:.1f}"

    for row in rows:
        if "error" in row:
            lines.append(f"| {row['op']} | {row['axes']} | | {row['error']} | | | | | | | |")
            continue
        r = row["results"]
        ours, compiled, eager = cell(r["ours"], row), cell(r.get("torch.compile", {}), row), cell(r["eager"], row)
        shape = ", ".join(f"{k}={v}" for k, v in row["axes"].items())
        rounds = cell(r["ours (rounds)"], row)[0] if "ours (rounds)" in r else ""
        lines.append(f"| {row['op']} | {shape} | {row['bytes'] / 1e6:.2f} | {ours[0]} | {ours[1]} | {ours[2]} | "
                     f"{rounds} | {compiled[0]} | {compiled[2]} | {eager[0]} | {eager[2]} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="directory for family_selection.json and .md")
    parser.add_argument("--configs", type=int, default=2, help="configurations of the fused space tried per shape")
    parser.add_argument("--sizes", type=int, default=None, help="the first N workloads of each case (default all)")
    parser.add_argument("--budget-s", type=float, default=240.0,
                        help="past this many seconds: first configuration only, no more torch.compile")
    parser.add_argument("--dry-run", action="store_true", help="CPU, interpreter, smallest workload, no timing")
    args = parser.parse_args()
    if not args.dry_run and not torch.cuda.is_available():
        raise SystemExit("no GPU: run with --dry-run on CPU")
    report = Report(args.out, "family_selection", "selection kernels", args.dry_run)
    for op, task in CASES.items():
        problem = load_problem(ROOT / task)
        matches = {"ours": matched(problem, selection.ROUNDS_MAX_K)}
        if op == "top-k":
            matches["ours (rounds)"] = matched(problem, selection.MAX_K)
        workloads = sorted(problem.workloads, key=problem.workload_size)
        workloads = workloads[:1] if args.dry_run else workloads[:args.sizes]
        for workload in workloads:
            if None in matches.values():
                row = {"op": op, "axes": workload.axes, "error": f"not matched: {FAMILIES['fused'].last_rejection}"}
            else:
                row = measure(op, problem, matches, workload, args,
                              time.monotonic() - report.started > args.budget_s)
            report.add(row)
    report.finish(markdown(report.rows, report.header))
    return 1 if any("error" in r or any(v.get("check") != "ok" for k, v in r["results"].items() if k.startswith("ours"))
                    for r in report.rows) else 0


if __name__ == "__main__":
    sys.exit(main())
