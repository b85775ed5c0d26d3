"""Index remapping in the front end: ops that only move elements (cat, slice, select, split, expand, permute,
transpose, views) and arange become members of an elementwise region, each value computed at the
coordinates its reader asks for (as Inductor's loop-level IR does), so a rotary embedding or a GLU split is
one kernel instead of kernels joined by aten copies.

`fuse(partition)` (after row fusion) lets a producer join the regions that read it when the union stays one
kernel: every value read outside the union (stored) has one element count, the domain of the kernel; a
member of another shape is used inside only and is recomputed at each reader's coordinates; a view is never
stored (it would become a copy); the union stays convex.

`Emitter` writes a region's kernel body on demand: `value(node, at, mask)` is a node's Value at coordinates
`at` (memoized by node, coordinates and mask): an outside tensor is a masked strided load there, an
elementwise member its rule on its operands at broadcast coordinates, a slice reads its source at
start + i * step, a concatenation is nested tl.where over its inputs, each read under the mask of its own
range (never out of bounds), expand reads dimension 0 where it broadcasts, permute reorders, a view goes
through the flat index, arange is start + i * step.
"""

from __future__ import annotations

import itertools
import math
import operator
import re
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.fx

from kernelbench.generate import gathers
from kernelbench.generate.frontend import (
    COPY_OF,
    ORDER_KEEPING_VIEWS,
    RULES,
    TL,
    Partition,
    Region,
    Unsupported,
    Value,
    compute_type,
    is_symbolic,
    literal,
    rounded_as_eager,
    strided_load,
    tensor_meta,
)
from kernelbench.generate.host_sizes import is_one, same_shape, same_size

aten = torch.ops.aten

MOVES = {aten.slice.Tensor, aten.select.int, aten.expand.default, aten.permute.default, aten.transpose.int,
         aten.t.default} | ORDER_KEEPING_VIEWS   # pick elements: free as views, so never stored from a kernel
SPLITS = {aten.split.Tensor, aten.split_with_sizes.default}
ARANGES = {aten.arange.default, aten.arange.start, aten.arange.start_step}
MAX_BODY_LINES = 4000   # a kernel past this recomputes too much (nested concatenations): aten calls instead
# Recomputing a small producer at every element of a larger domain (cos/sin of [seq, dim] at every head) is free
# while the kernel is launch-bound, and costs more than storing it once beyond that: past this many elements a
# producer with costly math (transcendentals, float64) BROADCAST_RATIO or more times smaller than the domain is
# stored by its own kernel and read back, one launch more.
RECOMPUTE_FREE_ELEMENTS = 1 << 18
BROADCAST_RATIO = 4
COSTLY = {aten.pow.Tensor_Scalar, aten.pow.Tensor_Tensor, aten.pow.Scalar, aten.exp.default, aten.exp2.default,
          aten.expm1.default, aten.log.default, aten.log2.default, aten.log1p.default, aten.sin.default,
          aten.cos.default, aten.tan.default, aten.tanh.default, aten.sigmoid.default, aten.erf.default,
          aten.atan.default, aten.atan2.default, aten.asin.default, aten.acos.default}


# ----------------------------------------------------------------------------- which nodes

def _static(node: Any) -> bool:
    value = node.meta.get("val") if isinstance(node, torch.fx.Node) else None
    values = value if isinstance(value, (list, tuple)) else [value]
    return bool(values) and all(isinstance(v, torch.Tensor) and not is_symbolic(v) and v.dtype in TL
                                for v in values)


def is_piece(node: torch.fx.Node) -> bool:
    """An element of a split: a slice of the split's source."""
    return node.op == "call_function" and node.target is operator.getitem and isinstance(node.args[0], torch.fx.Node) \
        and node.args[0].target in SPLITS


def is_remap(node: torch.fx.Node) -> bool:
    """A node the emitter computes by remapping coordinates, on sizes known when traced."""
    if node.op != "call_function" or not _static(node):
        return False
    target = node.target
    if target in ARANGES:
        return all(isinstance(a, (int, float)) for a in node.args)
    if target is aten.cat.default:
        return all(isinstance(t, torch.fx.Node) and _static(t) for t in node.args[0])
    if target is aten.slice.Tensor:
        return all(isinstance(a, int) or a is None for a in node.args[1:]) and \
            (len(node.args) < 5 or node.args[4] >= 1) and _static(node.args[0])
    if target is aten.select.int:
        return isinstance(node.args[2], int) and _static(node.args[0])
    if target in MOVES or target in SPLITS:
        return isinstance(node.args[0], torch.fx.Node) and _static(node.args[0])
    return is_piece(node) and _static(node.args[0])


def is_view(node: torch.fx.Node) -> bool:
    return node.target in MOVES or node.target in SPLITS or is_piece(node)


def moved_from(node: torch.fx.Node) -> torch.fx.Node:
    """The tensor a move reads its elements from (a split's piece: the split's source)."""
    return node.args[0].args[0] if is_piece(node) else node.args[0]


# ----------------------------------------------------------------------------- partition

def fuse(partition: Partition) -> None:
    """Grow the flat regions through remapping ops, in place: each producer (a region, or a remapping op outside
    any) joins the regions and remapping ops that read it, where the union is one kernel (`_valid`); repeated
    until nothing joins (a producer may be tried before its readers have become one)."""
    def item(node: torch.fx.Node) -> Any:
        owner = partition.region_of.get(node)
        if owner is None:
            return node if is_remap(node) and not _view_of_input(node) else None
        return owner if type(owner) is Region and not any(_is_gather(n) for n in owner.nodes) else None

    def nodes(it: Any) -> list:
        return it.nodes if isinstance(it, Region) else [it]

    changed = True
    while changed:
        changed = False
        seen: set[int] = set()
        for node in reversed(partition.nodes):
            producer = item(node)
            if producer is None or id(producer) in seen:
                continue
            seen.add(id(producer))
            inside = set(nodes(producer))
            readers = list({id(r): r for n in inside for u in n.users if u not in inside
                            and (r := item(u)) is not None}.values())
            for choice in ([readers] if readers else []) + ([[r] for r in readers] if len(readers) > 1 else []):
                union = sorted(inside.union(*(nodes(r) for r in choice)), key=partition.index.__getitem__)
                if _valid(partition, union):
                    merged = Region()
                    for member in union:
                        merged.add(member, partition.index[member])
                        partition.region_of[member] = merged
                    changed = True
                    break
    partition.regions = list({id(r): r for r in partition.region_of.values()}.values())


def duplicate_shared_producers(graph: torch.fx.Graph) -> None:
    """A cheap elementwise or remapping node broadcast to elementwise readers of different, larger element counts
    (a cast of cos read by the rotations of q and of k) gets one copy per reader, in place: those readers are
    different kernels, and each recomputes its copy at its own coordinates instead of reading a stored one (a
    kernel and a round trip through memory saved). Applied bottom-up, so a chain of such producers (a node read
    by copies of one node) is copied whole."""
    copies: dict[torch.fx.Node, torch.fx.Node] = {}   # copy -> the node it copies
    for node in reversed(list(graph.nodes)):
        readers = list(node.users)
        if len(readers) < 2 or not _recomputable(node) or not all(_recomputable(r) or _is_elementwise(r)
                                                                  for r in readers):
            continue
        sizes = {tensor_meta(r).numel() for r in readers}
        originals = [copies.get(r, r) for r in readers]
        # readers of one size can share one kernel, and with it this node; a reader of the node's own size may
        # be its kernel already (a chain of such readers would recompute the whole chain at every step)
        broadcast = len(sizes) > 1 and min(sizes) > tensor_meta(node).numel()
        if not broadcast and len(set(originals)) == len(originals):
            continue
        root = copies.get(node, node)
        node.meta[COPY_OF] = root
        for reader in readers[1:]:
            with graph.inserting_after(node):
                copy = graph.node_copy(node)
            copies[copy] = copy.meta[COPY_OF] = root
            reader.replace_input_with(node, copy)


def _recomputable(node: torch.fx.Node) -> bool:
    return (_is_elementwise(node) or _is_one_tensor(node) and is_remap(node) and not _view_of_input(node)) \
        and not _costly(node)


def _is_elementwise(node: torch.fx.Node) -> bool:
    return node.op == "call_function" and node.target in RULES and not _is_gather(node) and _is_one_tensor(node)


def _is_one_tensor(node: torch.fx.Node) -> bool:
    return _static(node) and tensor_meta(node) is not None


def _view_of_input(node: torch.fx.Node) -> bool:
    """A view of an input (through views only): a kernel reads it through its strides at no cost, and keeping its
    offsets out of the kernel's text lets views at different offsets share one kernel (a loop over rows)."""
    while is_view(node):
        node = node.args[0]
    return node.op == "placeholder"


def _is_gather(node: torch.fx.Node) -> bool:
    return node.target in gathers.GATHERS or node.target is gathers.scatter_add_into


def _valid(partition: Partition, union: list) -> bool:
    members = set(union)
    if not any(n in partition.elementwise for n in union) or any(_is_gather(n) for n in union):
        return False
    if not all(_static(n) for n in union):
        return False
    stored = []
    for node in union:
        if node.users.keys() - members - partition.inline:
            if is_view(node) and partition.region_of.get(node) is None or node.target in SPLITS:
                return False   # a view read outside stays a view, not a copy
            stored.append(tensor_meta(node).numel())
    if not stored or any(s != stored[0] for s in stored):
        return False
    if stored[0] > RECOMPUTE_FREE_ELEMENTS and any(_costly(n) and BROADCAST_RATIO * tensor_meta(n).numel() <= stored[0]
                                                   for n in union if n in partition.elementwise):
        return False
    region = Region()
    for node in union:
        region.add(node, partition.index[node])
    return partition.convex(region)


def _costly(node: torch.fx.Node) -> bool:
    return node.target in COSTLY or tensor_meta(node).dtype == torch.float64


def has_remaps(nodes: list) -> bool:
    return any(n.target is aten.cat.default or n.target in ARANGES or is_view(n) and n.target not in
               ORDER_KEEPING_VIEWS for n in nodes)


# ----------------------------------------------------------------------------- emission

@dataclass(frozen=True)
class At:
    """Where a value is computed: its shape, and the row-major flat index into it or one index per dimension."""
    shape: tuple
    flat: str | None = None
    dims: tuple | None = None

    @property
    def key(self) -> tuple:
        return tuple(str(s) for s in self.shape), self.flat, self.dims


def identity(node: torch.fx.Node) -> At:
    """A node at the kernel's own index: element `offs` of its flat order."""
    return At(tuple(tensor_meta(node).shape), flat="offs")


class Emitter:
    """A region's kernel body, computed on demand (see the module's docstring). `register` names an input,
    `other` is a non-tensor operand's Value, `size` a size as kernel text, `first_spare` the first value number no
    node uses (a node computed at several coordinates takes a spare name for each but the first), `numbers` the
    scalar inputs (passed as Python numbers, never loaded)."""

    def __init__(self, partition: Partition, members: set, body: list, register: Callable, other: Callable,
                 size: Callable, first_spare: int, numbers: Any = ()):
        self.partition, self.members, self.body, self.numbers = partition, members, body, numbers
        self.register, self.other, self.size = register, other, size
        self.memo: dict[tuple, Value] = {}
        self.loads: dict[tuple, Value] = {}
        self.coordinates: dict[tuple, str] = {}
        self.named: dict[str, str] = {}
        self.spare = itertools.count(first_spare)
        self.computed: set[torch.fx.Node] = set()
        self.expressions: dict[tuple, Value] = {}

    # ------------------------------------------------------------------ coordinates

    def name(self, expression: str, prefix: str) -> str:
        """A variable holding `expression` (a name or a number is used as is)."""
        if re.fullmatch(r"\w+", expression):
            return expression
        if expression not in self.named:
            self.named[expression] = f"{prefix}{len(self.named)}"
            self.body.append(f"{self.named[expression]} = {expression}")
        return self.named[expression]

    def dims(self, at: At) -> tuple:
        if at.dims is not None:
            return at.dims
        key = (at.flat, tuple(str(s) for s in at.shape))
        if key not in self.coordinates:
            tag = self.coordinates[key] = f"c{len(self.coordinates)}"
            for d in range(len(at.shape)):
                inner = math.prod(at.shape[d + 1:])
                text = at.flat if is_one(inner) else f"{at.flat} // {self.size(inner)}"
                self.body.append(f"{tag}_{d} = ({text}) % {self.size(at.shape[d])}" if d > 0 else f"{tag}_{d} = {text}")
        return tuple(f"{self.coordinates[key]}_{d}" for d in range(len(at.shape)))

    def flat(self, at: At) -> str:
        if at.flat is not None:
            return at.flat
        terms = []
        for d, c in enumerate(at.dims):
            if c != "0" and not is_one(at.shape[d]):
                inner = math.prod(at.shape[d + 1:])
                terms.append(c if is_one(inner) else f"{c} * {self.size(inner)}")
        return self.name(" + ".join(terms) or "0", "f")

    def broadcast(self, at: At, shape: tuple) -> At:
        """An operand of `shape` read by an elementwise op computed at `at`."""
        if same_shape(shape, at.shape):
            return at
        if same_size(math.prod(shape), math.prod(at.shape)) and \
                same_shape([s for s in shape if not is_one(s)], [s for s in at.shape if not is_one(s)]):
            return At(shape, flat=self.flat(at))
        dims, offset = self.dims(at), len(at.shape) - len(shape)
        return At(shape, dims=tuple("0" if is_one(s) else dims[offset + d] for d, s in enumerate(shape)))

    def with_dim(self, at: At, dim: int, expression: str) -> At:
        dims = list(self.dims(at))
        dims[dim] = self.name(expression, "r")
        return At(at.shape, dims=tuple(dims))

    # ------------------------------------------------------------------ values

    def load(self, arg: torch.fx.Node, at: At, mask: str) -> Value:
        """An outside tensor read at its reader's coordinates `at` (broadcast by strided_load)."""
        meta = tensor_meta(arg)
        one = is_one(meta.numel())
        key = (arg,) if one else (arg, at.key, mask)
        if key not in self.loads:
            entry = self.register(arg)
            ctype = compute_type(meta.dtype)
            var = f"x{len(self.loads)}"
            if one:
                self.body.append(f"{var} = tl.load({entry.name}).to({TL[ctype]})")
            else:
                flat = self.flat(at) if same_shape(tuple(meta.shape), at.shape) else ""
                self.body.extend(strided_load(entry, tuple(meta.shape), at.shape, lambda d: self.dims(at)[d], flat,
                                              mask, var, ctype, self.size))
            self.loads[key] = Value(var, ctype)
        return self.loads[key]

    def source(self, arg: Any, at: At, mask: str) -> Value:
        """A remapping op's operand at coordinates of its own shape."""
        if isinstance(arg, torch.fx.Node) and arg in self.members:
            return self.value(arg, at, mask)
        return self.load(arg, at, mask) if self.is_input(arg) else self.other(arg)

    def operand(self, arg: Any, at: At, mask: str) -> Value:
        """An elementwise op's operand, the op computed at `at`."""
        if isinstance(arg, torch.fx.Node) and arg in self.members:
            return self.value(arg, self.broadcast(at, tuple(tensor_meta(arg).shape)), mask)
        return self.load(arg, at, mask) if self.is_input(arg) else self.other(arg)

    def is_input(self, arg: Any) -> bool:
        """A tensor the kernel reads (not a folded constant, nor a scalar input passed as a number)."""
        return isinstance(arg, torch.fx.Node) and arg not in self.partition.inline and arg not in self.numbers \
            and tensor_meta(arg) is not None

    def value(self, node: torch.fx.Node, at: At, mask: str) -> Value:
        key = (node, at.key, mask)
        if key not in self.memo:
            self.memo[key] = self.compute(node, at, mask)
            if len(self.body) > MAX_BODY_LINES:
                raise Unsupported("a kernel that recomputes too much")
        return self.memo[key]

    def variable(self, node: torch.fx.Node, expression: str, ctype: torch.dtype) -> Value:
        """`expression` in a new variable, or the one that already holds it (the same op on the same values
        under another mask)."""
        if (expression, ctype) not in self.expressions:
            var = f"v{self.partition.index[node]}" if node not in self.computed else f"v{next(self.spare)}"
            self.computed.add(node)
            self.body.append(f"{var} = {expression}")
            self.expressions[expression, ctype] = Value(var, ctype)
        return self.expressions[expression, ctype]

    def compute(self, node: torch.fx.Node, at: At, mask: str) -> Value:
        meta = tensor_meta(node)
        ctype = compute_type(meta.dtype)
        target = node.target
        if target in gathers.GATHERS or target is gathers.scatter_add_into:
            return self.gather(node, at, mask)
        if target in RULES:
            arguments = [self.operand(a, at, mask) for a in node.args]
            keywords = {k: v for k, v in node.kwargs.items() if not isinstance(v, torch.fx.Node)}
            return self.variable(node, rounded_as_eager(RULES[target](arguments, keywords, ctype), node), ctype)
        if target is aten.cat.default:
            return self.cat(node, at, mask, ctype)
        if target in ARANGES:
            start, _, step = _arange(node)
            index = self.dims(at)[0]
            if index.isdigit():   # a coordinate fixed by a size-1 view or slice: the value is a literal
                expression = literal(start + int(index) * step, ctype).text
            else:
                expression = f"{literal(start, ctype).text} + {index}.to({TL[ctype]}) * {literal(step, ctype).text}"
            return self.variable(node, rounded_as_eager(expression, node), ctype)
        return self.source(moved_from(node), self.moved(node, at), mask)

    def moved(self, node: torch.fx.Node, at: At) -> At:
        """The coordinates in the source of a view that `node` reads at `at`."""
        shape = tuple(tensor_meta(moved_from(node)).shape)
        target, rank = node.target, len(shape)
        if target in ORDER_KEEPING_VIEWS:
            if at.flat is None and [s for s in shape if s != 1] == [s for s in at.shape if s != 1]:
                kept = iter(c for c, s in zip(at.dims, at.shape) if s != 1)   # (un)squeeze: the sized dims stay
                return At(shape, dims=tuple("0" if s == 1 else next(kept) for s in shape))
            return At(shape, flat=self.flat(at))
        dims = list(self.dims(at))
        if target is aten.slice.Tensor or is_piece(node):
            dim, start, step = _slice(node, shape)
            dims[dim] = self.name(_affine(dims[dim], start, step), "r")
        elif target is aten.select.int:
            dim = node.args[1] % rank
            dims.insert(dim, str(node.args[2] % shape[dim]))
        elif target is aten.expand.default:
            offset = len(at.shape) - rank
            dims = ["0" if s == 1 else dims[offset + d] for d, s in enumerate(shape)]
        elif target is aten.permute.default:
            order = [d % rank for d in node.args[1]]
            dims = [dims[order.index(d)] for d in range(rank)]
        else:   # transpose, t
            a, b = (node.args[1] % rank, node.args[2] % rank) if target is aten.transpose.int else (0, rank - 1)
            dims[a], dims[b] = dims[b], dims[a]
        return At(shape, dims=tuple(dims))

    def cat(self, node: torch.fx.Node, at: At, mask: str, ctype: torch.dtype) -> Value:
        """Nested tl.where over the inputs, each read at its own offset and only where it is selected."""
        rank = len(at.shape)
        dim = (node.args[1] if len(node.args) > 1 else 0) % rank
        index = self.dims(at)[dim]
        pieces, offset = [], 0
        for t in node.args[0]:
            size = tensor_meta(t).shape[dim] if tensor_meta(t).dim() == rank else 0
            if size:
                pieces.append((t, offset, size))
            offset += size
        values = []
        for t, start, size in pieces:
            bounds = ([f"({index} >= {start})"] if start else []) + \
                ([f"({index} < {start + size})"] if start + size < at.shape[dim] else [])
            inner = self.name(" & ".join([mask] + bounds), "m")
            dims = self.with_dim(at, dim, f"{index} - {start}").dims if start else self.dims(at)
            values.append(self.source(t, At(tuple(tensor_meta(t).shape), dims=dims), inner).to(ctype))
        expression = values[-1]
        for (_, start, size), v in zip(pieces[-2::-1], values[-2::-1]):
            expression = f"tl.where({index} < {start + size}, {v}, {expression})"
        return self.variable(node, expression, ctype)

    def gather(self, node: torch.fx.Node, at: At, mask: str) -> Value:
        """A gather or scatter, only at the kernel's own index (where the old regions compute it)."""
        if at.flat != "offs" or mask != "mask":
            raise Unsupported("a gather at remapped coordinates")

        def member(arg: torch.fx.Node) -> Value | None:
            if arg in self.partition.inline:
                raise Unsupported("a constant index tensor")   # its gather falls back to the aten call
            return self.value(arg, identity(arg), mask) if arg in self.members else None

        site = gathers.Site(self.body, self.register, lambda d: self.dims(at)[d], member, self.size)
        if node.target is gathers.scatter_add_into:
            added = self.operand(node.args[4], at, mask)
            gathers.emit_scatter(node, site, added)
            return added
        return Value(gathers.emit_gather(node, site), compute_type(tensor_meta(node).dtype))


def _affine(index: str, start: int, step: int) -> str:
    scaled = index if step == 1 else f"{index} * {step}"
    return f"{scaled} + {start}" if start else scaled


def _slice(node: torch.fx.Node, shape: tuple) -> tuple[int, int, int]:
    """(dim, start, step) of a slice, or of a split's piece, in the source's `shape`."""
    if is_piece(node):
        split, position = node.args[0], node.args[1]
        dim = (split.args[2] if len(split.args) > 2 else split.kwargs.get("dim", 0)) % len(shape)
        sizes = split.args[1]
        start = sum(sizes[:position]) if isinstance(sizes, (list, tuple)) else sizes * position
        return dim, start, 1
    args = list(node.args) + [None] * (5 - len(node.args))
    dim = (args[1] or 0) % len(shape)
    start = args[2] or 0
    start = min(max(start + shape[dim] if start < 0 else start, 0), shape[dim])
    return dim, start, args[4] or 1


def _arange(node: torch.fx.Node) -> tuple[Any, Any, Any]:
    args = node.args
    if node.target is aten.arange.default:
        return 0, args[0], 1
    return args[0], args[1], args[2] if len(args) > 2 else 1
