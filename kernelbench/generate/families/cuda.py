"""RMSNorm (with an optional residual add) as one CUDA kernel compiled at run time with NVRTC.

Why CUDA here: on small, launch-bound rows the host path decides the time, and a kernel launched
through cuda-python's driver binding costs a few microseconds where Triton's launcher costs ~25 us.

match: the definition's roles by shape (one output; one or two inputs of the output's shape, summed in
their dtype when two; a weight over the last axis; a Python-float eps), then each way of applying the
weight (after the cast to the output dtype; before it; `1 + w` before it) is evaluated with torch on
the inputs of two workloads (the smallest and an untested shape next to it) against the reference
with the workload's tolerance: the first that agrees everywhere is the plan, none is a refusal. A GPU
and cuda-python are required (there is no CPU path).
render: templates/cuda.cu.j2 (the kernel, header-free for NVRTC) inside templates/cuda.py.j2 (compiles
it for the GPU present at import, launches on torch's current stream); a configuration only sets the
threads per row, so every rendered solution handles any row length and count.
"""

from __future__ import annotations

import hashlib
import json
import math

import torch

from kernelbench.core.correctness import as_output_list, compare
from kernelbench.core.dtypes import torch_dtype
from kernelbench.core.errors import KernelBenchError
from kernelbench.core.inputs import generate_inputs
from kernelbench.core.problem import Problem
from kernelbench.core.reference import compile_reference
from kernelbench.core.solution import Solution, Source
from kernelbench.core.statuses import PASSED
from kernelbench.generate.families.rowwise import input_bytes, verification_workloads
from kernelbench.generate.family import (
    MATCH_TIME_LIMIT_S,
    Config,
    Family,
    Match,
    Traffic,
    register_family,
)
from kernelbench.generate.rowprogram import Unsupported
from templates import render as render_template

DTYPES = {"bfloat16": 2, "float16": 2, "float32": 4}   # element bytes
WEIGHT_MODES = ("after_cast", "before_cast", "offset_before_cast")
VERIFY_INPUT_BYTES = 256 << 20


@register_family
class Cuda(Family):
    name = "cuda"
    version = "1"

    def match(self, problem: Problem, time_limit_s: float = MATCH_TIME_LIMIT_S) -> Match | None:
        if not torch.cuda.is_available():
            self.last_rejection = f"{problem.name}: NVRTC kernels need a CUDA GPU"
            return None
        try:
            import cuda.bindings.nvrtc  # noqa: F401
        except ImportError:
            self.last_rejection = f"{problem.name}: cuda-python (cuda.bindings) is not installed"
            return None
        plan, self.last_rejection = plan_of(problem)
        return Match(self.name, f"rmsnorm ({plan['weight']}{', residual add' if plan['add'] else ''})",
                     {"problem": problem.name, "plan": plan}) if plan else None

    def space(self, match: Match, axes: dict[str, int]) -> list[Config]:
        cols = axes_cols(match.plan["plan"], axes)
        vector = 16 // DTYPES[match.plan["plan"]["dtype"]]
        ideal = min(1024, max(32, (cols // vector + 31) // 32 * 32))   # about one vector per thread
        return [{"threads": t} for t in dict.fromkeys([ideal, 256, 1024]) if t >= 32]

    def shape_class(self, match: Match, axes: dict[str, int]) -> str:
        return f"cols<={1 << max(0, math.ceil(math.log2(max(axes_cols(match.plan['plan'], axes), 1))))}"

    def render(self, match: Match, config: Config) -> Solution:
        plan = match.plan["plan"]
        return render_solution(match.plan["problem"], plan, config, match.summary, self.version)

    def traffic(self, match: Match, axes: dict[str, int]) -> Traffic:
        plan = match.plan["plan"]
        cols, size = axes_cols(plan, axes), DTYPES[plan["dtype"]]
        rows = math.prod(axes[a] if a in axes else int(a) for a in plan["row_shape"][:-1])
        reads = (2 if plan["add"] else 1) * rows * cols * size + cols * size
        return Traffic(bytes_read=reads, bytes_written=rows * cols * size, flops=4.0 * rows * cols)


def axes_cols(plan: dict, axes: dict[str, int]) -> int:
    last = plan["row_shape"][-1]
    return int(axes[last]) if last in axes else int(last)


def render_solution(problem: str, plan: dict, config: Config, summary: str, version: str = "1") -> Solution:
    kernel = "rmsnorm"
    cuda_source = render_template("cuda.cu.j2", summary=summary, dtype=plan["dtype"], add=plan["add"],
                                  weight=plan["weight"], kernel=kernel, vector=16 // DTYPES[plan["dtype"]])
    source = render_template("cuda.py.j2", cuda_source=repr(cuda_source), plan=plan, kernel=kernel,
                             threads=int(config["threads"]), vector=16 // DTYPES[plan["dtype"]],
                             version=version, problem=problem, config_text=json.dumps(config, sort_keys=True))
    digest = hashlib.sha256(source.encode()).hexdigest()[:10]
    return Solution(name=f"{problem}__cuda_{digest}", definition=problem, entry_point="kernel.py::run",
                    sources=(Source("kernel.py", source),), languages=("pytorch",), author="kernelbench-generator",
                    description=f"cuda (NVRTC) {json.dumps(config, sort_keys=True)}", destination_passing_style=True)


# ------------------------------------------------------------------ matching

def roles(problem: Problem) -> dict:
    """Which input plays which part, from shapes and dtypes alone; Unsupported if the definition is not that."""
    definition = problem.definition
    if len(definition.outputs) != 1:
        raise Unsupported("one output expected (the normalized rows)")
    (out_name, out), = definition.outputs.items()
    if not out.shape or out.dtype not in DTYPES:
        raise Unsupported(f"the output must be a {'/'.join(DTYPES)} tensor")
    rows, weights, scalars, order = [], [], [], []
    for name, spec in definition.inputs.items():
        order.append(name)
        if spec.shape is None and spec.dtype.startswith("float"):
            scalars.append(name)
        elif spec.shape is not None and list(spec.shape) == list(out.shape) and spec.dtype == out.dtype:
            rows.append(name)
        elif spec.shape is not None and list(spec.shape) == [out.shape[-1]] and spec.dtype == out.dtype:
            weights.append(name)
        else:
            raise Unsupported(f"input {name!r} fits no role (rows, weight over the last axis, eps)")
    if len(rows) not in (1, 2) or len(weights) != 1 or len(scalars) != 1:
        raise Unsupported("needs one or two row inputs, one weight and one eps")
    return {"order": order, "rows": rows, "weight_input": weights[0], "eps": scalars[0], "output": out_name,
            "dtype": out.dtype, "row_shape": list(out.shape),
            "add": len(rows) == 2}


def plan_output(plan: dict, named: dict) -> torch.Tensor:
    """The plan with torch, rounding where the kernel rounds."""
    dtype = torch_dtype(plan["dtype"])
    x = named[plan["rows"][0]]
    if plan["add"]:
        x = x + named[plan["rows"][1]]
    xf = x.float()
    normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + float(named[plan["eps"]]))
    w = named[plan["weight_input"]].float()
    if plan["weight"] == "after_cast":
        return (w * normed.to(dtype).float()).to(dtype)
    return (normed * ((1.0 + w) if plan["weight"] == "offset_before_cast" else w)).to(dtype)


def plan_of(problem: Problem) -> tuple[dict | None, str]:
    """(the verified plan, "") or (None, why not)."""
    try:
        plan = roles(problem)
        module = compile_reference(problem.definition)
        cases = []
        for workload in verification_workloads(problem):
            if input_bytes(problem, workload) > VERIFY_INPUT_BYTES:
                continue
            inputs = generate_inputs(problem, workload, seed=4321, reference_module=module)
            with torch.no_grad():
                expected = as_output_list(module.run(*[v.clone() if isinstance(v, torch.Tensor) else v
                                                       for v in inputs]), 1)
            cases.append((workload, dict(zip(plan["order"], inputs)), expected))
        if not cases:
            raise Unsupported("every workload is too large to verify on")
        for mode in WEIGHT_MODES:
            candidate = {**plan, "weight": mode}
            if all(compare(problem, w, [plan_output(candidate, named)], expected).status == PASSED
                   for w, named, expected in cases):
                return candidate, ""
        raise Unsupported("no RMSNorm variant agrees with the reference")
    except (Unsupported, KernelBenchError, RuntimeError, ValueError) as exc:
        return None, f"{problem.name}: {exc}"
