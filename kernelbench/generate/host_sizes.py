"""Sizes a data-dependent graph knows only at run time, written as host expressions of the program's variables.

A graph traced with unbacked symbols (kernelbench.generate.graph) holds sizes like `u0` (a value read with
`.item()`), `u3` (the row count of a `nonzero`) or `u3 + 1` (a concatenation after it). The program binds
each symbol where it first appears: the variable a scalar read is assigned to (`v12`), or a dimension of
the tensor whose size it is (`v7.shape[0]`). Any size is then printed as an expression of those bindings,
so the program is right for any data at the traced input shapes.
"""

from __future__ import annotations

from typing import Any

import sympy
import torch

SYMBOLIC = (torch.SymInt, torch.SymFloat, torch.SymBool)

# sympy functions torch writes sizes with (matched by name: the classes moved between torch versions)
_CALLS = {"FloorDiv": "({0} // {1})", "CleanDiv": "({0} // {1})", "IntTrueDiv": "({0} / {1})",
          "FloatTrueDiv": "({0} / {1})", "PythonMod": "({0} % {1})", "Mod": "({0} % {1})",
          "TruncToInt": "int({0})", "FloorToInt": "math.floor({0})", "CeilToInt": "math.ceil({0})",
          "ToFloat": "float({0})", "Abs": "abs({0})"}
_RELATIONS = {sympy.Eq: "==", sympy.Ne: "!=", sympy.Lt: "<", sympy.Le: "<=", sympy.Gt: ">", sympy.Ge: ">="}


class UnboundSize(Exception):
    """A size that cannot be written on the host (a symbol no earlier value defines, an unknown function)."""


def is_symbolic(value: Any) -> bool:
    """A symbolic number, or a tensor with a symbolic dimension."""
    if isinstance(value, torch.Tensor):
        return any(not isinstance(s, int) for s in value.shape)
    return isinstance(value, SYMBOLIC)


def _expr(size: Any) -> sympy.Expr:
    return sympy.expand(size.node.expr) if isinstance(size, torch.SymInt) else sympy.Integer(int(size))


def read_symbol(value: Any) -> sympy.Symbol | None:
    """The symbol a value read from data is, as created: `u0`, or for a flag read (`bool(t)`), `Eq(u0, 1)`'s u0."""
    if not isinstance(value, SYMBOLIC):
        return None
    expr = value.node._expr
    if isinstance(value, torch.SymBool) and isinstance(expr, sympy.Eq) and expr.rhs == 1:
        expr = expr.lhs
    return expr if isinstance(expr, sympy.Symbol) else None


def same_size(a: Any, b: Any) -> bool:
    """Equal for every value of the symbols (decided on the expressions: asking torch would add a guard)."""
    return a == b if isinstance(a, int) and isinstance(b, int) else sympy.expand(_expr(a) - _expr(b)) == 0


def same_shape(a, b) -> bool:
    return len(a) == len(b) and all(same_size(x, y) for x, y in zip(a, b))


def is_one(size: Any) -> bool:
    """Known to be 1 (a data-dependent size is not known to be anything)."""
    return isinstance(size, int) and size == 1


class HostSizes:
    def __init__(self):
        self.bindings: dict[sympy.Symbol, str] = {}

    def define(self, value: Any, name: str) -> dict[str, str]:
        """Bind the symbols that `value` (just assigned to `name`) is the first to carry: symbol name -> text."""
        # the symbol as created (`_expr`): a guard `Eq(u0, 3)` has the shape environment replace `u0` by 3
        symbol = read_symbol(value)
        if symbol is not None:
            return self._bind(symbol, f"int({name})" if isinstance(value, torch.SymBool) else name)
        if isinstance(value, SYMBOLIC):
            return {}
        bound = {}
        if isinstance(value, torch.Tensor):
            for d, size in enumerate(value.shape):
                if isinstance(size, torch.SymInt):
                    bound.update(self._bind(size.node._expr, f"{name}.shape[{d}]"))
        return bound

    def _bind(self, expr: sympy.Expr, text: str) -> dict[str, str]:
        if not isinstance(expr, sympy.Symbol) or expr in self.bindings:
            return {}
        self.bindings[expr] = text
        return {str(expr): text}

    def text(self, value: Any) -> str:
        """A number or a symbolic number as a host expression."""
        if isinstance(value, SYMBOLIC):
            return self._expression(value.node.expr)
        return repr(value)

    def bound(self, expr: sympy.Basic) -> bool:
        """Every symbol of `expr` has a host value by now."""
        return all(s in self.bindings for s in expr.free_symbols)

    def condition(self, expr: sympy.Basic) -> str:
        """A relation of symbolic sizes (a guard) as a host expression."""
        return self._expression(expr)

    def _expression(self, expr: sympy.Basic) -> str:
        if isinstance(expr, sympy.Symbol):
            if expr not in self.bindings:
                raise UnboundSize(f"the size {expr} is used before any value defines it")
            return self.bindings[expr]
        if expr is sympy.true or expr is sympy.false:
            return str(bool(expr))
        if isinstance(expr, sympy.Integer):
            return str(int(expr))
        if isinstance(expr, sympy.Float):
            return repr(float(expr))
        if isinstance(expr, sympy.Rational):
            return f"({expr.p} / {expr.q})"
        args = [self._expression(a) for a in expr.args]
        if isinstance(expr, sympy.Add):
            return "(" + " + ".join(args) + ")"
        if isinstance(expr, sympy.Mul):
            return "(" + " * ".join(args) + ")"
        if isinstance(expr, sympy.Pow):
            return f"({args[0]} ** {args[1]})"
        if isinstance(expr, (sympy.Max, sympy.Min)):
            return f"{'max' if isinstance(expr, sympy.Max) else 'min'}({', '.join(args)})"
        if type(expr) in _RELATIONS:
            return f"({args[0]} {_RELATIONS[type(expr)]} {args[1]})"
        if isinstance(expr, (sympy.And, sympy.Or)):
            return "(" + (" and " if isinstance(expr, sympy.And) else " or ").join(args) + ")"
        if isinstance(expr, sympy.Not):
            return f"(not {args[0]})"
        name = type(expr).__name__
        if name in _CALLS:
            return _CALLS[name].format(*args)
        raise UnboundSize(f"the size {expr} ({name}) has no host form")
