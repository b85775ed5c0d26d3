"""Seeded input generation: fresh, well-conditioned inputs for every round of a workload.

Sources (per workload input): ``scalar`` takes the given value; ``safetensors`` loads
``tensor_key`` from ``path`` under the data root (``--data-root`` / ``KB_DATA_ROOT``);
``custom`` comes from the reference's ``custom_inputs_entrypoint(axes_and_scalars, device)``,
called after seeding torch's global generators; ``random`` follows the rules below.

Rules for ``random`` inputs, by dtype and then by the input's name (lower-cased; a rule
matches when one of its words is a ``_``-separated part of the name, so ``rms_weight``
matches "weight" but ``weighted_sum`` does not):

======================  =====================================================================
dtype / name            values
======================  =====================================================================
bool, name has "mask"   True with probability 0.9 (attention and padding masks keep most
                        positions, so no softmax row is empty); other bools: probability 0.5
int, index-like name    uniform in [0, n) where n is the axis the name points to
  (idx, index, indices, (``expert`` -> an axis named like ``num_experts``; ``token``/``ids``/
  ids, token, tokens,   ``label``/``target`` -> ``vocab_size``; ``pos``/``position`` -> a ``seq``
  label(s), target(s),  axis); with no such axis, n = the smallest positive axis of the
  expert(s), pos,       problem, so the index is valid for any axis it may index
  positions)
int, lengths / lens /   uniform in [1, n] with n found the same way
  seqlens
int8 / int16 other      uniform over the whole range of the type (quantized data)
int32 / int64 other     uniform in [0, 64)
float, norm weight      1 + 0.1 * N(0,1): names with weight/gamma together with norm/ln/rms,
  (gamma, *norm*weight)  or plain "gamma" (RMS/Layer/Group norm scales sit near 1)
float, "bias"/"beta"    0.1 * N(0,1)
float, variance/scale/  positive: uniform in [0.5, 1.5] (variances, standard deviations,
  std/sigma/temperature  quantization scales and temperatures must be > 0)
float, "eps"            1e-5
float, prob/probs       softmax of N(0,1) over the last dimension (rows sum to 1)
float, other weight     N(0,1) / sqrt(last dim): projection weights stored [out, in] keep the
  (weight, proj, w)     output variance near the input's, so deep MLPs stay finite in fp16
float, everything else  N(0,1)
float8 (e4m3, e5m2)     N(0,1) cast to the type (values exactly representable)
float4_e2m1fn_x2        uniform random bytes: every nibble is one of the 16 e2m1 codes
======================  =====================================================================

Every tensor is drawn on the target device from a generator seeded with ``seed``; the
evaluator passes a new seed every round, so a solution never sees the same values twice.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

import torch

from kernelbench.core.dtypes import FLOAT4, FLOAT8, torch_dtype
from kernelbench.core.errors import MissingDataError, ProblemError
from kernelbench.core.problem import Problem, TensorSpec, Workload
from kernelbench.core.reference import compile_reference
from kernelbench.core.settings import ENVIRONMENT

_INDEX_WORDS = {"idx", "index", "indices", "ids", "id", "token", "tokens", "label", "labels",
                "target", "targets", "expert", "experts", "pos", "position", "positions"}
_LENGTH_WORDS = {"lengths", "lens", "seqlens", "len"}
# Which axis an index-like name points to, checked in this order (the more specific word first,
# so `position_ids` means positions, not vocabulary ids); an exact axis name beats a substring.
_INDEX_AXES = (
    ({"pos", "position", "positions"}, ("seq", "position")),
    ({"expert", "experts"}, ("num_experts", "expert")),
    ({"label", "labels", "target", "targets"}, ("vocab", "num_classes")),
    ({"token", "tokens", "ids"}, ("vocab",)),
)
_POSITIVE_WORDS = {"var", "variance", "scale", "scales", "std", "sigma", "temperature", "inv"}


def safetensors_path(source_path: str, root: str | os.PathLike | None = None) -> Path:
    """A blob's path: absolute as written, else under the data root (default: the working directory)."""
    path = Path(source_path)
    return path if path.is_absolute() else Path(root or ".") / path


def missing_blobs(problem: Problem, root: str | os.PathLike | None = None) -> list[tuple[int, str, Path]]:
    """(workload line, input name, resolved path) for every safetensors blob that is not on disk."""
    missing = []
    for workload in problem.workloads:
        for name, source in workload.inputs.items():
            if source.kind == "safetensors":
                path = safetensors_path(source.path, root)
                if not path.is_file():
                    missing.append((workload.line, name, path))
    return missing


def generate_inputs(problem: Problem, workload: Workload, *, device: str | torch.device = "cpu",
                    seed: int = 0, reference_module=None, root: str | os.PathLike | None = None) -> list[Any]:
    """Arguments of `run` for one round of a workload, in call order (Problem.arguments)."""
    device = torch.device(device)
    axes = problem.axes_for(workload)
    custom: dict[str, Any] = {}
    if any(s.kind == "custom" for s in workload.inputs.values()):
        custom = _call_custom_entrypoint(problem, workload, axes, device, seed, reference_module)
    generator = torch.Generator(device=device).manual_seed(seed)
    values = []
    for argument in problem.arguments(workload):
        name, spec, source = argument.name, argument.spec, argument.source
        shape = problem.shape_of(spec, axes) if spec else None  # an extra argument has no declared spec
        if source.kind == "scalar":
            value = source.value
        elif source.kind == "custom":
            value = _check_custom_value(name, custom, spec, shape, device)
        elif source.kind == "safetensors":
            value = load_safetensors(source, name, workload, problem, root, device)
        else:
            value = random_tensor(name, spec.dtype, shape, axes, generator, device)
        values.append(value)
    return values


def random_tensor(name: str, dtype_name: str, shape: tuple[int, ...], axes: dict[str, int],
                  generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """One tensor following the module's rules for its dtype and name."""
    dtype = torch_dtype(dtype_name)
    words = set(re.split(r"[_\W\d]+", name.lower())) - {""}
    if dtype == torch.bool:
        keep = 0.9 if "mask" in words else 0.5
        return torch.rand(shape, generator=generator, device=device) < keep
    if dtype in FLOAT4:
        raw = torch.randint(0, 256, shape, generator=generator, device=device, dtype=torch.uint8)
        return raw.view(dtype)
    if not dtype.is_floating_point:
        return _random_integers(words, dtype, shape, axes, generator, device)
    work = torch.float32 if dtype in FLOAT8 else dtype
    normal = torch.randn(shape, generator=generator, device=device, dtype=work)
    if words & {"gamma"} or (words & {"weight", "weights"} and words & {"norm", "ln", "rms", "rmsnorm", "layernorm"}):
        value = 1 + 0.1 * normal
    elif words & {"bias", "beta"}:
        value = 0.1 * normal
    elif words & _POSITIVE_WORDS:
        value = 0.5 + torch.rand(shape, generator=generator, device=device, dtype=work)
    elif "eps" in words:
        value = torch.full(shape, 1e-5, device=device, dtype=work)
    elif words & {"prob", "probs", "probabilities"}:
        value = torch.softmax(normal.float(), dim=-1).to(work) if len(shape) else torch.ones(shape, device=device, dtype=work)
    elif words & {"weight", "weights", "proj", "w"} and len(shape) >= 2:
        value = normal / math.sqrt(max(shape[-1], 1))
    else:
        value = normal
    return value.to(dtype)


def _random_integers(words, dtype, shape, axes, generator, device) -> torch.Tensor:
    if words & _LENGTH_WORDS:
        bound = _index_bound(words, axes)
        return torch.randint(1, bound + 1, shape, generator=generator, device=device, dtype=dtype)
    if words & _INDEX_WORDS:
        return torch.randint(0, _index_bound(words, axes), shape, generator=generator, device=device, dtype=dtype)
    if dtype in (torch.int8, torch.int16, torch.uint8):
        info = torch.iinfo(dtype)
        return torch.randint(info.min, info.max + 1, shape, generator=generator, device=device, dtype=dtype)
    return torch.randint(0, 64, shape, generator=generator, device=device, dtype=dtype)


def _index_bound(words: set[str], axes: dict[str, int]) -> int:
    for name_words, fragments in _INDEX_AXES:
        if not words & name_words:
            continue
        for fragment in fragments:
            exact = [v for a, v in axes.items() if a.lower() == fragment and v > 0]
            partial = [v for a, v in axes.items() if fragment in a.lower() and v > 0]
            if exact or partial:
                return (exact or partial)[0]
    positive = [v for v in axes.values() if v > 0]
    return min(positive) if positive else 1


def _call_custom_entrypoint(problem, workload, axes, device, seed, module) -> dict[str, Any]:
    module = module or compile_reference(problem.definition)
    entry = getattr(module, problem.definition.custom_inputs_entrypoint)
    seed_everything(seed)
    result = entry({**axes, **problem.scalar_values(workload)}, device)
    if not isinstance(result, dict):
        raise ProblemError(f"{problem.definition.custom_inputs_entrypoint} returned {type(result).__name__}, not a dict",
                           path=problem.directory, field="custom_inputs_entrypoint")
    return result


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)  # seeds every device's default generator too


def _check_custom_value(name: str, custom: dict, spec: TensorSpec | None, shape, device,
                        origin: str = "custom_inputs_entrypoint") -> Any:
    """A value from the custom entrypoint (or a blob) must have the declared shape and dtype."""
    if name not in custom:
        raise ProblemError(f"{origin} returned no value for {name!r}", field=f"inputs.{name}")
    value = custom[name]
    if spec is None:  # an extra argument: nothing declared to check against
        return value.to(device) if isinstance(value, torch.Tensor) else value
    if spec.is_scalar:
        return value.item() if isinstance(value, torch.Tensor) else value
    if not isinstance(value, torch.Tensor):
        value = torch.tensor(value, dtype=torch_dtype(spec.dtype), device=device)
    if tuple(value.shape) != shape or value.dtype != torch_dtype(spec.dtype):
        raise ProblemError(f"{origin} gave {tuple(value.shape)} {value.dtype}, "
                           f"the definition says {shape} {spec.dtype}", field=f"inputs.{name}")
    return value.to(device)


def load_safetensors(source, name, workload, problem, root, device) -> torch.Tensor:
    from safetensors.torch import load_file

    path = safetensors_path(source.path, root)
    if not path.is_file():
        raise MissingDataError(f"safetensors blob for input {name!r} not found: {path} "
                               f"(set --data-root or {ENVIRONMENT['data_root']})",
                               path=(problem.directory or Path(".")) / "workload.jsonl",
                               line=workload.line, field=f"inputs.{name}.path")
    tensors = load_file(str(path), device=str(device))
    if source.tensor_key not in tensors:
        raise ProblemError(f"{path} has no tensor {source.tensor_key!r} (has {sorted(tensors)})",
                           line=workload.line, field=f"inputs.{name}.tensor_key")
    spec = problem.definition.inputs.get(name)
    shape = problem.shape_of(spec, problem.axes_for(workload)) if spec else None
    return _check_custom_value(name, {name: tensors[source.tensor_key]}, spec, shape, device,
                               origin=f"safetensors blob {path}")
