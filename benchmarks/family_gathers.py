"""Indexed reads and writes in the front end (kernelbench.generate.gathers) on a GPU, beside eager and torch.compile.

    PYTHONPATH=. python3 benchmarks/family_gathers.py OUT_DIR [TASK_DIR ...] [--configs 3] [--iterations 50]
    PYTHONPATH=. python3 benchmarks/family_gathers.py OUT_DIR --dry-run     # CPU: match, render, check; no timings

With no TASK_DIR: the tasks235 problems whose graphs gather or scatter: a token embedding (L1/064: one
index.Tensor), two lookups and their sum (L1/065), an embedding bag mean (L1/066: the segmented-reduction
kernel), the MoE combine (L1/067: the weighing fused with fp32 atomic adds), the embedding backward (L1/088:
an accumulating index_put) and the paged-cache gather (L1/069). Each is measured by benchmarks/family_fused.py's
`measure` (smallest and largest workload; ours at the first --configs configurations, torch.compile, eager;
outputs checked), plus, from the roofline's byte count: GB/s of each and its share of the H100's DRAM roof
(3.35 TB/s datasheet). Writes OUT_DIR/family_gathers.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import family_fused  # sets the interpreter for --dry-run before triton is imported

from kernelbench.core.problem import load_problem
from report import Report
from roofline import sol_for_workload

ROOT = Path(__file__).resolve().parents[1]
TASKS = ["064_qwen2_5_1_5b_token_embedding", "065_whisper_large_v3_decoder_embedding",
         "066_glove_average_embedding_bag", "067_deepseek_v3_moe_combine_index_add",
         "088_gpt2_embedding_backward", "069_deepseek_v3_mla_paged_cache_gather"]
DRAM_BYTES_PER_S = 3.35e12   # H100 SXM datasheet


def with_bandwidth(directory: Path, result: dict) -> dict:
    """Each row's bytes (the roofline's storage count) and GB/s, % of the DRAM roof for ours, compile, eager."""
    problem = load_problem(directory)
    for row in result.get("rows", []):
        workload = next(w for w in problem.workloads if problem.axes_for(w) == row["axes"])
        sol = sol_for_workload(problem, workload, "H100")
        row["bytes"] = moved = sol.bytes_read + sol.bytes_written
        times = {"ours": min(row["ours"].values(), default=None), "compile": row.get("compile_ms"),
                 "eager": row.get("eager_ms")}
        for name, ms in times.items():
            if ms:
                row[f"{name}_gb_s"] = moved / (ms * 1e-3) / 1e9
                row[f"{name}_dram_roof"] = moved / (ms * 1e-3) / DRAM_BYTES_PER_S
    return result


def markdown(results: list[dict], header: str) -> str:
    lines = [header, "", ("| task | axes | launches | MB moved | ours (ms) | ours GB/s | ours % DRAM roof | compile (ms) "
                          "| compile GB/s | eager (ms) | eager GB/s |"), "|---|---|---|---|---|---|---|---|---|---|---|"]
    for result in results:
        if "skipped" in result:
            lines.append(f"| {result['task']} | not matched: {result['skipped'][:100]} |||||||||")
            continue
        for row in result["rows"]:
            best = min(row["ours"].values(), default=None)
            number = (lambda key, form="{:.4f}", row=row: form.format(row[key]) if row.get(key) else "-")
            lines.append("| " + " | ".join([
                result["task"], json.dumps(row["axes"]), str(row["launches"]), f"{row.get('bytes', 0) / 1e6:.2f}",
                f"{best:.4f}" if best else ("failed: " + "; ".join(row["errors"].values())[:60] if row["errors"]
                                            else "checked, not timed"),
                number("ours_gb_s", "{:.0f}"), number("ours_dram_roof", "{:.1%}"), number("compile_ms"),
                number("compile_gb_s", "{:.0f}"), number("eager_ms"), number("eager_gb_s", "{:.0f}")]) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("tasks", nargs="*", type=Path)
    parser.add_argument("--configs", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    report = Report(args.out, "family_gathers", "gathers and scatters", args.dry_run)
    tasks = args.tasks or [ROOT / "tasks235" / "L1" / name for name in TASKS]
    for directory in tasks:
        try:
            problem, match, rejection = family_fused.matched(directory)
            result = family_fused.measure(directory, problem, match, args) if match else \
                {"task": directory.name, "skipped": (rejection or "")[:300]}
            if match and not args.dry_run:
                result = with_bandwidth(directory, result)
        except Exception as exc:  # noqa: BLE001 - one task's failure is a row, not the end of the run
            result = {"task": directory.name, "skipped": f"{type(exc).__name__}: {exc}"[:300]}
        report.add(result)
    report.finish(markdown(report.rows, report.heading))
    return 0


if __name__ == "__main__":
    sys.exit(main())
