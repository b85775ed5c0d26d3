"""What the families built on traced graphs share: the reference traced at each distinct input shape of a
problem's workloads, one program per shape, found in a child process.

    plan, why_not = call_in_child("kernelbench.generate.families.fused:programs_of", problem, time_limit_s)

A family's `programs_of(problem)` calls `trace_programs(problem, lower)` with its own `lower(capture, index)`
(a JSON-serializable program, or Unsupported with the reason). Workloads are visited smallest first (fake
tensors: a 10 GB workload traces like a small one); a program's key is the input shapes it was traced at,
plus the scalars' values when the capture had to take them as Python numbers (it then holds for them alone).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kernelbench.core.dtypes import torch_dtype
from kernelbench.core.errors import KernelBenchError
from kernelbench.core.problem import Problem
from kernelbench.core.reference import compile_reference
from kernelbench.core.solution import Solution, Source
from kernelbench.generate.dispatch import shape_key
from kernelbench.generate.family import Match, Traffic
from kernelbench.generate.frontend import Unsupported
from kernelbench.generate.graph import Capture, capture_at, workload_scalar
from kernelbench.generate.isolation import call_in_child
from templates import LEAN_LAUNCH_FILE, lean_launch_source
from templates import render as render_template

MAX_SHAPES = 24          # distinct input shapes traced; the others run the reference
TRACE_BUDGET_S = 60.0    # tracing stops starting new shapes after this long
FALLBACK_FILE = "reference_fallback.py"   # the reference, shipped with a solution for the shapes it never traced


@dataclass
class Traced:
    programs: list[dict] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)    # shapes left to the reference
    reasons: list[str] = field(default_factory=list)    # why each refused shape was refused

    def rejection(self, problem: Problem) -> str:
        return f"{problem.name}: " + ("; ".join(self.reasons[:2]) or "no workloads")


def trace_programs(problem: Problem, lower: Callable[[Capture, int], dict],
                   capture: Callable[..., Capture] = capture_at, budget_s: float = TRACE_BUDGET_S) -> Traced:
    """One program per distinct input shape (and scalar values, for a specialized capture), each with its
    key, `specialized`, `function` (`_shape<i>`) and `shapes`. `capture(problem, workload, module)` traces
    one shape (a family may trace along examples of its own choosing)."""
    module = compile_reference(problem.definition)
    scalars = [n for n, spec in problem.definition.inputs.items() if spec.is_scalar]
    traced, general, seen = Traced(), set(), set()
    started = time.monotonic()
    for workload in sorted(problem.workloads, key=problem.workload_size):
        shapes = shape_key(problem, workload)
        numbers = tuple(workload_scalar(problem, workload, n) for n in scalars)
        if shapes in general or (shapes, numbers) in seen:
            continue
        seen.add((shapes, numbers))
        if len(traced.programs) >= MAX_SHAPES or time.monotonic() - started > budget_s:
            traced.skipped.append(str(shapes))
            continue
        try:
            captured = capture(problem, workload, module)
            program = lower(captured, len(traced.programs))
            if program.get("guards", 0) != len(captured.guards):   # a lowering that ignores them is wrong off the branch
                raise Unsupported(f"{len(captured.guards)} branches on data the program does not check")
        except (Unsupported, KernelBenchError) as exc:   # CaptureError is a KernelBenchError
            traced.reasons.append(f"{shapes}: {exc}")
            traced.skipped.append(str(shapes))
            continue
        key = tuple(tuple(shape) for shape in shapes)
        program.update(key=repr(key + numbers if captured.specialized else key), specialized=captured.specialized,
                       function=f"_shape{len(traced.programs)}", shapes=[list(shape) for shape in shapes])
        if not captured.specialized:
            general.add(shapes)
        traced.programs.append(program)
    return traced


def parameters(problem: Problem) -> dict:
    """The solution's parameter names: a0, a1, ... for the inputs, split into tensors and scalars."""
    names = {n: f"a{i}" for i, n in enumerate(problem.definition.inputs)}
    scalars = {n for n, spec in problem.definition.inputs.items() if spec.is_scalar}
    return {"inputs": list(names.values()), "tensor_parameters": [a for n, a in names.items() if n not in scalars],
            "scalar_parameters": [a for n, a in names.items() if n in scalars]}


def io_sizes(problem: Problem) -> dict:
    """The element bytes of every input and output and the outputs' shapes: what a product family's traffic
    estimate reads from its plan."""
    definition = problem.definition
    return {"sizes": {n: torch_dtype(s.dtype).itemsize for n, s in {**definition.inputs, **definition.outputs}.items()
                      if s.shape is not None},
            "output_shapes": {n: list(s.shape) for n, s in definition.outputs.items()}}


def io_traffic(plan: dict, axes: dict[str, int], flops: float) -> Traffic:
    """Every input read once and every output written once (the ideal a tiled product approaches), from a plan
    that io_sizes filled, at these axes."""
    def size(name, shape):
        return plan["sizes"][name] * math.prod(axes[a] if a in axes else int(a) for a in shape)
    return Traffic(bytes_read=sum(size(n, s) for n, s in plan["shapes"].items()),
                   bytes_written=sum(size(n, s) for n, s in plan["output_shapes"].items()), flops=flops)


def product_match(family: str, planner: Callable[[Problem], tuple[dict | None, str]],
                  summarize: Callable[[dict], str], problem: Problem, time_limit_s: float) -> tuple[Match | None, str]:
    """(the match, "") or (None, why not) of a product family (gemm, conv, grouped_gemm): its registered `planner`
    run through plan_in_child, the plan given the problem's element sizes and output shapes (io_sizes)."""
    plan, why_not = plan_in_child(f"{planner.__module__}:{planner.__name__}", problem, time_limit_s, planner)
    if not plan:
        return None, why_not
    plan.update(io_sizes(problem))
    return Match(family, summarize(plan), plan), why_not


# The planning functions of the families built on traced graphs ("module:function", registered as each family's module
# is imported). The first family asked about a problem plans it for all of them in one child: one interpreter start
# and import of torch instead of one per family, which was most of a small problem's matching time.
PLANNERS: list[str] = []
_PLANS: dict = {}    # this process's plans by problem key: {function: (plan, why)}; the newest PLANS_KEPT problems
PLANS_KEPT = 512     # a whole batch planned ahead (kernelbench.jobs.prepare) stays here until its tasks are optimized


def register_planner(function: str) -> None:
    if function not in PLANNERS:
        PLANNERS.append(function)


def plan_in_child(function: str, problem: Problem, time_limit_s: float,
                  direct: Callable[[Problem], tuple[dict | None, str]]) -> tuple[dict | None, str]:
    """`function(problem)`: tracing runs the reference's Python, so in a child process, except for a problem
    held in memory (no directory to load it from: tests), which `direct` plans here. The plan gains the
    problem's name, reference and input shapes."""
    if problem.directory is None:
        plan, why_not = direct(problem)
    elif function in PLANNERS:
        plan, why_not = copy.deepcopy(_shared_plans(problem, time_limit_s)[function])
    else:
        plan, why_not = call_in_child(function, problem, time_limit_s)
    if plan:
        plan.update(problem=problem.name, reference=problem.definition.reference,
                    shapes={n: list(s.shape) for n, s in problem.definition.inputs.items() if s.shape is not None})
    return plan, why_not


def plan_ahead(problem: Problem, time_limit_s: float) -> None:
    """Every registered planner's plan of `problem`, kept in this process for the families' later questions
    (thread-safe: each call plans in its own child, so a pool of threads plans many problems at once)."""
    _shared_plans(problem, time_limit_s)


def _shared_plans(problem: Problem, time_limit_s: float) -> dict[str, tuple]:
    key = (str(problem.directory), problem.definition.reference, tuple(w.uuid for w in problem.workloads),
           tuple(PLANNERS))
    if key not in _PLANS:
        plans, why_not = call_in_child(f"{__name__}:plans_of_all", problem, time_limit_s * len(PLANNERS))
        while len(_PLANS) >= PLANS_KEPT:
            _PLANS.pop(next(iter(_PLANS)), None)
        _PLANS[key] = plans or {f: (None, why_not) for f in PLANNERS}
    return _PLANS[key]


def plans_of_all(problem: Problem) -> tuple[dict, str]:
    """In the child: every registered planner's (plan, why not) for `problem`; one that raises is a refusal
    naming the error, and the others still plan."""
    import importlib

    import kernelbench.generate.families  # noqa: F401  (registers the planners)
    plans = {}
    for function in PLANNERS:
        module, name = function.split(":")
        try:
            plans[function] = getattr(importlib.import_module(module), name)(problem)
        except Exception as exc:  # noqa: BLE001 - one family's failure must not cost the others their plans
            plans[function] = (None, f"{problem.name}: {function} failed: {type(exc).__name__}: {exc}"[:2000])
    return plans, ""


def render_product(template: str, family: str, version: str, match: Match, config: dict) -> Solution:
    """A product family's template (gemm, conv, grouped_gemm) over its plan's kernels and programs, the results
    stored straight into the destinations."""
    plan = match.plan
    source = render_template(
        template, family=family, version=version, problem=plan["problem"], summary=match.summary,
        config_text=json.dumps(config, sort_keys=True), config=config, kernels=plan["kernels"],
        programs=plan["programs"], helpers=["tanh"] if any("_tanh(" in line for k in plan["kernels"]
                                                            for line in k["body"]) else [],
        inputs=plan["inputs"], outputs=plan["outputs"], tensors=plan["tensor_parameters"],
        scalars=plan["scalar_parameters"])
    return traced_solution(family, match, config, source, destination=True)


def traced_solution(family: str, match: Match, config: dict, source: str, destination: bool) -> Solution:
    """The rendered `source` as a solution, with the reference beside it for the shapes it never traced."""
    plan = match.plan
    digest = hashlib.sha256(source.encode()).hexdigest()[:10]
    return Solution(name=f"{plan['problem']}__{family}_{digest}", definition=plan["problem"],
                    entry_point="kernel.py::run",
                    sources=(Source("kernel.py", source), Source(FALLBACK_FILE, plan["reference"]),
                             Source(LEAN_LAUNCH_FILE, lean_launch_source())),
                    languages=("triton",), author="kernelbench-generator",
                    description=f"{family} {json.dumps(config, sort_keys=True)}: {match.summary}",
                    destination_passing_style=destination)
