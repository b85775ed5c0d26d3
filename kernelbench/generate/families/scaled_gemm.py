"""A matrix product of scaled fp8 operands (per-tensor, per-row, 1xBK and BMxBK block scales), on fp8 tensor cores.

match: trace the reference at every distinct input shape of the problem's workloads and rewrite its
dequantize-then-matmul into one scaled_mm node whose scale maps are proven from the graph
(kernelbench.generate.scaled_operands). Then, in one of two forms:
  - gemm: the graph is that product of inputs with an elementwise epilogue (kernelbench.generate.scaledgemmprogram):
    the gemm family's template (templates/gemm.py.j2), one kernel with the epilogue fused;
  - fused: the fp8 operands or their scales are computed in the problem (a quantization: amax, scale, cast): the
    fused front end's program (kernelbench.generate.families.fused) with those regions as its kernels and each
    scaled_mm a call of `_scaled_mm`, the same fp8 kernels (gemm.py.j2 rendered as a module beside it, no epilogue:
    a float32 product the program's kernels read).
None when no graph holds a proven scaled fp8 product.
The kernels multiply fp8 tiles by tl.dot in fp8 with fp32 accumulation, apply scales constant over K once to the
accumulator and scales with K blocks to each K step's partial product. A configuration is the gemm family's, its K
tile doubled (an fp8 tile of twice the K holds the bytes of a bf16 one; a K tile longer than a scale's K block is cut
to it at launch), in the fused form beside the elementwise kernels' block.
"""

from __future__ import annotations

import dataclasses
import math
import re

from kernelbench.core.errors import KernelBenchError
from kernelbench.core.problem import Problem
from kernelbench.core.solution import Solution, Source
from kernelbench.generate.families import fused
from kernelbench.generate.families.gemm import DEFAULTS, Gemm, configurations, dimensions, programs_with, summarize
from kernelbench.generate.family import MATCH_TIME_LIMIT_S, Config, Match, Traffic, register_family
from kernelbench.generate.frontend import Unsupported
from kernelbench.generate.graph import capture_at
from kernelbench.generate.scaled_operands import rewrite_scaled_products
from kernelbench.generate.scaledgemmprogram import scaled_gemm_program
from kernelbench.generate.traced import io_sizes, plan_in_child, register_planner
from templates import render as render_template

MAX_BLOCK_K = 256
ELEMENTWISE = {"block": 1024, "num_warps": 4}
MODULE = "scaled_mm.py"     # the fused form's kernels, beside the program


@register_family
class ScaledGemm(Gemm):
    name = "scaled_gemm"
    version = "1"

    def match(self, problem: Problem, time_limit_s: float = MATCH_TIME_LIMIT_S) -> Match | None:
        plan, self.last_rejection = plan_in_child(f"{__name__}:programs_of", problem, time_limit_s, programs_of)
        if not plan:
            return None
        if plan["form"] == "fused":
            return Match(self.name, "scaled fp8 product(s) in " + fused.summarize(plan), plan)
        plan.update(io_sizes(problem))
        return Match(self.name, "scaled fp8 " + summarize(plan), plan)

    def space(self, match: Match, axes: dict[str, int]) -> list[Config]:
        gemm = match.plan["form"] == "gemm"
        found = configurations(**(dimensions(match.plan, axes) if gemm else product_dimensions(match.plan, axes)))
        tiles = list({str(c): c for c in ({**c, "block_k": min(MAX_BLOCK_K, 2 * c["block_k"])} for c in found)}.values())
        if gemm:
            return tiles
        graph = fused.input_elements(match.plan, axes) < 1 << 20   # small, launch-bound: replayed as a CUDA graph
        return [{**ELEMENTWISE, "graph": graph, "gemm": c} for c in tiles]

    def shape_class(self, match: Match, axes: dict[str, int]) -> str:
        if match.plan["form"] == "gemm":
            return super().shape_class(match, axes)
        d = product_dimensions(match.plan, axes)
        return f"rows~4^{round(math.log(max(d['m'], 1), 4))},nk~4^{round(math.log(max(d['n'] * d['k'], 1), 4))}"

    def traffic(self, match: Match, axes: dict[str, int]) -> Traffic | None:
        return super().traffic(match, axes) if match.plan["form"] == "gemm" else None

    def render(self, match: Match, config: Config) -> Solution:
        if match.plan["form"] == "gemm":
            return super().render(match, config)
        solution = fused.render_programs(self.name, self.version, match, config, scaled_mm=True)
        return dataclasses.replace(solution, sources=(*solution.sources, Source(MODULE, self.kernels(match, config))))

    def kernels(self, match: Match, config: Config) -> str:
        """The fused form's module: the fp8 product kernels of every scale case, and `_scaled_mm` launching them."""
        tiles = {**DEFAULTS, **config["gemm"]}
        kernels = [{"name": f"_p{i}", "a_casts": [], "b_casts": [], "dot_dtype": "fp8", "body": ["v0 = acc"],
                    "scaled": {"a_grouped": a, "b_grouped": b}, "stores": [{"name": "D0", "value": "v0"}],
                    "parameters": ["D0", "D0_sb", "D0_sm", "D0_sn"]}
                   for i, (a, b) in enumerate([(False, False), (True, False), (False, True), (True, True)])]
        return render_template("gemm.py.j2", family=self.name, version=self.version, problem=match.plan["problem"],
                               summary="scaled fp8 products", config_text=str(tiles), config=tiles, kernels=kernels,
                               programs=[], helpers=[], inputs=[], outputs=[], tensors=[], scalars=[], scaled_mm=True)


def product_dimensions(plan: dict, axes: dict[str, int]) -> dict[str, int]:
    """batch, m, n, k of the largest scaled product of the fused-form program traced at these axes' shapes
    (else of the first program)."""
    shapes = [[axes[a] if a in axes else int(a) for a in shape] for shape in plan["shapes"].values()]
    program = next((p for p in plan["programs"] if p["shapes"] == shapes), plan["programs"][0])
    sizes = [tuple(map(int, m.groups())) for line in program["lines"]
             for m in [re.search(r"_scaled_mm\(.*, (\d+), (\d+), (\d+)\)$", line)] if m]
    m, n, k = max(sizes, key=math.prod)
    return {"batch": 1, "m": m, "n": n, "k": k}


def programs_of(problem: Problem) -> tuple[dict | None, str]:
    """The gemm form's plan, else (a proven scaled product the gemm form could not take) the fused form's."""
    try:   # one trace says whether to trace every shape (twice): most problems hold no scaled fp8 product
        rewrite_scaled_products(capture_at(problem, problem.smallest_workload()))
    except (Unsupported, KernelBenchError) as exc:
        return None, f"{problem.name}: {exc}"
    plan, why_not = programs_with(problem, scaled_gemm_program)
    if plan is not None:
        return {**plan, "form": "gemm"}, ""
    plan, why_not_fused = fused.programs_of(problem, rewrite_scaled_products, attention_kernels=True)
    if plan is None:
        return None, f"{why_not}; as a fused program: {why_not_fused}"
    return {**plan, "form": "fused"}, ""


register_planner(f"{__name__}:programs_of")
