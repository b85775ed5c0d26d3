"""The inputs a count runs on: meta tensors of the workload's shapes, with real values where cheap.

Float data rarely needs values for counting, so float tensors are meta (no memory, any size).
Integer and bool inputs (indices, page tables, lengths, masks) decide which elements are
touched and how loops run, so they also get a CPU "shadow" holding real values, drawn by
the workload's own rules (kernelbench.core.inputs). In the lazy tier every input also gets a
maker that draws its values by the same rules when a count needs them (tracer.py). Custom
inputs come from the problem's entry point run on the meta device (its small integer results
get shadows too; see counter.py).

A safetensors blob that is not on disk (the sample's 012 GQA problem ships without its
flashinfer-trace blobs) is synthesized from the axes, and the result says so:
  *indptr / *offsets / cu_seqlens*: 0 .. N evenly, N = the length of the matching index input
  other integer inputs: 0, 1, 2, ... (distinct indices: a paged KV cache's pages are distinct)
  lengths (*len*, *lens*): the workload's random rule.
"""

from __future__ import annotations

import functools
import math
import re
import zlib

import torch

from kernelbench.core.dtypes import torch_dtype
from kernelbench.core.errors import MissingDataError
from kernelbench.core.inputs import load_safetensors, random_tensor, safetensors_path
from kernelbench.core.problem import Problem, Workload

SHADOW_LIMIT = 1 << 24        # largest integer/bool tensor given real values
SMALL = 4096                  # float tensors this small get values too (scales, constants)
VALUES_LIMIT = 1 << 26        # in the lazy tier, every tensor up to this size gets values at once


def wants_shadow(dtype: torch.dtype, numel: int, generous: bool = False) -> bool:
    if generous:
        return numel <= VALUES_LIMIT
    return numel <= (SMALL if dtype.is_floating_point or dtype == torch.float4_e2m1fn_x2 else SHADOW_LIMIT)


def _draw(name: str, dtype_name: str, shape: tuple, axes: dict, seed: int) -> torch.Tensor:
    """An input's values by the workload's rules, from a generator of its own (any order, same values)."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
    return random_tensor(name, dtype_name, shape, axes, generator, torch.device("cpu"))


def _words(name: str) -> set[str]:
    return set(re.split(r"[_\W\d]+", name.lower())) - {""}


def synthesize(name: str, dtype: torch.dtype, shape: tuple, companions: dict[str, tuple]) -> torch.Tensor:
    """Plausible integer values for an input whose blob is missing (see the module doc)."""
    n = math.prod(shape)
    words = _words(name)
    if words & {"indptr", "offsets", "offset", "cu", "seqlens"} and len(shape) == 1 and n > 1:
        prefix = name.lower().split("indptr")[0].split("offset")[0]
        total = next((math.prod(s) for other, s in companions.items()
                      if other != name and other.lower().startswith(prefix) and len(s) == 1), n - 1)
        values = torch.linspace(0, total, n).round()
        return values.to(dtype)
    if words & {"len", "lens", "lengths", "length"}:
        return torch.ones(shape, dtype=dtype)
    return torch.arange(n).reshape(shape).to(dtype)


def scalar_or_tensor_specs(problem: Problem, workload: Workload):
    axes = problem.axes_for(workload)
    for name, spec in problem.definition.inputs.items():
        yield name, spec, workload.inputs[name], problem.shape_of(spec, axes), axes


def direct_inputs(problem: Problem, workload: Workload, real: bool, notes: list[str],
                  seed: int = 0, lazy: bool = False, data_root=None) -> dict[str, object]:
    """Every non-custom input: CPU tensors when `real`, else (meta tensor, values or None, maker or
    None); `lazy`: inputs up to VALUES_LIMIT elements get values, larger ones a maker (a function
    giving their values when a count needs them)."""
    generator = torch.Generator().manual_seed(seed)
    int_shapes = {n: problem.shape_of(s, problem.axes_for(workload)) for n, s in problem.definition.inputs.items()
                  if s.shape is not None and not torch_dtype(s.dtype).is_floating_point}
    values: dict[str, object] = {}
    missing: list[str] = []
    for name, spec, source, shape, axes in scalar_or_tensor_specs(problem, workload):
        dtype = torch_dtype(spec.dtype)
        if source.kind == "scalar":
            values[name] = source.value
            continue
        if source.kind == "custom":
            continue
        value, maker = None, None
        if source.kind == "safetensors":
            if safetensors_path(source.path, data_root).is_file():
                value = load_safetensors(source, name, workload, problem, data_root, "cpu")
            else:
                missing.append(name)
                if not dtype.is_floating_point and dtype != torch.float4_e2m1fn_x2:
                    value = synthesize(name, dtype, shape, int_shapes)
        elif real or wants_shadow(dtype, math.prod(shape), generous=lazy):
            value = random_tensor(name, spec.dtype, shape, axes, generator, torch.device("cpu"))
        elif lazy:
            maker = functools.partial(_draw, name, spec.dtype, shape, axes, seed)
        if real and value is None:
            value = random_tensor(name, spec.dtype, shape, axes, generator, torch.device("cpu"))
        values[name] = value if real else (torch.empty(shape, dtype=dtype, device="meta"), value, maker)
    if missing:
        notes.append(f"safetensors blobs missing for {', '.join(missing)}: integer inputs synthesized "
                     f"from the axes (distinct indices, even offsets), float inputs shape-only")
    return values


def custom_arguments(problem: Problem, workload: Workload) -> dict:
    return {**problem.axes_for(workload), **problem.scalar_values(workload)}


__all__ = ["direct_inputs", "custom_arguments", "synthesize", "wants_shadow", "MissingDataError"]
