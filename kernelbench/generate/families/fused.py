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

import hashlib
import json
import math
import re
import time

from kernelbench.core.errors import KernelBenchError
from kernelbench.core.problem import Problem
from kernelbench.core.reference import compile_reference
from kernelbench.core.solution import Solution, Source
from kernelbench.generate.dispatch import shape_key
from kernelbench.generate.family import MATCH_TIME_LIMIT_S, Config, Family, Match, register_family
from kernelbench.generate.frontend import Unsupported, dedupe_kernels, kernel_text, lower
from kernelbench.generate.graph import capture_at, workload_scalar
from kernelbench.generate.isolation import call_in_child
from templates import render as render_template

MAX_SHAPES = 24          # distinct input shapes traced; the others run the reference
TRACE_BUDGET_S = 60.0    # tracing stops starting new shapes after this long
MAX_KERNELS = 48         # distinct kernels a program may need: more (a loop the reference unrolled) costs
                         # minutes of compilation for launch-bound code that cannot beat the reference
FALLBACK_FILE = "reference_fallback.py"


@register_family
class Fused(Family):
    name = "fused"
    version = "1"

    def match(self, problem: Problem, time_limit_s: float = MATCH_TIME_LIMIT_S) -> Match | None:
        """Tracing runs the reference's Python: in a child process, as the row-wise family does."""
        if problem.directory is None:
            plan, self.last_rejection = programs_of(problem)
        else:
            plan, self.last_rejection = call_in_child(f"{__name__}:programs_of", problem, time_limit_s)
        if not plan:
            return None
        plan.update(problem=problem.name, reference=problem.definition.reference,
                    shapes={n: list(s.shape) for n, s in problem.definition.inputs.items() if s.shape is not None})
        return Match(self.name, summarize(plan), plan)

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
        plan = match.plan
        programs = plan["programs"]
        kernels = [k for p in programs for k in p["kernels"]]
        constants = [c for p in programs for c in p["constants"]]
        source = render_template(
            "fused.py.j2", version=self.version, problem=plan["problem"], summary=match.summary,
            config_text=json.dumps(config, sort_keys=True), block=int(config["block"]),
            num_warps=int(config["num_warps"]), kernels=kernels, programs=programs, constants=constants,
            uses_tanh=any(k["uses_tanh"] for k in kernels), graph=bool(config.get("graph")),
            ungraphed="(" + "".join(f"{p['function']}, " for p in programs
                                    if writes_an_input(p) or p["reads_data"]) + ")",
            attention=any("_attention(" in line for p in programs for line in p["lines"]),
            inputs=plan["inputs"], outputs=plan["outputs"], tensors=plan["tensor_parameters"],
            scalars=plan["scalar_parameters"])
        digest = hashlib.sha256(source.encode()).hexdigest()[:10]
        return Solution(name=f"{plan['problem']}__fused_{digest}", definition=plan["problem"],
                        entry_point="kernel.py::run",
                        sources=(Source("kernel.py", source), Source(FALLBACK_FILE, plan["reference"])),
                        languages=("triton",), author="kernelbench-generator",
                        description=f"fused {json.dumps(config, sort_keys=True)}: {match.summary}",
                        destination_passing_style=plan["destination"])


def programs_of(problem: Problem) -> tuple[dict | None, str]:
    """({"programs": [...], "tensor_parameters": [...], "scalar_parameters": [...], "skipped": [...]}, "")
    or (None, why not). A program's key is the input shapes it was traced at; a specialized program's
    (scalars traced as the workload's own numbers) adds those numbers, so it runs for them alone."""
    module = compile_reference(problem.definition)
    names = list(problem.definition.inputs)
    # destination-passing (the harness allocates the outputs, outside the timed call) unless an output is a scalar
    destination = all(spec.shape is not None for spec in problem.definition.outputs.values())
    scalars = [n for n in names if problem.definition.inputs[n].is_scalar]
    programs, skipped, reasons, general, seen = [], [], [], set(), set()
    started = time.monotonic()
    for workload in sorted(problem.workloads, key=problem.workload_size):
        shapes = shape_key(problem, workload)
        numbers = tuple(workload_scalar(problem, workload, n) for n in scalars)
        if shapes in general or (shapes, numbers) in seen:
            continue
        seen.add((shapes, numbers))
        if len(programs) >= MAX_SHAPES or time.monotonic() - started > TRACE_BUDGET_S:
            skipped.append(str(shapes))
            continue
        try:
            capture = capture_at(problem, workload, module)
            program = lower(capture, f"_s{len(programs)}", destination)
            distinct = len({kernel_text(k) for k in program["kernels"]})
            if distinct > MAX_KERNELS:
                raise Unsupported(f"{distinct} distinct kernels (more than {MAX_KERNELS}): the reference unrolls "
                                  f"a loop over the data")
        except (Unsupported, KernelBenchError) as exc:   # CaptureError is a KernelBenchError
            reasons.append(f"{shapes}: {exc}")
            skipped.append(str(shapes))
            continue
        key = tuple(tuple(shape) for shape in shapes)
        if capture.specialized:
            program["key"] = repr(key + numbers)
        else:
            program["key"] = repr(key)
            general.add(shapes)
        program.update(specialized=capture.specialized, function=f"_shape{len(programs)}",
                       shapes=[list(shape) for shape in shapes])
        programs.append(program)
    if not programs:
        return None, f"{problem.name}: " + ("; ".join(reasons[:2]) or "no workloads")
    dedupe_kernels(programs)
    parameters = {n: f"a{i}" for i, n in enumerate(names)}
    return {"programs": programs, "tensor_parameters": [parameters[n] for n in names if n not in scalars],
            "scalar_parameters": [parameters[n] for n in scalars], "skipped": skipped,
            "inputs": list(parameters.values()), "outputs": [f"o{i}" for i in range(len(problem.definition.outputs))]
            if destination else [], "destination": destination}, ""


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
