"""The generator's front end: a problem's reference captured as an aten graph with symbolic shapes.

`capture(problem)` runs the reference's `run` under `make_fx(tracing_mode="symbolic")` on small
example inputs, functionalized (in-place ops become their functional forms) and decomposed to
core aten ops. Every dimension is a symbol (example sizes are distinct and >= 2, so none is
specialized or confused with another by duck sizing), which lets a family tell which dimensions
line up and compute size-dependent values (`kv_len - q_len`) at run time.

Python-scalar inputs (eps, softcap, scale) stay inputs of the graph: they are traced as 0-d
tensors, so arithmetic on them is recorded. A reference that needs a real Python number (an
`if` on it, `math.sqrt(scale)`, an API that takes a float) is traced again with a sentinel
value in their place; literals equal to a sentinel are the scalar. A sentinel that was folded
into another constant stays baked in: families verify the graph numerically with other scalar
values, which catches it.

`capture_at(problem, workload)` traces at one workload's concrete shapes with fake tensors instead
(the front end, kernelbench.generate.frontend, lowers that graph); attention stays one node there.
Sizes the reference computes from tensor values (`.item()` offsets, `nonzero`, `bincount`) become
unbacked symbols there, the inputs keeping their shapes: the graph holds for any data at those shapes.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch._decomp import core_aten_decompositions, get_decompositions
from torch.fx.experimental.proxy_tensor import make_fx
from torch.fx.experimental.symbolic_shapes import statically_known_true
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.overrides import TorchFunctionMode

from kernelbench.core.dtypes import torch_dtype
from kernelbench.core.emulation import emulated_scaled_mm_op
from kernelbench.core.errors import KernelBenchError, MissingDataError
from kernelbench.core.inputs import generate_inputs
from kernelbench.core.problem import Problem
from kernelbench.core.reference import compile_reference
from kernelbench.generate.branch_guards import example_trace
from kernelbench.generate.host_reads import ListsAsSymbols, reference_reading_symbols
from kernelbench.generate.size_assumptions import AssumingShapeEnv, zero_test_symbols

EXAMPLE_SIZES = (3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47)
# make_fx's symbolic tracing keeps process-wide state (dispatch modes, shape environments): two threads
# tracing at once (kb batch optimizes tasks in threads) crash the interpreter.
_TRACING = threading.Lock()


class CaptureError(KernelBenchError):
    """The reference could not be traced into a graph."""


@dataclass(frozen=True)
class Capture:
    module: torch.fx.GraphModule
    inputs: tuple[str, ...]                                     # placeholder i is the definition's input i
    scalar_inputs: frozenset[str] = frozenset()                  # inputs that are Python scalars (shape null)
    scalar_literals: dict[str, Any] = field(default_factory=dict)  # scalar input -> the literal standing for it
    example_axes: dict[str, int] = field(default_factory=dict)
    specialized: bool = False   # scalars traced as the workload's own numbers: the graph holds for those values only
    positive_sizes: frozenset[str] = frozenset()   # data-dependent sizes (`u3`) the graph assumes >= 1
    guards: tuple = ()   # conditions on data-dependent symbols the graph holds under (kernelbench.generate.branch_guards)

    def placeholders(self) -> dict[str, torch.fx.Node]:
        nodes = [n for n in self.module.graph.nodes if n.op == "placeholder"]
        return dict(zip(self.inputs, nodes))


def example_axes(problem: Problem) -> dict[str, int]:
    """Axis values for tracing: the consts, and distinct sizes >= 2 (unequal to every const) for var axes;
    the smallest workload's own values where those break an axis expression or a constraint."""
    definition = problem.definition
    consts = {a.value for a in definition.axes.values() if a.kind == "const"}
    sizes = (s for s in itertools.chain(EXAMPLE_SIZES, itertools.count(53, 2)) if s not in consts)
    var = {name: next(sizes) for name, axis in definition.axes.items() if axis.kind == "var"}
    base = problem.smallest_workload()
    trial = replace(base, axes=var)
    try:
        if not problem.check_constraints(trial):
            return problem.axes_for(trial)
    except KernelBenchError:
        pass
    return problem.axes_for(base)


# A tensor's memory as a NumPy array: fake tensors have none (the trace would bake in whatever is there), and
# an example's real values would become constants of the graph.
HOST_COPIES = frozenset({"numpy", "__array__"})


class Refusal(TorchFunctionMode):
    """Ends a trace at the first call of a refused torch function (a family that cannot express a matmul
    need not trace the rest of an attention block)."""

    def __init__(self, refused: frozenset[str]):
        super().__init__()
        self.refused = refused

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in self.refused:
            raise CaptureError(f"the reference calls {name}")
        return func(*args, **(kwargs or {}))


@torch.library.custom_op("kernelbench::attention", mutates_args=())
def attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attn_mask: torch.Tensor | None = None,
              is_causal: bool = False, scale: float | None = None, enable_gqa: bool = False) -> torch.Tensor:
    """Scaled dot-product attention kept as one graph node: traced on the CPU, the call would otherwise
    decompose into the CPU's choice of kernels (a materialized score matrix, or a CPU-only flash op)."""
    return torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=attn_mask,
                                                            is_causal=is_causal, scale=scale,
                                                            enable_gqa=enable_gqa).contiguous()


@attention.register_fake
def _attention_shape(query, key, value, attn_mask=None, is_causal=False, scale=None, enable_gqa=False):
    return query.new_empty((*query.shape[:-1], value.shape[-1]))


class KeepAttention(TorchFunctionMode):
    """Routes dropout-free F.scaled_dot_product_attention to the kernelbench::attention node (not when
    autograd records it: the node has no backward, so a reference that differentiates through attention
    keeps the decomposed form)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.nn.functional.scaled_dot_product_attention:
            names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")
            bound = {**dict(zip(names, args)), **kwargs}
            recorded = torch.is_grad_enabled() and any(
                isinstance(t, torch.Tensor) and t.requires_grad for t in bound.values())
            if not bound.pop("dropout_p", 0.0) and not recorded:
                return torch.ops.kernelbench.attention(**bound)
            with sdpa_kernel([SDPBackend.MATH]):   # portable ops, not the tracing CPU's flash kernels
                return func(*args, **kwargs)
        return func(*args, **kwargs)


def _example_inputs(problem: Problem, axes: dict[str, int], scalars: dict[str, Any]) -> list[Any]:
    values = []
    for name, spec in problem.definition.inputs.items():
        dtype = torch_dtype(spec.dtype)
        if spec.is_scalar:
            values.append(scalars[name])
            continue
        shape = problem.shape_of(spec, axes)
        if dtype.is_floating_point:
            values.append(torch.rand(shape).add_(0.5).to(dtype))
        elif dtype == torch.bool:
            values.append(torch.ones(shape, dtype=torch.bool))
        else:
            values.append(torch.ones(shape, dtype=dtype))
    return values


def _scalar_value(problem: Problem, name: str) -> Any:
    """The scalar's value in the smallest workload (a positive stand-in when it has none)."""
    source = problem.smallest_workload().inputs[name]
    value = source.value if source.kind == "scalar" else None
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else 1


def decompositions() -> dict:
    """Core aten, keeping softmax and log-softmax whole (families lower them as they see fit); bilinear and nearest
    2-D upsampling and max pooling become the gathers, lerps and window maxima they compute."""
    aten = torch.ops.aten
    table = dict(core_aten_decompositions())
    table.update(get_decompositions([aten.native_layer_norm, aten.var_mean, aten.var, aten.std, aten.std_mean,
                                     aten.native_group_norm, aten.rms_norm, aten._fused_rms_norm,
                                     aten.upsample_bilinear2d, aten.upsample_nearest2d,
                                     aten.max_pool2d_with_indices]))
    for op in (torch.ops.aten._softmax.default, torch.ops.aten._log_softmax.default):
        table.pop(op, None)
    return table


def _broadcast_in_dim(a: torch.Tensor, shape, broadcast_dimensions) -> torch.Tensor:
    """prims.broadcast_in_dim as aten views: a new size-1 dimension where the output has no input dimension,
    then an expand where a size differs. Functionalization refuses the prim (an aliasing op outside aten)."""
    for dim in range(len(shape)):
        if dim not in broadcast_dimensions:
            a = torch.ops.aten.unsqueeze.default(a, dim)
    if any(not statically_known_true(have == want) for have, want in zip(a.shape, shape)):
        a = torch.ops.aten.expand.default(a, list(shape))
    return a


def _trace(run, inputs: list[Any], refused: frozenset[str]) -> torch.fx.GraphModule:
    def guarded(*args):
        with Refusal(refused):
            return run(*args)
    with _TRACING:
        return make_fx(torch.func.functionalize(guarded), tracing_mode="symbolic",
                       decomposition_table=decompositions(), _allow_non_fake_inputs=True)(*inputs)


def capture(problem: Problem, module=None, refused: frozenset[str] = frozenset()) -> Capture:
    """The reference of `problem` as a functional aten graph with symbolic shapes; CaptureError as soon as
    it calls a torch function named in `refused`."""
    module = module or compile_reference(problem.definition)
    axes = example_axes(problem)
    names = tuple(problem.definition.inputs)
    scalar_specs = {n: s for n, s in problem.definition.inputs.items() if s.is_scalar}
    as_tensors = {n: torch.tensor(_scalar_value(problem, n), dtype=torch_dtype(s.dtype))
                  for n, s in scalar_specs.items()}
    try:
        graph = _trace(module.run, _example_inputs(problem, axes, as_tensors), refused)
        return Capture(graph, names, frozenset(scalar_specs), {}, axes)
    except CaptureError:
        raise
    except Exception as first:  # noqa: BLE001 - any tracing failure: try Python numbers
        sentinels = {n: _sentinel(_scalar_value(problem, n), i, torch_dtype(s.dtype))
                     for i, (n, s) in enumerate(scalar_specs.items())}
        try:
            graph = _trace(module.run, _example_inputs(problem, axes, sentinels), refused)
        except CaptureError:
            raise
        except Exception as second:  # noqa: BLE001
            raise CaptureError(f"{problem.name}: the reference cannot be traced: {type(first).__name__}: "
                               f"{str(first)[:200]}; with Python scalars: {type(second).__name__}: "
                               f"{str(second)[:200]}") from None
        return Capture(graph, names, frozenset(scalar_specs), sentinels, axes)


def _sentinel(value: Any, index: int, dtype: torch.dtype) -> Any:
    """A number near the workload's value that no reference would write as a constant."""
    if dtype.is_floating_point:
        base = float(value) if value else 0.5
        return base * (1.0 + (index + 1) * 2.0 ** -17)
    return int(value) + 7919 * (index + 1)


def capture_at(problem: Problem, workload, module=None) -> Capture:
    """The reference traced at one workload's shapes: a functional aten graph with concrete sizes.

    The inputs are fake tensors (no memory, so a 10 GB workload traces like a small one). Scalar inputs
    are traced as 0-d tensors holding the workload's value, so the graph takes them as parameters; a
    reference that needs Python numbers is traced with the workload's own numbers, and the capture is
    `specialized` to them (a sentinel would be unsound here: arithmetic on it in Python, or a shape made
    from it, leaves constants no one can map back). Sizes that depend on tensor values are symbols (see
    `_data_dependent_trace`); a reference whose control flow depends on them is traced along the branches
    one example of the workload's inputs takes, with guards (`example_capture`)."""
    module = module or compile_reference(problem.definition)
    axes = problem.axes_for(workload)
    names = tuple(problem.definition.inputs)
    scalar_specs = {n: s for n, s in problem.definition.inputs.items() if s.is_scalar}
    values = {n: workload_scalar(problem, workload, n) for n in scalar_specs}
    as_tensors = {n: torch.tensor(v, dtype=torch_dtype(scalar_specs[n].dtype)) for n, v in values.items()}
    # Concrete sizes first (a scalar read as a Python number specializes, but its ops can be fused);
    # symbols only where the tensors' own data decide sizes; the example's branches only where the Python
    # code branches on such symbols.
    scalar_ways = [("", as_tensors)] + [(" and Python scalars", values)] * bool(scalar_specs)
    attempts = [("", "fake", as_tensors)] + [("with Python scalars: ", "fake", values)] * bool(scalar_specs) + \
        [(f"with data-dependent sizes{label}: ", "symbols", s) for label, s in scalar_ways] + \
        [(f"along the example's branches{label}: ", "example", s) for label, s in scalar_ways]
    failures: list[tuple[str, Exception]] = []
    for label, way, scalars in attempts:
        if way == "symbols" and not any(reads_data(e) for _, e in failures):
            break
        if way == "example" and not any(isinstance(e, CaptureError) for _, e in failures):
            break
        try:
            positive, guards = frozenset(), ()
            if way == "fake":
                graph = fake_trace(module.run, problem, axes, scalars)
            elif way == "symbols":
                graph, positive = _data_dependent_trace(problem, axes, scalars)
            else:
                graph, guards = example_capture(problem, workload, module, scalars)
        except Exception as exc:  # noqa: BLE001 - any tracing failure: try the next way
            failures.append((label, exc))
            continue
        return Capture(graph, names, frozenset(scalar_specs), {}, axes, specialized=scalars is values and bool(values),
                       positive_sizes=positive, guards=guards)
    missing = next((e for _, e in failures if isinstance(e, MissingDataError)), None)
    if missing is not None:   # the example to trace along needs blobs that are not here: that, not the rest
        raise CaptureError(f"{problem.name}: the reference branches on tensor values, and the example to trace it "
                           f"along needs the workload's data: {missing}") from missing
    reasons = "; ".join(f"{label}{type(e).__name__}: {str(e)[:200]}" for label, e in failures)
    raise CaptureError(f"{problem.name}: the reference cannot be traced at {axes}: {reasons}")


def workload_scalar(problem: Problem, workload, name: str) -> Any:
    """The number (or flag) the workload passes; a specialized capture is guarded by it at run time."""
    source = workload.inputs.get(name)
    value = source.value if source is not None and source.kind == "scalar" else None
    return value if isinstance(value, (bool, int, float)) else _scalar_value(problem, name)


def fake_trace(run, problem: Problem, axes: dict[str, int], scalars: dict[str, Any]) -> torch.fx.GraphModule:
    from torch._subclasses.fake_tensor import FakeTensorMode

    return _trace_fake(run, _fake_inputs(problem, axes, scalars, FakeTensorMode(allow_non_fake_inputs=True)))


DATA_DEPENDENT_ERRORS = ("DataDependentOutputException", "DynamicOutputShapeException")


def reads_data(exc: Exception) -> bool:
    """A fake trace that stopped where the reference reads tensor values (an `.item()`, a `tolist()`, an op
    whose output size depends on them)."""
    return any(t.__name__ in DATA_DEPENDENT_ERRORS for t in type(exc).__mro__) or "tolist()" in str(exc)


MAX_SIZE_ASSUMPTIONS = 4   # traces of one reference that each assume more sizes positive


def _data_dependent_trace(problem: Problem, axes: dict[str, int],
                          scalars: dict[str, Any]) -> tuple[torch.fx.GraphModule, frozenset[str]]:
    """The reference traced with a shape environment: inputs keep their concrete shapes, every value read
    from a tensor (`.item()`, `int(t)`, `tolist()`) and every size an op computes from data (`nonzero`,
    `bincount`, a slice by such values) is an unbacked symbol. The graph holds for any data at these
    shapes, given the sizes it assumed positive (returned; kernelbench.generate.size_assumptions). A
    reference whose Python branches or loops on such a value cannot be traced once for all data."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import GuardOnDataDependentSymNode

    module = reference_reading_symbols(problem.definition.reference, problem.name)

    def reading_symbols(*args):
        with ListsAsSymbols():
            return module.run(*args)
    positive: frozenset[str] = frozenset()
    for _ in range(MAX_SIZE_ASSUMPTIONS + 1):
        shape_env = AssumingShapeEnv(positive, allow_scalar_outputs=True, allow_dynamic_output_shape_ops=True)
        mode = FakeTensorMode(allow_non_fake_inputs=True, static_shapes=True, shape_env=shape_env)
        try:
            return _trace_fake(reading_symbols, _fake_inputs(problem, axes, scalars, mode)), positive
        except GuardOnDataDependentSymNode as exc:
            more = zero_test_symbols(getattr(exc, "cond", None)) - positive
            if not more:
                condition = str(exc).split("\n")[0]
                raise CaptureError(f"the computation branches on tensor values ({condition}): "
                                   f"no one graph holds for all data") from None
            positive |= more
    raise CaptureError(f"more than {MAX_SIZE_ASSUMPTIONS} data-dependent sizes would have to be assumed positive")


def example_capture(problem: Problem, workload, module, scalars: dict[str, Any], seed: int = 0, device: str = "cpu",
                    chosen: dict[str, Any] | None = None):
    """The reference traced along the branches one real example of the workload's inputs (round `seed`)
    takes, with the guards that keep the graph to them (kernelbench.generate.branch_guards). `chosen`:
    input name -> a function of the example's tensor giving the value to trace with instead (an example
    picked to take given branches)."""
    example = dict(zip((a.name for a in problem.arguments(workload)),
                       generate_inputs(problem, workload, device=device, seed=seed, reference_module=module)))
    example.update({name: choose(example[name]) for name, choose in (chosen or {}).items()})
    inputs = [scalars[name] if spec.is_scalar else example[name] for name, spec in problem.definition.inputs.items()]
    reading = reference_reading_symbols(problem.definition.reference, problem.name)

    def reading_symbols(*args):
        with ListsAsSymbols():
            return reading.run(*args)
    with emulated_scaled_mm_op():   # the example runs on the CPU, which has no FP4 scaled matmul
        return example_trace(_trace_fake, reading_symbols, inputs)


def _fake_inputs(problem: Problem, axes: dict[str, int], scalars: dict[str, Any], mode) -> list[Any]:
    with mode:
        return [scalars[name] if spec.is_scalar else
                torch.empty(problem.shape_of(spec, axes), dtype=torch_dtype(spec.dtype))
                for name, spec in problem.definition.inputs.items()]


def _trace_fake(run, inputs: list[Any]) -> torch.fx.GraphModule:
    def whole_attention(*args):
        with KeepAttention(), Refusal(HOST_COPIES):
            return run(*args)
    with _TRACING:
        try:
            return make_fx(torch.func.functionalize(whole_attention), tracing_mode="fake",
                           decomposition_table=decompositions())(*inputs)
        except Exception as exc:  # noqa: BLE001 - e.g. autograd in the reference, which functionalize refuses
            if reads_data(exc) or type(exc).__name__ == "GuardOnDataDependentSymNode":
                raise
            # Trace as written first: autograd runs and leaves its backward as plain aten ops, which a
            # second, functionalizing trace of that graph then accepts (broadcast_in_dim, which a
            # decomposition such as layer norm's emits, made aten views first).
            table = {**decompositions(), torch.ops.prims.broadcast_in_dim.default: _broadcast_in_dim}
            graph = make_fx(whole_attention, tracing_mode="fake", decomposition_table=table)(*inputs)
            return make_fx(torch.func.functionalize(graph), tracing_mode="fake",
                           decomposition_table=decompositions())(*inputs)
