"""Grouped matrix products: MoE experts over routing offsets, every expert in one launch.

match: trace the reference at every distinct input shape along two chosen examples (every group full, every
group empty: kernelbench.generate.groupedprogram.grouped_capture), read each graph as products of row slices
x[off[e]:off[e+1]] by expert weights W[e] written into one tensor, with the gemm family's epilogue after them;
None when no graph is one.
render: templates/grouped_gemm.py.j2, one Triton kernel per distinct epilogue whose programs read the offsets
on the device and share the (group, row tile, column tile) work items (fp32 accumulation, the gemm family's
tile loop and epilogue), one host program per traced shape keyed by the input shapes, and the reference for
any other shape. A configuration sets the tiles, the warps and the stages.
"""

from __future__ import annotations

import json
import math

from kernelbench.core.problem import Problem
from kernelbench.core.solution import Solution
from kernelbench.generate.families.gemm import configurations
from kernelbench.generate.family import (
    MATCH_TIME_LIMIT_S,
    Config,
    Family,
    Match,
    Traffic,
    register_family,
)
from kernelbench.generate.frontend import Unsupported
from kernelbench.generate.graph import CaptureError
from kernelbench.generate.groupedprogram import grouped_capture, grouped_program
from kernelbench.generate.traced import (
    io_traffic,
    parameters,
    product_match,
    register_planner,
    render_product,
    trace_programs,
)

TRACE_BUDGET_S = 180.0   # each group is a few ops to trace twice: 128 experts take ~35 s a shape


@register_family
class GroupedGemm(Family):
    name = "grouped_gemm"
    version = "1"

    def match(self, problem: Problem, time_limit_s: float = MATCH_TIME_LIMIT_S) -> Match | None:
        match, self.last_rejection = product_match(self.name, programs_of, summarize, problem, time_limit_s)
        return match

    def space(self, match: Match, axes: dict[str, int]) -> list[Config]:
        """The gemm family's guesses for the mean group (rows / groups) with no split of K (the groups fill the
        GPU instead)."""
        d = dimensions(match.plan, axes)
        found = [{k: v for k, v in c.items() if k != "split_k"}
                 for c in configurations(1, max(1, d["m"] // d["groups"]), d["n"], d["k"])]
        return list({json.dumps(c, sort_keys=True): c for c in found}.values())

    def shape_class(self, match: Match, axes: dict[str, int]) -> str:
        d = dimensions(match.plan, axes)
        rows = d["m"] / max(1, d["groups"])
        bucket = "<=16" if rows <= 16 else "<=128" if rows <= 128 else "<=2048" if rows <= 2048 else ">2048"
        return f"rows/group{bucket},nk~4^{round(math.log(max(d['n'] * d['k'], 1), 4))}"

    def traffic(self, match: Match, axes: dict[str, int]) -> Traffic | None:
        """Every input read once and every output written once (every expert's weight read: the worst case over
        routings); 2 M N K FLOPs for each product of all the groups' rows."""
        return io_traffic(match.plan, axes, dimensions(match.plan, axes)["flops"])

    def render(self, match: Match, config: Config) -> Solution:
        return render_product("grouped_gemm.py.j2", self.name, self.version, match, {**DEFAULTS, **config})


DEFAULTS = {"block_m": 64, "block_n": 64, "block_k": 64, "group_m": 8, "num_warps": 4, "num_stages": 3}


def dimensions(plan: dict, axes: dict[str, int]) -> dict[str, int]:
    """groups, m (all rows), n and k of the first product, and the FLOPs of all the products of every row; from
    the rows' and the weights' shapes at these axes (every weight a group where no program was traced here)."""
    shapes = [[axes[a] if isinstance(a, str) else int(a) for a in shape] for shape in plan["shapes"].values()]
    program = next((p for p in plan["programs"] if p["shapes"] == shapes), plan["programs"][0])
    m = shapes[program["rows_input"]][0]
    products = [(shape[1], shape[2]) if transposed else (shape[2], shape[1])
                for shape, transposed in ((shapes[i], t) for i, t in program["weights"])]   # (n, k) each
    groups = program["groups"] if program["shapes"] == shapes else shapes[program["weights"][0][0]][0]
    return {"groups": groups, "m": m, "n": products[0][0], "k": products[0][1],
            "flops": 2.0 * m * sum(n * k for n, k in products)}


def programs_of(problem: Problem) -> tuple[dict | None, str]:
    """({"programs": [...], "kernels": [...], ...}, "") or (None, why not): one program per traced shape;
    programs whose kernels read the same share them."""
    if any(spec.shape is None for spec in problem.definition.outputs.values()):
        return None, f"{problem.name}: a scalar output (the grouped_gemm family writes tensors)"
    lowered, refusals = [], []

    def capture(problem, workload, module):
        # a problem refused at its smallest shape is refused at every shape (the pattern does not depend on
        # sizes): the two traces along examples are not repeated for each (minutes on references that read data)
        if refusals and not lowered:
            raise CaptureError(f"refused at a smaller shape: {refusals[0][:200]}")
        try:
            return grouped_capture(problem, workload, module)
        except CaptureError as exc:
            refusals.append(str(exc))
            raise

    def lower(capture, index):
        try:
            lowered.append(grouped_program(capture))
        except Unsupported as exc:
            refusals.append(str(exc))
            raise
        return lowered[-1]
    traced = trace_programs(problem, lower, capture=capture, budget_s=TRACE_BUDGET_S)
    if not traced.programs:
        return None, traced.rejection(problem)
    kernels, names = [], {}
    for program in traced.programs:
        for launch in program["launches"]:
            text = json.dumps(launch.pop("kernel"), sort_keys=True)
            if text not in names:
                names[text] = f"_g{len(kernels)}"
                kernels.append({"name": names[text], **json.loads(text)})
            launch["kernel"] = names[text]
        program.update(summary=f"{program['groups']} groups of {program['m']} rows x {program['n']}x{program['k']}"
                               + (f", {program['stages']} products a group" if program["stages"] > 1 else ""))
    return {"programs": traced.programs, "kernels": kernels, "skipped": traced.skipped, **parameters(problem),
            "outputs": [f"o{i}" for i in range(len(problem.definition.outputs))]}, ""


def summarize(plan: dict) -> str:
    programs = plan["programs"]
    epilogue = max(len(k["body"]) - len(k["accumulators"]) - 1 for k in plan["kernels"])   # less the products' lines
    return (f"{len(programs)} traced shape(s), {len(plan['kernels'])} kernel set(s), grouped product of up to "
            f"{max(p['groups'] for p in programs)} groups"
            + (f" with up to {epilogue} epilogue op(s)" if epilogue else "")
            + (f", {len(plan['skipped'])} shape(s) left to the reference" if plan["skipped"] else ""))


register_planner(f"{__name__}:programs_of")
