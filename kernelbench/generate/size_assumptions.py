"""Data-dependent sizes assumed positive while tracing, checked by the program at run time.

Many ops ask whether a size is zero (`logsumexp`'s `if x.numel() == 0`, the empty-tensor paths of
reshapes): with a size read from data (`lmax = int(lens.max())`) that question has no answer at trace
time, and the trace stops. The answer is nearly always "no", so the trace is run again with the symbols
of that product assumed >= 1 (a fact the shape environment then reasons with, from the symbol's creation
on). The program checks each assumption as soon as the symbol has a value and, where it fails, runs the
reference instead: the assumption narrows where the program is fast, never what it computes.
"""

from __future__ import annotations

import sympy
import torch
from torch.fx.experimental.symbolic_shapes import ShapeEnv


class AssumingShapeEnv(ShapeEnv):
    """A shape environment whose unbacked integers named in `positive` (`u0`, ...) are >= 1 from creation."""

    def __init__(self, positive: frozenset[str], **kwargs):
        super().__init__(**kwargs)
        self.positive = positive

    def create_unbacked_symint(self, *args, **kwargs) -> torch.SymInt:
        symbol = super().create_unbacked_symint(*args, **kwargs)
        if str(symbol.node.expr) in self.positive:
            torch._check(symbol >= 1)
        return symbol


def zero_test_symbols(condition: sympy.Basic | None) -> frozenset[str]:
    """The symbols of `Eq(c * u0 * u1**2 ..., 0)`, the question "is this product of sizes zero?"
    (empty when the condition is anything else: that branch depends on data in earnest)."""
    if not isinstance(condition, sympy.Eq) or condition.rhs != 0:
        return frozenset()
    symbols = set()
    for factor in sympy.Mul.make_args(condition.lhs):
        base = factor.base if isinstance(factor, sympy.Pow) and factor.exp.is_positive else factor
        if isinstance(base, sympy.Symbol):
            symbols.add(str(base))
        elif not factor.is_number:
            return frozenset()
    return frozenset(symbols)
