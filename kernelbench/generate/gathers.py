"""Indexed reads and writes as kernel-side operations of the front end (kernelbench.generate.frontend).

Gathers in a region: `aten.embedding`, `aten.index.Tensor` (integer index tensors broadcast together, None
for a full slice), `aten.index_select` and `aten.gather` are elementwise over their *output*: the element at
output coordinate c is table[t(c)], where each table coordinate is either an output coordinate or an index
tensor's value read at the output's coordinates. So a gather joins a flat region like any elementwise op
(its index tensors are operands, the table is read at computed addresses and never joins the region) and an
embedding followed by a scale, a cast or a sum of two lookups is one kernel. Negative indices wrap as
torch's do (i + size). Out-of-range indices (torch raises; the checker feeds valid ones): the kernel never
reads outside the table: the load is masked and gives 0, and `tl.device_assert` stops the kernel when
Triton's debug mode is on (TRITON_DEBUG=1 on a GPU; the CPU interpreter ignores device asserts).

Embedding bags: `aten._embedding_bag(_forward_only)` (sum, mean, max; offsets with or without the final
one; per-sample weights; padding_idx) is rewritten into one node for its first result and lowered to a
segmented-reduction kernel: one program per (bag, block of columns), the bag's indices swept BLOCK_T at a
time, accumulated in fp32.

Accumulating scatters into fp32 (`index_put(accumulate=True)`, `index_add`, `scatter_add`; MoE combine, an
embedding's backward): the values are added where they are computed, with fp32 atomics addressed as the
gather of the same indices would read (see rewrite_scatters).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx

from kernelbench.generate.frontend import (
    CONSTANTS,
    TL,
    Unsupported,
    constant_value,
    strided_load,
)
from kernelbench.generate.host_sizes import is_one, same_shape

aten = torch.ops.aten

GATHERS = {aten.index.Tensor, aten.embedding.default, aten.index_select.default, aten.gather.default}
INDEX_TYPES = (torch.int64, torch.int32)
BAGS = {aten._embedding_bag_forward_only.default, aten._embedding_bag.default}
BAG_MODES = {0: "sum", 1: "mean", 2: "max"}


def _meta(node: Any) -> torch.Tensor | None:
    value = node.meta.get("val") if isinstance(node, torch.fx.Node) else None
    return value if isinstance(value, torch.Tensor) else None


# ----------------------------------------------------------------------------- what a gather reads

@dataclass(frozen=True)
class Gather:
    """out[c] = table[t(c)]: `dims[d]` says where table coordinate d comes from: ("out", k) the output's
    coordinate k, or ("index", j) the value of `indices[j]`, an index tensor read at the output's
    coordinates (right-aligned, broadcast, ending at output dimension `stop`)."""
    table: torch.fx.Node
    indices: tuple[torch.fx.Node, ...]
    stop: int
    dims: tuple[tuple[str, int], ...]


def is_gather(node: torch.fx.Node) -> bool:
    """A gather the front end can put in a region (the index tensors integer, everything else a tensor)."""
    if node.op != "call_function" or node.target not in GATHERS:
        return False
    try:
        describe(node)
    except Unsupported:
        return False
    return True


def index_inputs(node: torch.fx.Node) -> list[torch.fx.Node]:
    """The inputs a gather reads at its output's coordinates (the ones it may share a region with)."""
    return list(describe(node).indices)


def describe(node: torch.fx.Node) -> Gather:
    """Where the gather's table coordinates come from; a scatter sink is described as the gather of its
    accumulator that reads the elements it adds to."""
    target, args = node.target, node.args
    if target is scatter_add_into:
        accumulator, op, dim, indices, _values, _alpha = args
        target, args = SCATTER_AS_GATHER[op], ((accumulator, indices) if dim is None else (accumulator, dim, indices))
    if target is aten.embedding.default:
        table, index = args[0], args[1]
        _check(node, table, [index])
        rank = _meta(index).dim()
        gather = Gather(table, (index,), rank, (("index", 0), ("out", rank)))
    elif target is aten.index_select.default:
        table, dim, index = args
        _check(node, table, [index])
        dim %= max(_meta(table).dim(), 1)
        gather = Gather(table, (index,), dim + 1,
                        tuple(("index", 0) if d == dim else ("out", d) for d in range(_meta(table).dim())))
    elif target is aten.gather.default:
        table, dim, index = args[:3]
        if target is aten.gather.default and (node.kwargs.get("sparse_grad") or len(args) > 3 and args[3]):
            raise Unsupported("sparse gather")
        _check(node, table, [index])
        rank = _meta(table).dim()
        dim %= max(rank, 1)
        if _meta(index).dim() != rank:
            raise Unsupported("gather with an index of another rank")
        gather = Gather(table, (index,), rank, tuple(("index", 0) if d == dim else ("out", d) for d in range(rank)))
    else:   # aten.index.Tensor
        table, indices = args
        present = [i for i, ix in enumerate(indices) if ix is not None]
        tensors = [indices[i] for i in present]
        _check(node, table, tensors)
        rank = _meta(table).dim()
        width = len(_broadcast(tensors))
        if present == list(range(present[0], present[-1] + 1)):   # adjacent: the index dims replace them in place
            first = present[0]
            place = {d: d if d < first else first + width + d - present[-1] - 1 for d in range(rank) if d not in present}
        else:   # separated index tensors put their dims first (numpy's rule)
            first = 0
            place = {d: width + k for k, d in enumerate(d for d in range(rank) if d not in present)}
        gather = Gather(table, tuple(tensors), first + width,
                        tuple(("index", present.index(d)) if d in present else ("out", place[d]) for d in range(rank)))
    _check_shape(node, gather, target)
    return gather


def _broadcast(tensors) -> list:
    """The broadcast shape of index tensors, decided without asking torch (a data-dependent size would guard)."""
    rank = max(_meta(t).dim() for t in tensors)
    shape: list = [1] * rank
    for t in tensors:
        for j, size in enumerate(_meta(t).shape):
            if not is_one(size):
                shape[rank - _meta(t).dim() + j] = size
    return shape


def _check(node: torch.fx.Node, table: Any, indices: list) -> None:
    if not isinstance(table, torch.fx.Node) or _meta(table) is None or _meta(table).dim() == 0 \
            or _meta(table).dtype not in TL or _meta(node) is None:
        raise Unsupported(f"{node.name}: gather from a non-tensor or of an unsupported type")
    if not indices or not all(isinstance(i, torch.fx.Node) and _meta(i) is not None for i in indices):
        raise Unsupported(f"{node.name}: a gather needs index tensors")
    bad = [str(_meta(i).dtype) for i in indices if _meta(i).dtype not in INDEX_TYPES]
    if bad:
        raise Unsupported(f"{node.name}: index tensors of type {', '.join(bad)} (a mask is a data-dependent nonzero)")


def _check_shape(node: torch.fx.Node, gather: Gather, target: Any) -> None:
    """The output's shape is the one this description implies (else the op's semantics were misread)."""
    table, out = _meta(gather.table), _meta(node)
    if target is aten.gather.default:   # out takes the index's shape; its other dims may be shorter
        expected = list(_meta(gather.indices[0]).shape)
    else:
        block = _broadcast(gather.indices)
        expected = [None] * (len(gather.dims) - sum(kind == "index" for kind, _ in gather.dims) + len(block))
        expected[gather.stop - len(block):gather.stop] = block
        for d, (kind, k) in enumerate(gather.dims):
            if kind == "out":
                expected[k] = table.shape[d]
    if len(expected) != out.dim() or any(str(a) != str(b) for a, b in zip(expected, out.shape)):
        raise Unsupported(f"{node.name}: gather output shape {tuple(out.shape)}, expected {expected}")


def table_inside(nodes) -> bool:
    """Whether a would-be region holds a gather together with the table it reads at computed addresses (a
    region computes its values at its own coordinates only)."""
    members = set(nodes)
    return any(n.op == "call_function" and n.target in GATHERS and is_gather(n) and describe(n).table in members
               for n in members)


# ----------------------------------------------------------------------------- emission

@dataclass
class Site:
    """Where a gather is emitted: a flat kernel, or a row kernel's tile."""
    lines: list[str]                       # the kernel body, appended to
    register: Callable[[torch.fx.Node], Any]   # an input read by the kernel -> its KernelInput
    coordinate: Callable[[int], str]       # the output's coordinate `dim`
    member: Callable[[torch.fx.Node], Any]     # a region member's Value at the output's coordinates, or None
    size: Callable[[Any], str] = str       # a size as kernel text
    flat: str = "offs"                     # the output's flat (contiguous) index
    mask: str = "mask"                     # the lanes computed
    indent: str = ""

    def emit(self, line: str) -> None:
        self.lines.append(self.indent + line)

    def fresh(self, stem: str) -> str:
        """A new variable: numbered by the body's length, so the same kernel gets the same names at every shape."""
        return f"g{stem}{len(self.lines)}"


def emit_gather(node: torch.fx.Node, site: Site) -> str:
    """Lines for the gather's value (in the table's compute type); returns the variable holding it."""
    gather = describe(node)
    table_meta = _meta(gather.table)
    table = site.register(gather.table)
    address, inside = _address(node, gather, site, table)
    var = site.fresh("g")
    ctype = torch.float32 if table_meta.dtype in (torch.float16, torch.bfloat16) else table_meta.dtype
    site.emit(f"{var} = tl.load({table.name} + {address}, mask=({site.mask}) & {inside}, "
              f"other=0).to({TL[ctype]})")
    return var


def _address(node: torch.fx.Node, gather: Gather, site: Site, table: Any) -> tuple[str, str]:
    """The table offset of each lane (an expression) and the variable saying the lane's indices are in range
    (negative ones wrapped as torch wraps them)."""
    out_shape = tuple(_meta(node).shape)
    table_meta = _meta(gather.table)
    wide = not isinstance(table_meta.numel(), int) or table_meta.numel() >= 2 ** 31
    index_vars = []
    for index in gather.indices:
        shape = tuple(_meta(index).shape)
        member = site.member(index)
        if member is not None:
            if not same_shape(shape, out_shape):
                raise Unsupported(f"{node.name}: an index computed in the region at another shape")
            var = site.fresh("i")
            site.emit(f"{var} = {member.text}.to(tl.int64)")
        else:   # a block of indices even where all lanes read one (the interpreter rejects a 0-d mask term)
            var = site.fresh("i")
            consumer = out_shape[:gather.stop]
            inner = math.prod(out_shape[gather.stop:])
            flat = site.flat if is_one(inner) else f"({site.flat}) // {site.size(inner)}"
            for line in strided_load(site.register(index), shape, consumer, site.coordinate, flat, site.mask, var,
                                     torch.int64, site.size):
                site.emit(line)
        index_vars.append(var)
    terms, checks = [], []
    for d, (kind, k) in enumerate(gather.dims):
        if kind == "out":
            if is_one(table_meta.shape[d]):
                continue
            c = site.coordinate(k)
            terms.append(f"{c}.to(tl.int64) * {table.name}_s{d}" if wide else f"{c} * {table.name}_s{d}")
            continue
        size = site.size(table_meta.shape[d])
        raw, var = index_vars[k], site.fresh("t")
        site.emit(f"{var} = tl.where({raw} < 0, {raw} + {size}, {raw})")    # torch wraps negative indices
        checks.append(f"({var} >= 0) & ({var} < {size})")
        terms.append(f"{var} * {table.name}_s{d}")
    inside = site.fresh("ok")
    site.emit(f"{inside} = {' & '.join(checks)}")
    site.emit(f'tl.device_assert({inside} | ~({site.mask}), "index out of range")')
    return " + ".join(terms) or "0", inside


# ----------------------------------------------------------------------------- scatters with accumulation

# index_put(accumulate=True), index_add and scatter_add as three nodes: `accumulator(self)` (a fresh copy of
# self, or self itself when nothing else reads it), `scatter_add_into(accumulator, ...)` (elementwise over the
# added values: it joins the region that computes them, whose kernel adds each value into the accumulator with
# an fp32 atomic instead of storing it; the order of the additions varies from run to run, a rounding-level
# difference that torch's own atomic index_add has too) and `accumulated(accumulator, sink)` (the result, once
# every addition is done). Elsewhere (another dtype, a shape the kernel cannot read) the sink is the in-place op.
SCATTERS = {aten.index_put.default: "index_put", aten.index_add.default: "index_add",
            aten.scatter_add.default: "scatter_add"}
SCATTER_AS_GATHER = {"index_put": aten.index.Tensor, "index_add": aten.index_select.default,
                     "scatter_add": aten.gather.default}
ATOMIC_TYPES = (torch.float32,)


def accumulator(tensor):
    return tensor.clone()


def scatter_add_into(accumulator, op, dim, indices, values, alpha):
    """Adds `values` into `accumulator` in place (the graph stays runnable); its value is the added values."""
    if op == "index_put":
        accumulator.index_put_(indices, values, True)
    elif op == "index_add":
        accumulator.index_add_(dim, indices, values, alpha=alpha)
    else:
        accumulator.scatter_add_(dim, indices, values)
    return values


def accumulated(accumulator, sink):
    return accumulator


def rewrite_scatters(graph: torch.fx.Graph) -> None:
    """Each accumulating scatter of an fp32 tensor into accumulator -> sink -> result, in place."""
    for node in list(graph.nodes):
        op = SCATTERS.get(node.target) if node.op == "call_function" else None
        if op is None or _meta(node) is None or _meta(node).dtype not in ATOMIC_TYPES:
            continue
        if op == "index_put":
            target, indices, values, accumulate = node.args[0], node.args[1], node.args[2], \
                node.args[3] if len(node.args) > 3 else node.kwargs.get("accumulate", False)
            dim, alpha = None, 1
            if not accumulate:
                continue
        else:
            target, dim, indices, values = node.args[:4]
            alpha = node.kwargs.get("alpha", 1)
        if not isinstance(values, torch.fx.Node) or _meta(values) is None:
            continue
        try:   # the elements the values add to: the gather of the same indices
            table = _meta(target)
            picked = SCATTER_AS_GATHER[op](table, _metas(indices)) if dim is None else \
                SCATTER_AS_GATHER[op](table, dim, _metas(indices))
        except Exception:  # noqa: BLE001, S112 - a form the fake tensors cannot evaluate: leave the library op
            continue
        with graph.inserting_before(node):
            acc = graph.call_function(accumulator, (target,))
            sink = graph.call_function(scatter_add_into, (acc, op, dim, indices, values, alpha))
            result = graph.call_function(accumulated, (acc, sink))
        acc.meta["val"], sink.meta["val"], result.meta["val"] = node.meta["val"], picked, node.meta["val"]
        node.replace_all_uses_with(result)
        graph.erase_node(node)


def _metas(indices):
    if isinstance(indices, (list, tuple)):
        return [None if i is None else _meta(i) for i in indices]
    return _meta(indices)


def is_scatter(node: torch.fx.Node) -> bool:
    """A sink a region can take: its indices readable at its coordinates."""
    if node.op != "call_function" or node.target is not scatter_add_into:
        return False
    try:
        describe(node)
    except Unsupported:
        return False
    return True


def scatter_inputs(node: torch.fx.Node) -> list[torch.fx.Node]:
    """The inputs a sink reads at its own coordinates: the index tensors and the values."""
    return list(describe(node).indices) + [node.args[4]]


def emit_scatter(node: torch.fx.Node, site: Site, value: Any) -> None:
    """An atomic fp32 add of `value` (the added values at the sink's coordinates) into the accumulator."""
    gather = describe(node)
    table = site.register(gather.table)
    address, inside = _address(node, gather, site, table)
    alpha = node.args[5]
    added = value.to(torch.float32) if alpha == 1 else f"({value.to(torch.float32)} * {float(alpha)!r})"
    site.emit(f"tl.atomic_add({table.name} + {address}, {added}, mask=({site.mask}) & {inside})")


def handles(lowering, node: torch.fx.Node) -> bool:
    """Whether `scatter_statement` writes the node: the three scatter nodes, and a constant that only fills a
    returned accumulator (the destination is filled instead: no tensor of its own)."""
    return node.target in (accumulator, scatter_add_into, accumulated) or _fills_destination(lowering, node)


def _fills_destination(lowering, node: torch.fx.Node) -> bool:
    users = list(node.users)
    if node.target not in CONSTANTS or len(users) != 1 or users[0].target is not accumulator \
            or isinstance(constant_value(node), torch.fx.Node):
        return False
    result = next(iter(u for u in users[0].users if u.target is accumulated), None)
    return bool(lowering.destinations.get(result)) and _meta(node).dtype == _meta(result).dtype \
        and tuple(_meta(node).shape) == tuple(_meta(result).shape)


def scatter_statement(lowering, node: torch.fx.Node) -> None:
    """The scatter nodes as host code: a sink outside any kernel is the library's in-place op."""
    names = lowering.names
    if node.target in CONSTANTS:
        return   # written by its accumulator
    if node.target is accumulated:
        names[node] = names[node.args[0]]
        return
    if node.target is scatter_add_into:
        acc, _op, dim, indices, values, alpha = (lowering.argument(a) for a in node.args)
        call = {"index_put": f"{acc}.index_put_({indices}, {values}, True)",
                "index_add": f"{acc}.index_add_({dim}, {indices}, {values}, alpha={alpha})",
                "scatter_add": f"{acc}.scatter_add_({dim}, {indices}, {values})"}[node.args[1]]
        lowering.lines.append(call)
        lowering.launches += 1
        names[node] = values
        return
    source = node.args[0]   # the accumulator: the returned result's destination, self itself or a copy
    result = next(iter(u for u in node.users if u.target is accumulated), None)
    slots = lowering.destinations.get(result, []) if result is not None else []
    if slots:
        names[node] = slots[0]
        filled = _fills_destination(lowering, source)
        lowering.lines.append(f"{slots[0]}.fill_({lowering.argument(constant_value(source))})" if filled else
                              f"{slots[0]}.copy_({names[source]})")
    elif len(source.users) == 1 and (source.target in CONSTANTS or source in lowering.partition.region_of):
        names[node] = names[source]   # a fresh tensor nothing else reads (not an input, not a view of one)
        return
    else:
        names[node] = f"v{lowering.partition.index[node]}"
        lowering.lines.append(f"{names[node]} = {names[source]}.clone()")
    lowering.launches += 1


# ----------------------------------------------------------------------------- embedding bags

def embedding_bag(weight, indices, offsets, mode, per_sample_weights, include_last_offset, padding_idx):
    """The rewritten bag node's target: the bag's first result (the graph stays runnable)."""
    return aten._embedding_bag_forward_only.default(weight, indices, offsets, False, mode, False, per_sample_weights,
                                                    include_last_offset, padding_idx)[0]


def rewrite_bags(graph: torch.fx.Graph) -> None:
    """An embedding bag whose only used result is the first becomes one `embedding_bag` node, in place."""
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target not in BAGS:
            continue
        users = list(node.users)
        if not all(u.target is operator.getitem for u in users) or {u.args[1] for u in users if u.users} - {0}:
            continue
        schema = [a.name for a in node.target._schema.arguments]
        given = {**dict(zip(schema, node.args)), **node.kwargs}
        arguments = (given["weight"], given["indices"], given["offsets"], given.get("mode", 0),
                     given.get("per_sample_weights"), bool(given.get("include_last_offset", False)),
                     -1 if given.get("padding_idx") is None else given["padding_idx"])
        firsts = [u for u in users if u.args[1] == 0 and u.users]
        with graph.inserting_before(node):
            bag = graph.call_function(embedding_bag, arguments)
        if firsts:
            bag.meta["val"] = firsts[0].meta["val"]
            for first in firsts:
                first.replace_all_uses_with(bag)
        for user in users:
            graph.erase_node(user)
        graph.erase_node(node)
        if not bag.users:
            graph.erase_node(bag)


BAG_BLOCK_ELEMENTS = 4096   # a tile of (tokens x columns) held at once


def bag_kernel(node: torch.fx.Node, name: str) -> tuple[dict, dict]:
    """The segmented-reduction kernel of a rewritten bag node and its launch sizes."""
    weight, indices, offsets, mode, weights, last, padding = node.args
    wmeta, imeta, ometa, out = _meta(weight), _meta(indices), _meta(offsets), _meta(node)
    if mode not in BAG_MODES or wmeta is None or imeta is None or ometa is None or wmeta.dim() != 2 \
            or imeta.dim() != 1 or ometa.dim() != 1:
        raise Unsupported(f"{node.name}: embedding bag of mode {mode} on these shapes")
    if imeta.dtype not in INDEX_TYPES or ometa.dtype not in INDEX_TYPES:
        raise Unsupported(f"{node.name}: embedding bag indices of type {imeta.dtype}")
    if weights is not None and (BAG_MODES[mode] != "sum" or _meta(weights) is None):
        raise Unsupported(f"{node.name}: per-sample weights outside sum mode")
    if out.dtype not in TL or not out.dtype.is_floating_point:
        raise Unsupported(f"{node.name}: embedding bag of type {out.dtype}")
    if not all(isinstance(s, int) for s in (*wmeta.shape, *imeta.shape, *ometa.shape)):
        raise Unsupported(f"{node.name}: an embedding bag of data-dependent size")
    vocab, width = wmeta.shape
    kind = BAG_MODES[mode]
    block_d = min(1 << max(width - 1, 1).bit_length(), 1024)
    block_t = max(1, min(64, BAG_BLOCK_ELEMENTS // block_d))
    neutral = "float('-inf')" if kind == "max" else "0.0"
    body = [
        "bag = tl.program_id(0)",
        "cols = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)",
        f"cmask = cols < {width}",
        "start = tl.load(offsets + bag * offsets_s0).to(tl.int64)",
        # the last bag ends at the index count unless the offsets carry that end themselves
        "end = tl.load(offsets + (bag + 1) * offsets_s0).to(tl.int64)" if last else
        f"end = tl.load(offsets + (bag + 1) * offsets_s0, mask=bag + 1 < n_bags, other={imeta.shape[0]}).to(tl.int64)",
        f"acc = tl.full([BLOCK_D], {neutral}, tl.float32)",
        "count = tl.zeros([BLOCK_T], tl.int32)",
        "for first in range(start, end, BLOCK_T):",
        "    t = first + tl.arange(0, BLOCK_T)",
        "    tmask = t < end",
        "    i = tl.load(indices + t * indices_s0, mask=tmask, other=0).to(tl.int64)",
        f"    ok = (i >= 0) & (i < {vocab})",
        '    tl.device_assert(ok | ~tmask, "index out of range")',
        "    keep = tmask & ok" + (f" & (i != {padding})" if padding is not None and padding >= 0 else ""),
        ("    rows = tl.load(weight + i[:, None] * weight_s0 + cols[None, :] * weight_s1, "
         "mask=keep[:, None] & cmask[None, :], other=0.0).to(tl.float32)"),
    ]
    if weights is not None:
        body.append("    rows = rows * tl.load(weights + t * weights_s0, mask=keep, other=0.0).to(tl.float32)[:, None]")
    if kind == "max":
        body.append("    acc = tl.maximum(acc, tl.max(tl.where(keep[:, None], rows, float('-inf')), 0))")
    else:
        body.append("    acc += tl.sum(rows, 0)")
    body.append("    count += keep.to(tl.int32)")
    body.append("total = tl.sum(count, 0)")
    if kind == "mean":
        body.append("acc = acc / tl.maximum(total, 1).to(tl.float32)")
    if kind == "max":   # an empty bag (or only padding) gives zeros, as torch's does
        body.append("acc = tl.where(total > 0, acc, 0.0)")
    body.append(f"tl.store(out + bag * out_s0 + cols * out_s1, acc.to({TL[out.dtype]}), mask=cmask)")
    parameters = ["weight", "indices", "offsets"] + (["weights"] if weights is not None else []) + \
        ["out", "n_bags", "weight_s0", "weight_s1", "indices_s0", "offsets_s0"] + \
        (["weights_s0"] if weights is not None else []) + ["out_s0", "out_s1", "BLOCK_T: tl.constexpr",
                                                           "BLOCK_D: tl.constexpr"]
    kernel = {"name": name, "parameters": parameters, "body": body, "unspecialized": ["n_bags"], "uses_tanh": False}
    return kernel, {"bags": out.shape[0], "block_t": block_t, "block_d": block_d,
                    "warps": max(1, min(8, block_t * block_d // 512))}


def emit_bag(lowering, node: torch.fx.Node) -> None:
    """The bag kernel and its launch into the lowering (the result stored straight into a destination)."""
    name = f"{lowering.prefix}_k{len(lowering.kernels)}"
    kernel, launch = bag_kernel(node, name)
    weight, indices, offsets, _mode, weights, _last, _padding = node.args
    out = _meta(node)
    lowering.kernels.append(kernel)
    if node in lowering.destinations:
        lowering.names[node] = lowering.destinations[node][0]
    else:
        lowering.names[node] = f"v{lowering.partition.index[node]}"
        lowering.lines.append(f"{lowering.names[node]} = torch.empty({tuple(out.shape)}, dtype={out.dtype}, "
                              f"device={lowering.device})")
    if launch["bags"] == 0:
        return
    names = lowering.names
    tensors = [weight, indices, offsets] + ([weights] if weights is not None else [])
    arguments = [names[t] for t in tensors] + [names[node], str(launch["bags"]), f"*{names[weight]}.stride()",
                                               f"{names[indices]}.stride(0)", f"{names[offsets]}.stride(0)"]
    if weights is not None:
        arguments.append(f"{names[weights]}.stride(0)")
    arguments.append(f"*{names[node]}.stride()")
    grid = f"({launch['bags']}, _cdiv({out.shape[1]}, {launch['block_d']}))"
    lowering.lines.append(f"_lean({name})[{grid}]({', '.join(arguments)}, BLOCK_T={launch['block_t']}, "
                          f"BLOCK_D={launch['block_d']}, num_warps={launch['warps']})")
    lowering.launches += 1
