"""One matrix product with an elementwise epilogue: linear / matmul / bmm, with bias, activation, residual, scale.

match: trace the reference at every distinct input shape of the problem's workloads (graph.capture_at,
fake tensors), read each graph as one product with its epilogue (kernelbench.generate.gemmprogram);
None when no graph is one.
render: templates/gemm.py.j2, a tiled Triton matmul (fp32 accumulation, grouped tile order, optional
split-K with a second reducing pass) per distinct epilogue, one host program per traced shape keyed by
the input shapes, and the reference for any other shape. A configuration sets the tiles, the split and
the warps and stages, and optionally (gemv_n, gemv_k) a CUDA-core kernel for products of at most 8 rows (decode).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable

from kernelbench.core.problem import Problem
from kernelbench.core.solution import Solution
from kernelbench.generate.family import (
    MATCH_TIME_LIMIT_S,
    Config,
    Family,
    Match,
    Traffic,
    register_family,
)
from kernelbench.generate.gemmprogram import gemm_program
from kernelbench.generate.graph import Capture
from kernelbench.generate.traced import (
    io_traffic,
    parameters,
    product_match,
    register_planner,
    render_product,
    trace_programs,
)

SMS = 132                # streaming multiprocessors of the target (H100 SXM): split-K fills them for skinny shapes


@register_family
class Gemm(Family):
    name = "gemm"
    version = "1"

    def match(self, problem: Problem, time_limit_s: float = MATCH_TIME_LIMIT_S) -> Match | None:
        match, self.last_rejection = product_match(self.name, programs_of, summarize, problem, time_limit_s)
        return match

    def space(self, match: Match, axes: dict[str, int]) -> list[Config]:
        return configurations(**dimensions(match.plan, axes))

    def shape_class(self, match: Match, axes: dict[str, int]) -> str:
        d = dimensions(match.plan, axes)
        rows = d["m"] * (max(1, d["batch"]))
        bucket = "<=16" if rows <= 16 else "<=128" if rows <= 128 else "<=2048" if rows <= 2048 else ">2048"
        return f"rows{bucket},nk~4^{round(math.log(max(d['n'] * d['k'], 1), 4))}"

    def traffic(self, match: Match, axes: dict[str, int]) -> Traffic | None:
        """Every input read once and every output written once (the ideal a tiled product approaches);
        2 M N K FLOPs per batch."""
        d = dimensions(match.plan, axes)
        return io_traffic(match.plan, axes, 2.0 * d["batch"] * d["m"] * d["n"] * d["k"])

    def render(self, match: Match, config: Config) -> Solution:
        return render_product("gemm.py.j2", self.name, self.version, match, {**DEFAULTS, **config})


DEFAULTS = {"block_m": 64, "block_n": 64, "block_k": 64, "group_m": 8, "split_k": 1, "num_warps": 4, "num_stages": 3}


def configurations(batch: int, m: int, n: int, k: int) -> list[Config]:
    """Best guess first. Skinny products (few rows: decode) stream B once and are memory-bound: small row
    tiles, long K steps, and split-K when the column tiles alone leave SMs idle. Large ones are
    compute-bound: big square-ish tiles, deep pipelines."""
    def config(bm, bn, bk, split=1, warps=4, stages=3, group=8):
        return {"block_m": bm, "block_n": bn, "block_k": bk, "group_m": group, "split_k": split,
                "num_warps": warps, "num_stages": stages}
    if m <= 16:
        tiles = batch * math.ceil(n / 64)
        fill = 1 << max(0, math.ceil(math.log2(max(1, 2 * SMS / tiles))))   # splits to give ~2 programs per SM
        split = max(1, min(fill, 16, math.ceil(k / 256)))
        dot = config(16, 64, 256, split, 4, 3)
        # up to _GEMV_ROWS rows on the CUDA cores instead (the template's few-rows kernel; its K split is chosen
        # at run time from the SM count), the tiled kernel for the others
        found = [dot, {**dot, "gemv_n": 32, "gemv_k": 256}, config(16, 64, 128, split, 4, 4),
                 {**dot, "gemv_n": 16, "gemv_k": 512}, config(16, 128, 128, split, 4, 3),
                 config(16, 64, 256, 1, 4, 3), config(16, 32, 256, max(1, split // 2), 2, 4),
                 config(16, 64, 128, min(16, split * 2), 4, 4)]
    elif m <= 128:
        found = [config(64, 64, 128, 1, 4, 4), config(32, 64, 128, 1, 4, 4), config(64, 128, 64, 1, 4, 4),
                 config(128, 64, 64, 1, 4, 4), config(32, 128, 128, 2, 4, 3), config(64, 64, 64, 4, 4, 4)]
    else:
        found = [config(128, 128, 64, 1, 8, 3), config(128, 256, 64, 1, 8, 3), config(128, 128, 64, 1, 4, 4),
                 config(256, 128, 64, 1, 8, 3), config(64, 128, 64, 1, 4, 4), config(128, 64, 64, 1, 4, 4),
                 config(128, 128, 32, 1, 4, 4)]
    return list({json.dumps(c, sort_keys=True): c for c in found}.values())


def dimensions(plan: dict, axes: dict[str, int]) -> dict[str, int]:
    """batch, m, n, k of the program traced at these axes' input shapes (else of the one nearest in input size)."""
    shapes = [[axes[a] if a in axes else int(a) for a in shape] for shape in plan["shapes"].values()]
    def distance(program):
        return abs(math.log(sum(map(math.prod, program["shapes"])) + 1) - math.log(sum(map(math.prod, shapes)) + 1))
    program = min(plan["programs"], key=lambda p: (p["shapes"] != shapes, distance(p)))
    return {d: program[d] for d in ("batch", "m", "n", "k")}


def programs_of(problem: Problem) -> tuple[dict | None, str]:
    """({"programs": [...], "kernels": [...], ...}, "") or (None, why not): one program per traced shape
    (kernelbench.generate.traced); programs whose kernels read the same share them."""
    return programs_with(problem, gemm_program)


def programs_with(problem: Problem, program_of: Callable[[Capture], dict]) -> tuple[dict | None, str]:
    """programs_of with another reading of each captured graph (gemm_program's form: the scaled_gemm family's)."""
    if any(spec.shape is None for spec in problem.definition.outputs.values()):
        return None, f"{problem.name}: a scalar output (the gemm family writes tensors)"
    traced = trace_programs(problem, lambda capture, index: program_of(capture))
    if not traced.programs:
        return None, traced.rejection(problem)
    kernels, names = [], {}
    for program in traced.programs:
        text = json.dumps(program.pop("kernel"), sort_keys=True)
        if text not in names:
            names[text] = f"_g{len(kernels)}"
            kernels.append({"name": names[text], **json.loads(text)})
        program.update(kernel=names[text], summary=f"{'batched ' if program['batch'] > 1 else ''}{program['m']}x"
                                                   f"{program['n']}x{program['k']} product")
    return {"programs": traced.programs, "kernels": kernels, "skipped": traced.skipped, **parameters(problem),
            "outputs": [f"o{i}" for i in range(len(problem.definition.outputs))]}, ""


def summarize(plan: dict) -> str:
    programs = plan["programs"]
    epilogue = max(len(k["body"]) - 1 for k in plan["kernels"])
    return (f"{len(programs)} traced shape(s), {len(plan['kernels'])} kernel set(s), "
            f"{'batched ' if any(p['batch'] > 1 for p in programs) else ''}matrix product"
            + (f" with up to {epilogue} epilogue op(s)" if epilogue else "")
            + (f", {len(plan['skipped'])} shape(s) left to the reference" if plan["skipped"] else ""))


register_planner(f"{__name__}:programs_of")
