"""A matrix product of scaled fp8 operands (per-tensor, per-row, 1xBK and BMxBK block scales) with an elementwise
epilogue, on fp8 tensor cores.

match: trace the reference at every distinct input shape of the problem's workloads, rewrite its
dequantize-then-matmul into one scaled_mm node whose scale maps are proven from the graph
(kernelbench.generate.scaled_operands), and read the graph as that product with its epilogue
(kernelbench.generate.scaledgemmprogram); None when no graph is one.
render: the gemm family's template (templates/gemm.py.j2) with fp8 tiles multiplied by tl.dot in fp8 with fp32
accumulation, scales constant over K applied once to the accumulator, scales with K blocks to each K step's
partial product. A configuration is the gemm family's, its K tile doubled (an fp8 tile of twice the K holds the
bytes of a bf16 one); a K tile longer than a scale's K block is cut to it at launch.
"""

from __future__ import annotations

from kernelbench.core.problem import Problem
from kernelbench.generate.family import MATCH_TIME_LIMIT_S, Config, Match, register_family
from kernelbench.generate.families.gemm import Gemm, configurations, dimensions, programs_with, summarize
from kernelbench.generate.scaledgemmprogram import scaled_gemm_program
from kernelbench.generate.traced import io_sizes, plan_in_child, register_planner

MAX_BLOCK_K = 256


@register_family
class ScaledGemm(Gemm):
    name = "scaled_gemm"
    version = "1"

    def match(self, problem: Problem, time_limit_s: float = MATCH_TIME_LIMIT_S) -> Match | None:
        plan, self.last_rejection = plan_in_child(f"{__name__}:programs_of", problem, time_limit_s, programs_of)
        if not plan:
            return None
        plan.update(io_sizes(problem))
        return Match(self.name, "scaled fp8 " + summarize(plan), plan)

    def space(self, match: Match, axes: dict[str, int]) -> list[Config]:
        return [{**c, "block_k": min(MAX_BLOCK_K, 2 * c["block_k"])}
                for c in configurations(**dimensions(match.plan, axes))]


def programs_of(problem: Problem) -> tuple[dict | None, str]:
    return programs_with(problem, scaled_gemm_program)


register_planner(f"{__name__}:programs_of")
