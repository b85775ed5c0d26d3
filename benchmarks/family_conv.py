"""The conv family on a GPU, beside cuDNN (the reference itself: torch's F.conv*) and torch.compile max-autotune.

    PYTHONPATH=. python3 benchmarks/family_conv.py OUT_DIR [--configs 3] [--budget-s 300]
    PYTHONPATH=. python3 benchmarks/family_conv.py OUT_DIR --dry-run      # CPU interpreter, tiny shapes, no timing

Shapes (real layers, NCHW / NCDHW / NCL): SDXL UNet and ResNet-50 3x3 convolutions (implicit GEMM), the same
3x3's input gradient (conv_transpose2d, the gather form), ConvNeXt's depthwise 7x7 (the direct kernel), a 3-d
video convolution (Wan-style 3x3x3) and Whisper's conv1d stem layer. For each: ours (the family's render at the
first `--configs` configurations of its space, best kept), cuDNN (eager F.conv*) and
torch.compile(mode="max-autotune-no-cudagraphs") (skipped once `--budget-s` has passed), each timed by
triton.testing.do_bench and checked against eager. Reported: TFLOP/s (the convolution's own multiply-adds x 2),
% of the datasheet dense bf16/fp16 tensor peak, % of the roofline bound max(FLOPs / peak, bytes / DRAM
bandwidth) (roofline.DATASHEETS), GB/s for the memory-bound depthwise case. Writes OUT_DIR/family_conv.{md,json}.
"""

from __future__ import annotations

import dataclasses
import json
import math
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

HEADER = "import torch\nimport torch.nn.functional as F\n\n\n"

# (name, reference expression of x, w[, b], {input: shape}, dtype); the batch is the first size of x
CASES = [
    ("sdxl_unet_3x3", "F.conv2d(x, w, b, padding=1)",
     {"x": [8, 320, 64, 64], "w": [320, 320, 3, 3], "b": [320]}, "float16"),
    ("resnet50_stage3_3x3", "F.conv2d(x, w, padding=1)", {"x": [64, 256, 14, 14], "w": [256, 256, 3, 3]}, "bfloat16"),
    ("sdxl_unet_3x3_dgrad", "F.conv_transpose2d(x, w, padding=1)",
     {"x": [8, 320, 64, 64], "w": [320, 320, 3, 3]}, "bfloat16"),
    ("convnext_dw7x7", "F.conv2d(x, w, b, padding=3, groups=128)",
     {"x": [32, 128, 56, 56], "w": [128, 1, 7, 7], "b": [128]}, "bfloat16"),
    ("video_3x3x3", "F.conv3d(x, w, b, padding=1)",
     {"x": [1, 128, 8, 64, 64], "w": [128, 128, 3, 3, 3], "b": [128]}, "float16"),
    ("whisper_conv1d_gelu", "F.gelu(F.conv1d(x, w, b, stride=2, padding=1))",
     {"x": [4, 1280, 3000], "w": [1280, 1280, 3], "b": [1280]}, "float16"),
]
DRY_CASES = [
    ("tiny_3x3", "F.conv2d(x, w, b, padding=1)", {"x": [2, 16, 6, 7], "w": [24, 16, 3, 3], "b": [24]}, "float16"),
    ("tiny_dgrad", "F.conv_transpose2d(x, w, padding=1)", {"x": [2, 16, 5, 5], "w": [16, 16, 3, 3]}, "bfloat16"),
    ("tiny_dw7x7", "F.conv2d(x, w, b, padding=3, groups=8)", {"x": [2, 8, 9, 9], "w": [8, 1, 7, 7], "b": [8]},
     "bfloat16"),
    ("tiny_3x3x3", "F.conv3d(x, w, padding=1)", {"x": [1, 16, 3, 5, 5], "w": [16, 16, 3, 3, 3]}, "float16"),
]


def case_problem(name: str, expression: str, shapes: dict, dtype: str, output: list[int], directory: Path):
    """An in-memory problem (the family matches it in this process) with its one workload at these shapes."""
    names = list(shapes)
    reference = HEADER + f"def run({', '.join(names)}):\n    return {expression}\n"
    definition = {"name": f"bench_{name}", "description": expression, "op_type": "conv",
                  "axes": {"n": {"type": "var"}},
                  "inputs": {k: {"shape": (["n"] if k == "x" else []) + [str(d) for d in s[1 if k == "x" else 0:]],
                                 "dtype": dtype} for k, s in shapes.items()},
                  "outputs": {"y": {"shape": ["n"] + [str(d) for d in output[1:]], "dtype": dtype}},
                  "reference": reference}
    (directory / "definition.json").write_text(json.dumps(definition))
    (directory / "workload.jsonl").write_text(json.dumps({
        "uuid": "w0", "axes": {"n": shapes["x"][0]}, "inputs": {k: {"type": "random"} for k in names},
        "tolerance": {"max_atol": 2e-2, "max_rtol": 2e-2}}) + "\n")
    return dataclasses.replace(load_problem(directory), directory=None), reference


def measure(args, report: Report) -> None:
    cases = DRY_CASES if args.dry_run else CASES
    device = "cpu" if args.dry_run else "cuda"
    hardware = DATASHEETS["H200" if not args.dry_run and "H200" in torch.cuda.get_device_name() else "H100"]
    peak, bandwidth = hardware.tensor["bf16"], hardware.dram_bandwidth
    family, started = FAMILIES["conv"], time.monotonic()
    for name, expression, shapes, dtype in cases:
        torch.manual_seed(0)
        kind = getattr(torch, dtype)
        inputs = [torch.randn(s, device=device, dtype=kind) / (math.prod(s[1:]) if k == "w" else 1) ** 0.5
                  for k, s in shapes.items()]   # weights ~ N(0, 1 / fan_in): outputs O(1)
        namespace: dict = {}
        with tempfile.TemporaryDirectory() as scratch:
            expected = eval(expression, {"F": torch.nn.functional, "torch": torch}, dict(zip(shapes, inputs)))
            problem, reference = case_problem(name, expression, shapes, dtype, list(expected.shape), Path(scratch))
            match = family.match(problem)
        exec(reference, namespace)
        row = {"case": name, "expression": expression, "shapes": shapes, "dtype": dtype, "ours": {}, "errors": {}}
        if match is None:
            row["refused"] = family.last_rejection[:300]
            report.add(row)
            continue
        traffic = family.traffic(match, problem.axes_for(problem.workloads[0]))
        bound_ms = max(traffic.flops / peak, traffic.bytes / bandwidth) * 1e3
        row.update(summary=match.summary, flops=traffic.flops, bytes=traffic.bytes, bound_ms=bound_ms)
        for config in family.space(match, problem.axes_for(problem.workloads[0]))[:args.configs]:
            solution = family.render(match, config)
            run = load_entry_point(solution, materialize(solution))
            out = torch.empty_like(expected)
            run(*inputs, out)
            label = json.dumps(config, sort_keys=True)
            error = (out.float() - expected.float()).abs().max().item()
            if not error <= 2e-2 + 2e-2 * expected.float().abs().max().item():
                row["errors"][label] = f"max error {error:.3g}"
                continue
            row["ours"][label] = bench_ms(lambda: run(*inputs, out), args.dry_run)
        row["cudnn_ms"] = bench_ms(lambda: namespace["run"](*inputs), args.dry_run)
        if not args.dry_run and not args.no_compile and time.monotonic() - started < args.budget_s:
            compiled = torch.compile(namespace["run"], mode="max-autotune-no-cudagraphs", dynamic=False)
            compiled(*inputs)
            row["compile_ms"] = bench_ms(lambda: compiled(*inputs), False)
            torch._dynamo.reset()
        for key in ("cudnn_ms", "compile_ms"):
            if row.get(key):
                row[key.replace("_ms", "_tflops")] = traffic.flops / row[key] / 1e9
        ms = keep_fastest(row)
        if ms is not None:
            row.update(ours_tflops=traffic.flops / ms / 1e9, ours_peak=traffic.flops / peak / (ms / 1e3),
                       ours_bound=bound_ms / ms, ours_gbs=traffic.bytes / ms / 1e6)
        report.add(row)


def markdown(header: str, rows: list[dict]) -> str:
    lines = [header, "", "| case | dtype | ours (ms) | ours TFLOP/s | % of peak | % of roofline bound | ours GB/s | "
             "cuDNN TFLOP/s | compile TFLOP/s | ours / cuDNN | best config |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "refused" in r:
            lines.append(f"| {r['case']} | {r['dtype']} | refused: {r['refused'][:80]} |||||||||")
            continue
        ratio = r["cudnn_ms"] / r["ours_ms"] if r.get("ours_ms") and r.get("cudnn_ms") else None
        ours = ours_cell(r)
        lines.append(f"| {r['case']} | {r['dtype']} | {ours} | {number(r.get('ours_tflops'), '.1f')} | "
                     f"{number(r.get('ours_peak'), '.1%')} | {number(r.get('ours_bound'), '.1%')} | "
                     f"{number(r.get('ours_gbs'), '.0f')} | {number(r.get('cudnn_tflops'), '.1f')} | "
                     f"{number(r.get('compile_tflops'), '.1f')} | {number(ratio, '.2f')} | {r.get('best_config', '-')} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = arguments(__doc__, configs=3, budget_s=300.0)
    args = parser.parse_args()
    report = Report(args.out, "family_conv", "conv family", args.dry_run)
    measure(args, report)
    report.finish(markdown(report.heading, report.rows))
    failed = [r["case"] for r in report.rows if "refused" in r or (r["errors"] and not r["ours"])]
    if failed:
        print(f"failed: {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
