"""Our T_SOL (B200 datasheet profile) against the leaderboard's published T_SOL (SOLAR), per workload.

    python benchmarks/roofline_vs_published.py [SAMPLE_ROOT] [--out benchmarks/roofline_vs_published.md]

SAMPLE_ROOT defaults to ../shared/sol_execbench_sample beside the repository. Each problem's
metadata.json holds the published `sol.per_workload[i].sol_ms`. Besides the ratio, the script
fits SOLAR's implied constants from the published numbers themselves (fixed term, DRAM
bandwidth, tensor rates per class) and rebuilds a "SOLAR replica" from our FLOP counts with
those constants and SOLAR's byte convention (every tensor whole at 2 bytes per element, fp16 at 1,
bool masks not counted), to show which differences are conventions and which are counting.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kernelbench.core.problem import find_problem_dirs, load_problem  # noqa: E402
from roofline import load_profile, sol_for_problem  # noqa: E402

SOLAR_FIXED_S = 0.4e-6          # the fixed term visible on launch-bound workloads (0.4 us)
# SOLAR's bytes per element, as its published numbers imply (see the document): 2 for most types,
# fp16 1 (the fp16 GEMM's values fit half our bytes), bool masks 0 (the attention backward's).
SOLAR_WIDTH = {"float16": 1, "bool": 0}


def solar_bytes(problem, sol) -> float:
    """SOLAR's byte convention: every input and output tensor whole, at SOLAR_WIDTH (default 2) bytes/element."""
    total = 0
    for spec in list(problem.definition.inputs.values()) + list(problem.definition.outputs.values()):
        shape = problem.shape_of(spec, sol.axes)
        if shape is not None:
            total += math.prod(shape) * SOLAR_WIDTH.get(spec.dtype, 2)
    return total


def fit_constants(rows) -> dict[str, float]:
    """SOLAR's bandwidth and tensor rates implied by workloads far above the fixed term."""
    bw = [r["solar_bytes"] / (r["pub"] - SOLAR_FIXED_S) for r in rows        # all-bf16, no matrix work
          if r["pub"] > 5e-6 and not r["tensor"] and not r["has_odd_dtype"]]
    rates: dict[str, list[float]] = {}
    for r in rows:
        if r["pub"] > 20e-6 and r["binding"] == "tensor" and len(r["tensor"]) == 1:
            (cls, flops), = r["tensor"].items()
            rates.setdefault(cls, []).append(flops / (r["pub"] - SOLAR_FIXED_S))
    constants = {"dram": statistics.median(bw) if bw else 7.67e12}
    constants.update({cls: statistics.median(v) for cls, v in rates.items()})
    return constants


def replica(r, constants) -> float:
    tensor = sum(n / constants.get(c, constants.get("bf16", 1.8e15) * {"fp8": 2, "fp4": 4}.get(c, 1))
                 for c, n in r["tensor"].items())
    return max(tensor, r["solar_bytes"] / constants["dram"]) + SOLAR_FIXED_S


CAUSES = {
    "004_gemm_n128_k2048": "small M: our 0.5 us floor vs SOLAR's 0.4 us; large M: SOLAR counts fp16 at 1 byte, "
                           "below the time to read A once",
    "012_gqa_paged_decode_h32_kv4_d128_ps1": "launch-bound or KV-read-bound; blobs missing, page tables synthesized "
                                              "(distinct pages, even split): the same page count as the real traces",
    "021_rmsnorm_h128": "launch-bound (<100 kB): 0.5 vs 0.4 us fixed term",
    "001_attention_softmax_dropout_value_matmul_backward": "we count the bool dropout mask (1 B/elem); SOLAR does not",
    "058_moe_expert_token_radix_sort_with_prefix_sum": "launch-bound (<1 MB): 0.5 vs 0.4 us fixed term",
    "069_rms_norm": "same bytes; SOLAR's 7.67 TB/s vs the datasheet 8 TB/s",
    "085_geglu_activation": "fp32 input/output at 4 B/elem; SOLAR counts 2 B (its bound is below the copy time)",
    "004_fused_residual_rms_mlp": "compute-bound: datasheet 2.25 PFLOP/s dense bf16 vs SOLAR's 1.81",
    "001_fp8_attention_output_projection": "compute-bound: datasheet 4.5 PFLOP/s dense fp8 vs SOLAR's 3.63; "
                                           "the bf16 weight is read and quantized every call",
    "020_nvfp4_linear_layer": "FP4 at the datasheet 9 PFLOP/s dense (SOLAR implies ~13); SOLAR's small-M values "
                              "sit below the time to read the 33.5 MB FP4 weight",
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("root", nargs="?", default=str(ROOT.parent / "shared" / "sol_execbench_sample"))
    parser.add_argument("--out", default=str(Path(__file__).with_suffix(".md")))
    parser.add_argument("--cache", action="store_true", help="reuse cached counts (the reported time is then not cold)")
    args = parser.parse_args()
    if not args.cache:
        os.environ["KB_ROOFLINE_CACHE"] = "off"
    profile = load_profile("B200", "datasheet")
    started = time.time()
    problems = [load_problem(d) for d in find_problem_dirs(args.root)]
    rows = []
    for problem in problems:
        for sol in sol_for_problem(problem, profile):
            if sol.published_t_sol_s is None or sol.t_sol_s is None:
                continue
            dtypes = {s.dtype for s in list(problem.definition.inputs.values()) + list(problem.definition.outputs.values())}
            rows.append({"problem": problem, "sol": sol, "pub": sol.published_t_sol_s, "ours": sol.t_sol_s,
                         "binding": sol.binding, "tensor": sol.tensor_flops, "solar_bytes": solar_bytes(problem, sol),
                         "has_odd_dtype": bool(dtypes - {"bfloat16"})})
    elapsed = time.time() - started
    constants = fit_constants(rows)
    for r in rows:
        r["replica"] = replica(r, constants)
    Path(args.out).write_text(render(rows, constants, profile, elapsed, args.root))
    print(f"wrote {args.out}: {len(rows)} workloads of {len(problems)} problems in {elapsed:.1f}s")


def render(rows, constants, profile, elapsed, root) -> str:
    ratios = [r["ours"] / r["pub"] for r in rows]
    out = ["# Our T_SOL vs the published T_SOL (B200)", "",
           f"Produced by `python benchmarks/roofline_vs_published.py` over `{Path(root).name}` "
           f"({len(rows)} workloads of {len({id(r['problem']) for r in rows})} problems, counted in {elapsed:.0f} s "
           f"on a 2-core CPU, no GPU). Ours: profile `{profile.profile_id}`. Published: "
           "`metadata.json` `sol.per_workload[i].sol_ms` (SOLAR's fused roofline on B200).", "",
           f"ours / published over all workloads: median {statistics.median(ratios):.2f}, "
           f"min {min(ratios):.2f}, max {max(ratios):.2f}; ours above published on "
           f"{sum(x > 1 for x in ratios)} of {len(ratios)}.", "",
           "## The constants each side uses", "",
           "| quantity | ours (datasheet) | SOLAR (implied by its numbers) |", "|---|---|---|",
           f"| fixed term | {profile.launch_floor_s * 1e6:.2f} us (launch floor) | {SOLAR_FIXED_S * 1e6:.2f} us |",
           f"| DRAM bandwidth | {profile.dram_bandwidth / 1e12:.2f} TB/s | {constants['dram'] / 1e12:.2f} TB/s |"]
    for cls in ("bf16", "fp8", "fp4"):
        if cls in constants:
            out.append(f"| dense {cls} tensor rate | {profile.tensor[cls] / 1e15:.2f} PFLOP/s | "
                       f"{constants[cls] / 1e15:.2f} PFLOP/s |")
    out += ["| bytes per element | storage width (fp32 4, bf16/fp16 2, fp8 1, fp4 0.5, bool 1); only the input "
            "elements used | 2 for every tensor, whole; fp16 1 and bool 0 (implied) |",
            "| CUDA-core and SFU work | counted (fp32 67-80 TFLOP/s class) | not counted |", "",
            "SOLAR's constants are fitted from its own numbers: bandwidth from workloads over 5 us without matrix "
            "work whose tensors are all bf16, rates from compute-bound workloads over 20 us (median of `FLOPs / (published - 0.4 us)`). "
            "The *replica* column rebuilds SOLAR's number from our FLOP counts with those constants and SOLAR's byte "
            "convention; where it matches the published value, the difference to ours is explained by the "
            "conventions above.", "",
            "## Per problem", "",
            "| problem | workloads | ours/published median (min-max) | replica/published median | bound by | "
            "systematic cause |", "|---|---|---|---|---|---|"]
    by_problem: dict[str, list] = {}
    for r in rows:
        by_problem.setdefault(f"{r['problem'].subset}/{r['problem'].name}", []).append(r)
    for name, group in by_problem.items():
        rs = [r["ours"] / r["pub"] for r in group]
        rep = [r["replica"] / r["pub"] for r in group]
        bindings = sorted({r["binding"] for r in group})
        out.append(f"| {name} | {len(group)} | {statistics.median(rs):.2f} ({min(rs):.2f}-{max(rs):.2f}) | "
                   f"{statistics.median(rep):.2f} | {', '.join(bindings)} | "
                   f"{CAUSES.get(group[0]['problem'].name, '')} |")
    out += ["", "## Every workload", ""]
    for name, group in by_problem.items():
        problem = group[0]["problem"]
        var_axes = [a for a, s in problem.definition.axes.items() if s.kind == "var"]
        out += [f"### {name}", "", "| # | axes | ours us | bound | published us | ours/pub | replica us | counted |",
                "|---|---|---|---|---|---|---|---|"]
        for r in group:
            s = r["sol"]
            axes = " ".join(f"{a}={s.axes[a]}" for a in var_axes)
            out.append(f"| {s.index} | {axes} | {r['ours'] * 1e6:.2f} | {r['binding']} | {r['pub'] * 1e6:.2f} | "
                       f"{r['ours'] / r['pub']:.2f} | {r['replica'] * 1e6:.2f} | {s.counted_on} |")
        notes = sorted({n for r in group for n in r["sol"].notes})
        out += [f"- {n}" for n in notes] + [""]
    out += [EXPLANATION]
    return "\n".join(out) + "\n"


EXPLANATION = """## Why the two differ (systematic causes)

1. **Fixed term.** SOLAR adds 0.4 us; we add a 0.5 us launch floor (the grid launch, first DRAM round
   trip and completion that no work overlaps). Every launch-bound workload (tiny GEMMs, 128-wide
   RMSNorm, MoE sort, short decode) therefore reads 1.25x. Both stay below the fastest published B200
   kernels (0.84 us for the M<=16 GEMM, 1.1 us for the 128-wide RMSNorm: the problems' top-level
   `baseline_latency_ms`), so both are sound there; `kb calibrate` replaces ours with the shortest
   event-timed empty kernel on the GPU present.
2. **Bandwidth and tensor rates.** We take the datasheet: 8 TB/s, 2.25 PFLOP/s dense bf16, 4.5 fp8,
   9 fp4 (HGX B200 per GPU, sparse figures halved). SOLAR's numbers imply 7.67 TB/s, 1.81 PFLOP/s bf16
   and 3.63 fp8: memory-bound workloads with equal byte counts read ~0.96x, compute-bound ones 0.80x.
   A bound must not exceed what a kernel can reach, so the higher (datasheet) rates are the sound
   choice; the measured profile is the tighter one.
3. **Bytes at their storage width.** SOLAR counts every tensor at 2 bytes. The fp32 GEGLU (085) moves
   4-byte values, so its published T_SOL is about half the time merely needed to read the input and
   write the output (ours/published 1.9x: the published bound is unsound there). The fp16 GEMM (004)
   goes the other way: its published values fit fp16 at 1 byte, so for large M they sit below the time
   to read A once (M=16294: A alone is 66.7 MB, 8.3 us at 8 TB/s; published 5.1 us). fp8 scales and
   FP4 weights are 1 and 0.5 bytes in ours.
4. **Masks and other non-float inputs.** SOLAR leaves the bool dropout mask of the attention backward
   (001) out; we read it (1 byte per element), +10% there.
5. **FP4 (020).** Our FP4 class runs at the 9 PFLOP/s dense datasheet rate; SOLAR's compute-bound values
   imply ~13 PFLOP/s, above that peak, and its small-M values (1.3 us at M=128) are below the time to
   read the 33.5 MB FP4 weight at 8 TB/s (4.2 us). Ours is 1.5x to 4.3x higher.
6. **Precision of matrix work.** The fp8 projection (Quant/001) quantizes bf16 activations and weights in
   the reference and multiplies in fp32; we follow each operand's provenance to its narrowest storage
   (fp8) and charge the fp8 tensor-core rate, as SOLAR does (its fp8 rate is 2x its bf16 rate). The
   attention backward (L1/001) upcasts bf16 to fp32 before its products; we charge bf16 (the values are
   bf16-exact), which changes nothing there since it is memory-bound.
7. **Touched bytes.** The GQA decode (012) reads only the KV pages its page table lists. Its
   flashinfer-trace blobs are not in the sample, so its page tables are synthesized from the axes
   (distinct page ids, even split over the batch); page counts, and so bytes, match the real traces'
   `num_kv_indices`. The published decode bounds are launch-bound or close to ours.
8. **CUDA-core and SFU work** never binds on these workloads at B200 rates; it is reported, not binding.
"""

if __name__ == "__main__":
    main()
