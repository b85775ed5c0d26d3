"""The generator's front end for any problem: a reference graph at one shape, cut into fusion regions,
lowered to Triton kernels for the regions and aten calls for the rest.

`lower(capture)` takes the functional aten graph of `graph.capture_at` (concrete sizes) and
  0. rewrites it so casts sit next to the arithmetic they feed: below views, above concatenations;
  1. partitions it: every elementwise op (and every view of a region's value that keeps its element
     order) joins the region of its producers when the shapes have the same number of elements and
     the region stays convex (no path leaves it and comes back); regions that still feed each other
     through different members are split until the regions, as super-nodes, are a DAG; constants
     read only by elementwise ops are folded into the kernels;
  2. emits one Triton kernel per region: one program per BLOCK of the region's flat index, each input
     read at its consumer's coordinates (broadcasts are stride 0; a contiguous input takes a fast
     path chosen at launch), every value computed in fp32 (fp64, or its integer type), each value
     read outside the region stored once, contiguous;
  3. emits the rest as calls of the same aten ops, in an order that respects the regions.
Between 1 and 2, kernelbench.generate.rowfusion grows row regions: a reduction over the innermost dimensions
with the regions around it, one kernel with one program per block of rows; then
kernelbench.generate.remap grows the flat regions through the ops that only move elements (cat, slice,
expand, permute, views) and arange: a member of another shape, read inside only, is computed at the
coordinates its reader needs, so only values of the kernel's element count are stored.
In a data-dependent graph (unbacked symbols: sizes read from tensor values), Python arithmetic on those
symbols becomes host statements and every size is written as an expression of the variables that hold
them (kernelbench.generate.host_sizes); a region of such a size takes its element count and the sizes
its coordinates need as run-time parameters (never specialized), and is launched only when it is not
empty. Sizes are compared as expressions (equal for every value of the symbols), never by asking torch,
which would guard on data. A size the trace assumed positive
(kernelbench.generate.size_assumptions), and a branch outcome the trace followed
(kernelbench.generate.branch_guards), is checked once its values are known: where it does not hold, the
program returns `_fallback(...)` (the template's call of the reference).
With `destination`, returned values go straight into the caller's output tensors: a kernel stores
into them, a library op uses its `out=` variant, anything else is copied in.
The result is a JSON-serializable program: kernel sources and the body of a Python function
taking the problem's inputs (and, destination-passing, its outputs). What cannot be lowered raises Unsupported (the message says what).
"""

from __future__ import annotations

import heapq
import math
import operator
import re
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.fx

from kernelbench.generate import horizontal
from kernelbench.generate.branch_guards import keeps_read
from kernelbench.generate.graph import Capture
from kernelbench.generate.host_sizes import (
    SYMBOLIC,
    HostSizes,
    UnboundSize,
    is_one,
    is_symbolic,
    same_shape,
    same_size,
)

aten = torch.ops.aten
prims = torch.ops.prims

# Elements a program covers under Triton's CPU interpreter, which runs each program of a grid in Python: large
# blocks keep an evaluation practical there (a block changes the speed, never the results).
INTERPRETER_TILE = 65536
INLINE_CONSTANT_ELEMENTS = 4096   # a lifted constant tensor larger than this is not written into a solution


class Unsupported(Exception):
    """The graph cannot be lowered (the message says which node)."""


# ----------------------------------------------------------------------------- dtypes

TL = {torch.float32: "tl.float32", torch.float16: "tl.float16", torch.bfloat16: "tl.bfloat16",
      torch.float64: "tl.float64", torch.int64: "tl.int64", torch.int32: "tl.int32", torch.int16: "tl.int16",
      torch.int8: "tl.int8", torch.uint8: "tl.uint8", torch.bool: "tl.int1"}


def compute_type(dtype: torch.dtype) -> torch.dtype:
    """The type a kernel holds a value of `dtype` in: half types widen to fp32."""
    if dtype not in TL:
        raise Unsupported(f"dtype {dtype}")
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


@dataclass(frozen=True)
class Value:
    """A kernel-side value: an expression (a variable or a literal) held in `ctype`."""
    text: str
    ctype: torch.dtype
    number: Any = None     # a literal's Python value: converted by rewriting it (`2` -> `2.0`), not by a cast

    def to(self, ctype: torch.dtype) -> str:
        if ctype == self.ctype:
            return self.text
        if self.number is not None:
            return literal(self.number, ctype).text
        if ctype == torch.bool:
            return f"({self.text} != 0)"
        return f"{self.text}.to({TL[ctype]})"


def literal(value: Any, ctype: torch.dtype) -> Value:
    if ctype == torch.bool:
        return Value("True" if value else "False", torch.bool, value)
    if ctype.is_floating_point:
        number = float(value)
        text = "float('nan')" if math.isnan(number) else "float('inf')" if number == math.inf else \
            "float('-inf')" if number == -math.inf else repr(number)
        return Value(text, ctype, value)
    if isinstance(value, float) and not value.is_integer():
        raise Unsupported(f"float literal {value} in an integer op")
    return Value(str(int(value)), ctype, value)


def literal_type(value: Any) -> torch.dtype:
    """The kernel type of a Python number, or of a symbolic one read from data at run time."""
    if isinstance(value, (bool, torch.SymBool)):
        return torch.bool
    return torch.int64 if isinstance(value, (int, torch.SymInt)) else torch.float32


# ----------------------------------------------------------------------------- elementwise ops

Rule = Callable[[list[Value], dict, torch.dtype], str]   # (arguments, keyword arguments, result ctype) -> expression


def _cast_all(args: list[Value], ctype: torch.dtype) -> list[str]:
    return [a.to(ctype) for a in args]


def _math(template: str) -> Rule:
    """An arithmetic op computed in the result's type."""
    def rule(args, kwargs, ctype):
        return template.format(*_cast_all(args, ctype))
    return rule


def _float_only(template: str, integer_identity: bool = False) -> Rule:
    def rule(args, kwargs, ctype):
        if not ctype.is_floating_point:
            if integer_identity:
                return args[0].to(ctype)
            raise Unsupported("an integer operand of a float-only op")
        return template.format(*_cast_all(args, ctype))
    return rule


def _common_type(args: list[Value]) -> torch.dtype:
    types = [a.ctype for a in args]
    if torch.float64 in types:
        return torch.float64
    if any(t.is_floating_point for t in types):
        return torch.float32
    return torch.int64 if any(t != torch.bool for t in types) else torch.bool


def _compare(symbol: str) -> Rule:
    def rule(args, kwargs, ctype):
        common = _common_type(args)
        a, b = _cast_all(args, common)
        return f"({a} {symbol} {b})"
    return rule


def _logical(symbol: str) -> Rule:
    def rule(args, kwargs, ctype):
        a, b = _cast_all(args, torch.bool)
        return f"({a} {symbol} {b})"
    return rule


def _bitwise(symbol: str) -> Rule:
    def rule(args, kwargs, ctype):
        if ctype.is_floating_point:
            raise Unsupported("bitwise op on floats")
        a, b = _cast_all(args, ctype)
        return f"({a} {symbol} {b})"
    return rule


def _add(sign: str) -> Rule:
    def rule(args, kwargs, ctype):
        a, b = _cast_all(args[:2], ctype)
        alpha = kwargs.get("alpha", 1)
        scaled = b if alpha == 1 else f"({b} * {literal(alpha, ctype).text})"
        return f"({a} {sign} {scaled})"
    return rule


def _extreme(pick: str) -> Rule:
    """maximum / minimum propagating NaN as torch does."""
    def rule(args, kwargs, ctype):
        a, b = _cast_all(args, ctype)
        if ctype.is_floating_point:
            return f"tl.where(({a} {pick} {b}) | ({a} != {a}), {a}, {b})"
        return f"tl.where({a} {pick} {b}, {a}, {b})"
    return rule


def _clamp(low_at: int | None, high_at: int | None) -> Rule:
    """clamp with scalar or tensor bounds (None: no bound); NaN stays NaN."""
    def rule(args, kwargs, ctype):
        x = args[0].to(ctype)
        low = args[low_at] if low_at is not None and low_at < len(args) else None
        high = args[high_at] if high_at is not None and high_at < len(args) else None
        low = low if low is not None and low.text != "None" else None
        high = high if high is not None and high.text != "None" else None
        if low is not None:
            x = f"tl.where({x} < {low.to(ctype)}, {low.to(ctype)}, {x})"
        if high is not None:
            x = f"tl.where({x} > {high.to(ctype)}, {high.to(ctype)}, {x})"
        return x
    return rule


def _where(args, kwargs, ctype):
    condition = args[0].to(torch.bool)
    a, b = _cast_all(args[1:], ctype)
    return f"tl.where({condition}, {a}, {b})"


def _pow(args, kwargs, ctype):
    """x ** c for a literal c: exact forms for the common exponents, exp2/log2 otherwise (the sign
    restored for integer exponents)."""
    if not ctype.is_floating_point:
        raise Unsupported("integer pow")
    x, exponent = args[0].to(ctype), args[1]
    try:
        c = float(exponent.text)
    except ValueError:
        raise Unsupported("pow with a run-time exponent") from None
    exact = {2.0: f"({x} * {x})", 3.0: f"({x} * {x} * {x})", 1.0: x, 0.5: f"tl.sqrt({x})", -0.5: f"tl.rsqrt({x})",
             -1.0: f"(1.0 / {x})", -2.0: f"(1.0 / ({x} * {x}))", 0.0: f"({x} * 0.0 + 1.0)"}
    if c in exact:
        return exact[c]
    magnitude = f"tl.exp2({c!r} * tl.log2(tl.abs({x})))"
    if not c.is_integer():
        return f"tl.exp2({c!r} * tl.log2({x}))"
    return f"tl.where({x} < 0, -{magnitude}, {magnitude})" if int(c) % 2 else magnitude


def _scalar_pow(args, kwargs, ctype):
    base = float(args[0].text)
    if base <= 0:
        raise Unsupported("pow of a non-positive base")
    return f"tl.exp2({args[1].to(ctype)} * {math.log2(base)!r})"


def _tensor_pow(args, kwargs, ctype):
    """x ** y for a run-time y: exp2(y log2|x|), with torch's special cases (x ** 0 = 1 ** y = 1; a negative base
    takes an integer exponent's sign and gives NaN for any other)."""
    try:
        float(args[1].text)
    except ValueError:
        pass
    else:   # a literal exponent
        return _pow(args, kwargs, ctype)
    if not ctype.is_floating_point:
        raise Unsupported("integer pow")
    x, y = args[0].to(ctype), args[1].to(ctype)
    magnitude = f"tl.exp2({y} * tl.log2(tl.abs({x})))"
    signed = (f"tl.where(tl.floor({y}) != {y}, float('nan'), "
              f"tl.where(tl.floor({y} * 0.5) * 2.0 != {y}, -{magnitude}, {magnitude}))")
    return f"tl.where(({y} == 0.0) | ({x} == 1.0), 1.0, tl.where({x} < 0, {signed}, {magnitude}))"


def _round(args, kwargs, ctype):
    """Round half to even, as torch.round: floor, then up past .5 and at exactly .5 to the even neighbour; inf
    and NaN (no fraction) stay as they are."""
    x = args[0].to(ctype)
    if not ctype.is_floating_point:
        return x
    f = f"tl.floor({x})"
    d = f"({x} - {f})"
    rounded = f"tl.where({d} > 0.5, {f} + 1.0, tl.where({d} < 0.5, {f}, {f} + ({f} - 2.0 * tl.floor({f} * 0.5))))"
    return f"tl.where({d} == {d}, {rounded}, {x})"


def _gelu(args, kwargs, ctype):
    x = args[0].to(ctype)
    if kwargs.get("approximate", "none") == "tanh":
        return f"(0.5 * {x} * (1.0 + _tanh(0.7978845608028654 * ({x} + 0.044715 * {x} * {x} * {x}))))"
    return f"(0.5 * {x} * (1.0 + tl.erf({x} * 0.7071067811865476)))"


def _leaky_relu(args, kwargs, ctype):
    x = args[0].to(ctype)
    slope = args[1].to(ctype) if len(args) > 1 else "0.01"
    return f"tl.where({x} > 0, {x}, {x} * {slope})"


def _softplus(args, kwargs, ctype):
    x = args[0].to(ctype)
    beta = args[1].to(ctype) if len(args) > 1 else "1.0"
    threshold = args[2].to(ctype) if len(args) > 2 else "20.0"
    return f"tl.where({x} * {beta} > {threshold}, {x}, tl.log(1.0 + tl.exp({x} * {beta})) / {beta})"


def _sign(args, kwargs, ctype):
    x = args[0].to(ctype)
    return f"tl.where({x} > 0, 1, tl.where({x} < 0, -1, 0)).to({TL[ctype]})"


def _cast(args, kwargs, ctype):
    return args[0].to(ctype)


def _identity(args, kwargs, ctype):
    return args[0].to(ctype)


def _remainder(args, kwargs, ctype):
    """torch.remainder takes the divisor's sign (Python's %); Triton's integer % takes the dividend's."""
    a, b = _cast_all(args, ctype)
    if ctype.is_floating_point:
        return f"({a} - tl.floor({a} / {b}) * {b})"
    return f"tl.where((({a} % {b}) != 0) & ((({a} % {b}) < 0) != ({b} < 0)), ({a} % {b}) + {b}, {a} % {b})"


def _divide(args, kwargs, ctype):
    """True division in floats; floor and trunc modes keep integers integral (Triton's integer // truncates)."""
    mode = kwargs.get("rounding_mode")
    if not ctype.is_floating_point:
        if mode is None:
            raise Unsupported("true division into an integer result")
        a, b = _cast_all(args[:2], ctype)
        if mode == "trunc":
            return f"({a} // {b})"
        return f"tl.where((({a} % {b}) != 0) & (({a} < 0) != ({b} < 0)), {a} // {b} - 1, {a} // {b})"
    a, b = _cast_all(args[:2], ctype)
    if mode is None:
        return f"({a} / {b})"
    if mode == "floor":
        return f"tl.floor({a} / {b})"
    return f"tl.where({a} / {b} >= 0, tl.floor({a} / {b}), tl.ceil({a} / {b}))"


def _masked_fill(args, kwargs, ctype):
    x, mask, value = args[0].to(ctype), args[1].to(torch.bool), args[2].to(ctype)
    return f"tl.where({mask}, {value}, {x})"


RULES: dict[Any, Rule] = {
    aten.add.Tensor: _add("+"), aten.add.Scalar: _add("+"), aten.sub.Tensor: _add("-"), aten.sub.Scalar: _add("-"),
    aten.rsub.Scalar: lambda a, k, t: _add("-")([a[1], a[0]], k, t),
    aten.mul.Tensor: _math("({0} * {1})"), aten.mul.Scalar: _math("({0} * {1})"),
    aten.div.Tensor: _divide, aten.div.Scalar: _divide, aten.div.Tensor_mode: _divide,
    aten.neg.default: _math("(-{0})"), aten.abs.default: _math("tl.abs({0})"),
    aten.exp.default: _float_only("tl.exp({0})"), aten.exp2.default: _float_only("tl.exp2({0})"),
    aten.expm1.default: _float_only("(tl.exp({0}) - 1.0)"), aten.log.default: _float_only("tl.log({0})"),
    aten.log2.default: _float_only("tl.log2({0})"), aten.log10.default: _float_only("(tl.log({0}) * 0.4342944819032518)"),
    aten.log1p.default: _float_only("tl.log(1.0 + {0})"), aten.sqrt.default: _float_only("tl.sqrt({0})"),
    aten.rsqrt.default: _float_only("tl.rsqrt({0})"), aten.reciprocal.default: _float_only("(1.0 / {0})"),
    aten.sigmoid.default: _float_only("tl.sigmoid({0})"), aten.tanh.default: _float_only("_tanh({0})"),
    aten.sin.default: _float_only("tl.sin({0})"), aten.cos.default: _float_only("tl.cos({0})"),
    aten.erf.default: _float_only("tl.erf({0})"),
    aten.floor.default: _float_only("tl.floor({0})", True), aten.ceil.default: _float_only("tl.ceil({0})", True),
    aten.trunc.default: _float_only("tl.where({0} >= 0, tl.floor({0}), tl.ceil({0}))", True),
    aten.relu.default: _math("tl.where({0} < 0, 0, {0})"), aten.silu.default: _float_only("({0} * tl.sigmoid({0}))"),
    aten.gelu.default: _gelu, aten.leaky_relu.default: _leaky_relu, aten.softplus.default: _softplus,
    aten.sign.default: _sign, aten.sgn.default: _sign,
    aten.hardtanh.default: _clamp(1, 2),
    aten.pow.Tensor_Scalar: _pow, aten.pow.Scalar: _scalar_pow,
    aten.pow.Tensor_Tensor: _tensor_pow, aten.round.default: _round,
    aten.maximum.default: _extreme(">"), aten.minimum.default: _extreme("<"),
    aten.clamp.default: _clamp(1, 2), aten.clamp_min.default: _clamp(1, None), aten.clamp_max.default: _clamp(None, 1),
    aten.clamp.Tensor: _clamp(1, 2), aten.clamp_min.Tensor: _clamp(1, None), aten.clamp_max.Tensor: _clamp(None, 1),
    aten.where.self: _where, aten.masked_fill.Scalar: _masked_fill,
    aten.remainder.Tensor: _remainder, aten.remainder.Scalar: _remainder,
    aten.logical_not.default: lambda a, k, t: f"({a[0].to(torch.bool)} == 0)",
    aten.logical_and.default: _logical("&"), aten.logical_or.default: _logical("|"),
    aten.logical_xor.default: _logical("^"),
    aten.bitwise_and.Tensor: _bitwise("&"), aten.bitwise_or.Tensor: _bitwise("|"), aten.bitwise_xor.Tensor: _bitwise("^"),
    aten.bitwise_and.Scalar: _bitwise("&"), aten.bitwise_or.Scalar: _bitwise("|"),
    aten.bitwise_not.default: lambda a, k, t: f"({a[0].to(t)} == 0)" if t == torch.bool else f"(~{a[0].to(t)})",
    aten.isnan.default: lambda a, k, t: f"({a[0].text} != {a[0].text})",
    aten.isinf.default: lambda a, k, t: f"(tl.abs({a[0].text}) == float('inf'))",
    prims.div.default: _divide,
    aten._to_copy.default: _cast, prims.convert_element_type.default: _cast,
    aten.clone.default: _identity, aten.alias.default: _identity, aten.lift_fresh_copy.default: _identity,
}
for _name, _symbol in (("eq", "=="), ("ne", "!="), ("lt", "<"), ("le", "<="), ("gt", ">"), ("ge", ">=")):
    RULES[getattr(aten, _name).Tensor] = RULES[getattr(aten, _name).Scalar] = _compare(_symbol)

# Views that keep the element order of a contiguous tensor: inside a region they are the identity.
ORDER_KEEPING_VIEWS = {aten.view.default, aten._unsafe_view.default, aten.reshape.default, aten.unsqueeze.default,
                       aten.squeeze.dim, aten.squeeze.dims, aten.squeeze.default, aten.flatten.using_ints}
# Views that need strides which allow them (eager's layout did; a contiguous one may not).
STRIDED_VIEWS = {aten.view.default, aten._unsafe_view.default}
# Ops that launch nothing (views, metadata, Python arithmetic): not counted as launches.
NO_LAUNCH = ORDER_KEEPING_VIEWS | {
    aten.permute.default, aten.t.default, aten.transpose.int, aten.expand.default, aten.slice.Tensor,
    aten.select.int, aten.as_strided.default, aten.unfold.default, aten.diagonal.default, aten.split.Tensor,
    aten.split_with_sizes.default, aten.unbind.int, aten.detach.default, aten.alias.default, aten.sym_size.int,
    aten.sym_stride.int, aten.sym_numel.default, aten.size.default, aten.stride.default, aten.numel.default,
    aten.chunk.default, aten.narrow.default}
# Views written as Tensor methods: the same op through the method binding costs a few us less host time a call
# than through its OpOverload (benchmarks/launch_overhead.py), which launch-bound programs pay in full.
METHOD_VIEWS = {aten.view.default: "view", aten._unsafe_view.default: "view", aten.reshape.default: "reshape",
                aten.unsqueeze.default: "unsqueeze", aten.squeeze.dim: "squeeze", aten.permute.default: "permute",
                aten.t.default: "t", aten.transpose.int: "transpose", aten.expand.default: "expand",
                aten.select.int: "select", aten.split.Tensor: "split", aten.unbind.int: "unbind",
                aten.detach.default: "detach"}
CONSTANTS = {aten.full.default, aten.scalar_tensor.default, aten.zeros.default, aten.ones.default,
             aten.full_like.default, aten.zeros_like.default, aten.ones_like.default}
PYTHON_OPS = {operator.add: "operator.add", operator.sub: "operator.sub", operator.mul: "operator.mul",
              operator.truediv: "operator.truediv", operator.floordiv: "operator.floordiv",
              operator.mod: "operator.mod", operator.neg: "operator.neg", operator.getitem: "operator.getitem",
              operator.pow: "operator.pow", operator.eq: "operator.eq", operator.lt: "operator.lt",
              operator.le: "operator.le", operator.gt: "operator.gt", operator.ge: "operator.ge",
              operator.ne: "operator.ne", operator.and_: "operator.and_", operator.or_: "operator.or_",
              torch.sym_not: "operator.not_",
              math.sqrt: "math.sqrt", math.ceil: "math.ceil", math.floor: "math.floor",
              torch.sym_float: "float", torch.sym_int: "int", torch.sym_max: "max", torch.sym_min: "min"}
ATTENTION = torch.ops.kernelbench.attention.default     # registered by kernelbench.generate.graph
# graph node target -> the solution template's helper that computes it (kernelbench.generate.handwritten_attention
# adds its node)
TEMPLATE_CALLS: dict[Any, str] = {ATTENTION: "_attention"}


def lower_with(lowering, node: Any, targets, build: Callable) -> bool:
    """Lower `node` by `build(lowering, node).emit()` when its target is one of `targets`: True when done, or when
    the node is an element (getitem) of a node already lowered so; False leaves it to the library (nothing changed:
    `build` raises Unsupported before emitting anything)."""
    if node.op != "call_function":
        return False
    if node.target is operator.getitem and isinstance(node.args[0], torch.fx.Node) \
            and node.args[0].target in targets and node in lowering.names:
        return True
    if node.target not in targets:
        return False
    try:
        plan = build(lowering, node)
    except Unsupported:
        return False
    plan.emit()
    return True


def result_slots(lowering, name: str, results: list, position_of: Callable[[Any], int]) -> dict[int, str]:
    """The host variable of each output position (0 values, 1 indices) of a node with several results, each
    result named after it: a returned result is stored straight into its destination, another gets a buffer."""
    slots: dict[int, str] = {}
    for result in results:
        position = position_of(result)
        if position not in slots:
            if result in lowering.destinations:
                slots[position] = lowering.destinations[result][0]
            else:
                meta = tensor_meta(result)
                slots[position] = f"{name}_{'indices' if position else 'values'}"
                lowering.lines.append(f"{slots[position]} = torch.empty({tuple(meta.shape)}, dtype={meta.dtype}, "
                                      f"device={lowering.device})")
        lowering.names[result] = slots[position]
    return slots


def tensor_meta(node: Any) -> torch.Tensor | None:
    value = node.meta.get("val") if isinstance(node, torch.fx.Node) else None
    return value if isinstance(value, torch.Tensor) else None


def constant_value(node: torch.fx.Node) -> Any:
    """The fill value of a constant-producing node."""
    target, args = node.target, node.args
    if target in (aten.zeros.default, aten.zeros_like.default):
        return 0
    if target in (aten.ones.default, aten.ones_like.default):
        return 1
    return args[0] if target is aten.scalar_tensor.default else args[1]


# Views that pick the same elements of a tensor whatever its strides (as_strided and view read strides).
VIEWS = (NO_LAUNCH - {aten.sym_size.int, aten.sym_stride.int, aten.sym_numel.default, aten.size.default,
                      aten.stride.default, aten.numel.default, aten.as_strided.default}) | {aten.clone.default}
STRIDE_VIEWS = {aten.view.default, aten._unsafe_view.default}
CASTS = {aten._to_copy.default, prims.convert_element_type.default}


def _is_plain_cast(node: Any) -> bool:
    return (isinstance(node, torch.fx.Node) and node.op == "call_function" and node.target in CASTS
            and set(node.kwargs) <= {"dtype"} and isinstance(node.args[0], torch.fx.Node)
            and tensor_meta(node.args[0]) is not None and not is_symbolic(tensor_meta(node.args[0])))


def sink_casts_below_views(graph: torch.fx.Graph) -> None:
    """view(cast(x)) -> cast(view(x)), in place. A cast commutes with any view (they only pick
    elements), and moved below the views it joins the elementwise region that reads them, so the
    converted tensor is never written out (RoPE: `x.float().chunk(2)`; GLU: `x.float()[..., :n]`)."""
    changed = True
    while changed:
        changed = False
        for cast in list(graph.nodes):
            if not _is_plain_cast(cast) or not cast.users or any(u.target not in VIEWS for u in cast.users):
                continue
            source = cast.args[0]
            for view in list(cast.users):
                value = view.meta.get("val")
                if view.args[0] is not cast or isinstance(value, (list, tuple)) and any(
                        u.target is not operator.getitem for u in view.users):
                    break
                if view.target in STRIDE_VIEWS and not tensor_meta(source).is_contiguous():
                    break
                try:
                    moved_value = view.target(source.meta["val"], *view.args[1:], **view.kwargs)
                except Exception:  # noqa: BLE001 - a view the source's layout does not allow: leave it
                    break
                with graph.inserting_before(view):
                    moved = graph.call_function(view.target, (source, *view.args[1:]), dict(view.kwargs))
                    moved.meta["val"] = moved_value
                    pieces = [(view, moved)] if not isinstance(value, (list, tuple)) else []
                    for getter in list(view.users) if isinstance(value, (list, tuple)) else []:
                        piece = graph.call_function(operator.getitem, (moved, getter.args[1]))
                        piece.meta["val"] = moved.meta["val"][getter.args[1]]
                        pieces.append((getter, piece))
                    for old, new in pieces:
                        with graph.inserting_after(new):
                            converted = graph.call_function(cast.target, (new, *cast.args[1:]), dict(cast.kwargs))
                        converted.meta["val"] = new.meta["val"].to(tensor_meta(cast).dtype)
                        old.replace_all_uses_with(converted)
                for old, _ in reversed(pieces):
                    if old is not view:
                        graph.erase_node(old)
                graph.erase_node(view)
                changed = True
            if not cast.users:
                graph.erase_node(cast)


def hoist_casts_above_concatenation(graph: torch.fx.Graph) -> None:
    """cast(cat([a, b])) -> cat([cast(a), cast(b)]), in place, when the cast is the concatenation's
    only reader: each cast joins the region that produced its piece, and the concatenation moves the
    narrower type (and, as a returned value, writes straight into its destination)."""
    for cast in list(graph.nodes):
        if not _is_plain_cast(cast):
            continue
        joined = cast.args[0]
        if joined.target not in (aten.cat.default, aten.stack.default) or len(joined.users) != 1:
            continue
        pieces = joined.args[0]
        if not all(isinstance(p, torch.fx.Node) and tensor_meta(p) is not None for p in pieces):
            continue
        dtype = tensor_meta(cast).dtype
        converted = []
        with graph.inserting_before(joined):
            for piece in pieces:
                c = graph.call_function(cast.target, (piece, *cast.args[1:]), dict(cast.kwargs))
                c.meta["val"] = piece.meta["val"].to(dtype)
                converted.append(c)
            moved = graph.call_function(joined.target, (converted, *joined.args[1:]), dict(joined.kwargs))
            moved.meta["val"] = joined.target([c.meta["val"] for c in converted], *joined.args[1:], **joined.kwargs)
        cast.replace_all_uses_with(moved)
        graph.erase_node(cast)
        graph.erase_node(joined)


COPY_OF = "kernelbench_copy_of"   # node.meta key: the node a producer copied per reader copies (remap.py)


def merge_duplicates(graph: torch.fx.Graph) -> None:
    """Nodes computing the same op of the same arguments become one, in place (sinking a cast below two
    views of one value leaves two equal casts: each would be computed and stored)."""
    seen: dict[tuple, torch.fx.Node] = {}
    for node in list(graph.nodes):
        if node.op != "call_function" or not isinstance(node.target, torch._ops.OpOverload) \
                or torch.Tag.nondeterministic_seeded in node.target.tags or node.target._schema.is_mutable:
            continue
        key = (node.target, repr(node.args), repr(sorted(node.kwargs.items(), key=lambda kv: kv[0])))
        if key in seen:
            node.replace_all_uses_with(seen[key])
            graph.erase_node(node)
        else:
            seen[key] = node


def reduce_unindexed_extremes(graph: torch.fx.Graph) -> None:
    """max / min along a dimension whose indices nobody reads become amax / amin, in place: a row reduction that
    row regions fuse with its prologue (max pooling's window gather), where a selection with indices is not."""
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target not in (aten.max.dim, aten.min.dim) or any(
                u.target is not operator.getitem or u.args[1] != 0 for u in node.users):
            continue
        args = list(node.args) + [False] * (3 - len(node.args))
        keepdim = node.kwargs.get("keepdim", args[2])
        with graph.inserting_before(node):
            reduced = graph.call_function(aten.amax.default if node.target is aten.max.dim else aten.amin.default,
                                          (args[0], [args[1]], keepdim))
        for user in list(node.users):
            reduced.meta.update(user.meta)
            user.replace_all_uses_with(reduced)
            graph.erase_node(user)
        graph.erase_node(node)


def op_path(op: torch._ops.OpOverload) -> str:
    return f"torch.ops.{op.namespace}.{op._schema.name.split('::')[-1]}.{op._overloadname}"


def out_variant(op: torch._ops.OpOverload) -> torch._ops.OpOverload | None:
    """The overload of `op` that writes its one tensor result into `out=` and otherwise takes the
    same arguments (mm -> mm.out, sum.dim_IntList -> sum.IntList_out), or None."""
    schema = op._schema
    if len(schema.returns) != 1 or str(schema.returns[0].type) != "Tensor":
        return None
    # names and types: sum.DimnameList_out has sum.IntList_out's names, and torch 2.11 lists it first
    signature = [(a.name, str(a.type)) for a in schema.arguments]
    for overload_name in op.overloadpacket.overloads():
        candidate = getattr(op.overloadpacket, overload_name)
        arguments = candidate._schema.arguments
        outs = [a for a in arguments if a.is_out]
        if len(outs) == 1 and outs[0].name == "out" and \
                [(a.name, str(a.type)) for a in arguments if not a.is_out] == signature:
            return candidate
    return None


# ----------------------------------------------------------------------------- partition

@dataclass(eq=False)   # identity: a region is a set of nodes being grown, compared by who it is
class Region:
    nodes: list[torch.fx.Node] = field(default_factory=list)
    mask: int = 0                                 # bit i: node i of the graph is a member

    def add(self, node: torch.fx.Node, index: int) -> None:
        self.nodes.append(node)
        self.mask |= 1 << index

    def split(self, late: Callable[[torch.fx.Node], bool], index: dict) -> list:
        """Finer parts that together hold the region's members: those that are not `late`, and those that are."""
        parts = []
        for side in (False, True):
            part = Region()
            for member in self.nodes:
                if late(member) == side:
                    part.add(member, index[member])
            parts.append(part)
        return parts


def strongly_connected(successors: dict[Any, set]) -> list[list]:
    """The strongly connected components of a directed graph (Tarjan's algorithm, without recursion)."""
    order: dict[Any, int] = {}
    low: dict[Any, int] = {}
    stack: list = []
    on_stack: set = set()
    components: list[list] = []
    for root in successors:
        if root in order:
            continue
        order[root] = low[root] = len(order)
        stack.append(root)
        on_stack.add(root)
        work = [(root, iter(successors[root]))]
        while work:
            node, pending = work[-1]
            for successor in pending:
                if successor not in order:
                    order[successor] = low[successor] = len(order)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(successors[successor])))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], order[successor])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == order[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member is node:
                            break
                    components.append(component)
    return components


class Partition:
    """Elementwise ops grouped into convex regions of equal element count."""

    def __init__(self, graph: torch.fx.Graph):
        self.nodes = list(graph.nodes)
        self.index = {n: i for i, n in enumerate(self.nodes)}
        self.elementwise = {n for n in self.nodes if self.is_elementwise(n)}
        self.inline = {n for n in self.nodes if self.is_inline_constant(n)}
        self.ancestors: dict[torch.fx.Node, int] = {}
        for node in self.nodes:
            mask = 0
            if node not in self.inline:   # a folded constant depends on nothing at run time
                for arg in node.all_input_nodes:
                    mask |= self.ancestors[arg] | (1 << self.index[arg])
            self.ancestors[node] = mask
        self.region_of: dict[torch.fx.Node, Region] = {}
        for node in self.nodes:
            if node in self.elementwise or self.is_absorbed_view(node):
                self.place(node)
        self.regions = list({id(r): r for r in self.region_of.values()}.values())
        self.merge_siblings()

    def is_elementwise(self, node: torch.fx.Node) -> bool:
        """An op in RULES on tensors of kernel dtypes whose rule accepts these operand types."""
        from kernelbench.generate import gathers  # built on this module
        if node.op == "call_function" and node.target in gathers.GATHERS:   # elementwise over its output
            return gathers.is_gather(node)
        if node.op == "call_function" and node.target is gathers.scatter_add_into:   # over the added values
            return gathers.is_scatter(node)
        meta = tensor_meta(node)
        if node.op != "call_function" or node.target not in RULES or meta is None or meta.dtype not in TL:
            return False
        if node.target is aten._to_copy.default and set(node.kwargs) - {"dtype", "layout", "device", "memory_format"}:
            return False
        try:
            operands = [_operand_type(a) for a in node.args]
            keywords = {k: v for k, v in node.kwargs.items() if not isinstance(v, torch.fx.Node)}
            RULES[node.target](operands, keywords, compute_type(meta.dtype))
        except Unsupported:
            return False
        return True

    def is_inline_constant(self, node: torch.fx.Node) -> bool:
        meta = tensor_meta(node)
        return (node.op == "call_function" and node.target in CONSTANTS and meta is not None and meta.dtype in TL
                and not is_symbolic(meta) and not isinstance(constant_value(node), torch.fx.Node)
                and bool(node.users) and all(u in self.elementwise for u in node.users))

    def is_absorbed_view(self, node: torch.fx.Node) -> bool:
        if node.op != "call_function" or node.target not in ORDER_KEEPING_VIEWS:
            return False
        source = node.args[0]
        return isinstance(source, torch.fx.Node) and source in self.region_of

    def place(self, node: torch.fx.Node) -> None:
        from kernelbench.generate import gathers  # built on this module
        numel = tensor_meta(node).numel()
        producers = []
        for arg in gathers.index_inputs(node) if node.target in gathers.GATHERS else \
                gathers.scatter_inputs(node) if node.target is gathers.scatter_add_into else node.all_input_nodes:
            region = self.region_of.get(arg)
            if region is not None and same_size(tensor_meta(arg).numel(), numel) and region not in producers:
                if same_shape(tensor_meta(arg).shape, tensor_meta(node).shape) or self.is_absorbed_view(node) \
                        or _is_contiguous_prefix_broadcast(tensor_meta(arg), tensor_meta(node)):
                    producers.append(region)
        producers.sort(key=lambda r: -len(r.nodes))
        for choice in ([producers] if producers else []) + [[r] for r in producers]:
            merged = Region()
            for region in choice:
                for member in region.nodes:
                    merged.add(member, self.index[member])
            merged.add(node, self.index[node])
            if self.convex(merged) and not gathers.table_inside(merged.nodes):
                merged.nodes.sort(key=self.index.__getitem__)
                for member in merged.nodes:
                    self.region_of[member] = merged
                return
        if self.is_absorbed_view(node):
            return   # the view stays an aten call on the region's output
        fresh = Region()
        fresh.add(node, self.index[node])
        self.region_of[node] = fresh

    def merge_siblings(self) -> None:
        """Regions of equal element count that read the same outside tensor become one kernel (when still
        convex): the tensor is read once and a launch is saved."""
        from kernelbench.generate import gathers  # built on this module

        def numel(region: Region) -> int:
            return tensor_meta(region.nodes[-1]).numel()

        def copies_of_one(a: Region, b: Region) -> bool:   # copies made for different readers stay apart
            copied = {n.meta[COPY_OF] for n in a.nodes if COPY_OF in n.meta}
            return any(n.meta.get(COPY_OF) in copied for n in b.nodes)

        def external_inputs(region: Region) -> set[torch.fx.Node]:
            return {a for n in region.nodes for a in n.all_input_nodes
                    if a not in self.region_of or self.region_of[a] is not region} - self.inline

        readers: dict[torch.fx.Node, list[Region]] = {}
        for region in self.regions:
            for node in external_inputs(region):
                readers.setdefault(node, []).append(region)
        for group in readers.values():
            live = list(dict.fromkeys(self.region_of[r.nodes[0]] for r in group))   # earlier merges applied
            for i, base in enumerate(live):
                if base is None:
                    continue
                for j in range(i + 1, len(live)):
                    other = live[j]
                    if other is None or not same_size(numel(other), numel(base)) or copies_of_one(base, other):
                        continue
                    merged = Region()
                    for member in sorted(base.nodes + other.nodes, key=self.index.__getitem__):
                        merged.add(member, self.index[member])
                    if self.convex(merged) and not gathers.table_inside(merged.nodes):
                        for member in merged.nodes:
                            self.region_of[member] = merged
                        base, live[j] = merged, None
        self.regions = list({id(r): r for r in self.region_of.values()}.values())

    def split_cycles(self) -> None:
        """Make the regions, as super-nodes, a DAG. Each region is convex, yet two can still feed each other
        through different members (A -> mm -> B and B -> mm -> A). In such a cycle, the region holding its
        earliest node is split into the members that depend on no other item of the cycle (the earliest node
        among them) and those that do (a member reading an item of the cycle among them): both halves stay
        convex, and each split adds an item, so it ends, at worst with single nodes (the graph is a DAG)."""
        while (cycle := self.cycle()):
            first = min((n for item in cycle for n in self.members(item)), key=self.index.__getitem__)
            region = self.region_of[first]
            others = 0
            for item in cycle:
                if item is not region:
                    for member in self.members(item):
                        others |= 1 << self.index[member]
            for part in region.split(lambda n: bool(self.ancestors[n] & others), self.index):
                for member in self.members(part):
                    if isinstance(part, Region):
                        self.region_of[member] = part
                    else:   # a part that is no region (a reduction a row region joined): a library call again
                        del self.region_of[member]
            self.regions = list({id(r): r for r in self.region_of.values()}.values())

    @staticmethod
    def members(item: Any) -> list[torch.fx.Node]:
        if isinstance(item, Region):
            return item.nodes
        return item if isinstance(item, list) else [item]

    def cycle(self) -> list | None:
        """A strongly connected set of two or more items (regions and the nodes outside them), if any."""
        def owner(node: torch.fx.Node) -> Any:
            return self.region_of.get(node, node)

        successors: dict[Any, set] = {}
        for node in self.nodes:
            if node.op == "placeholder" or node in self.inline:
                continue
            successors.setdefault(owner(node), set())
            for arg in node.all_input_nodes:
                if arg.op != "placeholder" and arg not in self.inline and owner(arg) is not owner(node):
                    successors.setdefault(owner(arg), set()).add(owner(node))
        return next((c for c in strongly_connected(successors) if len(c) > 1), None)

    def convex(self, region: Region) -> bool:
        """No path from the region through an outside node back into it."""
        reach = 0
        for member in region.nodes:
            reach |= self.ancestors[member]
        outside = reach & ~region.mask
        while outside:
            low = outside & -outside
            node = self.nodes[low.bit_length() - 1]
            if self.ancestors[node] & region.mask:
                return False
            outside ^= low
        return True


def rounded_as_eager(expression: str, node: torch.fx.Node) -> str:
    """An elementwise node's expression, rounded to its half-precision type and widened back: eager
    rounds every half-precision result, so the kernel does too, or its values drift from the reference's
    by the rounding it skipped (past tolerance once a sum adds them up). Copies round nothing."""
    dtype = tensor_meta(node).dtype
    if dtype in (torch.float16, torch.bfloat16) and node.target not in (aten.clone.default, aten.alias.default):
        return f"({expression}).to({TL[dtype]}).to(tl.float32)"
    return expression


def _known_contiguous(meta: torch.Tensor) -> bool:
    try:
        return bool(meta.is_contiguous())
    except Exception:  # noqa: BLE001 - strides of data-dependent sizes: no telling
        return False


def _contiguous_meta(meta: torch.Tensor | None) -> torch.Tensor | None:
    """A meta tensor of the value's shape and type, contiguous (None where the sizes are data-dependent)."""
    if meta is None or is_symbolic(meta):
        return None
    return torch.empty(tuple(meta.shape), dtype=meta.dtype, device="meta")


def _meta_of(node: torch.fx.Node) -> Any:
    """A node's traced value with meta tensors for its tensors (strides kept), for replaying ops on it."""
    def meta(value):
        if isinstance(value, torch.Tensor):
            return torch.empty_strided(tuple(value.shape), value.stride(), dtype=value.dtype, device="meta")
        return value
    return torch.utils._pytree.tree_map(meta, node.meta.get("val"))


def _operand_type(arg: Any) -> Value:
    """A stand-in operand of the right type, for asking a rule whether it accepts a node."""
    if isinstance(arg, torch.fx.Node):
        meta = tensor_meta(arg)
        if meta is not None:
            if meta.dtype not in TL:
                raise Unsupported(f"dtype {meta.dtype}")
            return Value("x", compute_type(meta.dtype))
        value = arg.meta.get("val")
        if isinstance(value, (list, tuple)):
            raise Unsupported("a list operand")
        return Value("p", literal_type(value) if isinstance(value, (bool, int, float, *SYMBOLIC)) else torch.float32)
    if arg is None or isinstance(arg, str):
        return Value(repr(arg), torch.float32)
    if isinstance(arg, (bool, int, float)):
        return literal(arg, literal_type(arg))
    raise Unsupported(f"operand {arg!r}")


def _is_contiguous_prefix_broadcast(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same element count and shapes equal up to size-1 dimensions (a view the flat index does not notice)."""
    return same_shape([s for s in a.shape if not is_one(s)], [s for s in b.shape if not is_one(s)])


# ----------------------------------------------------------------------------- emission

@dataclass
class KernelInput:
    node: torch.fx.Node
    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype


def strided_load(entry: KernelInput, shape: tuple, consumer_shape: tuple, coordinate: Callable[[int], str], flat: str,
                 mask: str, var: str, ctype: torch.dtype, size: Callable[[Any], str] = str) -> list[str]:
    """The lines loading `entry` into `var` at its consumer's coordinates (`coordinate(dim)` names one; a
    broadcast dimension reads with stride 0): a contiguous fast path (`flat` when the shapes agree) chosen by
    the constexpr C_<input> at launch, else the run-time strides."""
    offset = len(consumer_shape) - len(shape)
    if offset < 0:
        raise Unsupported("an input of higher rank than its consumer")
    static_terms, runtime_terms = [], []
    for d in range(len(shape)):
        if is_one(shape[d]):
            continue
        if not same_size(shape[d], consumer_shape[offset + d]):
            raise Unsupported(f"shape {shape} read at {consumer_shape}")
        c = coordinate(offset + d)
        inner = math.prod(shape[d + 1:])
        static_terms.append(c if is_one(inner) else f"{c} * {size(inner)}")
        runtime_terms.append(f"{c} * {entry.name}_s{d}")
    fast = flat if same_shape(shape, consumer_shape) else (" + ".join(static_terms) or "0")
    slow = " + ".join(runtime_terms) or "0"
    return [f"if C_{entry.name}:", f"    {var} = tl.load({entry.name} + {fast}, mask={mask}).to({TL[ctype]})",
            "else:", f"    {var} = tl.load({entry.name} + {slow}, mask={mask}).to({TL[ctype]})"]


class Lowering:
    def __init__(self, capture: Capture, prefix: str, destination: bool, attention_kernels: bool = False):
        self.capture = capture
        self.attention_kernels = attention_kernels   # attention calls run generated kernels (family attention)
        module = capture.module
        from kernelbench.generate import constant_folding, gathers, remap, rowfusion  # built on this module
        constant_folding.fold_input_free(module)
        module.graph.eliminate_dead_code(lambda n: n.is_impure() or keeps_read(n, capture.guards))
        gathers.rewrite_bags(module.graph)
        gathers.rewrite_scatters(module.graph)
        sink_casts_below_views(module.graph)
        hoist_casts_above_concatenation(module.graph)
        merge_duplicates(module.graph)
        reduce_unindexed_extremes(module.graph)
        remap.duplicate_shared_producers(module.graph)
        self.module = module
        self.prefix = prefix
        self.partition = Partition(module.graph)
        rowfusion.fuse_rows(self.partition)
        remap.fuse(self.partition)
        self.partition.split_cycles()
        self.copied_views = self.views_to_copy()
        self.names: dict[torch.fx.Node, str] = {}
        self.lines: list[str] = []
        self.kernels: list[dict] = []
        self.launches = 0
        self.flat_launches: dict[int, horizontal.FlatLaunch] = {}   # line index -> a flat kernel's launch there
        self.constants: list[dict] = []
        self.scalar_names = {}
        self.sizes = HostSizes()   # symbols of a data-dependent graph -> the variables that hold them
        placeholders = [n for n in module.graph.nodes if n.op == "placeholder"]
        self.parameters = [f"a{i}" for i in range(len(placeholders))]
        for node, name, input_name in zip(placeholders, self.parameters, capture.inputs):
            self.names[node] = name
            if input_name in capture.scalar_inputs:
                self.scalar_names[node] = name
        self.destinations: dict[torch.fx.Node, list[str]] = {}   # graph output -> the o<i> it is written to
        self.outputs: list[str] = []
        if destination:
            returned = next(n for n in module.graph.nodes if n.op == "output").args[0]
            returned = list(returned) if isinstance(returned, (tuple, list)) else [returned]
            for i, value in enumerate(returned):
                if not isinstance(value, torch.fx.Node) or tensor_meta(value) is None:
                    raise Unsupported(f"output {i} is not a tensor")
                self.destinations.setdefault(value, []).append(f"o{i}")
            self.outputs = [f"o{i}" for i in range(len(returned))]
        tensors = [n for n in placeholders if n not in self.scalar_names]
        if not tensors:
            raise Unsupported("no tensor input to take the device from")
        self.device = f"{self.names[tensors[0]]}.device"

    def views_to_copy(self) -> set[torch.fx.Node]:
        """The views that the values' run-time strides do not allow, though the trace's did. A kernel stores a
        region's values contiguous, where eager may have kept an input's permuted layout (an elementwise op
        follows its input's strides): what is computed from such a value is replayed on meta tensors laid
        out as at run time, and a view that fails there copies (as does one of a value of unknown layout)."""
        layouts: dict[torch.fx.Node, Any] = {}   # value -> its run-time layout where not the trace's (None: unknown)
        copies = set()
        for node in self.partition.nodes:
            meta = tensor_meta(node)
            if node in self.partition.region_of:
                if meta is not None and not _known_contiguous(meta):
                    layouts[node] = _contiguous_meta(meta)
                continue
            if not any(a in layouts for a in node.all_input_nodes) or node.op != "call_function":
                continue
            try:
                if any(a in layouts and layouts[a] is None for a in node.all_input_nodes):
                    raise Unsupported("an operand of unknown layout")
                args, kwargs = torch.fx.node.map_arg((node.args, node.kwargs),
                                                     lambda a: layouts[a] if a in layouts else _meta_of(a))
                layout = node.target(*args, **kwargs)
            except Exception:  # noqa: BLE001 - impossible on these strides, or no telling
                layout = None
            if layout is None and node.target in STRIDED_VIEWS:
                copies.add(node)
                layout = _contiguous_meta(meta)
            if not isinstance(layout, torch.Tensor) or meta is None or layout.stride() != meta.stride():
                layouts[node] = layout
        return copies

    # ------------------------------------------------------------------ order

    def items(self) -> list:
        """Regions and the remaining nodes in an order that respects every dependency."""
        owner: dict[torch.fx.Node, Any] = {}
        items: list = []
        for node in self.partition.nodes:
            if node.op == "placeholder" or node in self.partition.inline:
                continue
            region = self.partition.region_of.get(node)
            if region is None:
                owner[node] = node
                items.append(node)
            elif region.nodes[0] is node:
                items.append(region)
            if region is not None:
                owner[node] = region
        position = {id(item): i for i, item in enumerate(items)}
        members = {id(item): (item.nodes if isinstance(item, Region) else [item]) for item in items}
        needs = {id(item): set() for item in items}
        for item in items:
            for member in members[id(item)]:
                for arg in member.all_input_nodes:
                    producer = owner.get(arg)
                    if producer is not None and producer is not item:
                        needs[id(item)].add(id(producer))
        users: dict[int, set] = {id(item): set() for item in items}
        for key, required in needs.items():
            for r in required:
                users[r].add(key)
        waiting = {key: len(required) for key, required in needs.items()}
        ready = [(position[k], k) for k, n in waiting.items() if n == 0]
        heapq.heapify(ready)
        by_id = {id(item): item for item in items}
        ordered = []
        while ready:
            _, key = heapq.heappop(ready)
            ordered.append(by_id[key])
            for user in users[key]:
                waiting[user] -= 1
                if waiting[user] == 0:
                    heapq.heappush(ready, (position[user], user))
        if len(ordered) != len(items):
            raise Unsupported("the regions form a cycle")
        return ordered

    # ------------------------------------------------------------------ host code

    def argument(self, value: Any) -> str:
        if isinstance(value, torch.fx.Node):
            if value in self.partition.inline:
                return self.constant_tensor(value)
            return self.names[value]
        if isinstance(value, (list, tuple)):
            inner = ", ".join(self.argument(v) for v in value)
            return f"[{inner}]" if isinstance(value, list) else f"({inner}{',' if len(value) == 1 else ''})"
        if isinstance(value, torch.dtype):
            return str(value)
        if isinstance(value, torch.device):
            return self.device
        if isinstance(value, torch.layout):
            return str(value)
        if isinstance(value, SYMBOLIC):
            return self.size_text(value)
        if isinstance(value, torch.memory_format):
            return str(value)
        if isinstance(value, float):
            return literal(value, torch.float32).text
        if value is None or isinstance(value, (bool, int, str)):
            return repr(value)
        raise Unsupported(f"argument {value!r} of type {type(value).__name__}")

    def size_text(self, value: Any) -> str:
        try:
            return self.sizes.text(value)
        except UnboundSize as exc:
            raise Unsupported(str(exc)) from None

    def shape_text(self, shape) -> str:
        if all(isinstance(s, int) for s in shape):
            return str(tuple(shape))
        return "(" + "".join(f"{self.size_text(s)}, " for s in shape) + ")"

    def constant_tensor(self, node: torch.fx.Node) -> str:
        """An inline constant also read by an aten call (only when a region could not take it)."""
        meta = tensor_meta(node)
        return (f"torch.full({list(meta.shape)}, {self.argument(constant_value(node))}, dtype={meta.dtype}, "
                f"device={self.device})")

    def statement(self, node: torch.fx.Node) -> None:
        name = f"v{self.partition.index[node]}"
        self.names[node] = name
        target = node.target
        from kernelbench.generate import gathers  # built on this module
        if gathers.handles(self, node):
            gathers.scatter_statement(self, node)
            return
        arguments = [self.argument(a) for a in node.args]
        arguments += [f"{k}={self.argument(v)}" for k, v in node.kwargs.items()]
        if node.op == "get_attr":
            self.lines.append(f"{name} = {self.attribute(node)}")
            return
        if node.op != "call_function":
            raise Unsupported(f"{node.op} node {node.name}")
        if target is gathers.embedding_bag:
            gathers.emit_bag(self, node)
            return
        if target in TEMPLATE_CALLS:
            self.lines.append(f"{name} = {TEMPLATE_CALLS[target]}({', '.join(arguments)})")
            self.launches += 1
            return
        if isinstance(target, torch._ops.OpOverload):
            if "cpu" in target._schema.name:   # traced on the CPU, the solution runs on the GPU
                raise Unsupported(f"{target._schema.name} exists on the CPU only")
            arguments = self.scalars_as_tensors(node, arguments)
            variant = out_variant(target) if node in self.destinations else None
            if variant is not None:   # the library writes the returned value straight into its destination
                self.names[node] = self.destinations[node][0]
                self.lines.append(f"{op_path(variant)}({', '.join(arguments)}, out={self.names[node]})")
                self.launches += 1
                return
            if node in self.copied_views:
                target = aten.reshape.default   # the same values, copied: the strides do not allow a view
            call = op_path(target)
            if target in METHOD_VIEWS and not node.kwargs:
                call = f"{arguments.pop(0)}.{METHOD_VIEWS[target]}"
            if target not in NO_LAUNCH:
                self.launches += 1
        elif target in PYTHON_OPS:
            call = PYTHON_OPS[target]
        else:
            raise Unsupported(f"call of {getattr(target, '__name__', target)}")
        self.lines.append(f"{name} = {call}({', '.join(arguments)})")

    def scalars_as_tensors(self, node: torch.fx.Node, arguments: list[str]) -> list[str]:
        """`arguments` with each Python-scalar input that the op takes as a Tensor made the 0-d CPU tensor it
        was traced as (`rope_theta ** exponents` is pow.Tensor_Tensor there); torch lets a 0-d CPU tensor
        meet tensors of any device, as it did in the trace."""
        def takes_tensor(argument) -> bool:   # Tensor or Tensor?
            kind = argument.type
            return isinstance(kind.getElementType() if isinstance(kind, torch.OptionalType) else kind,
                              torch.TensorType)

        schema = node.target._schema.arguments
        tensor_at = {i for i, a in enumerate(schema) if takes_tensor(a)}
        tensor_named = {a.name for a in schema if takes_tensor(a)}
        keys = [None] * len(node.args) + list(node.kwargs)
        values = list(node.args) + list(node.kwargs.values())
        wrapped = []
        for i, (key, value, text) in enumerate(zip(keys, values, arguments)):
            if value in self.scalar_names and (i in tensor_at if key is None else key in tensor_named):
                dtype = tensor_meta(value).dtype
                text = (f"{key}=" if key else "") + f"torch.tensor({self.scalar_names[value]}, dtype={dtype})"
            wrapped.append(text)
        return wrapped

    def attribute(self, node: torch.fx.Node) -> str:
        value = getattr(self.module, node.target)
        if not isinstance(value, torch.Tensor) or value.numel() > INLINE_CONSTANT_ELEMENTS:
            raise Unsupported(f"a constant tensor {node.target} too large to write into a solution")
        self.constants.append({"values": value.detach().cpu().flatten().tolist(), "shape": list(value.shape),
                               "dtype": str(value.dtype)})
        return f"_constant({len(self.constants) - 1}, {self.device})"

    # ------------------------------------------------------------------ kernels

    def region(self, region: Region) -> None:
        from kernelbench.generate import gathers, remap  # built on this module
        k = len(self.kernels)
        kernel = f"{self.prefix}_k{k}"
        members = set(region.nodes)
        inputs: dict[torch.fx.Node, KernelInput] = {}
        scalars: dict[str, str] = {}     # host expression -> kernel parameter
        outputs = [n for n in region.nodes if n.users.keys() - members - self.partition.inline
                   and n.target is not gathers.scatter_add_into]   # a sink's values go into its accumulator
        # flat: every member has one element count and is computed at the kernel's index; else the kernel's
        # domain is the element count of the values it stores (kernelbench.generate.remap)
        numel = tensor_meta(region.nodes[-1]).numel() if tensor_meta(region.nodes[-1]) is not None else None
        flat = numel is not None and not remap.has_remaps(region.nodes) and all(
            tensor_meta(n) is not None and same_size(tensor_meta(n).numel(), numel) for n in region.nodes)
        if not flat:
            if not outputs or any(tensor_meta(n) is None for n in outputs):
                raise Unsupported("a region that stores no tensor")
            numel = tensor_meta(outputs[0]).numel()
            if any(not same_size(tensor_meta(n).numel(), numel) for n in outputs):
                raise Unsupported("stored values of different element counts")
        body: list[str] = []

        def size(value) -> str:
            """A size in the kernel: a literal, or a parameter where it is known at run time only."""
            return str(value) if isinstance(value, int) else scalar(self.size_text(value), torch.int64).text

        def register(arg: torch.fx.Node) -> KernelInput:
            if arg not in inputs:
                meta = tensor_meta(arg)
                inputs[arg] = KernelInput(arg, f"in{len(inputs)}", tuple(meta.shape), meta.dtype)
            return inputs[arg]

        def other(arg: Any) -> Value:
            """An operand that is not a tensor read or computed by the kernel."""
            if isinstance(arg, torch.fx.Node):
                if arg in self.partition.inline:
                    meta = tensor_meta(arg)
                    return literal(constant_value(arg), compute_type(meta.dtype))
                if arg in self.scalar_names:
                    return scalar(self.scalar_names[arg], compute_type(tensor_meta(arg).dtype))
                value = arg.meta.get("val")
                return scalar(self.names[arg], literal_type(value) if isinstance(value, (int, float, bool, *SYMBOLIC))
                              else torch.float32)
            if arg is None or isinstance(arg, str):
                return Value(repr(arg), torch.float32)
            if isinstance(arg, torch.dtype):
                return Value(str(arg), torch.float32)
            return literal(arg, literal_type(arg))

        def scalar(host: str, kind: torch.dtype) -> Value:
            """A Python number known only at run time: a kernel parameter (never specialized)."""
            parameter = scalars.setdefault(host, f"p{len(scalars)}")
            return Value(parameter, torch.float32 if kind.is_floating_point else
                         torch.bool if kind == torch.bool else torch.int64)

        emitter = remap.Emitter(self.partition, members, body, register, other, size, len(self.partition.nodes),
                                 self.scalar_names)
        # every member at the kernel's own index, in order (a sink stores as it is computed); with remapping,
        # what the stored values need, where they need it
        for node in region.nodes if flat else outputs:
            emitter.value(node, remap.identity(node), "mask")
        for i, node in enumerate(outputs):
            value = emitter.value(node, remap.identity(node), "mask")
            body.append(f"tl.store(out{i} + offs, {value.to(compute_type(tensor_meta(node).dtype))}"
                        f".to({TL[tensor_meta(node).dtype]}), mask=mask)")

        largest = [tensor_meta(n).numel() for n in list(members) + list(inputs) if tensor_meta(n) is not None]
        index_type = "tl.int64" if any(not isinstance(n, int) or n >= 2 ** 31 for n in largest) else "tl.int32"
        bound = size(numel)
        tensor_inputs = list(inputs.values())
        parameters = [e.name for e in tensor_inputs] + list(scalars.values()) + [f"out{i}" for i in range(len(outputs))]
        for entry in tensor_inputs:
            parameters += [f"{entry.name}_s{d}" for d in range(len(entry.shape))]
        parameters += [f"C_{e.name}: tl.constexpr" for e in tensor_inputs] + ["BLOCK: tl.constexpr"]
        header = [f"offs = tl.program_id(0).to({index_type}) * BLOCK + tl.arange(0, BLOCK)", f"mask = offs < {bound}"]
        shapes = {node: self.shape_text(tensor_meta(node).shape) for node in outputs}
        self.kernels.append({"name": kernel, "parameters": parameters, "body": header + canonical_names(body),
                             "unspecialized": list(scalars.values()),
                             "uses_tanh": any("_tanh(" in line for line in body)})

        for i, node in enumerate(outputs):
            meta = tensor_meta(node)
            name = f"v{self.partition.index[node]}"
            if node in self.destinations:   # a returned value is stored straight into its destination
                self.names[node] = self.destinations[node][0]
                continue
            self.names[node] = name
            self.lines.append(f"{name} = torch.empty({shapes[node]}, dtype={meta.dtype}, device={self.device})")
        if isinstance(numel, int) and numel == 0:
            return
        launch = ""
        if not isinstance(numel, int):   # a size known at run time may be zero: no launch then
            self.lines.append(f"if {self.size_text(numel)} > 0:")
            launch = "    "
        arguments = [self.names[e.node] for e in tensor_inputs] + list(scalars) + \
            [self.names[n] for n in outputs]
        arguments += [f"*{self.names[e.node]}.stride()" for e in tensor_inputs if len(e.shape)]
        keywords = [f"C_{e.name}={self.names[e.node]}.is_contiguous()" for e in tensor_inputs]
        # a candidate for horizontal fusion with its neighbours, unless it also writes into a tensor it reads (a
        # scatter sink's accumulator), which no other kernel may read in the same launch
        if isinstance(numel, int) and not any(n.target is gathers.scatter_add_into for n in region.nodes):
            self.flat_launches[len(self.lines)] = horizontal.FlatLaunch(
                self.kernels[-1], str(numel), arguments, keywords, [self.names[n] for n in outputs])
        self.lines.append(f"{launch}_lean({kernel})[(_cdiv({self.size_text(numel)}, _BLOCK),)]"
                          f"({', '.join(arguments + keywords)}, BLOCK=_BLOCK, num_warps=_WARPS)")
        self.launches += 1

    # ------------------------------------------------------------------ whole program

    def fused(self, region: Region) -> None:
        """A region's kernel; what cannot be lowered falls back piece by piece (a row region to the parts
        it joined, a flat region to aten calls)."""
        from kernelbench.generate import rowfusion, scans  # built on this module
        try:
            if isinstance(region, rowfusion.RowRegion):
                rowfusion.emit_row_region(self, region)
            else:
                self.region(region)
        except Unsupported:   # e.g. a run-time exponent
            if isinstance(region, rowfusion.RowRegion):
                for part in rowfusion.ordered_parts(region):
                    if isinstance(part, Region):
                        self.fused(part)
                    else:
                        for node in part:
                            if not scans.lowered(self, node):   # a scan alone is still a generated kernel
                                self.statement(node)
            else:
                for node in region.nodes:
                    self.statement(node)

    def fall_back_unless(self, condition: str) -> None:
        self.lines.append(f"if not {condition}:")
        self.lines.append(f"    return _fallback({', '.join(self.parameters + self.outputs)})")

    def lower(self) -> dict:
        from kernelbench.generate import scans, selection  # built on this module
        guards = list(self.capture.guards)
        for item in self.items():
            if isinstance(item, Region):
                self.fused(item)
            elif item.op == "output" and self.destinations:
                for node, slots in self.destinations.items():
                    for slot in slots:
                        if self.names[node] != slot:   # not stored there by a kernel: an aten result or an input
                            self.lines.append(f"{slot}.copy_({self.names[node]})")
            elif item.op == "output":
                self.lines.append(f"return {self.argument(item.args[0])}")
            elif selection.lowered(self, item) or scans.lowered(self, item):   # argmax, topk, cumsum: generated
                continue
            else:
                self.statement(item)
                for symbol, text in self.sizes.define(item.meta.get("val"), self.names[item]).items():
                    if symbol in self.capture.positive_sizes:   # assumed while tracing: else the reference runs
                        self.fall_back_unless(f"{text} >= 1")
                for guard in [g for g in guards if self.sizes.bound(g)]:   # a branch the trace took
                    guards.remove(guard)
                    self.fall_back_unless(self.sizes.condition(guard))
        if guards:
            raise Unsupported(f"the guard {guards[0]} is on values the program never reads")
        self.lines, saved = horizontal.merge(self.lines, self.flat_launches, self.kernels)
        self.launches -= saved
        attention = self.attention_kernels and any(n.target in TEMPLATE_CALLS for n in self.module.graph.nodes)
        if not self.kernels and not attention:
            raise Unsupported("no elementwise work to fuse (the whole graph is library calls)")
        return {"parameters": self.parameters + self.outputs, "lines": self.lines, "kernels": self.kernels,
                "guards": len(self.capture.guards),
                "constants": self.constants, "launches": self.launches,
                "reads_data": any(is_symbolic(n.meta.get("val")) for n in self.module.graph.nodes),
                "fused_ops": sum(len(r.nodes) for r in self.partition.regions)}


def canonical_names(body: list[str]) -> list[str]:
    """Value names numbered in order of appearance, so the same computation on other nodes (a loop the
    reference unrolled, another shape) reads as the same text and is compiled once."""
    names: dict[str, str] = {}
    return [re.sub(r"\bv\d+\b", lambda m: names.setdefault(m.group(0), f"v{len(names)}"), line) for line in body]


def kernel_text(kernel: dict) -> str:
    """What makes two kernels the same kernel (their names aside)."""
    return repr((kernel["parameters"], kernel["body"], kernel["unspecialized"]))


def dedupe_kernels(programs: list[dict]) -> None:
    """Kernels with the same parameters and body become one (the first), in place: each program keeps
    the kernels it defines first, and its launches name the survivors."""
    survivors: dict[str, str] = {}    # text -> surviving kernel name
    for program in programs:
        renamed, kept = {}, []
        for kernel in program["kernels"]:
            text = kernel_text(kernel)
            if text in survivors:
                renamed[kernel["name"]] = survivors[text]
            else:
                survivors[text] = kernel["name"]
                kept.append(kernel)
        program["kernels"] = kept
        program["lines"] = [re.sub(r"^(\s*_lean\()(\w+)\)", lambda m, r=renamed: f"{m.group(1)}{r.get(m.group(2), m.group(2))})",
                                   line) for line in program["lines"]]


def lower(capture: Capture, prefix: str, destination: bool = False, attention_kernels: bool = False) -> dict:
    """The program for one captured shape: kernels named `<prefix>_k<i>`, and the body of a function
    of the problem's inputs (parameters a0, a1, ...) that returns what the reference returns; with
    `destination`, of the inputs and then the outputs (o0, o1, ...), which it fills and returns nothing
    (kernels store returned values straight into them)."""
    return Lowering(capture, prefix, destination, attention_kernels).lower()
