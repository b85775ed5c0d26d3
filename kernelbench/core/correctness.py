"""Output checks: count, shape, dtype, then values against the reference with the workload's tolerance.

Values are compared in fp32: an element matches when |out - ref| <= atol + rtol * |ref|, and
the output passes when the matched fraction reaches `required_matched_ratio`. Any NaN or Inf
fails (except -inf where the reference is -inf too and the workload allows it); an all-zero
output against a non-zero reference fails whatever the tolerance; `max_error_cap` bounds the
worst element.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from kernelbench.core.dtypes import FLOAT4, torch_dtype
from kernelbench.core.emulation import unpack_fp4
from kernelbench.core.problem import Problem, Tolerance, Workload
from kernelbench.core.statuses import INCORRECT_DTYPE, INCORRECT_NUMERICAL, INCORRECT_SHAPE, PASSED


@dataclass
class Comparison:
    status: str = PASSED
    message: str = ""
    max_absolute_error: float = 0.0
    max_relative_error: float = 0.0
    matched_ratio: float = 1.0
    has_nan: bool = False
    has_inf: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"max_absolute_error": self.max_absolute_error, "max_relative_error": self.max_relative_error,
                "has_nan": self.has_nan, "has_inf": self.has_inf}


def as_output_list(result: Any, count: int) -> list[Any]:
    """A value-returning entry point gives one output or a tuple/list of them."""
    if isinstance(result, (tuple, list)):
        return list(result)
    if isinstance(result, dict):
        return list(result.values())
    return [result] if count == 1 or result is not None else []


def check_structure(problem: Problem, workload: Workload, outputs: list[Any]) -> Comparison:
    """Count, shapes and dtypes of outputs against the definition."""
    specs = list(problem.definition.outputs.values())
    if len(outputs) != len(specs):
        return Comparison(INCORRECT_SHAPE, f"expected {len(specs)} outputs, got {len(outputs)}")
    axes = problem.axes_for(workload)
    for spec, value in zip(specs, outputs):
        expected_shape = problem.shape_of(spec, axes)
        if spec.is_scalar:
            if isinstance(value, torch.Tensor) and value.numel() != 1:
                return Comparison(INCORRECT_SHAPE, f"{spec.name}: expected a scalar, got shape {tuple(value.shape)}")
            continue
        if type(value) is not torch.Tensor and not isinstance(value, torch.Tensor):
            return Comparison(INCORRECT_SHAPE, f"{spec.name}: expected a tensor, got {type(value).__name__}")
        if tuple(value.shape) != expected_shape:
            return Comparison(INCORRECT_SHAPE, f"{spec.name}: expected shape {expected_shape}, got {tuple(value.shape)}")
        if value.dtype != torch_dtype(spec.dtype):
            return Comparison(INCORRECT_DTYPE, f"{spec.name}: expected {spec.dtype}, got {value.dtype}")
    return Comparison()


def to_float32(value: Any) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        return torch.tensor(float(value), dtype=torch.float32)
    if value.dtype in FLOAT4:
        return unpack_fp4(value).float()
    return value.detach().float()


def compare(problem: Problem, workload: Workload, outputs: list[Any], expected: list[Any]) -> Comparison:
    """Full check of one round: structure, then every output's values."""
    result = check_structure(problem, workload, outputs)
    if result.status != PASSED:
        return result
    for spec, out, ref in zip(problem.definition.outputs.values(), outputs, expected):
        one = compare_values(to_float32(out).cpu(), to_float32(ref).cpu(), workload.tolerance)
        result.max_absolute_error = max(result.max_absolute_error, one.max_absolute_error)
        result.max_relative_error = max(result.max_relative_error, one.max_relative_error)
        result.matched_ratio = min(result.matched_ratio, one.matched_ratio)
        result.has_nan |= one.has_nan
        result.has_inf |= one.has_inf
        if one.status != PASSED and result.status == PASSED:
            result.status, result.message = one.status, f"{spec.name}: {one.message}"
    return result


def compare_values(out: torch.Tensor, ref: torch.Tensor, tol: Tolerance) -> Comparison:
    result = Comparison()
    if out.numel() == 0:
        return result
    allowed_ninf = (out == float("-inf")) & (ref == float("-inf")) if tol.allow_negative_inf else torch.zeros_like(out, dtype=torch.bool)
    nonfinite = ~torch.isfinite(out) & ~allowed_ninf
    result.has_nan = bool(torch.isnan(out).any())
    result.has_inf = bool(torch.isinf(out[~allowed_ninf]).any())
    finite = ~nonfinite & torch.isfinite(ref)
    diff = torch.where(finite, (out - ref).abs(), torch.zeros_like(out))
    result.max_absolute_error = float(diff.max())
    relative = diff / ref.abs().clamp_min(torch.finfo(torch.float32).tiny)
    result.max_relative_error = float(torch.where(finite, relative, torch.zeros_like(out)).max())
    matched = (finite & (diff <= tol.max_atol + tol.max_rtol * ref.abs())) | allowed_ninf
    result.matched_ratio = float(matched.float().mean())
    if bool(nonfinite.any()):
        result.status, result.message = INCORRECT_NUMERICAL, f"{int(nonfinite.sum())} NaN/Inf elements"
    elif bool((out == 0).all()) and bool((ref != 0).any()):
        result.status, result.message = INCORRECT_NUMERICAL, "output is all zeros, the reference is not"
    elif tol.max_error_cap is not None and result.max_absolute_error > tol.max_error_cap:
        result.status, result.message = INCORRECT_NUMERICAL, (
            f"max abs error {result.max_absolute_error:.3g} exceeds the cap {tol.max_error_cap:g}")
    elif result.matched_ratio < tol.required_matched_ratio:
        result.status, result.message = INCORRECT_NUMERICAL, (
            f"{result.matched_ratio:.2%} of elements within atol={tol.max_atol:g} rtol={tol.max_rtol:g}, "
            f"{tol.required_matched_ratio:.2%} required (max abs error {result.max_absolute_error:.3g})")
    return result
