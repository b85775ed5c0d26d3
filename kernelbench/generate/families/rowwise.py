"""Row-wise reductions over the last dimension, with prologue and epilogue: norms, softmax, log-softmax,
cross-entropy, token log-probs, their backward passes, and sums across rows (grad_weight, a mean loss).

match: capture the reference as an aten graph (kernelbench.generate.graph), read it as a row program
(kernelbench.generate.rowprogram), check every group renders, then evaluate the plan with torch on
two workloads' inputs (the smallest and an untested shape near it) against the reference with the
workload's tolerance; any doubt is None, never a guess.
render: Triton from templates/rowwise.py.j2, statements from kernelbench.generate.rowcode; a
configuration only changes tiling (rows per tile, tile width, warps, stages, persistent programs),
and every kernel handles any row length (one tile in registers when it fits, passes otherwise).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import replace

import torch

from kernelbench.core.correctness import as_output_list, compare
from kernelbench.core.dtypes import torch_dtype
from kernelbench.core.errors import KernelBenchError
from kernelbench.core.inputs import generate_inputs
from kernelbench.core.problem import Problem, Workload
from kernelbench.core.reference import compile_reference
from kernelbench.core.solution import Solution, Source
from kernelbench.core.statuses import PASSED
from kernelbench.generate.family import (
    MATCH_TIME_LIMIT_S,
    Config,
    Family,
    Match,
    Traffic,
    register_family,
)
from kernelbench.generate.graph import capture
from kernelbench.generate.isolation import call_in_child
from kernelbench.generate.rowcode import GroupCode, KernelConfig, identifier
from kernelbench.generate.rowprogram import Unsupported, analyse, evaluate
from templates import LEAN_LAUNCH_FILE, lean_launch_source
from templates import render as render_template

VERIFY_INPUT_BYTES = 1 << 30   # a verification workload whose inputs exceed this is skipped
# Torch functions no row program contains: a reference that calls one is refused at that call, before the
# rest of it is traced (an attention block takes 10-40 s to trace).
REFUSED = frozenset({"matmul", "__matmul__", "__rmatmul__", "mm", "bmm", "addmm", "baddbmm", "addbmm", "einsum",
                     "linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
                     "conv_transpose3d", "scaled_dot_product_attention", "cumsum", "cumprod", "sort", "argsort",
                     "topk", "tensordot", "matrix_power", "embedding", "index_add", "index_copy", "index_put"})


@register_family
class Rowwise(Family):
    name = "rowwise"
    version = "1"

    # -------------------------------------------------------------- match

    def match(self, problem: Problem, time_limit_s: float = MATCH_TIME_LIMIT_S) -> Match | None:
        """Tracing and verifying run the reference: in a child process (a reference that crashes or hangs
        must not take the optimizer with it), unless the problem has no directory to load it from."""
        if problem.directory is None:
            plan, self.last_rejection = plan_of(problem)
        else:
            plan, self.last_rejection = call_in_child(f"{__name__}:plan_of", problem, time_limit_s)
        return Match(self.name, summarize(plan), {"problem": problem.name, "plan": plan}) if plan else None

    # -------------------------------------------------------------- configurations

    def space(self, match: Match, axes: dict[str, int]) -> list[Config]:
        shape = row_shape(match.plan["plan"], axes)
        return configurations(shape["n_cols"], shape["n_rows"], shape["cross"], shape["column_partials"])

    def shape_class(self, match: Match, axes: dict[str, int]) -> str:
        shape = row_shape(match.plan["plan"], axes)
        cols = 1 << max(0, math.ceil(math.log2(max(shape["n_cols"], 1))))
        rows = shape["n_rows"]
        bucket = "1" if rows <= 1 else "<=64" if rows <= 64 else "<=1024" if rows <= 1024 else "<=16384" \
            if rows <= 16384 else ">16384"
        return f"cols<={cols},rows{bucket}"

    # -------------------------------------------------------------- rendering

    def render(self, match: Match, config: Config) -> Solution:
        plan = match.plan["plan"]
        kernel_config = KernelConfig.from_dict(config)
        groups = [GroupCode(plan, i, kernel_config).kernel() for i in range(len(plan["groups"]))]
        text = json.dumps(groups, sort_keys=True)
        arguments = [identifier(e["name"]) for e in plan["inputs"]] + [identifier(o["name"]) for o in plan["outputs"]]
        source = render_template("rowwise.py.j2", groups=groups, arguments=arguments, version=self.version,
                                 problem=match.plan["problem"], summary=match.summary,
                                 config_text=json.dumps(config, sort_keys=True),
                                 helpers=["tanh"] if "_tanh(" in text else [],
                                 device_of=identifier(plan["outputs"][0]["name"]))
        digest = hashlib.sha256(source.encode()).hexdigest()[:10]
        return Solution(name=f"{match.plan['problem']}__rowwise_{digest}", definition=match.plan["problem"],
                        entry_point="kernel.py::run",
                        sources=(Source("kernel.py", source), Source(LEAN_LAUNCH_FILE, lean_launch_source())),
                        languages=("triton",),
                        author="kernelbench-generator", description=f"rowwise {json.dumps(config, sort_keys=True)}",
                        destination_passing_style=True)

    # -------------------------------------------------------------- traffic

    def traffic(self, match: Match, axes: dict[str, int]) -> Traffic:
        return plan_traffic(match.plan["plan"], axes)


def plan_of(problem: Problem) -> tuple[dict | None, str]:
    """(the verified row-program plan, "") or (None, why not)."""
    try:
        plan = analyse(capture(problem, refused=REFUSED), problem.definition.outputs)
        for index in range(len(plan["groups"])):
            GroupCode(plan, index, KernelConfig()).kernel()
        verify(problem, plan)
    except (Unsupported, KernelBenchError) as exc:   # CaptureError is a KernelBenchError
        return None, f"{problem.name}: {exc}"
    specs = {**problem.definition.inputs, **problem.definition.outputs}
    plan["shapes"] = {n: list(s.shape) for n, s in specs.items() if s.shape is not None}
    loaded = {plan["nodes"][n]["input"] for g in plan["groups"] for n in g["nodes"]
              if plan["nodes"][n]["op"] == "load"}
    for entry in plan["inputs"]:
        entry["used"] = entry["name"] in loaded
    return plan, ""


# ------------------------------------------------------------------ verification

def verify(problem: Problem, plan: dict) -> None:
    """The plan's outputs against the reference's on real inputs of two workloads; Unsupported if they differ."""
    module = compile_reference(problem.definition)
    for workload in verification_workloads(problem):
        inputs = generate_inputs(problem, workload, seed=1234, reference_module=module)
        with torch.no_grad():
            expected = as_output_list(module.run(*[v.clone() if isinstance(v, torch.Tensor) else v for v in inputs]),
                                      len(problem.definition.outputs))
        axes = problem.axes_for(workload)
        shapes = {n: problem.shape_of(s, axes) or () for n, s in problem.definition.outputs.items()}
        try:
            got = evaluate(plan, inputs, shapes)
        except (RuntimeError, ValueError, IndexError, KeyError) as exc:
            raise Unsupported(f"the plan does not evaluate: {exc}") from None
        comparison = compare(problem, workload, got, expected)
        if comparison.status != PASSED:
            raise Unsupported(f"the plan differs from the reference on {workload.axes}: {comparison.message}")


def verification_workloads(problem: Problem) -> list[Workload]:
    """The smallest workload and one with every var axis moved (a shape no workload may use), when legal."""
    readable = [w for w in problem.workloads if all(s.kind != "safetensors" for s in w.inputs.values())]
    if not readable:
        raise Unsupported("no workload with generated inputs to verify the plan on")
    base = min(readable, key=problem.workload_size)
    chosen = [base]
    var = {n: v + 2 for n, v in base.axes.items()}
    moved = replace(base, uuid=base.uuid + "-verify", axes=var)
    try:
        problem.axes_for(moved)
        legal = not problem.check_constraints(moved)
    except KernelBenchError:
        legal = False
    if legal and var != base.axes and input_bytes(problem, moved) <= VERIFY_INPUT_BYTES:
        chosen.append(moved)
    return chosen


def input_bytes(problem: Problem, workload: Workload) -> int:
    axes = problem.axes_for(workload)
    return sum(math.prod(problem.shape_of(s, axes)) * torch_dtype(s.dtype).itemsize
               for s in problem.definition.inputs.values() if s.shape is not None)


# ------------------------------------------------------------------ shapes, space, traffic

def summarize(plan: dict) -> str:
    parts = []
    for group in plan["groups"]:
        nodes = [plan["nodes"][n] for n in group["nodes"]]
        kinds = sorted({f"{n['kind']}" for n in nodes if n["op"] == "reduce" and n["scope"] == "row"})
        extras = [op for op in ("gather", "scatter") if any(n["op"] == op for n in nodes)]
        cross = any(n["op"] == "reduce" and n["scope"] == "cross" for n in nodes)
        outputs = [plan["outputs"][o]["name"] for o in group["outputs"]]
        parts.append(f"{'+'.join(outputs)}: row {'/'.join(kinds) or 'elementwise'}"
                     + (f", {'/'.join(extras)}" if extras else "") + (", cross-row sum" if cross else ""))
    return "; ".join(parts)


def class_size(plan: dict, c: int, shapes: dict[str, tuple[int, ...]]) -> int:
    source = plan["sizes"][str(c)]
    if isinstance(source, int):
        return source
    return int(shapes[source[1]][source[2]])


def problem_shapes(plan: dict, axes: dict[str, int]) -> dict[str, tuple[int, ...]]:
    """Tensor shapes by name for a workload's axes (the plan keeps each tensor's axis names)."""
    return {name: tuple(axes[a] if a in axes else int(a) for a in shape) for name, shape in plan["shapes"].items()}


def row_shape(plan: dict, axes: dict[str, int]) -> dict:
    """The largest group's row length and row count, and whether it sums across rows (scalars or columns)."""
    shapes = problem_shapes(plan, axes)
    best = None
    for group in plan["groups"]:
        n_cols = class_size(plan, group["column"], shapes)
        n_rows = math.prod(class_size(plan, c, shapes) for c in group["lead"])
        cross = [n for n in group["nodes"]
                 if plan["nodes"][n]["op"] == "reduce" and plan["nodes"][n]["scope"] == "cross"]
        column_partials = any(group["column"] in plan["nodes"][plan["nodes"][n]["args"][0]]["dims"] for n in cross)
        entry = {"n_cols": n_cols, "n_rows": n_rows, "cross": bool(cross), "column_partials": column_partials}
        if best is None or n_cols * n_rows > best["n_cols"] * best["n_rows"]:
            best = entry
    return best


def configurations(n_cols: int, n_rows: int, cross: bool, column_partials: bool) -> list[Config]:
    """Tilings worth trying for one shape, the most promising first: ~16 elements per thread, short rows
    stacked into tiles of ~2-4K elements, long rows in 2-8K-column tiles (split over programs when the rows
    alone cannot fill the GPU), persistent programs where sums across rows need a bounded number of partials."""
    whole = 1 << max(4, math.ceil(math.log2(max(n_cols, 1))))   # the narrowest tile that holds a row
    rows_cap = 1 << max(0, math.ceil(math.log2(max(n_rows, 1))))
    configs: list[Config] = []

    def warps_for(elements: int) -> int:
        return max(1, min(16, elements // 512))

    def add(block_m: int, block_n: int, warps: int, stages: int = 1, per_sm: int = 0, split: int = 0) -> None:
        config = {"block_m": block_m, "block_n": block_n, "num_warps": warps, "num_stages": stages,
                  "programs_per_sm": max(per_sm, 1) if cross else per_sm, "split_target": split}
        if config not in configs:
            configs.append(config)

    if whole <= 16384:
        stacked = max(1, min(64, 2048 // whole, rows_cap))
        per_sm = 2 if cross else 0
        for block_m in dict.fromkeys([stacked, max(1, stacked // 2), min(rows_cap, stacked * 2), 1]):
            warps = warps_for(block_m * whole)
            for w in dict.fromkeys([warps, max(1, warps // 2), min(16, warps * 2)]):
                add(block_m, whole, w, per_sm=per_sm)
            add(block_m, whole, warps, stages=2, per_sm=per_sm or 4)
            add(block_m, whole, warps, per_sm=1 if cross else 8)
            if cross:
                add(block_m, whole, warps, per_sm=4)
    for block_n in (4096, 8192, 2048):
        if block_n >= whole:
            continue
        for warps in dict.fromkeys([warps_for(block_n), max(1, warps_for(block_n) // 2), 16]):
            for stages in (2, 1, 3):
                add(1, block_n, warps, stages, per_sm=2 if cross else 0, split=0 if column_partials else 2)
        if not column_partials:
            add(1, block_n, warps_for(block_n), 2, split=4)
            add(1, block_n, warps_for(block_n), 2, split=0)
    return configs[:64]


def plan_traffic(plan: dict, axes: dict[str, int]) -> Traffic:
    """DRAM bytes one call moves (each input element read once, each output written once) and FLOPs."""
    shapes = problem_shapes(plan, axes)
    read = sum(math.prod(shapes[e["name"]]) * torch_dtype(e["dtype"]).itemsize
               for e in plan["inputs"] if e["kind"] == "tensor" and e.get("used", True))
    written = sum(math.prod(shapes[o["name"]]) * torch_dtype(o["dtype"]).itemsize for o in plan["outputs"])
    flops = 0.0
    for group in plan["groups"]:
        n_cols = class_size(plan, group["column"], shapes)
        n_rows = math.prod(class_size(plan, c, shapes) for c in group["lead"])
        vector_ops = sum(1 for n in group["nodes"] if group["column"] in plan["nodes"][n]["dims"]
                         and plan["nodes"][n]["op"] not in ("load", "cast", "iota"))
        flops += float(vector_ops * n_cols * n_rows)
    return Traffic(read, written, flops)
