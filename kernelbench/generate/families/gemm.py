"""One matrix product with an elementwise epilogue: linear / matmul / bmm, with bias, activation, residual, scale.

match: trace the reference at every distinct input shape of the problem's workloads (graph.capture_at,
fake tensors), read each graph as one product with its epilogue (kernelbench.generate.gemmprogram);
None when no graph is one.
render: templates/gemm.py.j2, a tiled Triton matmul (fp32 accumulation, grouped tile order, optional
split-K with a second reducing pass) per distinct epilogue, one host program per traced shape keyed by
the input shapes, and the reference for any other shape. A configuration sets the tiles, the split and
the warps and stages.
"""

from __future__ import annotations

import hashlib
import json
import math
import time

from kernelbench.core.dtypes import torch_dtype
from kernelbench.core.errors import KernelBenchError
from kernelbench.core.problem import Problem
from kernelbench.core.reference import compile_reference
from kernelbench.core.solution import Solution, Source
from kernelbench.generate.dispatch import shape_key
from kernelbench.generate.family import MATCH_TIME_LIMIT_S, Config, Family, Match, Traffic, register_family
from kernelbench.generate.frontend import Unsupported
from kernelbench.generate.gemmprogram import gemm_program
from kernelbench.generate.graph import capture_at, workload_scalar
from kernelbench.generate.isolation import call_in_child
from templates import render as render_template

MAX_SHAPES = 24          # distinct input shapes traced; the others run the reference
TRACE_BUDGET_S = 60.0    # tracing stops starting new shapes after this long
FALLBACK_FILE = "reference_fallback.py"
SMS = 132                # streaming multiprocessors of the target (H100 SXM): split-K fills them for skinny shapes


@register_family
class Gemm(Family):
    name = "gemm"
    version = "1"

    def match(self, problem: Problem, time_limit_s: float = MATCH_TIME_LIMIT_S) -> Match | None:
        """Tracing runs the reference's Python: in a child process, as the other families do."""
        if problem.directory is None:
            plan, self.last_rejection = programs_of(problem)
        else:
            plan, self.last_rejection = call_in_child(f"{__name__}:programs_of", problem, time_limit_s)
        if not plan:
            return None
        plan.update(problem=problem.name, reference=problem.definition.reference,
                    shapes={n: list(s.shape) for n, s in problem.definition.inputs.items() if s.shape is not None},
                    sizes={n: torch_dtype(s.dtype).itemsize for n, s in
                           {**problem.definition.inputs, **problem.definition.outputs}.items() if s.shape is not None},
                    output_shapes={n: list(s.shape) for n, s in problem.definition.outputs.items()})
        return Match(self.name, summarize(plan), plan)

    def space(self, match: Match, axes: dict[str, int]) -> list[Config]:
        return configurations(**dimensions(match.plan, axes))

    def shape_class(self, match: Match, axes: dict[str, int]) -> str:
        d = dimensions(match.plan, axes)
        rows = d["m"] * (d["batch"] if d["batch"] > 1 else 1)
        bucket = "<=16" if rows <= 16 else "<=128" if rows <= 128 else "<=2048" if rows <= 2048 else ">2048"
        return f"rows{bucket},nk~4^{round(math.log(max(d['n'] * d['k'], 1), 4))}"

    def traffic(self, match: Match, axes: dict[str, int]) -> Traffic | None:
        """Every input read once and every output written once (the ideal a tiled product approaches);
        2 M N K FLOPs per batch."""
        plan = match.plan
        d = dimensions(plan, axes)
        def size(name, shape):
            return plan["sizes"][name] * math.prod(axes[a] if isinstance(a, str) else int(a) for a in shape)
        return Traffic(bytes_read=sum(size(n, s) for n, s in plan["shapes"].items()),
                       bytes_written=sum(size(n, s) for n, s in plan["output_shapes"].items()),
                       flops=2.0 * d["batch"] * d["m"] * d["n"] * d["k"])

    def render(self, match: Match, config: Config) -> Solution:
        plan = match.plan
        config = {**DEFAULTS, **config}
        source = render_template(
            "gemm.py.j2", version=self.version, problem=plan["problem"], summary=match.summary,
            config_text=json.dumps(config, sort_keys=True), config=config, kernels=plan["kernels"],
            programs=plan["programs"], helpers=["tanh"] if any("_tanh(" in line for k in plan["kernels"]
                                                                for line in k["body"]) else [],
            inputs=plan["inputs"], outputs=plan["outputs"], tensors=plan["tensor_parameters"],
            scalars=plan["scalar_parameters"])
        digest = hashlib.sha256(source.encode()).hexdigest()[:10]
        return Solution(name=f"{plan['problem']}__gemm_{digest}", definition=plan["problem"],
                        entry_point="kernel.py::run",
                        sources=(Source("kernel.py", source), Source(FALLBACK_FILE, plan["reference"])),
                        languages=("triton",), author="kernelbench-generator",
                        description=f"gemm {json.dumps(config, sort_keys=True)}: {match.summary}",
                        destination_passing_style=True)


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
        found = [config(16, 64, 256, split, 4, 3), config(16, 64, 128, split, 4, 4), config(16, 128, 128, split, 4, 3),
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
    shapes = [[axes[a] if isinstance(a, str) else int(a) for a in shape] for shape in plan["shapes"].values()]
    def distance(program):
        return abs(math.log(sum(map(math.prod, program["shapes"])) + 1) - math.log(sum(map(math.prod, shapes)) + 1))
    program = min(plan["programs"], key=lambda p: (p["shapes"] != shapes, distance(p)))
    return {d: program[d] for d in ("batch", "m", "n", "k")}


def programs_of(problem: Problem) -> tuple[dict | None, str]:
    """({"programs": [...], "kernels": [...], ...}, "") or (None, why not). A program's key is the input
    shapes it was traced at (plus the scalars' values when the capture is specialized to them); programs
    whose kernels read the same share them."""
    definition = problem.definition
    if any(spec.shape is None for spec in definition.outputs.values()):
        return None, f"{problem.name}: a scalar output (the gemm family writes tensors)"
    module = compile_reference(definition)
    names = list(definition.inputs)
    scalars = [n for n in names if definition.inputs[n].is_scalar]
    programs, kernels, texts, skipped, reasons, general, seen = [], [], {}, [], [], set(), set()
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
            program = gemm_program(capture)
        except (Unsupported, KernelBenchError) as exc:   # CaptureError is a KernelBenchError
            reasons.append(f"{shapes}: {exc}")
            skipped.append(str(shapes))
            continue
        text = json.dumps(program.pop("kernel"), sort_keys=True)
        if text not in texts:
            texts[text] = f"_g{len(kernels)}"
            kernels.append({"name": texts[text], **json.loads(text)})
        key = tuple(tuple(shape) for shape in shapes)
        program.update(kernel=texts[text], key=repr(key + numbers if capture.specialized else key),
                       specialized=capture.specialized, function=f"_shape{len(programs)}",
                       shapes=[list(shape) for shape in shapes],
                       summary=f"{'batched ' if program['batch'] > 1 else ''}{program['m']}x{program['n']}x"
                               f"{program['k']} product")
        if not capture.specialized:
            general.add(shapes)
        programs.append(program)
    if not programs:
        return None, f"{problem.name}: " + ("; ".join(reasons[:2]) or "no workloads")
    parameters = {n: f"a{i}" for i, n in enumerate(names)}
    return {"programs": programs, "kernels": kernels, "skipped": skipped,
            "tensor_parameters": [parameters[n] for n in names if n not in scalars],
            "scalar_parameters": [parameters[n] for n in scalars], "inputs": list(parameters.values()),
            "outputs": [f"o{i}" for i in range(len(definition.outputs))]}, ""


def summarize(plan: dict) -> str:
    programs = plan["programs"]
    epilogue = max(len(k["body"]) - 1 for k in plan["kernels"])
    return (f"{len(programs)} traced shape(s), {len(plan['kernels'])} kernel set(s), "
            f"{'batched ' if any(p['batch'] > 1 for p in programs) else ''}matrix product"
            + (f" with up to {epilogue} epilogue op(s)" if epilogue else "")
            + (f", {len(plan['skipped'])} shape(s) left to the reference" if plan["skipped"] else ""))
