"""Derive a workload tolerance from the reference's own numerical spread.

Method (documented in tasks235/README.md): run the reference on the same inputs twice, once as
given (working precision) and once with every bf16/fp16 input tensor upcast to fp32; over
several seeds and the smallest workloads, measure how far the working-precision output is from
the fp32 one. A correct kernel at working precision differs from the reference by about that
much, so the suggested tolerance is that spread times a margin: rtol from the output dtype's
rounding (half an ulp is 2^-8 for bf16, 2^-11 for fp16), atol = margin x the 99.9th percentile of
the error that rtol does not already cover.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kernelbench.core.correctness import as_output_list, to_float32
from kernelbench.core.emulation import reference_context
from kernelbench.core.inputs import generate_inputs
from kernelbench.core.problem import Problem
from kernelbench.core.reference import compile_reference

RTOL_BY_DTYPE = {"bfloat16": 2e-2, "float16": 1e-2, "float32": 1e-4, "float64": 1e-7}
MARGIN = 4.0


@dataclass
class Spread:
    output: str
    dtype: str
    max_abs: float
    uncovered_p999: float      # 99.9th percentile of max(0, |d| - rtol * |ref|)
    suggested_atol: float
    suggested_rtol: float


def _upcast(value):
    if isinstance(value, torch.Tensor) and value.dtype in (torch.bfloat16, torch.float16):
        return value.float()
    return value


def measure_spread(problem: Problem, seeds: int = 3, workloads: int = 2) -> list[Spread]:
    module = compile_reference(problem.definition)
    chosen = sorted(problem.workloads, key=problem.workload_size)[:workloads]
    specs = list(problem.definition.outputs.values())
    errors: dict[str, list[torch.Tensor]] = {s.name: [] for s in specs}
    rtols = {s.name: RTOL_BY_DTYPE.get(s.dtype, 0.0) for s in specs}
    max_abs = {s.name: 0.0 for s in specs}
    for workload in chosen:
        for seed in range(seeds):
            inputs = generate_inputs(problem, workload, device="cpu", seed=seed, reference_module=module)
            with reference_context("cpu"):
                low = as_output_list(module.run(*[v.clone() if isinstance(v, torch.Tensor) else v for v in inputs]), len(specs))
                high = as_output_list(module.run(*[_upcast(v) for v in inputs]), len(specs))
            for spec, lo, hi in zip(specs, low, high):
                lo, hi = to_float32(lo).flatten(), to_float32(hi).flatten()
                diff = (lo - hi).abs()
                max_abs[spec.name] = max(max_abs[spec.name], float(diff.max()) if diff.numel() else 0.0)
                errors[spec.name].append((diff - rtols[spec.name] * hi.abs()).clamp_min(0))
    spreads = []
    for spec in specs:
        uncovered = torch.cat(errors[spec.name])
        p999 = float(torch.quantile(uncovered[:1_000_000], 0.999)) if uncovered.numel() else 0.0
        spreads.append(Spread(spec.name, spec.dtype, max_abs[spec.name], p999,
                              max(1e-5, MARGIN * p999), rtols[spec.name]))
    return spreads
