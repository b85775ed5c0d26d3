"""Input-free subgraphs evaluated once, when the program is generated, instead of on every call.

A reference often builds small tensors from nothing but literals: the section index of multimodal RoPE
(`cat([full(16, 0), full(24, 1), ...])`), a lookup table, a permutation. Traced, each op is an aten call a
call, four launches for that index alone. `fold_input_free(module)` evaluates such a subgraph on the CPU
while the graph is lowered and puts its value in a constant (a `get_attr` node, which the program keeps on
each device once: `_constant` in templates/fused.py.j2), so the kernels read it like any other tensor.

What is folded: a node none of whose inputs depend on the call's inputs, deterministic (no random op, no
mutation), with a static shape of at most INLINE_CONSTANT_ELEMENTS elements, whose value the CPU computes
exactly as the GPU would: integer and boolean results, and floating results made only of literals, aranges,
copies, casts and moves (floating arithmetic may round differently on another device: it stays). Only the
values other nodes read are kept (the last one before a chain of views: the views stay free views).
Left alone, because the kernels already compute them in place: a fill read only by elementwise ops (an
inline literal) and an arange. A value is folded only where every use reads it (see `_only_read`).
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
import torch.fx

from kernelbench.generate.frontend import CONSTANTS, INLINE_CONSTANT_ELEMENTS, RULES, is_symbolic, tensor_meta
from kernelbench.generate.gathers import GATHERS
from kernelbench.generate.remap import ARANGES, MOVES, SPLITS, is_piece, is_view, moved_from

aten = torch.ops.aten

EXACT_ON_FLOATS = CONSTANTS | ARANGES | MOVES | SPLITS | {aten.cat.default, aten.clone.default,
                                                          aten._to_copy.default, aten.lift_fresh_copy.default}


def fold_input_free(module: torch.fx.GraphModule) -> int:
    """Replace the input-free values other nodes read by constants (`get_attr` nodes of `module`), in place;
    returns how many were folded."""
    values = _input_free_values(module)
    folded = 0
    for node in list(module.graph.nodes):
        if node not in values or node.op != "call_function" or not _read_by_others(node, values):
            continue
        source = node
        while is_view(source) and moved_from(source) in values and moved_from(source).op == "call_function":
            source = moved_from(source)   # fold below the views: they stay free views of the constant
        if is_view(source) or not _worth_folding(source) or not _only_read(source):
            continue   # (a view left here views a constant already)
        name = next(n for i in itertools.count() if not hasattr(module, n := f"_folded{i}"))
        module.register_buffer(name, values[source])
        with module.graph.inserting_before(source):
            constant = module.graph.get_attr(name)
        constant.meta["val"] = values[source]
        source.replace_all_uses_with(constant)
        folded += 1
    return folded   # the nodes folded away are dead now: the caller's dead-code pass removes them


def _input_free_values(module: torch.fx.GraphModule) -> dict[torch.fx.Node, torch.Tensor]:
    """The value of every node computable without the inputs, exactly, on the CPU (see the module's docstring)."""
    values: dict[torch.fx.Node, Any] = {}
    for node in module.graph.nodes:
        if node.op == "get_attr":
            value = getattr(module, node.target, None)
            if isinstance(value, torch.Tensor) and value.numel() <= INLINE_CONSTANT_ELEMENTS:
                values[node] = value.detach().cpu()
            continue
        if node.op != "call_function" or not _foldable_op(node) \
                or not all(arg in values for arg in node.all_input_nodes):
            continue
        args, kwargs = torch.fx.node.map_arg((node.args, node.kwargs), values.__getitem__)
        kwargs = {k: torch.device("cpu") if k == "device" else v for k, v in kwargs.items()}
        try:
            value = node.target(*args, **kwargs)
        except Exception:   # an op the CPU lacks: it stays in the program
            continue
        if not _exact(node, value):
            continue
        values[node] = value
    return values


def _foldable_op(node: torch.fx.Node) -> bool:
    target = node.target
    if is_piece(node):
        return True
    if not isinstance(target, torch._ops.OpOverload) or target._schema.is_mutable \
            or torch.Tag.nondeterministic_seeded in target.tags:
        return False
    meta = tensor_meta(node)
    values = node.meta.get("val")
    if target in SPLITS:
        return isinstance(values, (list, tuple)) and all(isinstance(v, torch.Tensor) and not is_symbolic(v)
                                                         for v in values)
    return meta is not None and not is_symbolic(meta) and meta.numel() <= INLINE_CONSTANT_ELEMENTS


def _exact(node: torch.fx.Node, value: Any) -> bool:
    """The CPU's value is the GPU's: an integer or boolean result, or floating data only moved and cast
    (every input of the node is then exact too, by induction)."""
    tensors = value if isinstance(value, (list, tuple)) else [value]
    if not all(isinstance(t, torch.Tensor) for t in tensors):
        return False
    if all(not t.is_floating_point() and not t.is_complex() for t in tensors):
        return True
    return node.target in EXACT_ON_FLOATS or is_piece(node)


def _read_by_others(node: torch.fx.Node, values: dict) -> bool:
    return any(user not in values for user in node.users)


def _only_read(node: torch.fx.Node) -> bool:
    """Every use of the node, through views, reads it: elementwise ops, gathers, concatenations. Not an
    output (a returned tensor must be fresh), nor the base a scatter updates (the kept constant would be
    written into)."""
    pending = [node]
    while pending:
        current = pending.pop()
        for user in current.users:
            if is_view(user):   # splits and their pieces included
                pending.append(user)
            elif user.op != "call_function" or user.target not in RULES.keys() | GATHERS | {aten.cat.default}:
                return False
    return True


def _worth_folding(node: torch.fx.Node) -> bool:
    """False where the kernels compute the value in place anyway: an arange, or a fill read only by ops that
    take it as an inline literal (elementwise rules)."""
    if node.target in ARANGES:
        return False
    if node.target in CONSTANTS:
        return not all(user.op == "call_function" and user.target in RULES for user in node.users)
    return True
