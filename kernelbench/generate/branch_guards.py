"""A reference that branches on tensor values, traced along the branches its example data take, with a guard
per branch checked at run time.

`for e in ...: if end > start:` over `.item()` offsets, `if rows.numel() == 0: continue` after a `nonzero`,
`assert n == indptr[-1].item()`: no one graph holds for all data there. `example_trace` runs the reference
on one real example of the workload's inputs while tracing it with fake tensors that carry those real
tensors (torch's real-tensor propagation): every value read from data is still an unbacked symbol (`u3`),
so sizes stay expressions of the data, but where the Python code asks a question of such a symbol the
shape environment answers it from the example's values and records the answer as a runtime assertion.
Those answers are the guards: boolean expressions of the symbols (`Ne(u2, u1)`, `u5 >= 1`). The program
(kernelbench.generate.frontend) checks each guard as soon as its symbols have values and returns the
reference's result (`_fallback`) when one does not hold: it is specialized to the branches taken, and
correct for every input. An `assert` on data is such a guard too (the reference then raises, as it must).

Only the answers recorded here are guards; the other runtime assertions of the shape environment are
facts aten itself establishes (a slice's length lies within its tensor), true for any data the reference
accepts.
"""

from __future__ import annotations

from typing import Any

import sympy
import torch
import torch._functorch.config as functorch_config
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.fx.experimental.symbolic_shapes import ShapeEnv

from kernelbench.generate.host_sizes import read_symbol

MAX_GUARDS = 1024               # branch outcomes one program may check (each a host comparison)
MAX_EXAMPLE_BYTES = 1 << 30     # the example's inputs are materialized on the tracing CPU
_ANSWERED = "propagate_real_tensors"   # how torch labels a data-dependent question answered from real values


class ExampleFakeMode(FakeTensorMode):
    """Fake tensors that carry real ones, without torch's cross-check of each fake output against the real
    one: that check compares sizes and storage offsets, so it asks questions of data-dependent symbols
    (`Ne(u8, 8)`) that the shape environment would answer from the example and keep as guards, pinning
    every slice length to the example's."""

    def _maybe_infer_fake_kernel_from_pytree_out(self, func, fake_in, real_in, fake_out, real_out):
        return fake_out


class _RecordingShapeEnv(ShapeEnv):
    """Keeps every data-dependent value it creates (an `.item()`, a `nonzero`'s row count, a flag)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.created: list = []

    def create_unbacked_symint(self, *args, **kwargs) -> torch.SymInt:
        self.created.append(super().create_unbacked_symint(*args, **kwargs))
        return self.created[-1]

    def create_unbacked_symfloat(self, *args, **kwargs) -> torch.SymFloat:
        self.created.append(super().create_unbacked_symfloat(*args, **kwargs))
        return self.created[-1]

    def create_unbacked_symbool(self, *args, **kwargs) -> torch.SymBool:   # `Eq(u0, 1)`
        self.created.append(super().create_unbacked_symbool(*args, **kwargs))
        return self.created[-1]


def example_trace(trace, run, inputs: list[Any]) -> tuple[torch.fx.GraphModule, tuple[sympy.Basic, ...]]:
    """`trace(run, inputs)` (a make_fx trace in fake mode) with fake tensors that carry the real `inputs`;
    the graph and its guards.

    A guard may test a value nothing else uses (`if rows.numel() == 0: continue` on an empty expert): the
    trace returns the values the guards read, so the ops reading them survive dead-code elimination, and
    the graph then returns what the reference returns again (those ops kept, for the program to read)."""
    size = sum(x.numel() * x.element_size() for x in inputs if isinstance(x, torch.Tensor))
    if size > MAX_EXAMPLE_BYTES:
        raise ValueError(f"the example's inputs take {size} bytes, more than {MAX_EXAMPLE_BYTES} to trace on")
    with functorch_config.patch(fake_tensor_propagate_real_tensors=True):
        shape_env = _RecordingShapeEnv(allow_scalar_outputs=True, allow_dynamic_output_shape_ops=True)
        mode = ExampleFakeMode(allow_non_fake_inputs=True, static_shapes=True, shape_env=shape_env)

        def returning_reads(*args):
            result = run(*args)
            read = {s for guard in recorded_guards(shape_env) for s in guard.free_symbols}
            return result, tuple(v for v in shape_env.created if read_symbol(v) in read)
        # make_fx fakes the real inputs in this mode (found through the tracing context), so they carry their
        # values; fake inputs would be faked again, onto uninitialized memory
        with torch._guards.tracing(torch._guards.TracingContext(mode)):
            graph = trace(returning_reads, inputs)
    output = next(n for n in graph.graph.nodes if n.op == "output")
    returned, _ = output.args[0]
    output.args = (returned,)
    codegen = graph.graph._codegen
    if getattr(codegen, "pytree_info", None) is not None:   # the flat outputs' structure, reads dropped
        spec = codegen.pytree_info.out_spec.children_specs[0]
        codegen.pytree_info = codegen.pytree_info._replace(out_spec=spec)
    graph.recompile()
    guards = recorded_guards(shape_env)
    if len(guards) > MAX_GUARDS:
        raise ValueError(f"{len(guards)} branch outcomes to check, more than {MAX_GUARDS}")
    return graph, guards


def keeps_read(node: torch.fx.Node, guards: tuple[sympy.Basic, ...]) -> bool:
    """A node that defines a value a guard reads (kept by dead-code elimination: the program checks it). The
    symbol as created: a guard `Eq(u0, 3)` makes the shape environment replace `u0` by 3 from then on."""
    read = {s for guard in guards for s in guard.free_symbols}
    value = node.meta.get("val")
    sizes = value.shape if isinstance(value, torch.Tensor) else [value]
    return any(read_symbol(s) in read for s in sizes)


def recorded_guards(shape_env: ShapeEnv) -> tuple[sympy.Basic, ...]:
    """The questions answered from the example, as conditions that hold on it (each once)."""
    guards: dict[sympy.Basic, None] = {}
    for assertions in shape_env.deferred_runtime_asserts.values():
        for assertion in assertions:
            if assertion.msg.startswith(_ANSWERED) and assertion.expr is not sympy.true:
                guards[assertion.expr] = None
    return tuple(guards)

