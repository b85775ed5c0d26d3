"""Attention on a generated flash-attention kernel inside the front end's program (templates/attention.py.j2).

match: the fused family's programs (kernelbench.generate.families.fused), with every traced graph first rewritten
by kernelbench.generate.handwritten_attention (matmul -> scale -> mask / bias -> softmax [with a sink column] ->
matmul becomes one attention node), then by kernelbench.generate.attention_masks (masks that are position bands
become the kernel's causal / window band, which skips masked key blocks; position biases slope * distance become
its ALiBi), and attention nodes lowered to the flash kernel instead of SDPA, so the elementwise work around them
stays fused and a bare attention call is a program too. None when no traced graph holds attention.
space: the flash kernel's tiles (queries x keys per program, warps, pipeline stages, key splits: 0 chooses at run
time from the SM count, which splits decode shapes across the GPU) beside the elementwise kernels' block.
"""

from __future__ import annotations

import math

from kernelbench.core.problem import Problem
from kernelbench.core.solution import Solution
from kernelbench.generate.attention_masks import lower_position_masks
from kernelbench.generate.families import fused
from kernelbench.generate.family import (
    MATCH_TIME_LIMIT_S,
    Config,
    Family,
    Match,
    register_family,
)
from kernelbench.generate.graph import Capture
from kernelbench.generate.handwritten_attention import recognize_attention
from kernelbench.generate.traced import plan_in_child, register_planner
from templates import lean_launch_source
from templates import render as render_template

# (block_m, block_n, num_warps, num_stages, split): prefill tiles first (FlashAttention-2's forward on sm_90 runs
# 128 x 64 or 128 x 128 tiles with 8 warps), then decode ones (few queries: 16-row tiles, the keys split).
TILES = [(64, 64, 4, 3, 0), (128, 64, 8, 3, 0), (128, 128, 8, 2, 0), (16, 64, 4, 3, 0), (16, 128, 4, 2, 0),
         (64, 32, 4, 4, 0)]
ELEMENTWISE = {"block": 1024, "num_warps": 4, "graph": False}


@register_family
class Attention(Family):
    name = "attention"
    version = "1"

    def match(self, problem: Problem, time_limit_s: float = MATCH_TIME_LIMIT_S) -> Match | None:
        plan, self.last_rejection = plan_in_child(f"{__name__}:programs_of", problem, time_limit_s, programs_of)
        return Match(self.name, fused.summarize(plan), plan) if plan else None

    def space(self, match: Match, axes: dict[str, int]) -> list[Config]:
        large = fused.input_elements(match.plan, axes) >= 1 << 20
        return [{**ELEMENTWISE, "graph": not large, "attention": dict(zip(
            ("block_m", "block_n", "num_warps", "num_stages", "split"), tiles))} for tiles in TILES]

    def shape_class(self, match: Match, axes: dict[str, int]) -> str:
        return f"inputs~4^{round(math.log(max(fused.input_elements(match.plan, axes), 1), 4))}"

    def render(self, match: Match, config: Config) -> Solution:
        return fused.render_programs(self.name, self.version, match, config, attention_config=config["attention"])


def programs_of(problem: Problem) -> tuple[dict | None, str]:
    """The fused family's plan with attention recognised and lowered to the flash kernel; None without attention."""
    plan, why_not = fused.programs_of(problem, prepare, attention_kernels=True)
    if plan is None:
        return None, why_not
    calls = ("_attention(", "_attention_node(")
    if not any(call in line for p in plan["programs"] for line in p["lines"] for call in calls):
        return None, f"{problem.name}: no attention in the traced graphs"
    return plan, ""



def prepare(capture: Capture) -> None:
    """Hand-written attention as attention nodes, then their position masks as the kernel's causal / window band."""
    recognize_attention(capture)
    lower_position_masks(capture)


def kernel_source(attention_config: dict) -> str:
    """The flash-attention kernels and launchers (`_flash_attention`, `_attention`) as a module of their own
    (tests and benchmarks), the lean launch path inlined."""
    return (lean_launch_source() + "\n_lean, _cdiv, _next_power_of_2 = lean, cdiv, next_power_of_2\nimport math  # noqa: E402\n\nimport triton.language as tl  # noqa: E402\n\n\n"
            + render_template("attention.py.j2", attention_config=attention_config))


register_planner(f"{__name__}:programs_of")
