"""Count a workload's work from the reference itself, run under a TorchDispatchMode.

The reference runs once per workload on the meta device (shapes, no data, any size). Every
aten op it issues is recorded with shapes and dtypes (tracer.py; intercept.py books common
calls above aten, faster, by the same rules); ops.py turns each into tensor-core FLOPs,
CUDA-core FLOPs and SFU results. Three refinements keep the count a tight LOWER bound:

* Liveness. Only ops whose results reach a returned output count (dead code is free).
* Precision. Each value carries the narrowest precision it was ever held in (a bf16 input
  upcast to fp32 is still bf16-exact; an fp8-quantized operand dequantized to fp32 is still an
  fp8 value times a scale). A matrix op runs in the class of the WIDER of its two operands:
  the fastest tensor-core path a correct kernel can take without losing information.
  fp32 operands that are genuinely fp32 count in class "tf32" and are bound by the TF32
  rate. This is deliberate: the bound must be a lower bound on time, and TF32 (or its
  error-compensated 3xTF32 variant, which reaches fp32 accuracy at a third of that rate) is
  the fastest tensor-core path for fp32 data; a CUDA-core fp32 GEMM is slower, so charging
  the fp32 CUDA rate could put T_SOL above a legitimate kernel.
* Masks. A matrix product whose result is masked with -inf (causal or padding masks applied
  by masked_fill / where / an additive mask, or SDPA's is_causal / attn_mask) counts only the
  kept fraction, in the product and in the softmax and product that consume it, since a
  kernel may skip masked tiles.

DRAM bytes: every input element that a live op uses, read once (touch.py follows slices,
selects and index/gather on known indices), plus every output written once, at the real
storage width. Intermediates are assumed to stay on chip.

Integer and bool tensors carry real values ("shadows", computed on CPU beside the meta run)
while small, so page tables, index lists, `.item()` and data-dependent shapes work on meta.
`.item()` of float data is answered with a guess (noted). A reference that needs values the
meta run cannot have (indices computed from float data, host copies) is counted again on
CPU with real inputs at that workload; the result says `counted_on="cpu"`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from kernelbench.core.dtypes import storage_bits, torch_dtype
from kernelbench.core.errors import KernelBenchError
from kernelbench.core.problem import Problem, Workload
from kernelbench.core.reference import compile_reference

from . import ops, sources
from .intercept import Intercept
from .touch import touched_count
from .tracer import Info, NeedsValues, Rec, Tracer, flat_out

COUNTER_VERSION = 6              # bump when counting rules change (invalidates cached counts)
CPU_INPUT_LIMIT = 2 << 30        # bytes of real inputs a CPU recount may allocate


class CountError(KernelBenchError):
    """A workload that could not be counted at all."""


@dataclass
class Count:
    """Hardware-independent work of one workload."""
    tensor_flops: dict[str, float]          # tensor-core class -> dense FLOPs
    cuda_flops: dict[str, float]            # CUDA-core class -> FLOPs
    sfu: float                              # transcendental results
    bytes_read: int
    bytes_written: int
    read_by_input: dict[str, int]           # input name -> bytes read
    counted_on: str                         # meta | cpu
    notes: list[str] = field(default_factory=list)
    ops: int = 0                            # torch ops booked

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Count":
        return cls(**data)


def count_workload(problem: Problem, workload: Workload, module=None, *, data_root: Path | None = None) -> Count:
    """Count one workload, in three tiers:

    1. meta: shapes only, real values for index data and small constants (almost every reference);
    2. values: meta again, but every tensor up to 2^26 elements carries real values computed on CPU,
       large matrix products excepted (data-dependent references: router top-k, argsort, nonzero);
    3. cpu: the whole reference on CPU with real inputs at that workload.
    Tiers 2 and 3 report counted_on="cpu" and say why.
    """
    module = module or compile_reference(problem.definition)
    try:
        return _count(problem, workload, module, "meta", data_root)
    except NeedsValues as exc:
        reason = str(exc)
    except (KernelBenchError, MemoryError):
        raise
    except Exception as exc:  # anything else the meta device cannot run
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
    try:
        count = _count(problem, workload, module, "values", data_root)
        count.notes.insert(0, f"values computed on CPU for the data-dependent part ({reason}); "
                              f"large products counted shape-only")
        return count
    except NeedsValues as exc:
        reason = f"{reason}; then {exc}"
    except (KernelBenchError, MemoryError):
        raise
    except Exception as exc:
        reason = f"{reason}; then {type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}"
    _check_cpu_size(problem, workload)
    try:
        count = _count(problem, workload, module, "cpu", data_root)
    except Exception as exc:
        raise CountError(f"{problem.name} workload {workload.uuid}: the reference failed on meta ({reason}) "
                         f"and on CPU ({type(exc).__name__}: {exc})") from exc
    count.notes.insert(0, f"counted on CPU with real inputs: {reason}")
    return count


def _count(problem: Problem, workload: Workload, module, mode: str, data_root: Path | None) -> Count:
    definition = problem.definition
    notes: list[str] = []
    real, values = mode == "cpu", mode == "values"
    torch.manual_seed(0)
    direct = sources.direct_inputs(problem, workload, real, notes, generous=values, data_root=data_root)
    tracer = Tracer(real, values=values)
    custom = _custom_inputs(problem, workload, module, tracer, real, notes)
    with Intercept(tracer), torch.no_grad():
        values_in = []
        for name, spec in definition.inputs.items():
            if workload.inputs[name].kind == "custom":
                value = custom[name]
                if spec.shape is None and isinstance(value, torch.Tensor):
                    shadow = tracer.shadow(value)
                    value = shadow.item() if shadow is not None else 1.0
            else:
                value = direct[name]
                if isinstance(value, tuple):           # (meta tensor, values or None)
                    meta, shadow = value
                    meta._kb = Info(0, ops.rank_of(meta.dtype), shadow=shadow)
                    value = meta
            if not real and isinstance(value, torch.Tensor) and value.device.type == "cpu":
                values_kept = value if sources.wants_shadow(value.dtype, value.numel(), values) else None
                value = torch.ops.aten.empty_strided.default(value.shape, value.stride(), dtype=value.dtype,
                                                             device="meta")
                value._kb = Info(0, ops.rank_of(value.dtype), shadow=values_kept)
            values_in.append(value)
        values_in = tracer.begin(values_in)
        returned = module.run(*values_in)
        tracer.recording = False
    count = finish(tracer, returned, problem, workload, "meta" if mode == "meta" else "cpu")
    count.notes = notes + count.notes
    return count


def _custom_inputs(problem, workload, module, tracer, real, notes):
    """The custom entry point's values: made on meta (with shadows) if it can, else on CPU."""
    if not any(s.kind == "custom" for s in workload.inputs.values()):
        return None
    entry = getattr(module, problem.definition.custom_inputs_entrypoint)
    arguments = sources.custom_arguments(problem, workload)
    if not real:
        try:
            with Intercept(tracer), torch.no_grad():
                return entry(arguments, torch.device("meta"))
        except Exception as exc:
            notes.append(f"custom inputs made on CPU ({type(exc).__name__} on meta)")
    torch.manual_seed(0)
    with torch.no_grad():
        return entry(arguments, torch.device("cpu"))


def finish(tracer: Tracer, returned, problem: Problem, workload: Workload, counted_on: str) -> Count:
    """Sum the work of live records and the bytes of touched inputs and written outputs."""
    outs = flat_out(returned if isinstance(returned, (tuple, list)) else [returned])
    root = Rec([])
    for o in outs:
        inf = tracer.info(o)
        root.deps.append((inf.key, len(tracer.writers.get(inf.key, ()))))
        if inf.origin is not None:                    # an input (part) returned as it is
            root.touches.append((inf.origin.input, inf.origin.touched()))
    tensor, cuda, sfu = {}, {}, 0.0
    touches: dict[int, list] = {}
    for rec in live_records(tracer, root):
        for cls, n in rec.tensor.items():
            tensor[cls] = tensor.get(cls, 0) + n
        for cls, n in rec.cuda.items():
            cuda[cls] = cuda.get(cls, 0) + n
        sfu += rec.sfu
        for i, selection in rec.touches:
            touches.setdefault(i, []).append(selection)
    axes = problem.axes_for(workload)
    read_by_input = {}
    for i, (name, spec) in enumerate(problem.definition.inputs.items()):
        if spec.shape is None:
            continue
        shape = problem.shape_of(spec, axes)
        count, exact = touched_count(shape, touches.get(i, []))
        if not exact:
            tracer.note(f"input {name}: union of touched parts too large to build; largest part counted")
        read_by_input[name] = count * storage_bits(torch_dtype(spec.dtype)) // 8
    written = 0
    for spec in problem.definition.outputs.values():
        shape = problem.shape_of(spec, axes)
        if shape is not None:
            written += math.prod(shape) * storage_bits(torch_dtype(spec.dtype)) // 8
    return Count(tensor_flops=tensor, cuda_flops=cuda, sfu=sfu, bytes_read=sum(read_by_input.values()),
                 bytes_written=written, read_by_input=read_by_input, counted_on=counted_on,
                 notes=list(tracer.notes), ops=tracer.n_ops)


def live_records(tracer: Tracer, root: Rec) -> list[Rec]:
    """Records whose results reach the outputs: walk each read back to the writes it saw."""
    done: dict[int, int] = {}
    seen: set[int] = set()
    live, stack = [root], [root]
    for index in tracer.roots:
        seen.add(index)
        live.append(tracer.recs[index])
        stack.append(tracer.recs[index])
    while stack:
        rec = stack.pop()
        for key, n in rec.deps:
            start = done.get(key, 0)
            if n <= start:
                continue
            done[key] = n
            for index in tracer.writers.get(key, [])[start:n]:
                if index not in seen:
                    seen.add(index)
                    live.append(tracer.recs[index])
                    stack.append(tracer.recs[index])
    return live


def _check_cpu_size(problem: Problem, workload: Workload) -> None:
    axes = problem.axes_for(workload)
    total = sum(math.prod(problem.shape_of(s, axes)) * storage_bits(torch_dtype(s.dtype)) // 8
                for s in problem.definition.inputs.values() if s.shape is not None)
    if total > CPU_INPUT_LIMIT:
        raise CountError(f"workload {workload.uuid} needs real values but its inputs ({total / 2**30:.1f} GiB) "
                         f"are too large to count on CPU")
