"""The scaled_gemm family on a GPU: fp8 (e4m3) products with per-tensor, per-row and 1x128 / 128x128 block scales,
beside torch._scaled_mm (cuBLAS / CUTLASS fp8), the reference (dequantize to fp32, fp32 matmul) and torch.compile
of the reference.

    PYTHONPATH=. python3 benchmarks/family_scaled_gemm.py OUT_DIR [--configs 2] [--budget-s 45]
    PYTHONPATH=. python3 benchmarks/family_scaled_gemm.py OUT_DIR --dry-run        # CPU interpreter, tiny shapes
    PYTHONPATH=/tmp/triton36:. python3 benchmarks/family_scaled_gemm.py OUT_DIR --cross-compile   # sm_90, no GPU
    PYTHONPATH=. python3 benchmarks/family_scaled_gemm.py OUT_DIR --tasks TASK_DIR ...   # the family on tasks

Shapes (M, N, K): decode 16 x 7168 x 2048 (DeepSeek-V3's shared-expert down_proj), prefill 2048 x 7680 x 7680
(Qwen3-VL's o_proj), training 8192 x 8192 x 8192. Each scale kind is one in-memory problem whose reference is the
tasks' dequantize-then-matmul, bf16 out; the family's render at its first `--configs` configurations (best kept),
each checked against the reference, timed by triton.testing.do_bench. Reported: TFLOP/s, % of the datasheet dense
fp8 peak, and the peers' TFLOP/s (torch._scaled_mm where it takes that scale kind on this build; torch.compile
skipped once `--budget-s` has passed). --cross-compile: every configuration of every shape and kind compiled for
sm_90 (kernelbench.eval.cross_compile) with the fp8 tensor-core dot (FP8_DOT) and with the bf16 fallback.
Writes OUT_DIR/family_scaled_gemm.{md,json}.
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
if "--cross-compile" in sys.argv:
    os.environ.pop("TRITON_INTERPRET", None)          # kernels must compile, not interpret

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

SHAPES = [("decode", 16, 7168, 2048), ("prefill", 2048, 7680, 7680), ("training", 8192, 8192, 8192)]
DRY_SHAPES = [("decode", 3, 160, 256), ("prefill", 33, 200, 384)]
FP8_MAX = 448.0
BLOCK = 128
HEADER = "import torch\n\n\ndef run(x8, xs, w8, ws):\n"
# scale kind -> (reference body, activation scale shape, weight scale shape)
KINDS = {
    "tensor": ("    return ((x8.float() * xs) @ (w8.float() * ws).t()).to(torch.bfloat16)\n", ["1"], ["1"]),
    "row": ("    return ((x8.float() * xs) @ (w8.float() * ws).t()).to(torch.bfloat16)\n", ["m", "1"], ["n", "1"]),
    "block": ("    k, n = x8.shape[1], w8.shape[0]\n"
              "    x = x8.float() * xs.repeat_interleave(128, dim=1)[:, :k]\n"
              "    s = ws.repeat_interleave(128, dim=0).repeat_interleave(128, dim=1)[:n, :k]\n"
              "    return (x @ (w8.float() * s).t()).to(torch.bfloat16)\n", ["m", "kb"], ["nb", "kb"]),
}


def problem_of(kind: str, shapes: list[tuple], directory: Path):
    body, x_scale, w_scale = KINDS[kind]
    definition = {"name": f"bench_fp8_{kind}", "description": f"{kind}-scaled fp8 y = x @ W^T", "op_type": "gemm",
                  "axes": {a: {"type": "var"} for a in ("m", "n", "k", "kb", "nb")},
                  "inputs": {"x8": {"shape": ["m", "k"], "dtype": "float8_e4m3fn"},
                             "xs": {"shape": x_scale, "dtype": "float32"},
                             "w8": {"shape": ["n", "k"], "dtype": "float8_e4m3fn"},
                             "ws": {"shape": w_scale, "dtype": "float32"}},
                  "outputs": {"y": {"shape": ["m", "n"], "dtype": "bfloat16"}}, "reference": HEADER + body}
    (directory / "definition.json").write_text(json.dumps(definition))
    lines = [json.dumps({"uuid": f"w{i}", "axes": axes_of(m, n, k),
                         "inputs": {x: {"type": "random"} for x in ("x8", "xs", "w8", "ws")},
                         "tolerance": {"max_atol": 2e-2, "max_rtol": 2e-2}}) for i, (_, m, n, k) in enumerate(shapes)]
    (directory / "workload.jsonl").write_text("\n".join(lines) + "\n")
    return dataclasses.replace(load_problem(directory), directory=None)


def axes_of(m: int, n: int, k: int) -> dict[str, int]:
    return {"m": m, "n": n, "k": k, "kb": -(-k // BLOCK), "nb": -(-n // BLOCK)}


def quantized(t: torch.Tensor, kind: str, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """t as e4m3 codes and float32 dequantization scales (amax / 448) per tensor, per row, or per block of `rows`
    rows x 128 columns."""
    m, k = t.shape
    if kind == "tensor":
        scale = (t.abs().amax() / FP8_MAX).clamp(min=1e-12).reshape(1)
        return (t / scale).to(torch.float8_e4m3fn), scale
    if kind == "row":
        scale = (t.abs().amax(dim=1, keepdim=True) / FP8_MAX).clamp(min=1e-12)
        return (t / scale).to(torch.float8_e4m3fn), scale
    blocks = torch.nn.functional.pad(t, (0, -k % BLOCK, 0, -m % rows)).reshape(-(-m // rows), rows, -(-k // BLOCK),
                                                                               BLOCK)
    scale = (blocks.abs().amax(dim=(1, 3), keepdim=True) / FP8_MAX).clamp(min=1e-12)
    codes = (blocks / scale).to(torch.float8_e4m3fn).reshape(-(-m // rows) * rows, -1)[:m, :k]
    return codes.contiguous(), scale.reshape(-(-m // rows), -(-k // BLOCK))


def scaled_mm(kind: str, x8, xs, w8, ws):
    """torch._scaled_mm on the same operands, or None where this build takes no such scales."""
    if kind == "block":   # DeepSeek-style 1x128 x 128x128 (newer builds; the scales' layouts as cuBLAS wants them)
        scale_a, scale_b = xs.t().contiguous().t(), ws
    else:
        scale_a, scale_b = (xs, ws) if kind == "tensor" else (xs, ws.reshape(1, -1))
    try:
        call = lambda: torch._scaled_mm(x8, w8.t(), scale_a=scale_a, scale_b=scale_b, out_dtype=torch.bfloat16)
        call()
        return call
    except (RuntimeError, NotImplementedError, TypeError) as exc:
        return str(exc).splitlines()[0][:120]


def measure(args, report: Report) -> None:
    shapes = DRY_SHAPES if args.dry_run else SHAPES
    device = "cpu" if args.dry_run or args.cross_compile else "cuda"
    gpu = not (args.dry_run or args.cross_compile)
    hardware = DATASHEETS["H200" if gpu and "H200" in torch.cuda.get_device_name() else "H100"]
    peak = hardware.tensor["fp8"]
    family = FAMILIES["scaled_gemm"]
    started = time.monotonic()
    for kind in args.kinds:
        with tempfile.TemporaryDirectory() as scratch:
            problem = problem_of(kind, shapes, Path(scratch))
            match = family.match(problem)
        if match is None:
            raise SystemExit(f"the scaled_gemm family refused the {kind}-scaled product: {family.last_rejection}")
        reference = compile_reference(problem.definition).run
        for regime, m, n, k in shapes:
            torch.manual_seed(0)
            x8, xs = quantized(torch.randn(m, k, device=device), kind, 1)
            w8, ws = quantized(torch.randn(n, k, device=device) / k ** 0.5, kind, BLOCK)
            inputs = (x8, xs, w8, ws)
            flops = 2.0 * m * n * k
            row = {"kind": kind, "regime": regime, "m": m, "n": n, "k": k, "ours": {}, "errors": {}}
            expected = None if args.cross_compile else reference(*inputs)
            for config in family.space(match, axes_of(m, n, k))[:args.configs]:
                solution = family.render(match, config)
                run = load_entry_point(solution, materialize(solution))
                out = torch.empty(m, n, device=device, dtype=torch.bfloat16)
                name = json.dumps(config, sort_keys=True)
                if args.cross_compile:
                    row["ours"][name] = cross_compiled(run, inputs, out)
                    continue
                run(*inputs, out)
                error = (out.float() - expected.float()).abs().max().item()
                if error > 2e-2 + 2e-2 * expected.float().abs().max().item():
                    row["errors"][name] = f"max error {error:.3g}"
                    continue
                row["ours"][name] = bench_ms(lambda: run(*inputs, out), args.dry_run)
            if gpu:
                row["reference_ms"] = bench_ms(lambda: reference(*inputs), False)
                peer = scaled_mm(kind, *inputs)
                row["scaled_mm_ms"] = bench_ms(peer, False) if callable(peer) else None
                row["scaled_mm_note"] = None if callable(peer) else peer
                if time.monotonic() - started < args.budget_s:
                    compiled = torch.compile(reference, mode="max-autotune-no-cudagraphs", dynamic=False)
                    compiled(*inputs)
                    row["compile_ms"] = bench_ms(lambda: compiled(*inputs), False)
                    torch._dynamo.reset()
                for key in ("reference_ms", "scaled_mm_ms", "compile_ms"):
                    if row.get(key):
                        row[key.replace("_ms", "_tflops")] = flops / row[key] / 1e9
                ms = keep_fastest(row)
                if ms is not None:
                    row.update(ours_tflops=flops / ms / 1e9, ours_peak=flops / peak / (ms / 1e3))
            report.add(row)


def measure_tasks(args, report: Report) -> None:
    """The family's render at its first configuration on each task: every workload checked against the reference
    (the task's tolerance), and timed beside it on a GPU."""
    family = FAMILIES["scaled_gemm"]
    device = "cpu" if args.dry_run else "cuda"
    for directory in args.tasks:
        problem = load_problem(directory)
        match = family.match(problem)
        if match is None:
            report.add({"task": directory.name, "errors": {"match": family.last_rejection[:300]}, "ours": {}})
            continue
        module = compile_reference(problem.definition)
        for workload in sorted(problem.workloads, key=problem.workload_size)[:2 if args.dry_run else None]:
            axes = problem.axes_for(workload)
            config = family.space(match, axes)[0]
            solution = family.render(match, config)
            run = load_entry_point(solution, materialize(solution))
            inputs = generate_inputs(problem, workload, seed=1, device=device, reference_module=module)
            expected = as_output_list(module.run(*inputs), len(problem.definition.outputs))
            outputs = [torch.empty_like(e) for e in expected]
            run(*inputs, *outputs)
            comparison = compare(problem, workload, [o.cpu() for o in outputs], [e.cpu() for e in expected])
            row = {"task": directory.name, "form": match.plan["form"], "axes": axes, "status": comparison.status,
                   "errors": {} if comparison.status == PASSED else {"check": comparison.message[:200]}, "ours": {},
                   "ours_ms": bench_ms(lambda: run(*inputs, *outputs), args.dry_run),
                   "reference_ms": bench_ms(lambda: module.run(*inputs), args.dry_run)}
            report.add(row)


def cross_compiled(run, inputs, out) -> str:
    """Compile every kernel the call launches for sm_90, with the fp8 dot and with the bf16 fallback."""
    from triton.backends.compiler import GPUTarget

    from kernelbench.eval.cross_compile import CrossCompile
    failures = []
    for fp8 in (True, False):
        run.__globals__["_fp8_dots"] = lambda device, fp8=fp8: fp8   # the answer of an sm_90 (or older) GPU
        with CrossCompile(GPUTarget("cuda", 90, 32)) as compiled:
            run(*inputs, out)
        failures += [f"{f.kernel}: {f.error[:300]}" for f in compiled.failures]
        if not compiled.results:
            failures.append("no kernel compiled")
    return "; ".join(failures) or "compiled"


def markdown(header: str, rows: list[dict]) -> str:
    if rows and "task" in rows[0]:
        lines = [header, "", "| task | form | axes | check | ours (ms) | reference (ms) |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['task']} | {r.get('form', '-')} | {json.dumps(r.get('axes'))} | "
                  f"{r.get('status', '')} {'; '.join(r['errors'].values())[:80]} | {number(r.get('ours_ms'), '.4f')} | "
                  f"{number(r.get('reference_ms'), '.4f')} |" for r in rows]
        return "\n".join(lines) + "\n"
    lines = [header, "", "| scales | regime | M x N x K | ours (ms) | ours TFLOP/s | % of fp8 peak | _scaled_mm TFLOP/s "
                         "| reference TFLOP/s | compile TFLOP/s | best config |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        compiled = "; ".join(v for v in r["ours"].values() if isinstance(v, str))   # --cross-compile's findings
        ours = ours_cell(r, untimed=compiled[:200] or "checked, not timed")
        peer = number(r.get("scaled_mm_tflops"), ".1f") if r.get("scaled_mm_tflops") else \
            (f"n/a ({r['scaled_mm_note'][:50]})" if r.get("scaled_mm_note") else "-")
        lines.append(f"| {r['kind']} | {r['regime']} | {r['m']} x {r['n']} x {r['k']} | {ours} | "
                     f"{number(r.get('ours_tflops'), '.1f')} | {number(r.get('ours_peak'), '.1%')} | {peer} | "
                     f"{number(r.get('reference_tflops'), '.1f')} | {number(r.get('compile_tflops'), '.1f')} | "
                     f"{r.get('best_config', '-')} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = arguments(__doc__, configs=2, budget_s=45.0, no_compile=False)
    parser.add_argument("--cross-compile", action="store_true")
    parser.add_argument("--kinds", nargs="+", choices=list(KINDS), default=list(KINDS))
    parser.add_argument("--tasks", nargs="+", type=Path, default=[], help="instead: the family on these tasks")
    args = parser.parse_args()
    report = Report(args.out, "family_scaled_gemm", "scaled_gemm family", args.dry_run or args.cross_compile,
                    **({"device": "CPU: compiled for sm_90, not run"} if args.cross_compile else {}))
    (measure_tasks if args.tasks else measure)(args, report)
    report.finish(markdown(report.heading, report.rows))
    rows = report.rows
    return 0 if all(not r["errors"] and all(v in (None, "compiled") or isinstance(v, float)
                                            for v in r["ours"].values()) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
