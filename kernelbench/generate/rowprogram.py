"""Row programs: a captured reference read as computation along the last dimension of its tensors.

A row program has an iteration space per group of outputs: leading dimensions (the rows) and
one column dimension (the row's elements). Every value of the graph is a function of the
coordinates it varies along: per-row vectors (vary along the column), per-row scalars (results
of reductions along the column, gathers of one element per row), per-column vectors (weights),
constants and runtime scalars, and cross-row values (sums over all rows: grad_weight, a mean
loss), which a second, small phase finishes.

`analyse(capture)` walks the aten graph once. Dimensions that broadcasting lines up are the
same dimension (a union-find over positions, not sizes: a (b, h, s, s) score tensor's two `s`
stay apart), views move dimensions between positions, and each op becomes a node of a small
IR whose `dims` say what it varies along. Anything outside the vocabulary raises Unsupported.
The result is a JSON-serializable plan; `evaluate(plan, inputs)` runs it with torch on real
inputs, which is how a family checks a match against the reference before trusting it.

IR ops (args are node ids; attributes in the node):
    load(input)  param(input)  const(value)  iota(dim)  size(dims)
    unary: neg exp log log1p expm1 rsqrt sqrt tanh abs sigmoid reciprocal not isinf isnan erf
    binary: add sub mul div maximum minimum eq ne lt le gt ge and or xor floordiv
    where(c, a, b)  cast  clamp(min, max)
    reduce(kind: sum | max | min, over: dims)        # along the column and/or across rows
    gather(x, index)       x[..., index] per row (index varies only by row)
    scatter(x, index, src, accumulate)   x with x[..., index] replaced or incremented per row
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any

import sympy
import torch
import torch.fx

from kernelbench.core.dtypes import name_of
from kernelbench.generate.graph import Capture

aten = torch.ops.aten
prims = torch.ops.prims


class Unsupported(Exception):
    """The graph is not a row program (the message says which op or shape)."""


# ----------------------------------------------------------------------------- dimension classes

class Classes:
    """Union-find over tensor dimensions; each class has a symbolic size."""

    def __init__(self):
        self.parent: list[int] = []
        self.sizes: list[sympy.Expr] = []

    def new(self, size) -> int:
        self.parent.append(len(self.parent))
        self.sizes.append(sympy.sympify(size))
        return len(self.parent) - 1

    def find(self, c: int) -> int:
        while self.parent[c] != c:
            self.parent[c] = self.parent[self.parent[c]]
            c = self.parent[c]
        return c

    def union(self, a: int, b: int) -> int:
        a, b = self.find(a), self.find(b)
        if a == b:
            return a
        if sympy.expand(self.sizes[a] - self.sizes[b]) != 0:
            raise Unsupported(f"broadcast of sizes {self.sizes[a]} and {self.sizes[b]}")
        self.parent[max(a, b)] = min(a, b)
        return min(a, b)


Layout = tuple[tuple[int, ...], ...]   # per tensor dim: the classes it holds (several after a flatten), () = size 1


@dataclass
class TensorValue:
    node: int
    layout: Layout
    dtype: torch.dtype


@dataclass
class SymValue:
    node: int
    dtype: torch.dtype


def _expr(size) -> sympy.Expr:
    if isinstance(size, torch.SymInt):
        return sympy.sympify(size.node.expr)
    return sympy.Integer(int(size))


def _is_one(size) -> bool:
    return not isinstance(size, torch.SymInt) and int(size) == 1


# ----------------------------------------------------------------------------- the walk

UNARY = {aten.neg.default: "neg", aten.exp.default: "exp", aten.log.default: "log", aten.log1p.default: "log1p",
         aten.expm1.default: "expm1", aten.rsqrt.default: "rsqrt", aten.sqrt.default: "sqrt",
         aten.tanh.default: "tanh", aten.abs.default: "abs", aten.sigmoid.default: "sigmoid",
         aten.reciprocal.default: "reciprocal", aten.logical_not.default: "not", aten.bitwise_not.default: "not",
         aten.isinf.default: "isinf", aten.isnan.default: "isnan", aten.erf.default: "erf",
         aten.exp2.default: "exp2", aten.log2.default: "log2"}
BINARY = {"add": "add", "sub": "sub", "mul": "mul", "div": "div", "maximum": "maximum", "minimum": "minimum",
          "eq": "eq", "ne": "ne", "lt": "lt", "le": "le", "gt": "gt", "ge": "ge",
          "logical_and": "and", "logical_or": "or", "logical_xor": "xor",
          "bitwise_and": "and", "bitwise_or": "or", "bitwise_xor": "xor"}
COMPARE = {"eq", "ne", "lt", "le", "gt", "ge"}
IDENTITY = {aten.clone.default, aten.alias.default, aten.detach.default, aten.lift_fresh_copy.default,
            aten.contiguous.default}
VIEWS = {aten.view.default, aten.reshape.default, aten._unsafe_view.default}
SYM_OPS = {operator.add: "add", operator.sub: "sub", operator.mul: "mul", operator.floordiv: "floordiv",
           operator.truediv: "div", operator.neg: "neg"}


class Walker:
    def __init__(self, capture: Capture):
        self.capture = capture
        self.gm = capture.module
        self.classes = Classes()
        self.nodes: list[dict] = []
        self.values: dict[torch.fx.Node, Any] = {}
        self.layouts: list[Layout] = []            # every tensor layout seen (orders the iteration space)
        self.inputs: dict[str, dict] = {}          # input name -> {"layout", "dtype"} for tensors

    # -- IR construction

    def add(self, op: str, args: list[int], dtype: torch.dtype, dims: set[int] = frozenset(), **attrs) -> int:
        self.nodes.append({"op": op, "args": list(args), "dtype": name_of(dtype), "dims": set(dims), **attrs})
        return len(self.nodes) - 1

    def dims_of(self, node: int) -> set[int]:
        return self.nodes[node]["dims"]

    def const(self, value, dtype: torch.dtype | None = None) -> int:
        if dtype is None:
            dtype = torch.bool if isinstance(value, bool) else torch.int64 if isinstance(value, int) else torch.float32
        value = float(value) if dtype.is_floating_point else bool(value) if dtype == torch.bool else int(value)
        for scalar, literal in self.capture.scalar_literals.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value == literal:
                return self.add("param", [], dtype, input=scalar)
        return self.add("const", [], dtype, value=value)

    def operand(self, value) -> tuple[int, Layout, torch.dtype]:
        """(node, layout, dtype) of an op's argument: a tensor, a symbolic scalar or a Python number."""
        if isinstance(value, TensorValue):
            return value.node, value.layout, value.dtype
        if isinstance(value, SymValue):
            return value.node, (), value.dtype
        if isinstance(value, (bool, int, float)):
            node = self.const(value)
            return node, (), getattr(torch, self.nodes[node]["dtype"])
        raise Unsupported(f"operand {value!r}")

    def broadcast(self, layouts: list[Layout]) -> Layout:
        rank = max((len(layout) for layout in layouts), default=0)
        result = []
        for position in range(rank):
            entries = [layout[position - rank + len(layout)] for layout in layouts
                       if position - rank + len(layout) >= 0]
            present = [e for e in entries if e]
            if not present:
                result.append(())
                continue
            first = present[0]
            for other in present[1:]:
                if len(other) != len(first):
                    raise Unsupported("broadcast of a flattened dimension with an unflattened one")
                for a, b in zip(first, other):
                    self.classes.union(a, b)
            result.append(first)
        return tuple(result)

    def tensor(self, node: int, layout: Layout, dtype: torch.dtype) -> TensorValue:
        self.layouts.append(layout)
        return TensorValue(node, layout, dtype)

    # -- walking

    def run(self) -> list[Any]:
        placeholders = self.capture.placeholders()
        by_node = {node: name for name, node in placeholders.items()}
        outputs = None
        for node in self.gm.graph.nodes:
            if node.op == "placeholder":
                self.values[node] = self.placeholder(by_node[node], node)
            elif node.op == "call_function":
                self.values[node] = self.call(node)
            elif node.op == "output":
                outputs = node.args[0]
            else:
                raise Unsupported(f"graph node {node.op}")
        outputs = outputs if isinstance(outputs, (tuple, list)) else [outputs]
        return [self.values[o] if isinstance(o, torch.fx.Node) else o for o in outputs]

    def placeholder(self, name: str, node: torch.fx.Node):
        value = node.meta.get("val")
        if not isinstance(value, torch.Tensor):
            return None  # a Python scalar traced as a sentinel: its literals stand for it
        if name in self.capture.scalar_inputs:
            return SymValue(self.add("param", [], value.dtype, input=name), value.dtype)
        if value.dtype == torch.float64 or value.is_complex():
            raise Unsupported(f"input {name}: {value.dtype}")
        layout = tuple(() if _is_one(s) else (self.classes.new(_expr(s)),) for s in value.shape)
        self.inputs[name] = {"layout": layout, "dtype": value.dtype}
        dims = {c for entry in layout for c in entry}
        return self.tensor(self.add("load", [], value.dtype, dims, input=name), layout, value.dtype)

    def arg(self, value):
        if isinstance(value, torch.fx.Node):
            return self.values[value]
        if isinstance(value, (list, tuple)):
            return type(value)(self.arg(v) for v in value)
        return value

    def call(self, node: torch.fx.Node):
        target = node.target
        meta = node.meta.get("val")
        if target in SYM_OPS or target in (torch.sym_float, torch.sym_int, aten.sym_size.int, operator.getitem):
            return self.sym_or_item(node)
        if isinstance(meta, torch.Tensor) and (meta.dtype == torch.float64 or meta.is_complex()):
            raise Unsupported(f"{target}: {meta.dtype}")
        args = [self.arg(a) for a in node.args]
        kwargs = {k: self.arg(v) for k, v in node.kwargs.items()}
        packet = getattr(target, "overloadpacket", None)
        name = getattr(packet, "__name__", str(target))
        if target in IDENTITY:
            return args[0]
        if target in (aten._to_copy.default, prims.convert_element_type.default):
            dtype = kwargs.get("dtype") if target is aten._to_copy.default else args[1]
            return self.cast(args[0], dtype or args[0].dtype)
        if target in UNARY:
            return self.elementwise(UNARY[target], [args[0]], meta.dtype)
        if (name.startswith("bitwise") or target is aten.bitwise_not.default) and meta.dtype != torch.bool:
            raise Unsupported(f"{name} on integers")
        if name in BINARY and packet in (getattr(aten, name), getattr(prims, name, None)):
            a, b = args[0], args[1]
            alpha = kwargs.get("alpha", 1)
            if name in ("add", "sub") and alpha != 1:
                b = self.elementwise("mul", [b, alpha], meta.dtype)
            if name == "div" and kwargs.get("rounding_mode") is not None:
                raise Unsupported("div with a rounding mode")
            return self.elementwise(BINARY[name], [a, b], meta.dtype)
        if target is aten.where.self:
            return self.elementwise("where", args[:3], meta.dtype)
        if target is aten.pow.Tensor_Scalar:
            return self.power(args[0], args[1], meta.dtype)
        if target in (aten.clamp.default, aten.clamp_min.default, aten.clamp_max.default):
            low = args[1] if len(args) > 1 and target is not aten.clamp_max.default else kwargs.get("min")
            high = (args[2] if len(args) > 2 else kwargs.get("max")) if target is aten.clamp.default else \
                (args[1] if target is aten.clamp_max.default else None)
            value = args[0]
            if low is not None:
                value = self.elementwise("maximum", [value, low], meta.dtype)
            if high is not None:
                value = self.elementwise("minimum", [value, high], meta.dtype)
            return value
        if target in VIEWS:
            return self.view(args[0], meta)
        if target is aten.unsqueeze.default:
            dim = args[1] % (len(args[0].layout) + 1)
            return self.tensor(args[0].node, args[0].layout[:dim] + ((),) + args[0].layout[dim:], args[0].dtype)
        if packet is aten.squeeze:
            return self.squeeze(args[0], args[1:] if len(args) > 1 else None)
        if target is aten.expand.default:
            return self.expand(args[0], meta)
        if target is aten.slice.Tensor:
            return self.slice(node, args)
        if target is aten.permute.default:
            if list(args[1]) != list(range(len(args[0].layout))):
                raise Unsupported("permute")
            return args[0]
        if target is prims.broadcast_in_dim.default:
            return self.broadcast_in_dim(args[0], meta, args[2])
        if target in (aten.scalar_tensor.default, aten.full.default, aten.full_like.default, aten.zeros_like.default,
                      aten.ones_like.default, aten.zeros.default, aten.ones.default):
            return self.fill(target, args, meta)
        if packet is aten.arange:
            return self.arange(args, meta)
        if target in (aten.sum.dim_IntList, aten.mean.dim, aten.amax.default, aten.amin.default, prims.sum.default,
                      aten.sum.default):
            return self.reduction(target, args, kwargs, meta)
        if target is prims.var.default:
            return self.variance(args[0], args[1], args[2] if len(args) > 2 else kwargs.get("correction", 1), meta)
        if target in (aten._softmax.default, aten._log_softmax.default):
            return self.softmax(args[0], args[1], meta, log=target is aten._log_softmax.default)
        if target is aten.gather.default:
            return self.gather(args[0], args[1], args[2], meta)
        if target in (aten.scatter_add.default, aten.scatter.src, aten.scatter.value):
            return self.scatter(args[0], args[1], args[2], args[3], meta, accumulate=target is aten.scatter_add.default)
        raise Unsupported(f"op {target}")

    # -- scalars

    def sym_or_item(self, node: torch.fx.Node):
        target = node.target
        if target is operator.getitem:
            return self.arg(node.args[0])[node.args[1]]
        if target is aten.sym_size.int:
            value = self.arg(node.args[0])
            entry = value.layout[node.args[1]]
            if not entry:
                return 1
            return SymValue(self.add("size", [], torch.int64, over=list(entry)), torch.int64)
        args = [self.arg(a) for a in node.args]
        if target is torch.sym_float:
            return SymValue(self.add("cast", [self.operand(args[0])[0]], torch.float32), torch.float32)
        if target is torch.sym_int:
            return SymValue(self.add("cast", [self.operand(args[0])[0]], torch.int64), torch.int64)
        if all(isinstance(a, (int, float)) for a in args):
            return {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "floordiv": operator.floordiv,
                    "div": operator.truediv, "neg": operator.neg}[SYM_OPS[target]](*args)
        floating = any(isinstance(a, float) or (isinstance(a, SymValue) and a.dtype.is_floating_point) for a in args)
        dtype = torch.float32 if floating or SYM_OPS[target] == "div" else torch.int64
        ids = [self.operand(a)[0] for a in args]
        return SymValue(self.add(SYM_OPS[target], ids, dtype), dtype)

    # -- elementwise

    def elementwise(self, op: str, args: list, dtype: torch.dtype):
        operands = [self.operand(a) for a in args]
        layout = self.broadcast([o[1] for o in operands])
        dims = set().union(*(self.dims_of(o[0]) for o in operands))
        node = self.add(op, [o[0] for o in operands], dtype, dims)
        if not layout and not any(isinstance(a, TensorValue) for a in args):
            return SymValue(node, dtype)
        return self.tensor(node, layout, dtype)

    def cast(self, value, dtype: torch.dtype):
        node, layout, old = self.operand(value)
        if dtype == old:
            return value
        if dtype == torch.float64:
            raise Unsupported("float64")
        return self.tensor(self.add("cast", [node], dtype, self.dims_of(node)), layout, dtype)

    def power(self, value, exponent, dtype: torch.dtype):
        if exponent == 1:
            return value
        if exponent == 2:
            return self.elementwise("mul", [value, value], dtype)
        if exponent == 3:
            return self.elementwise("mul", [self.elementwise("mul", [value, value], dtype), value], dtype)
        named = {0.5: "sqrt", -0.5: "rsqrt", -1: "reciprocal"}
        if exponent in named:
            return self.elementwise(named[exponent], [value], dtype)
        raise Unsupported(f"pow with exponent {exponent}")

    # -- views

    def view(self, value: TensorValue, meta: torch.Tensor) -> TensorValue:
        atoms = [c for entry in value.layout for c in entry]
        layout, index = [], 0
        for size in meta.shape:
            if _is_one(size):
                layout.append(())
                continue
            target, taken, product = _expr(size), [], sympy.Integer(1)
            while index < len(atoms) and sympy.expand(product - target) != 0:
                taken.append(atoms[index])
                product = product * self.classes.sizes[self.classes.find(atoms[index])]
                index += 1
            if sympy.expand(product - target) != 0:
                raise Unsupported(f"view to {tuple(meta.shape)} splits a dimension")
            layout.append(tuple(taken))
        if index != len(atoms):
            raise Unsupported(f"view to {tuple(meta.shape)}")
        return self.tensor(value.node, tuple(layout), value.dtype)

    def squeeze(self, value: TensorValue, dims) -> TensorValue:
        rank = len(value.layout)
        if dims is None:
            chosen = set(range(rank))
        else:
            flat = dims[0] if isinstance(dims[0], (list, tuple)) else dims
            chosen = {d % rank for d in flat}
        layout = tuple(e for i, e in enumerate(value.layout) if not (i in chosen and not e))
        return self.tensor(value.node, layout, value.dtype)

    def expand(self, value: TensorValue, meta: torch.Tensor) -> TensorValue:
        shape = list(meta.shape)
        old = ((),) * (len(shape) - len(value.layout)) + value.layout
        layout = tuple(e if e or _is_one(s) else (self.classes.new(_expr(s)),) for e, s in zip(old, shape))
        return self.tensor(value.node, layout, value.dtype)

    def broadcast_in_dim(self, value: TensorValue, meta: torch.Tensor, kept) -> TensorValue:
        layout = []
        source = dict(zip(kept, value.layout))
        for position, size in enumerate(meta.shape):
            if position in source:
                layout.append(source[position])
            else:
                layout.append(() if _is_one(size) else (self.classes.new(_expr(size)),))
        return self.tensor(value.node, tuple(layout), value.dtype)

    def slice(self, node: torch.fx.Node, args) -> TensorValue:
        value, dim = args[0], args[1] if len(args) > 1 else 0
        start = args[2] if len(args) > 2 else 0
        step = args[4] if len(args) > 4 else 1
        before, after = node.args[0].meta["val"].shape[dim], node.meta["val"].shape[dim]
        if start not in (0, None) or step != 1 or sympy.expand(_expr(before) - _expr(after)) != 0:
            raise Unsupported("a slice that drops elements")
        return value

    # -- sources

    def fill(self, target, args, meta: torch.Tensor) -> TensorValue:
        if target is aten.scalar_tensor.default:
            return self.tensor(self.const(args[0], meta.dtype), (), meta.dtype)
        if target in (aten.full_like.default, aten.zeros_like.default, aten.ones_like.default):
            value = {aten.full_like.default: args[1] if len(args) > 1 else 0, aten.zeros_like.default: 0,
                     aten.ones_like.default: 1}[target]
            node = self.operand(value)[0] if isinstance(value, SymValue) else self.const(value, meta.dtype)
            return self.tensor(node, args[0].layout, meta.dtype)
        value = args[1] if target is aten.full.default else (0 if target is aten.zeros.default else 1)
        node = self.operand(value)[0] if isinstance(value, SymValue) else self.const(value, meta.dtype)
        layout = tuple(() if _is_one(s) else (self.classes.new(_expr(s)),) for s in meta.shape)
        return self.tensor(node, layout, meta.dtype)

    def arange(self, args, meta: torch.Tensor) -> TensorValue:
        if len(args) == 1:
            start, step = 0, 1
        else:
            start, step = args[0], args[2] if len(args) > 2 else 1
        size = meta.shape[0]
        if _is_one(size):
            return self.tensor(self.operand(start)[0], ((),), meta.dtype)
        cls = self.classes.new(_expr(size))
        value = TensorValue(self.add("iota", [], torch.int64, {cls}, dim=cls), ((cls,),), torch.int64)
        if step != 1:
            value = self.elementwise("mul", [value, step], torch.int64)
        if not (isinstance(start, int) and start == 0):
            value = self.elementwise("add", [value, start], torch.int64)
        if meta.dtype != torch.int64:
            return self.cast(value, meta.dtype)
        return self.tensor(value.node, value.layout, value.dtype)

    # -- reductions

    def reduced_positions(self, value: TensorValue, dims) -> list[int]:
        rank = len(value.layout)
        if dims is None or (isinstance(dims, (list, tuple)) and len(dims) == 0):
            return list(range(rank))
        dims = [dims] if isinstance(dims, int) else dims
        return sorted({d % rank for d in dims}) if rank else []

    def reduce(self, kind: str, value: TensorValue, positions: list[int], keepdim: bool, dtype: torch.dtype):
        over = [c for p in positions for c in value.layout[p]]
        layout = tuple(() if i in positions else e for i, e in enumerate(value.layout)) if keepdim else \
            tuple(e for i, e in enumerate(value.layout) if i not in positions)
        if not over:
            return self.cast(TensorValue(value.node, layout, value.dtype), dtype)
        # a candidate column: the reduction runs along the last position only, and it holds one dimension
        last = value.layout[-1] if positions == [len(value.layout) - 1] and len(value.layout[-1]) == 1 else ()
        dims = self.dims_of(value.node) - set(over)
        node = self.add("reduce", [value.node], dtype, dims, kind=kind, over=over, column=list(last))
        return self.tensor(node, layout, dtype)

    def reduction(self, target, args, kwargs, meta: torch.Tensor):
        value = args[0]
        positions = self.reduced_positions(value, args[1] if len(args) > 1 else kwargs.get("dim"))
        if len(args) > 2 and target is not prims.sum.default:
            keepdim = bool(args[2])
        else:
            keepdim = bool(kwargs.get("keepdim", False))
        if target in (aten.amax.default, aten.amin.default):
            return self.reduce("max" if target is aten.amax.default else "min", value, positions, keepdim, meta.dtype)
        accumulate = meta.dtype if meta.dtype.is_floating_point else torch.int64
        if meta.dtype in (torch.bfloat16, torch.float16):
            accumulate = torch.float32
        source = self.cast(value, accumulate) if value.dtype != accumulate and accumulate.is_floating_point else value
        total = self.reduce("sum", source, positions, keepdim, accumulate)
        if target is aten.mean.dim:
            over = [c for p in positions for c in value.layout[p]]
            count = SymValue(self.add("size", [], torch.int64, over=over), torch.int64)
            total = self.elementwise("div", [total, count], accumulate)
        return self.cast(total, meta.dtype)

    def variance(self, value: TensorValue, dims, correction, meta: torch.Tensor):
        positions = self.reduced_positions(value, dims)
        x = self.cast(value, torch.float32)
        over = [c for p in positions for c in value.layout[p]]
        count = SymValue(self.add("size", [], torch.int64, over=over), torch.int64)
        mean = self.elementwise("div", [self.reduce("sum", x, positions, True, torch.float32), count], torch.float32)
        centred = self.elementwise("sub", [x, mean], torch.float32)
        squares = self.reduce("sum", self.elementwise("mul", [centred, centred], torch.float32), positions, False,
                              torch.float32)
        divisor = self.elementwise("sub", [count, float(correction or 0)], torch.float32) if correction else count
        return self.cast(self.elementwise("div", [squares, divisor], torch.float32), meta.dtype)

    def softmax(self, value: TensorValue, dim: int, meta: torch.Tensor, log: bool):
        if dim % len(value.layout) != len(value.layout) - 1:
            raise Unsupported("softmax over a dimension other than the last")
        x = self.cast(value, torch.float32)
        last = [len(value.layout) - 1]
        peak = self.reduce("max", x, last, True, torch.float32)
        shifted = self.elementwise("sub", [x, peak], torch.float32)
        exps = self.elementwise("exp", [shifted], torch.float32)
        total = self.reduce("sum", exps, last, True, torch.float32)
        if log:
            result = self.elementwise("sub", [shifted, self.elementwise("log", [total], torch.float32)], torch.float32)
        else:
            result = self.elementwise("div", [exps, total], torch.float32)
        return self.cast(result, meta.dtype)

    # -- indexing along the column

    def column_index(self, value: TensorValue, dim: int, index: TensorValue) -> tuple[int, ...]:
        rank = len(value.layout)
        if dim % rank != rank - 1 or len(index.layout) != rank or index.layout[-1]:
            raise Unsupported("gather/scatter other than one index per row along the last dimension")
        for mine, theirs in zip(value.layout[:-1], index.layout[:-1]):
            if mine and not theirs:
                raise Unsupported("gather/scatter index narrower than its input")
            if mine and theirs:
                self.broadcast([(mine,), (theirs,)])
        return value.layout[-1]

    def gather(self, value: TensorValue, dim: int, index: TensorValue, meta: torch.Tensor):
        column = self.column_index(value, dim, index)
        dims = (self.dims_of(value.node) - set(column)) | self.dims_of(index.node)
        node = self.add("gather", [value.node, index.node], value.dtype, dims, column=list(column))
        return self.tensor(node, index.layout, meta.dtype)

    def scatter(self, value: TensorValue, dim: int, index: TensorValue, source, meta: torch.Tensor, accumulate: bool):
        column = self.column_index(value, dim, index)
        src = self.operand(source)[0]
        dims = self.dims_of(value.node) | self.dims_of(index.node) | self.dims_of(src)
        node = self.add("scatter", [value.node, index.node, src], value.dtype, dims, column=list(column),
                        accumulate=accumulate)
        return self.tensor(node, value.layout, meta.dtype)


# ----------------------------------------------------------------------------- the plan

def analyse(capture: Capture, outputs: dict) -> dict:
    """The row-program plan of a captured reference; `outputs` is the definition's {name: TensorSpec}."""
    walker = Walker(capture)
    returned = walker.run()
    if len(returned) != len(outputs):
        raise Unsupported(f"the reference returns {len(returned)} values, the definition names {len(outputs)}")
    find = walker.classes.find
    nodes = walker.nodes
    for node in nodes:
        node["dims"] = sorted({find(c) for c in node["dims"]})
        for key in ("over", "column"):
            if key in node:
                node[key] = sorted({find(c) for c in node[key]}) if key == "over" else [find(c) for c in node[key]]
        if "dim" in node:
            node["dim"] = find(node["dim"])
    _recompute_dims(nodes)
    returned = _deduplicate(nodes, returned)
    resolve = lambda layout: [[find(c) for c in entry] for entry in layout]  # noqa: E731
    out_values = []
    for (name, spec), value in zip(outputs.items(), returned):
        if not isinstance(value, TensorValue):
            raise Unsupported(f"output {name} is not a tensor computed from the inputs")
        if spec.shape is not None and len(spec.shape) != len(value.layout):
            raise Unsupported(f"output {name}: rank {len(value.layout)} against the definition's {len(spec.shape)}")
        out_values.append({"name": name, "node": value.node, "layout": resolve(value.layout),
                           "dtype": name_of(value.dtype)})
    layouts = [[find(c) for entry in layout for c in entry] for layout in walker.layouts]
    columns = _columns(nodes, layouts)
    if not columns:
        raise Unsupported("no reduction along the last dimension")
    groups = _groups(nodes, out_values, columns, layouts)
    plan = {
        "inputs": [_input_entry(capture, walker, name, resolve) for name in capture.inputs],
        "outputs": out_values,
        "nodes": [{**n, "id": i} for i, n in enumerate(nodes)],
        "groups": groups,
        "sizes": {},
    }
    _classify(plan)
    _merge_dims(plan)
    plan["sizes"] = _size_sources(plan, walker, capture)
    return plan


def _recompute_dims(nodes: list[dict]) -> None:
    """What each node varies along, with every dimension class resolved (the walk saw classes before the
    broadcasts that later merged them). Nodes are in creation order, which is topological."""
    for node in nodes:
        args = [set(nodes[a]["dims"]) for a in node["args"]]
        if node["op"] == "load":
            continue
        if node["op"] == "iota":
            node["dims"] = [node["dim"]]
        elif node["op"] == "reduce":
            node["dims"] = sorted(args[0] - set(node["over"]))
        elif node["op"] == "gather":
            node["dims"] = sorted((args[0] - set(node["column"])) | args[1])
        elif node["op"] == "scatter":
            node["dims"] = sorted(set().union(*args) | set(node["column"]))
        else:
            node["dims"] = sorted(set().union(*args))


def _deduplicate(nodes: list[dict], returned: list) -> list:
    """Common subexpressions: a node equal to an earlier one (op, arguments, attributes) is replaced by it."""
    first: dict[str, int] = {}
    alias: dict[int, int] = {}
    for i, node in enumerate(nodes):
        node["args"] = [alias.get(a, a) for a in node["args"]]
        key = repr(sorted((k, v) for k, v in node.items() if k != "dims"))
        alias[i] = first.setdefault(key, i)
    return [TensorValue(alias[v.node], v.layout, v.dtype) if isinstance(v, TensorValue) else v for v in returned]


def _columns(nodes: list[dict], layouts: list[list[int]]) -> set[int]:
    """The column dimensions: those reduced, gathered or scattered along the last position, except one that
    some tensor holds before another such dimension (summing a per-row vector over its only position is a sum
    across rows, not along a column)."""
    candidates = set()
    for node in nodes:
        if node["op"] in ("gather", "scatter") and len(node["column"]) != 1:
            raise Unsupported("gather/scatter along a flattened last dimension")
        if node["op"] in ("gather", "scatter", "reduce") and len(node.get("column", [])) == 1:
            candidates.add(node["column"][0])
    changed = True
    while changed:
        changed = False
        for layout in layouts:
            for i, c in enumerate(layout):
                if c in candidates and candidates & set(layout[i + 1:]):
                    candidates.discard(c)
                    changed = True
    for node in nodes:
        if node["op"] == "reduce" and node["column"] and node["column"][0] not in candidates:
            node["column"] = []
    return candidates


def _input_entry(capture: Capture, walker: Walker, name: str, resolve) -> dict:
    if name in walker.inputs:
        entry = walker.inputs[name]
        return {"name": name, "kind": "tensor", "layout": resolve(entry["layout"]), "dtype": name_of(entry["dtype"])}
    return {"name": name, "kind": "scalar"}


def ancestors(nodes: list[dict], roots: list[int]) -> set[int]:
    seen, stack = set(), list(roots)
    while stack:
        n = stack.pop()
        if n not in seen:
            seen.add(n)
            stack.extend(nodes[n]["args"])
    return seen


def _groups(nodes, outputs, columns, layouts) -> list[dict]:
    """Outputs that share a row dimension form a group (one kernel); each has one column dimension."""
    info = []
    for index, out in enumerate(outputs):
        seen = ancestors(nodes, [out["node"]])
        classes = set().union(*(set(nodes[n]["dims"]) for n in seen), *(set(nodes[n].get("over", [])) for n in seen))
        own_columns = {c for n in seen for c in nodes[n].get("column", [])} & columns
        if not own_columns:
            last = out["layout"][-1] if out["layout"] else []
            own_columns = set(last) & classes
        info.append({"outputs": [index], "classes": classes, "columns": own_columns, "nodes": seen})
    merged = True
    while merged:
        merged = False
        for i in range(len(info)):
            for j in range(i + 1, len(info)):
                a, b = info[i], info[j]
                if (a["classes"] - a["columns"] - b["columns"]) & (b["classes"] - a["columns"] - b["columns"]):
                    a["outputs"] += b["outputs"]
                    a["classes"] |= b["classes"]
                    a["columns"] |= b["columns"]
                    a["nodes"] |= b["nodes"]
                    del info[j]
                    merged = True
                    break
            if merged:
                break
    groups = []
    for g in info:
        if len(g["columns"]) != 1:
            raise Unsupported(f"outputs {[outputs[i]['name'] for i in g['outputs']]} have "
                              f"{len(g['columns'])} column dimensions")
        column = next(iter(g["columns"]))
        order = max((layout for layout in layouts if g["classes"] <= set(layout)), key=len, default=None)
        if order is None or order[-1] != column:
            raise Unsupported("no tensor spans the iteration space with the reduced dimension last")
        lead = [c for c in dict.fromkeys(order) if c != column and c in g["classes"]]
        groups.append({"outputs": sorted(g["outputs"]), "column": column, "lead": lead, "nodes": sorted(g["nodes"])})
    return groups


def topological(nodes: list[dict], members) -> list[int]:
    """`members` in an order where every node comes after its arguments."""
    members, order, done = set(members), [], set()
    for root in sorted(members):
        stack = [(root, False)]
        while stack:
            n, expanded = stack.pop()
            if n in done:
                continue
            if expanded:
                done.add(n)
                order.append(n)
                continue
            stack.append((n, True))
            stack.extend((a, False) for a in nodes[n]["args"] if a in members and a not in done)
    return order


def _classify(plan: dict) -> None:
    """Each node's phase: "row" (row programs) or "final" (after the cross-row reduction); splits reductions
    along the column and across rows; checks every node fits the group's iteration space."""
    nodes = plan["nodes"]
    claimed: set[int] = set()
    for gi, group in enumerate(plan["groups"]):
        column, lead = group["column"], set(group["lead"])
        members = set(group["nodes"])
        for n in sorted(members):
            node = nodes[n]
            if n in claimed and (set(node["dims"]) - {column} or node["op"] == "reduce"):
                raise Unsupported("a per-row value shared by two groups of outputs")
            claimed.add(n)
            extra = set(node["dims"]) - lead - {column}
            if extra:
                raise Unsupported(f"a value varies along a dimension outside the iteration space ({node['op']})")
            if node["op"] == "iota" and node["dim"] not in lead | {column}:
                raise Unsupported("arange over a dimension outside the iteration space")
            if node["op"] in ("gather", "scatter") and node["column"] != [column]:
                raise Unsupported("gather/scatter along another dimension")
            if node["op"] == "reduce":
                over = set(node["over"])
                if over == {column}:
                    node["scope"] = "row"
                elif over == lead:
                    node["scope"] = "cross"
                elif over == lead | {column}:
                    node["scope"] = "all"
                else:
                    raise Unsupported("a reduction over some of the rows")
        _split_all_reductions(plan, gi)
    for group in plan["groups"]:
        lead = set(group["lead"])
        for n in group["nodes"]:
            node = nodes[n]
            args = [nodes[a] for a in node["args"]]
            final = node["op"] == "reduce" and node["scope"] == "cross" or any(a["phase"] == "final" for a in args)
            node["phase"] = "final" if final else "row"
            if final and node["op"] != "reduce" and set(node["dims"]) & lead:
                raise Unsupported(f"a per-row value combined with a cross-row result: {node}")
            if node["op"] == "reduce" and node["scope"] == "row" and final:
                raise Unsupported("a row reduction of a cross-row result")
            if node["op"] in ("gather", "scatter") and final:
                raise Unsupported("gather/scatter of a cross-row result")


def _split_all_reductions(plan: dict, gi: int) -> None:
    """A reduction over the column and every row is a row reduction, then a cross-row one."""
    nodes, group = plan["nodes"], plan["groups"][gi]
    for n in list(group["nodes"]):
        node = nodes[n]
        if node["op"] == "reduce" and node["scope"] == "all":
            inner = {**node, "id": len(nodes), "over": [group["column"]], "scope": "row",
                     "dims": sorted(set(nodes[node["args"][0]]["dims"]) - {group["column"]})}
            nodes.append(inner)
            group["nodes"].append(inner["id"])
            node.update(args=[inner["id"]], over=list(group["lead"]), scope="cross")
    group["nodes"] = topological(nodes, group["nodes"])


def _merge_dims(plan: dict) -> None:
    """Adjacent row dimensions that every tensor holds together (and no arange or size uses alone) become one."""
    nodes = plan["nodes"]
    for group in plan["groups"]:
        members = set(group["nodes"])
        accesses = [[c for entry in e["layout"] for c in entry] for e in plan["inputs"]
                    if e["kind"] == "tensor" and any(nodes[n]["op"] == "load" and nodes[n]["input"] == e["name"]
                                                     for n in members)]
        accesses += [[c for entry in plan["outputs"][o]["layout"] for c in entry] for o in group["outputs"]]
        alone = {nodes[n]["dim"] for n in members if nodes[n]["op"] == "iota"}
        for n in members:
            if nodes[n]["op"] == "size" and len(nodes[n]["over"]) == 1:
                alone.add(nodes[n]["over"][0])
        merged = [[group["lead"][0]]] if group["lead"] else []
        for c in group["lead"][1:]:
            previous = merged[-1][-1]
            together = c not in alone and previous not in alone and all(
                (previous in a) == (c in a) and (previous not in a or a.index(c) == a.index(previous) + 1)
                for a in accesses)
            if together:
                merged[-1].append(c)
            else:
                merged.append([c])
        group["dims"] = merged


def _size_sources(plan: dict, walker: Walker, capture: Capture) -> dict:
    """For every dimension class of the plan: where its size comes from at run time ([kind, name, position]),
    or its constant value."""
    sources: dict[int, Any] = {}
    candidates = [("input", e["name"], e["layout"]) for e in plan["inputs"] if e["kind"] == "tensor"]
    candidates += [("output", o["name"], o["layout"]) for o in plan["outputs"]]
    find = walker.classes.find
    wanted = set()
    for group in plan["groups"]:
        wanted |= set(group["lead"]) | {group["column"]}
    for node in plan["nodes"]:
        wanted |= set(node.get("over", [])) if node["op"] == "size" else set()
    for c in wanted:
        size = walker.classes.sizes[find(c)]
        for kind, name, layout in candidates:
            positions = [i for i, entry in enumerate(layout) if entry == [c]]
            if positions:
                sources[str(c)] = [kind, name, positions[0]]
                break
        else:
            if size.is_Integer:
                sources[str(c)] = int(size)
            else:
                raise Unsupported(f"no tensor holds a dimension of size {size} alone")
    return sources


# ----------------------------------------------------------------------------- evaluation with torch

def class_sizes(plan: dict, inputs: list[Any], outputs_shapes: dict[str, tuple[int, ...]]) -> dict[int, int]:
    by_name = {e["name"]: v for e, v in zip(plan["inputs"], inputs)}
    sizes = {}
    for c, source in plan["sizes"].items():
        if isinstance(source, int):
            sizes[int(c)] = source
        else:
            kind, name, position = source
            shape = by_name[name].shape if kind == "input" else outputs_shapes[name]
            sizes[int(c)] = int(shape[position])
    return sizes


def evaluate(plan: dict, inputs: list[Any], output_shapes: dict[str, tuple[int, ...]]) -> list[torch.Tensor]:
    """The plan's outputs on real inputs, computed with torch over each group's iteration space."""
    sizes = class_sizes(plan, inputs, output_shapes)
    by_name = {e["name"]: (e, v) for e, v in zip(plan["inputs"], inputs)}
    nodes = plan["nodes"]
    results: list[torch.Tensor | None] = [None] * len(plan["outputs"])
    for group in plan["groups"]:
        order = group["lead"] + [group["column"]]
        shape_of = lambda dims, order=order: [sizes[c] if c in dims else 1 for c in order]  # noqa: E731
        values: dict[int, torch.Tensor] = {}
        for n in group["nodes"]:
            node = nodes[n]
            values[n] = _evaluate_node(node, [values[a] for a in node["args"]], by_name, sizes, order, shape_of)
        for o in group["outputs"]:
            out = plan["outputs"][o]
            value = values[out["node"]]
            atoms = [c for entry in out["layout"] for c in entry]
            full = value.expand(shape_of(set(atoms)))
            results[o] = full.reshape(output_shapes[out["name"]]).to(_dtype(out["dtype"]))
    return results


def _dtype(name: str) -> torch.dtype:
    return getattr(torch, name)


def compute_dtype(node: dict, args: list[dict]) -> torch.dtype:
    """The type an op computes in: float32 for floating results (bf16/fp16 math runs in fp32, as torch's does),
    the operands' common type for comparisons, int64 or bool otherwise."""
    if node["op"] in COMPARE or node["op"] in ("isinf", "isnan"):
        kinds = [_dtype(a["dtype"]) for a in args]
        if any(k.is_floating_point for k in kinds):
            return torch.float32
        return torch.bool if all(k == torch.bool for k in kinds) else torch.int64
    dtype = _dtype(node["dtype"])
    if dtype.is_floating_point:
        return torch.float32
    return dtype if dtype == torch.bool else torch.int64


TORCH_UNARY = {"neg": torch.neg, "exp": torch.exp, "log": torch.log, "log1p": torch.log1p, "expm1": torch.expm1,
               "rsqrt": torch.rsqrt, "sqrt": torch.sqrt, "tanh": torch.tanh, "abs": torch.abs,
               "sigmoid": torch.sigmoid, "reciprocal": torch.reciprocal, "not": torch.logical_not,
               "isinf": torch.isinf, "isnan": torch.isnan, "erf": torch.erf, "exp2": torch.exp2, "log2": torch.log2}
TORCH_BINARY = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div, "maximum": torch.maximum,
                "minimum": torch.minimum, "eq": torch.eq, "ne": torch.ne, "lt": torch.lt, "le": torch.le,
                "gt": torch.gt, "ge": torch.ge, "and": torch.logical_and, "or": torch.logical_or,
                "xor": torch.logical_xor, "floordiv": torch.floor_divide}


def _evaluate_node(node, args, by_name, sizes, order, shape_of) -> torch.Tensor:
    op, dtype = node["op"], _dtype(node["dtype"])
    if op == "load":
        entry, value = by_name[node["input"]]
        return value.reshape(shape_of(set(node["dims"])))
    if op == "param":
        return torch.tensor(by_name[node["input"]][1], dtype=dtype).reshape([1] * len(order))
    if op == "const":
        return torch.tensor(node["value"], dtype=dtype).reshape([1] * len(order))
    if op == "iota":
        return torch.arange(sizes[node["dim"]], dtype=torch.int64).reshape(shape_of({node["dim"]}))
    if op == "size":
        return torch.tensor(math.prod(sizes[c] for c in node["over"]), dtype=torch.int64).reshape([1] * len(order))
    if op == "cast":
        return args[0].to(dtype)
    if op == "reduce":
        axes = [order.index(c) for c in node["over"]]
        target = list(args[0].shape)
        for axis, c in zip(axes, node["over"]):
            target[axis] = sizes[c]   # a value constant along a reduced dimension counts once per element
        value = args[0].expand(target)
        value = value.to(torch.float32 if dtype.is_floating_point else torch.int64)
        reduced = {"sum": lambda: value.sum(axes, keepdim=True), "max": lambda: value.amax(axes, keepdim=True),
                   "min": lambda: value.amin(axes, keepdim=True)}[node["kind"]]()
        return reduced.to(dtype)
    if op == "gather":
        value, index = args[0].expand(shape_of(set(order))), args[1]
        index = index.expand(shape_of(set(order) - {order[-1]})).clamp(0, value.shape[-1] - 1)
        return value.gather(-1, index).to(dtype)
    if op == "scatter":
        value = args[0].expand(shape_of(set(order))).to(dtype).clone()
        index = args[1].expand(shape_of(set(order) - {order[-1]}))
        src = args[2].to(dtype).expand(index.shape)
        return value.scatter_add(-1, index, src) if node["accumulate"] else value.scatter(-1, index, src)
    compute = compute_dtype(node, [{"dtype": name_of(a.dtype)} for a in args])
    operands = [a.to(compute) for a in args]
    if op in TORCH_UNARY:
        result = TORCH_UNARY[op](operands[0])
    elif op in TORCH_BINARY:
        result = TORCH_BINARY[op](operands[0], operands[1])
    elif op == "where":
        result = torch.where(args[0].to(torch.bool), args[1].to(compute), args[2].to(compute))
    else:
        raise Unsupported(f"cannot evaluate {op}")
    return result.to(dtype)
