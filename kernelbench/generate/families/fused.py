"""Whole-problem fusion for any problem: the front end (kernelbench.generate.frontend) applied to the
reference traced at each workload shape.

match: trace the reference at every distinct input shape of the problem's workloads (smallest first,
fake tensors, so a 10 GB workload costs what a small one does), lower each graph into fused Triton
kernels plus aten calls; None when no graph has elementwise work to fuse.
render: templates/fused.py.j2, one program per traced shape keyed by the input shapes, and the
reference itself for any other shape (so the solution is correct on every legal shape). A
configuration sets the kernels' block size and warps.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable

from kernelbench.core.problem import Problem
from kernelbench.core.solution import Solution
from kernelbench.generate import scans
from kernelbench.generate.family import (
    MATCH_TIME_LIMIT_S,
    Config,
    Family,
    Match,
    register_family,
)
from kernelbench.generate.frontend import (
    INTERPRETER_TILE,
    Unsupported,
    dedupe_kernels,
    kernel_text,
    lower,
)
from kernelbench.generate.graph import Capture
from kernelbench.generate.traced import (
    parameters,
    plan_in_child,
    register_planner,
    trace_programs,
    traced_solution,
)
from templates import render as render_template

MAX_KERNELS = 48         # distinct kernels a program may need: more (a loop the reference unrolled) costs
                         # minutes of compilation for launch-bound code that cannot beat the reference


@register_family
class Fused(Family):
    name = "fused"
    version = "1"

    def match(self, problem: Problem, time_limit_s: float = MATCH_TIME_LIMIT_S) -> Match | None:
        plan, self.last_rejection = plan_in_child(f"{__name__}:programs_of", problem, time_limit_s, programs_of)
        return Match(self.name, summarize(plan), plan) if plan else None

    def space(self, match: Match, axes: dict[str, int]) -> list[Config]:
        """Block sizes around ~8-16 elements per thread; small problems take small blocks (more programs) and
        try CUDA-graph replay first: there the launches, not the bytes, set the time."""
        large = input_elements(match.plan, axes) >= 1 << 20
        pairs = [(1024, 4), (2048, 8), (4096, 8), (512, 4), (8192, 16), (256, 2)] if large else \
            [(256, 2), (512, 4), (1024, 4), (128, 1), (2048, 8)]
        plain = [{"block": b, "num_warps": w, "graph": False} for b, w in pairs]
        graphed = [{**c, "graph": True} for c in plain[:2]]
        return plain + graphed if large else graphed + plain

    def shape_class(self, match: Match, axes: dict[str, int]) -> str:
        return f"inputs~4^{round(math.log(max(input_elements(match.plan, axes), 1), 4))}"

    def render(self, match: Match, config: Config) -> Solution:
        return render_programs(self.name, self.version, match, config)


def render_programs(family: str, version: str, match: Match, config: Config, attention_config: dict | None = None,
                    scaled_mm: bool = False) -> Solution:
    """templates/fused.py.j2 over the plan's programs; `attention_config` (the attention family's tiles) puts the
    flash-attention kernels (templates/attention.py.j2) behind the programs' attention calls; `scaled_mm`: the
    programs' scaled fp8 products call `_scaled_mm` of a module beside (family scaled_gemm adds it)."""
    plan = match.plan
    programs, constants = shared_constants(plan["programs"])
    kernels = [k for p in programs for k in p["kernels"]]
    source = render_template(
        "fused.py.j2", family=family, version=version, attention_config=attention_config, problem=plan["problem"],
        summary=match.summary,
        config_text=json.dumps(config, sort_keys=True), block=int(config["block"]), interpreter_tile=INTERPRETER_TILE,
        num_warps=int(config["num_warps"]), kernels=kernels, programs=programs, constants=constants,
        uses_tanh=any(k["uses_tanh"] for k in kernels), scan_helpers=scans.helper_sources(kernels), graph=bool(config.get("graph")),
        ungraphed="(" + "".join(f"{p['function']}, " for p in programs
                                if writes_an_input(p) or p["reads_data"]) + ")",
        attention=any("_attention(" in line for p in programs for line in p["lines"]), scaled_mm=scaled_mm,
        inputs=plan["inputs"], outputs=plan["outputs"], tensors=plan["tensor_parameters"],
        scalars=plan["scalar_parameters"])
    return traced_solution(family, match, config, source, destination=plan["destination"])


def shared_constants(programs: list[dict]) -> tuple[list[dict], list[dict]]:
    """(the programs with their `_constant(i, ...)` renumbered, the one list of constants they index): each program
    numbers its own constants from 0 (they may differ by shape); equal constants are stored once."""
    constants: list[dict] = []
    index: dict[str, int] = {}
    renumbered = []
    for program in programs:
        position = []
        for constant in program["constants"]:
            key = json.dumps(constant, sort_keys=True)
            if key not in index:
                index[key] = len(constants)
                constants.append(constant)
            position.append(index[key])
        lines = [re.sub(r"_constant\((\d+), ", lambda m: f"_constant({position[int(m.group(1))]}, ", line)
                 for line in program["lines"]]
        renumbered.append({**program, "lines": lines})
    return renumbered, constants


def programs_of(problem: Problem, prepare: Callable[[Capture], None] | None = None,
                attention_kernels: bool = False) -> tuple[dict | None, str]:
    """({"programs": [...], "tensor_parameters": [...], "scalar_parameters": [...], "skipped": [...]}, "")
    or (None, why not): one program per traced shape (kernelbench.generate.traced). `prepare` rewrites each
    captured graph first; `attention_kernels`: attention calls count as generated kernels (family attention)."""
    # destination-passing (the harness allocates the outputs, outside the timed call) unless an output is a scalar
    destination = all(spec.shape is not None for spec in problem.definition.outputs.values())

    def lowered(capture: Capture, index: int) -> dict:
        if prepare is not None:
            prepare(capture)
        program = lower(capture, f"_s{index}", destination, attention_kernels)
        distinct = len({kernel_text(k) for k in program["kernels"]})
        if distinct > MAX_KERNELS:
            raise Unsupported(f"{distinct} distinct kernels (more than {MAX_KERNELS}): the reference unrolls "
                              f"a loop over the data")
        return program

    traced = trace_programs(problem, lowered)
    if not traced.programs:
        return None, traced.rejection(problem)
    dedupe_kernels(traced.programs)
    return {"programs": traced.programs, "skipped": traced.skipped, **parameters(problem),
            "outputs": [f"o{i}" for i in range(len(problem.definition.outputs))] if destination else [],
            "destination": destination}, ""


def writes_an_input(program: dict) -> bool:
    """Whether a program's statements write into one of its inputs (a0, a1, ...): an in-place op's first
    argument, an out= argument or a copy_ into it. A graph replay works on copies of the inputs, so it would
    lose that write."""
    return any(re.search(r"_\.\w+\(a\d+\b|\ba\d+\.\w+_\(|out=a\d+\b", line) for line in program["lines"])


def summarize(plan: dict) -> str:
    programs = plan["programs"]
    launches = sorted({p["launches"] for p in programs})
    kernels = sorted({len(p["kernels"]) for p in programs})
    span = (lambda v: str(v[0]) if len(v) == 1 else f"{v[0]}-{v[-1]}")
    return (f"{len(programs)} traced shape(s), {span(kernels)} generated kernel(s), {span(launches)} launch(es) a call"
            + (f", {len(plan['skipped'])} shape(s) left to the reference" if plan["skipped"] else ""))


def input_elements(plan: dict, axes: dict[str, int]) -> int:
    return sum(math.prod(axes[a] if a in axes else int(a) for a in shape) for shape in plan["shapes"].values())


register_planner(f"{__name__}:programs_of")
