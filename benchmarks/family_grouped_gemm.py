"""The grouped_gemm family on a GPU, beside a torch loop of matmuls (the reference) and torch.compile of it, in bf16.

    PYTHONPATH=. python3 benchmarks/family_grouped_gemm.py OUT_DIR [--configs 3] [--budget-s 40]
    PYTHONPATH=. python3 benchmarks/family_grouped_gemm.py OUT_DIR --dry-run    # CPU interpreter, tiny shapes

Shapes: out[off[e]:off[e+1]] = x[off[e]:off[e+1]] @ W[e]^T, the gate_up projection of Qwen3-30B-A3B's experts
(N = 1536, K = 2048), rows routed by a skewed random routing (some experts empty): decode (128 rows over 128
experts: about one row each, weight-streaming), prefill (16384 rows over 128 experts) and training (65536 rows
over 32 experts, an expert-parallel rank). The family traces the reference once, at a small shape (tracing
unrolls the loop: ~0.3 s an expert); its kernel takes the group count and sizes as parameters, so each shape
is timed through the rendered solution's launcher with that shape's tensors, and checked against the loop.
For each: ours (the first `--configs` configurations of the family's space, best kept), the loop, and
torch.compile of the loop (skipped once `--budget-s` has passed), each timed by triton.testing.do_bench.
Reported: TFLOP/s and % of the roofline bound max(FLOPs / peak, bytes / DRAM bandwidth) (roofline.DATASHEETS),
bytes counting only the weights of experts with rows. Writes OUT_DIR/family_grouped_gemm.{md,json}
(benchmarks/report.py: the JSON after every shape).
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
from kernelbench.core.problem import load_problem
from kernelbench.core.solution import load_entry_point, materialize
from kernelbench.generate.family import FAMILIES
from report import Report, arguments, bench_ms, keep_fastest, number, ours_cell
from roofline import DATASHEETS

N, K = 1536, 2048
SHAPES = [("decode", 128, 128), ("prefill", 16384, 128), ("training", 65536, 32)]   # (regime, rows, experts)
DRY = {"n": 40, "k": 48, "shapes": [("decode", 6, 8), ("prefill", 70, 4)]}
LOOP = '''
import torch


def run(x, w, offsets):
    out = x.new_empty(x.shape[0], w.shape[1])
    bounds = offsets.tolist()
    for e in range(w.shape[0]):
        start, end = bounds[e], bounds[e + 1]
        if end > start:
            out[start:end] = x[start:end] @ w[e].t()
    return out
'''


def grouped_problem(directory: Path, n: int, k: int):
    """An in-memory problem (the loop above) with one small workload: the family traces it in this process."""
    definition = {"name": "bench_grouped_gemm_bf16", "description": "MoE grouped GEMM", "op_type": "grouped_gemm",
                  "axes": {"rows": {"type": "var"}, "experts": {"type": "var"},
                           "offsets_len": {"type": "expr", "expression": "experts + 1"},
                           "n": {"type": "const", "value": n}, "k": {"type": "const", "value": k}},
                  "inputs": {"x": {"shape": ["rows", "k"], "dtype": "bfloat16"},
                             "w": {"shape": ["experts", "n", "k"], "dtype": "bfloat16"},
                             "offsets": {"shape": ["offsets_len"], "dtype": "int32"}},
                  "outputs": {"out": {"shape": ["rows", "n"], "dtype": "bfloat16"}}, "reference": LOOP}
    (directory / "definition.json").write_text(json.dumps(definition))
    (directory / "workload.jsonl").write_text(json.dumps(
        {"uuid": "w0", "axes": {"rows": 16, "experts": 4},
         "inputs": {"x": {"type": "random"}, "w": {"type": "random"}, "offsets": {"type": "random"}},
         "tolerance": {"max_atol": 1e-2, "max_rtol": 2e-2}}) + "\n")
    return dataclasses.replace(load_problem(directory), directory=None)


def routing(rows: int, experts: int, device: str) -> torch.Tensor:
    """Offsets of a skewed routing (softmax of N(0, 1) popularities): uneven groups, some empty."""
    popularity = torch.softmax(torch.randn(experts), 0)
    counts = torch.bincount(torch.multinomial(popularity, rows, replacement=True), minlength=experts)
    offsets = torch.zeros(experts + 1, dtype=torch.int32)
    offsets[1:] = torch.cumsum(counts, 0)
    return offsets.to(device)


def measure(args, report: Report) -> None:
    n, k, shapes = (DRY["n"], DRY["k"], DRY["shapes"]) if args.dry_run else (N, K, SHAPES)
    device = "cpu" if args.dry_run else "cuda"
    hardware = DATASHEETS["H200" if not args.dry_run and "H200" in torch.cuda.get_device_name() else "H100"]
    peak, bandwidth = hardware.tensor["bf16"], hardware.dram_bandwidth
    family = FAMILIES["grouped_gemm"]
    with tempfile.TemporaryDirectory() as scratch:
        problem = grouped_problem(Path(scratch), n, k)
        match = family.match(problem)
    if match is None:
        raise SystemExit(f"the grouped_gemm family refused the loop: {family.last_rejection}")
    loop = {}
    exec(compile(LOOP, "loop", "exec"), loop)   # the reference, as eager runs it
    started = time.monotonic()
    for regime, m, experts in shapes:
        torch.manual_seed(0)
        x = torch.randn(m, k, device=device, dtype=torch.bfloat16)
        w = torch.randn(experts, n, k, device=device, dtype=torch.bfloat16) / k ** 0.5
        offsets = routing(m, experts, device)
        expected = loop["run"](x, w, offsets)
        used = int((offsets[1:] > offsets[:-1]).sum())
        flops, moved = 2.0 * m * n * k, 2 * (m * k + used * n * k + m * n)
        bound_ms = max(flops / peak, moved / bandwidth) * 1e3
        row = {"regime": regime, "rows": m, "experts": experts, "experts_used": used, "n": n, "k": k,
               "ours": {}, "errors": {}}
        axes = {"rows": m, "experts": experts, "offsets_len": experts + 1, "n": n, "k": k}
        for config in family.space(match, axes)[:args.configs]:
            solution = family.render(match, config)
            kernel = load_entry_point(solution, materialize(solution)).__globals__
            out = torch.empty(m, n, device=device, dtype=torch.bfloat16)

            def ours():   # the traced program's launch with this shape's tensors and group count
                kernel["_grouped"](kernel["_g0_main"], x, w.transpose(1, 2), offsets, experts, True, (), (), (out,))
            ours()
            name = json.dumps(config, sort_keys=True)
            error = (out.float() - expected.float()).abs().max().item()
            if error > 1e-2 + 2e-2 * expected.float().abs().max().item():
                row["errors"][name] = f"max error {error:.3g}"
                continue
            row["ours"][name] = bench_ms(ours, args.dry_run)
        row["loop_ms"] = bench_ms(lambda: loop["run"](x, w, offsets), args.dry_run)
        if not args.dry_run and not args.no_compile and time.monotonic() - started < args.budget_s:
            compiled = torch.compile(loop["run"])   # sizes of groups vary: dynamic after the first recompile
            compiled(x, w, offsets)
            row["compile_ms"] = bench_ms(lambda: compiled(x, w, offsets), False)
            torch._dynamo.reset()
        for key in ("loop_ms", "compile_ms"):
            if row.get(key):
                row[key.replace("_ms", "_tflops")] = flops / row[key] / 1e9
        ms = keep_fastest(row)
        if ms is not None:
            row.update(ours_tflops=flops / ms / 1e9, ours_bound=bound_ms / ms)
        row["bound_ms"] = bound_ms
        report.add(row)


def markdown(header: str, rows: list[dict]) -> str:
    lines = [header, "", "| regime | rows / experts (used) | N x K | ours (ms) | ours TFLOP/s | % of roofline bound "
             "| loop (ms) | compile (ms) | loop / ours | best config |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = r["loop_ms"] / r["ours_ms"] if r.get("ours_ms") and r.get("loop_ms") else None
        ours = ours_cell(r)
        lines.append(f"| {r['regime']} | {r['rows']} / {r['experts']} ({r['experts_used']}) | {r['n']} x {r['k']} | "
                     f"{ours} | {number(r.get('ours_tflops'), '.1f')} | {number(r.get('ours_bound'), '.1%')} | "
                     f"{number(r.get('loop_ms'), '.4f')} | {number(r.get('compile_ms'), '.4f')} | "
                     f"{number(ratio, '.2f')} | {r.get('best_config', '-')} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = arguments(__doc__, configs=3, budget_s=40.0)
    args = parser.parse_args()
    report = Report(args.out, "family_grouped_gemm", "grouped_gemm family", args.dry_run)
    measure(args, report)
    report.finish(markdown(report.heading, report.rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
