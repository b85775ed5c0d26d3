"""One convolution with an elementwise epilogue: conv1d/2d/3d, transposed, grouped, depthwise; bias, activation,
residual, cast.

match: trace the reference at every distinct input shape of the problem's workloads (graph.capture_at,
fake tensors), read each graph as one convolution with its epilogue (kernelbench.generate.convprogram);
None when no graph is one.
render: templates/conv.py.j2, per distinct epilogue either an implicit-GEMM Triton kernel (im2col addresses
computed in the kernel, fp32 accumulation on tensor cores; a transposed convolution in its gather form) or,
when each group reads one input channel (depthwise), a direct kernel; one host program per traced shape keyed
by the input shapes, and the reference for any other shape. A configuration sets the tiles, warps and stages.
"""

from __future__ import annotations

import json
import math

from kernelbench.core.problem import Problem
from kernelbench.core.solution import Solution
from kernelbench.generate.convprogram import conv_program
from kernelbench.generate.family import (
    MATCH_TIME_LIMIT_S,
    Config,
    Family,
    Match,
    Traffic,
    register_family,
)
from kernelbench.generate.traced import (
    io_traffic,
    parameters,
    product_match,
    register_planner,
    render_product,
    trace_programs,
)


@register_family
class Conv(Family):
    name = "conv"
    version = "1"

    def match(self, problem: Problem, time_limit_s: float = MATCH_TIME_LIMIT_S) -> Match | None:
        match, self.last_rejection = product_match(self.name, programs_of, summarize, problem, time_limit_s)
        return match

    def space(self, match: Match, axes: dict[str, int]) -> list[Config]:
        return configurations(**dimensions(match.plan, axes))

    def shape_class(self, match: Match, axes: dict[str, int]) -> str:
        d = dimensions(match.plan, axes)
        rows = d["m"] * d["batch"]
        bucket = "<=1024" if rows <= 1024 else "<=16384" if rows <= 16384 else ">16384"
        return f"{'direct' if d['direct'] else 'gemm'},rows{bucket},nk~4^{round(math.log(max(d['n'] * d['k'], 1), 4))}"

    def traffic(self, match: Match, axes: dict[str, int]) -> Traffic | None:
        """Every input read once and every output written once (the ideal an implicit GEMM approaches);
        2 FLOPs per multiply-add the convolution defines (a transposed one's skipped zeros excluded)."""
        return io_traffic(match.plan, axes, float(dimensions(match.plan, axes)["flops"]))

    def render(self, match: Match, config: Config) -> Solution:
        return render_product("conv.py.j2", self.name, self.version, match, {**DEFAULTS, **config})


DEFAULTS = {"block_m": 64, "block_n": 64, "block_k": 32, "group_m": 8, "block_p": 256, "num_warps": 4,
            "num_stages": 3, "pack": True, "channels_last": False, "block_c": 16,
            "interpreter_tiles": True}


def configurations(batch: int, m: int, n: int, k: int, direct: bool, **_) -> list[Config]:
    """Best guess first. Depthwise (direct) kernels are memory-bound: the tile of positions x channels, the warps.
    Implicit GEMMs: square-ish tiles, wider ones when there are many positions, BLOCK_K a divisor-friendly
    channel chunk (each kernel tap runs C_in/groups in BLOCK_K steps); few output channels take narrow tiles;
    the weight repacked once a call (output channels fastest) except in the last try. An NCHW input's K tiles
    (channels) are strided, which keeps Triton from pipelining their loads (cp.async needs vectors): large
    shapes first try a channels-last copy of the input, whose K tiles are contiguous."""
    if direct:
        found = [{"block_p": p, "block_c": c, "num_warps": w}
                 for p, c, w in ((128, 16, 4), (256, 8, 4), (64, 32, 4), (256, 16, 8), (512, 4, 4))]
    else:
        def config(bm, bn, bk, warps=4, stages=3, pack=True, channels_last=False):
            return {"block_m": bm, "block_n": min(bn, max(16, 1 << (n - 1).bit_length())), "block_k": bk,
                    "group_m": 8, "num_warps": warps, "num_stages": stages, "pack": pack,
                    "channels_last": channels_last}
        if batch * m <= 4096:
            found = [config(64, 64, 32, 4, 4), config(64, 64, 32, 4, 4, channels_last=True), config(64, 128, 32, 4, 4),
                     config(32, 64, 64, 4, 4), config(128, 64, 32, 4, 3), config(64, 64, 32, 4, 4, pack=False)]
        else:
            found = [config(128, 128, 32, 8, 3, channels_last=True), config(128, 128, 32, 8, 3),
                     config(128, 128, 64, 8, 3, channels_last=True), config(128, 64, 32, 4, 4),
                     config(64, 128, 32, 4, 4, channels_last=True), config(256, 128, 32, 8, 3, channels_last=True),
                     config(128, 128, 32, 8, 3, pack=False)]
    return list({json.dumps(c, sort_keys=True): c for c in found}.values())


def dimensions(plan: dict, axes: dict[str, int]) -> dict:
    """The GEMM's batch, m, n, k, FLOPs and kind of the program traced at these axes' input shapes (else of
    the one nearest in input size)."""
    shapes = [[axes[a] if a in axes else int(a) for a in shape] for shape in plan["shapes"].values()]
    def distance(program):
        return abs(math.log(sum(map(math.prod, program["shapes"])) + 1) - math.log(sum(map(math.prod, shapes)) + 1))
    program = min(plan["programs"], key=lambda p: (p["shapes"] != shapes, distance(p)))
    return {d: program[d] for d in ("batch", "m", "n", "k", "flops", "direct")}


def programs_of(problem: Problem) -> tuple[dict | None, str]:
    """({"programs": [...], "kernels": [...], ...}, "") or (None, why not): one program per traced shape
    (kernelbench.generate.traced); programs whose kernels read the same share them."""
    if any(spec.shape is None for spec in problem.definition.outputs.values()):
        return None, f"{problem.name}: a scalar output (the conv family writes tensors)"
    traced = trace_programs(problem, lambda capture, index: conv_program(capture))
    if not traced.programs:
        return None, traced.rejection(problem)
    kernels, names = [], {}
    for program in traced.programs:
        text = json.dumps(program.pop("kernel"), sort_keys=True)
        if text not in names:
            names[text] = f"_c{len(kernels)}"
            kernels.append({"name": names[text], **json.loads(text)})
        kind = "depthwise" if program["direct"] else f"{program['m']}x{program['n']}x{program['k']} implicit-GEMM"
        program.update(kernel=names[text], summary=f"{kind} convolution"
                                                   + (f", {program['groups']} groups" if program["groups"] > 1 else ""))
    return {"programs": traced.programs, "kernels": kernels, "skipped": traced.skipped, **parameters(problem),
            "outputs": [f"o{i}" for i in range(len(problem.definition.outputs))]}, ""


def summarize(plan: dict) -> str:
    programs = plan["programs"]
    epilogue = max(len(k["body"]) - 1 for k in plan["kernels"])
    kinds = sorted({"depthwise" if p["direct"] else "implicit-GEMM" for p in programs})
    return (f"{len(programs)} traced shape(s), {len(plan['kernels'])} kernel set(s), {' and '.join(kinds)} "
            f"convolution" + (f" with up to {epilogue} epilogue op(s)" if epilogue else "")
            + (f", {len(plan['skipped'])} shape(s) left to the reference" if plan["skipped"] else ""))


register_planner(f"{__name__}:programs_of")
