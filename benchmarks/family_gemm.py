"""The gemm family on a GPU, beside cuBLAS (torch.matmul) and torch.compile's max-autotune, in bf16.

    PYTHONPATH=. python3 benchmarks/family_gemm.py OUT_DIR [--configs 3] [--budget-s 200]
    PYTHONPATH=. python3 benchmarks/family_gemm.py OUT_DIR --tasks TASK_DIR ...   # the family on given tasks
    PYTHONPATH=. python3 benchmarks/family_gemm.py OUT_DIR --dry-run              # CPU interpreter, tiny shapes
    PYTHONPATH=. python3 benchmarks/family_gemm.py OUT_DIR --regimes decode --configs 4   # decode rows alone

Shapes: y = x @ W^T (nn.Linear, bf16 in and out, fp32 accumulation) for decode (M = 1..16 rows, weight-streaming,
memory-bound; the space's second and fourth configurations run up to 8 rows on the CUDA-core kernel), prefill (M = 2048..8192) and training (M >= 8192, N and K 4096..14336) shapes of Llama-class models.
For each: ours (the family's render at the first `--configs` configurations of its space, best kept), cuBLAS,
and torch.compile(mode="max-autotune-no-cudagraphs") (skipped once `--budget-s` has passed: its autotuning takes
tens of seconds a shape), each timed by triton.testing.do_bench and checked against torch.matmul. Reported:
TFLOP/s, % of the datasheet dense bf16 peak and % of the roofline bound max(FLOPs / peak, bytes / DRAM bandwidth)
(roofline.DATASHEETS). --tasks: the family's render at its first configurations on each task's workloads
(all of them, or the smallest two with --dry-run), against the reference. Writes OUT_DIR/family_gemm.{md,json}.
"""

from __future__ import annotations

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

import kernelbench.generate.families  # noqa: F401  (registers the families)
from kernelbench.core.correctness import as_output_list, compare
from kernelbench.core.inputs import generate_inputs
from kernelbench.core.problem import load_problem
from kernelbench.core.reference import compile_reference
from kernelbench.core.solution import load_entry_point, materialize
from kernelbench.core.statuses import PASSED
from kernelbench.generate.family import FAMILIES
from report import Report, arguments, bench_ms, keep_fastest, number, ours_cell
from roofline import DATASHEETS

# (regime, M, N, K): Llama-3-8B o_proj / gate_up / down_proj, Llama-3-70B shards, Mistral
SHAPES = [("decode", 1, 4096, 4096), ("decode", 1, 1024, 4096), ("decode", 4, 14336, 4096),
          ("decode", 8, 14336, 4096), ("decode", 16, 4096, 14336),
          ("prefill", 2048, 4096, 4096), ("prefill", 4096, 14336, 4096), ("prefill", 8192, 4096, 14336),
          ("training", 8192, 8192, 8192), ("training", 16384, 4096, 14336), ("training", 16384, 14336, 4096)]
DRY_SHAPES = [("decode", 3, 40, 70), ("prefill", 33, 40, 70)]
LINEAR = "import torch\nimport torch.nn.functional as F\n\n\ndef run(x, w):\n    return F.linear(x, w)\n"


def linear_problem(shapes: list[tuple], directory: Path):
    """An in-memory problem y = x @ w^T with one workload per (M, N, K): the family matches it in this process."""
    definition = {"name": "bench_linear_bf16", "description": "y = x @ W^T", "op_type": "gemm",
                  "axes": {"m": {"type": "var"}, "n": {"type": "var"}, "k": {"type": "var"}},
                  "inputs": {"x": {"shape": ["m", "k"], "dtype": "bfloat16"},
                             "w": {"shape": ["n", "k"], "dtype": "bfloat16"}},
                  "outputs": {"y": {"shape": ["m", "n"], "dtype": "bfloat16"}}, "reference": LINEAR}
    (directory / "definition.json").write_text(json.dumps(definition))
    lines = [json.dumps({"uuid": f"w{i}", "axes": {"m": m, "n": n, "k": k},
                         "inputs": {"x": {"type": "random"}, "w": {"type": "random"}},
                         "tolerance": {"max_atol": 1e-2, "max_rtol": 2e-2}}) for i, (_, m, n, k) in enumerate(shapes)]
    (directory / "workload.jsonl").write_text("\n".join(lines) + "\n")
    return dataclasses.replace(load_problem(directory), directory=None)


def measure_shapes(args, report: Report) -> None:
    shapes = [s for s in (DRY_SHAPES if args.dry_run else SHAPES) if not args.regimes or s[0] in args.regimes]
    device = "cpu" if args.dry_run else "cuda"
    hardware = DATASHEETS["H200" if not args.dry_run and "H200" in torch.cuda.get_device_name() else "H100"]
    peak, bandwidth = hardware.tensor["bf16"], hardware.dram_bandwidth
    family = FAMILIES["gemm"]
    with tempfile.TemporaryDirectory() as scratch:
        problem = linear_problem(shapes, Path(scratch))
        match = family.match(problem)
    if match is None:
        raise SystemExit(f"the gemm family refused y = x @ W^T: {family.last_rejection}")
    started = time.monotonic()
    for regime, m, n, k in shapes:
        torch.manual_seed(0)
        x = torch.randn(m, k, device=device, dtype=torch.bfloat16)
        w = torch.randn(n, k, device=device, dtype=torch.bfloat16) / k ** 0.5
        expected = torch.matmul(x, w.t())
        flops, moved = 2.0 * m * n * k, 2 * (m * k + n * k + m * n)
        bound_ms = max(flops / peak, moved / bandwidth) * 1e3
        row = {"regime": regime, "m": m, "n": n, "k": k, "ours": {}, "errors": {}}
        for config in family.space(match, {"m": m, "n": n, "k": k})[:args.configs]:
            solution = family.render(match, config)
            run = load_entry_point(solution, materialize(solution))
            out = torch.empty(m, n, device=device, dtype=torch.bfloat16)
            run(x, w, out)
            name = json.dumps(config, sort_keys=True)
            error = (out.float() - expected.float()).abs().max().item()
            if error > 1e-2 + 2e-2 * expected.float().abs().max().item():
                row["errors"][name] = f"max error {error:.3g}"
                continue
            row["ours"][name] = bench_ms(lambda: run(x, w, out), args.dry_run)
        row["cublas_ms"] = bench_ms(lambda: torch.matmul(x, w.t()), args.dry_run)
        if not args.dry_run and not args.no_compile and time.monotonic() - started < args.budget_s:
            compiled = torch.compile(lambda a, b: a @ b.t(), mode="max-autotune-no-cudagraphs", dynamic=False)
            compiled(x, w)
            row["compile_ms"] = bench_ms(lambda: compiled(x, w), False)
            torch._dynamo.reset()
        for key in ("cublas_ms", "compile_ms"):
            if row.get(key):
                row[key.replace("_ms", "_tflops")] = flops / row[key] / 1e9
        ms = keep_fastest(row)
        if ms is not None:
            row.update(ours_tflops=flops / ms / 1e9, ours_peak=flops / peak / (ms / 1e3), ours_bound=bound_ms / ms)
        row["bound_ms"] = bound_ms
        report.add(row)


def measure_tasks(args, report: Report) -> None:
    """The family's render at its first configurations on each task, checked (and timed on a GPU) per workload:
    one report row per task, its workloads under "rows"."""
    family = FAMILIES["gemm"]
    device = "cpu" if args.dry_run else "cuda"
    for directory in args.tasks:
        problem = load_problem(directory)
        match = family.match(problem)
        if match is None:
            report.add({"task": directory.name, "skipped": family.last_rejection[:300]})
            continue
        module = compile_reference(problem.definition)
        workloads = sorted(problem.workloads, key=problem.workload_size)
        rows = []
        for workload in workloads[:2] if args.dry_run else workloads:
            axes = problem.axes_for(workload)
            inputs = generate_inputs(problem, workload, seed=1, device=device, reference_module=module)
            expected = as_output_list(module.run(*inputs), len(problem.definition.outputs))
            row = {"axes": axes, "ours": {}, "errors": {}, "reference_ms": bench_ms(lambda: module.run(*inputs),
                                                                                     args.dry_run)}
            for config in family.space(match, axes)[:args.configs]:
                solution = family.render(match, config)
                run = load_entry_point(solution, materialize(solution))
                outputs = [torch.empty_like(e) for e in expected]
                run(*inputs, *outputs)
                comparison = compare(problem, workload, [o.cpu() for o in outputs], [e.cpu() for e in expected])
                name = json.dumps(config, sort_keys=True)
                if comparison.status != PASSED:
                    row["errors"][name] = comparison.message[:200]
                else:
                    row["ours"][name] = bench_ms(lambda: run(*inputs, *outputs), args.dry_run)
            rows.append(row)
        report.add({"task": directory.name, "summary": match.summary, "rows": rows})


def markdown(header: str, results: list[dict]) -> str:
    """The shapes' table, then one table per task (the rows with a "task" key)."""
    rows, tasks = [r for r in results if "task" not in r], [r for r in results if "task" in r]
    lines = [header, ""]
    if rows:
        lines += ["| regime | M x N x K | ours (ms) | ours TFLOP/s | % of peak | % of roofline bound | cuBLAS TFLOP/s "
                  "| compile TFLOP/s | ours / cuBLAS | best config |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            ratio = r["cublas_ms"] / r["ours_ms"] if r.get("ours_ms") and r.get("cublas_ms") else None
            ours = ours_cell(r)
            lines.append(f"| {r['regime']} | {r['m']} x {r['n']} x {r['k']} | {ours} | "
                         f"{number(r.get('ours_tflops'), '.1f')} | {number(r.get('ours_peak'), '.1%')} | "
                         f"{number(r.get('ours_bound'), '.1%')} | {number(r.get('cublas_tflops'), '.1f')} | "
                         f"{number(r.get('compile_tflops'), '.1f')} | {number(ratio, '.2f')} | "
                         f"{r.get('best_config', '-')} |")
    for task in tasks:
        if "skipped" in task:
            lines.append(f"\n{task['task']}: not matched ({task['skipped'][:200]})")
            continue
        lines += ["", f"{task['task']}: {task['summary']}", "", "| axes | ours best (ms) | reference (ms) | errors |",
                  "|---|---|---|---|"]
        for r in task["rows"]:
            timed = [t for t in r["ours"].values() if t is not None]
            lines.append(f"| {json.dumps(r['axes'])} | {number(min(timed, default=None), '.4f')} | "
                         f"{number(r['reference_ms'], '.4f')} | {'; '.join(r['errors'].values())[:80] or '-'} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = arguments(__doc__, configs=3, budget_s=200.0)
    parser.add_argument("--tasks", nargs="+", type=Path, default=[])
    parser.add_argument("--regimes", nargs="+", default=[], help="only these regimes' shapes (decode, prefill, training)")
    args = parser.parse_args()
    report = Report(args.out, "family_gemm", "gemm family", args.dry_run)
    (measure_tasks if args.tasks else measure_shapes)(args, report)
    report.finish(markdown(report.heading, report.rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
