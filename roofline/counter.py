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

DRAM bytes count storage, not logical size (docs/ROOFLINE.md, "What a kernel must move"):
* reads: every input element that a live op uses, read once (touch.py follows slices,
  selects, index/gather/embedding(-bag) on known indices), except elements that an op
  overwrote or replaced before any kernel needs them (index_copy_, index_put, scatter ...);
* writes: every output's storage once: an expanded or broadcast view costs its compact
  storage; an output that is (a view of) an input costs only the part of that input the
  reference wrote in place (a KV-cache update returned as the cache), nothing if none.
Intermediates are assumed to stay on chip.

Integer and bool tensors carry real values ("shadows", computed on CPU beside the meta run)
while small, so page tables, index lists, `.item()` and data-dependent shapes work on meta.
`.item()` of float data is answered with a guess (noted). A reference that needs values the
meta run cannot have (indices computed from float data, host copies) is counted again with
lazy values (tracer.py: only the tensors those values are made from are computed, on CPU;
counted_on="values"), then, failing that, on CPU with real inputs (counted_on="cpu", inputs
up to CPU_INPUT_LIMIT). A workload no tier can count raises CountError with the reasons.
"""

from __future__ import annotations

import functools
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
from .touch import common_count, remaining_count, storage_elements, touched_count
from .tracer import Info, NeedsValues, Rec, Tracer, flat_out

COUNTER_VERSION = 7              # bump when counting rules change (invalidates cached counts)
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
    counted_on: str                         # meta | values | cpu
    notes: list[str] = field(default_factory=list)
    ops: int = 0                            # torch ops booked
    written_by_output: dict[str, int] = field(default_factory=dict)   # output name -> bytes written

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Count":
        return cls(**data)


def count_workload(problem: Problem, workload: Workload, module=None, *, data_root: Path | None = None) -> Count:
    """Count one workload, in three tiers:

    1. meta: shapes only, real values for index data and small constants (almost every reference);
    2. values: meta again, with the values of any tensor a count needs computed lazily on CPU from
       just the tensors it is made from (data-dependent references: router top-k, argsort, nonzero);
    3. cpu: the whole reference on CPU with real inputs at that workload (inputs up to CPU_INPUT_LIMIT).
    Tiers 2 and 3 say why in the first note. Raises CountError with every tier's reason when none counts.
    """
    reasons = []
    try:
        module = module or compile_reference(problem.definition)
    except KernelBenchError as exc:
        raise CountError(f"the reference does not load: {exc}") from None
    for mode in ("meta", "values"):
        try:
            count = _count(problem, workload, module, mode, data_root)
        except NeedsValues as exc:
            reasons.append(str(exc))
            continue
        except Exception as exc:  # anything else the meta device cannot run
            reasons.append(_one_line(exc))
            continue
        if mode == "values":
            count.notes.insert(0, f"values computed on CPU where the count needs them ({reasons[0]})")
        return count
    too_large = _cpu_size_problem(problem, workload)
    if too_large:
        raise CountError(f"{'; '.join(reasons)}; {too_large}")
    try:
        count = _count(problem, workload, module, "cpu", data_root)
    except Exception as exc:
        raise CountError(f"the reference failed on meta ({'; then '.join(reasons)}) and on CPU "
                         f"({_one_line(exc)})") from None
    count.notes.insert(0, f"counted on CPU with real inputs: {'; then '.join(reasons)}")
    return count


def _one_line(exc: BaseException, limit: int = 160) -> str:
    text = str(exc).splitlines()[0][:limit] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"


def _count(problem: Problem, workload: Workload, module, mode: str, data_root: Path | None) -> Count:
    definition = problem.definition
    notes: list[str] = []
    real, lazy = mode == "cpu", mode == "values"
    torch.manual_seed(0)
    direct = sources.direct_inputs(problem, workload, real, notes, lazy=lazy, data_root=data_root)
    tracer = Tracer(real, values=lazy)
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
                if isinstance(value, tuple):           # (meta tensor, values or None, maker of values or None)
                    meta, shadow, maker = value
                    meta._kb = Info(0, ops.rank_of(meta.dtype), shadow=shadow, recipe=maker)
                    value = meta
            if not real and isinstance(value, torch.Tensor) and value.device.type == "cpu":
                values_kept = value if sources.wants_shadow(value.dtype, value.numel(), generous=lazy) else None
                made = functools.partial(_same, value) if lazy and values_kept is None else None
                value = torch.ops.aten.empty_strided.default(value.shape, value.stride(), dtype=value.dtype,
                                                             device="meta")
                value._kb = Info(0, ops.rank_of(value.dtype), shadow=values_kept, recipe=made)
            values_in.append(value)
        values_in = tracer.begin(values_in)
        returned = module.run(*values_in)
        tracer.recording = False
    count = finish(tracer, returned, problem, workload, mode)
    count.notes = notes + count.notes
    return count


def _same(value):
    return value


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
    """Sum the work of live records, the bytes of the input elements they need and of the outputs' storage."""
    items = list(returned) if isinstance(returned, (tuple, list)) else [returned]
    root = Rec([])
    for o in flat_out(items):
        inf = tracer.info(o)
        root.deps.append((inf.key, len(tracer.writers.get(inf.key, ()))))
        if inf.origin is not None and inf.key not in tracer.input_keys:   # a copy of input data
            root.touches.append((inf.origin.input, inf.origin.touched()))
    tensor, cuda, sfu = {}, {}, 0.0
    parts: dict[str, dict[int, list]] = {"touches": {}, "writes": {}, "discounts": {}}
    for rec in live_records(tracer, root):
        for cls, n in rec.tensor.items():
            tensor[cls] = tensor.get(cls, 0) + n
        for cls, n in rec.cuda.items():
            cuda[cls] = cuda.get(cls, 0) + n
        sfu += rec.sfu
        for kind in parts:
            for i, selection in getattr(rec, kind):
                parts[kind].setdefault(i, []).append(selection)
    axes = problem.axes_for(workload)
    read_by_input = {}
    for i, (name, spec) in enumerate(problem.definition.inputs.items()):
        if spec.shape is None:
            continue
        shape = problem.shape_of(spec, axes)
        count, exact = remaining_count(shape, parts["touches"].get(i, []), parts["discounts"].get(i, []))
        if not exact:
            tracer.note(f"input {name}: touched parts too large to list; a lower bound of their union counted")
        read_by_input[name] = count * storage_bits(torch_dtype(spec.dtype)) // 8
    written = written_bytes(tracer, items, problem, axes, parts["writes"])
    return Count(tensor_flops=tensor, cuda_flops=cuda, sfu=sfu, bytes_read=sum(read_by_input.values()),
                 bytes_written=sum(written.values()), read_by_input=read_by_input, counted_on=counted_on,
                 notes=list(tracer.notes), ops=tracer.n_ops, written_by_output=written)


def written_bytes(tracer: Tracer, items: list, problem: Problem, axes: dict, writes: dict[int, list]) -> dict[str, int]:
    """Bytes each declared output costs to write: the storage the returned tensor covers (an expanded
    view its compact storage, outputs sharing storage once), or, for an output that is (a view of)
    an input, the part of that input written in place (within the view)."""
    outputs = problem.definition.outputs
    declared = {name: math.prod(shape) * storage_bits(torch_dtype(spec.dtype)) // 8
                for name, spec in outputs.items() for shape in [problem.shape_of(spec, axes)] if shape is not None}
    if len(items) != len(outputs):
        tracer.note(f"the reference returns {len(items)} values for {len(outputs)} declared outputs: "
                    f"outputs counted at their declared size")
        return declared
    result = {name: declared.get(name, 0) for name in outputs}
    fresh: dict[int, list] = {}
    aliased: dict[int, list] = {}
    for name, item in zip(outputs, items):
        if name not in declared or not isinstance(item, torch.Tensor):
            continue
        inf = tracer.info(item)
        per_element = declared[name] / item.numel() if item.numel() else 0.0
        position = tracer.input_keys.get(inf.key)
        if position is not None:
            aliased.setdefault(position, []).append((name, item))
        else:
            fresh.setdefault(inf.key, []).append((name, item, per_element))
        result[name] = 0
    for group in fresh.values():
        views = [(tuple(t.shape), t.stride(), t.storage_offset()) for _, t, _ in group]
        if len({t.element_size() for _, t, _ in group}) == 1:
            result[group[0][0]] = round(storage_elements(views) * group[0][2])
        else:                                       # views of one storage in several dtypes: the largest
            sizes = [round(storage_elements([v]) * pe) for v, (_, _, pe) in zip(views, group)]
            result[group[sizes.index(max(sizes))][0]] = max(sizes)
    specs = list(problem.definition.inputs.values())
    for position, group in aliased.items():
        spec = specs[position]
        shape = problem.shape_of(spec, axes)
        done = writes.get(position, [])
        views = [t._kb.origin.touched() for _, t in group if t._kb.origin is not None]
        whole = not views or any(isinstance(v, tuple) and all(s is None for s in v) for v in views)
        elements = touched_count(shape, done)[0] if whole else common_count(shape, done, views)
        result[group[0][0]] = elements * storage_bits(torch_dtype(spec.dtype)) // 8
    return result


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


def _cpu_size_problem(problem: Problem, workload: Workload) -> str | None:
    """Why the CPU tier cannot run this workload (its inputs are too large), or None."""
    axes = problem.axes_for(workload)
    total = sum(math.prod(problem.shape_of(s, axes)) * storage_bits(torch_dtype(s.dtype)) // 8
                for s in problem.definition.inputs.values() if s.shape is not None)
    if total > CPU_INPUT_LIMIT:
        return (f"its inputs ({total / 2**30:.1f} GiB) are too large to run the reference on CPU "
                f"(limit {CPU_INPUT_LIMIT / 2**30:.0f} GiB)")
    return None
