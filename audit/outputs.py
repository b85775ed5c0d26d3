"""Static rules about what the entry point produces: constant outputs, and code keyed to the
tested shapes.

- an entry point that returns only constant tensors (or, destination-passing, only fills its
  outputs without reading any input's values) is constant-output;
- with the problem at hand, comparing an input's size (`.shape`, `.size()`, `numel()`, names
  unpacked from them) for equality with a literal, or a module constant, that is one of the
  workloads' var-axis values is shape-specialization (values below 3 and const-axis values are
  ordinary; thresholds pick configs and are not flagged).
"""

from __future__ import annotations

import ast

from .astutil import functions_in, leaf, own_nodes, params_of
from .caching import PASS_METHODS
from .findings import Finding

CONSTANT_CONSTRUCTORS = {"zeros", "ones", "full", "empty", "zeros_like", "ones_like", "full_like", "empty_like",
                         "new_zeros", "new_ones", "new_full", "new_empty", "empty_strided", "fill_", "zero_"}
SHAPE_ONLY_ATTRS = {"shape", "dtype", "device", "size", "dim", "ndim", "numel", "fill_", "zero_", "new_zeros",
                    "new_ones", "new_full", "new_empty", "is_cuda", "layout", "stride", "element_size", "copy_",
                    "is_contiguous", "requires_grad"}


def constant_output(path: str, tree: ast.Module, entry: str, destination_passing: bool) -> list[Finding]:
    function = next((n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == entry),
                    None)
    if function is None:
        return []
    params = params_of(function)
    returns = [n for n in own_nodes(function) if isinstance(n, ast.Return) and n.value is not None
               and not (isinstance(n.value, ast.Constant) and n.value.value is None)]
    if returns and all(_is_constant_value(r.value) for r in returns):
        return [Finding("constant-output", f"{path}:{returns[0].lineno}: {entry} only returns constants: "
                                           f"{ast.unparse(returns[0].value)[:80]}")]
    if destination_passing and params and not returns and not _uses_values(function, params) \
            and _writes_params(function, params):
        return [Finding("constant-output", f"{path}:{function.lineno}: {entry} fills its outputs without reading "
                                           "any input's values")]
    return []


def _is_constant_value(expr: ast.AST) -> bool:
    if isinstance(expr, (ast.Tuple, ast.List)):
        return bool(expr.elts) and all(_is_constant_value(e) for e in expr.elts)
    if isinstance(expr, ast.Constant):
        return isinstance(expr.value, (int, float)) and not isinstance(expr.value, bool)
    if isinstance(expr, ast.Call):
        name = leaf(expr.func)
        if name in CONSTANT_CONSTRUCTORS:
            return True
        if name in ("tensor", "as_tensor") and expr.args:
            return all(isinstance(s, (ast.Constant, ast.List, ast.Tuple, ast.UnaryOp, ast.expr_context, ast.unaryop))
                       for s in ast.walk(expr.args[0]))
        if isinstance(expr.func, ast.Attribute) and expr.func.attr in PASS_METHODS:
            return _is_constant_value(expr.func.value)
    return False


def _uses_values(function: ast.AST, params: list[str]) -> bool:
    """Whether any parameter's values are read (anything but its shape, dtype, device or a fill)."""
    parents = {}
    for node in own_nodes(function):
        for child in ast.iter_child_nodes(node):
            parents[id(child)] = node
    for node in own_nodes(function):
        if isinstance(node, ast.Name) and node.id in params and isinstance(node.ctx, ast.Load):
            parent = parents.get(id(node))
            if isinstance(parent, ast.Attribute) and parent.attr in SHAPE_ONLY_ATTRS:
                continue
            if isinstance(parent, ast.Subscript) and isinstance(parent.ctx, ast.Store):
                continue
            if isinstance(parent, ast.Call) and leaf(parent.func) in CONSTANT_CONSTRUCTORS:
                continue
            return True
    return False


def _writes_params(function: ast.AST, params: list[str]) -> bool:
    for node in own_nodes(function):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and isinstance(node.func.value, ast.Name) and node.func.value.id in params \
                and node.func.attr in ("fill_", "zero_", "copy_", "normal_", "uniform_"):
            return True
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Subscript) and isinstance(t.value, ast.Name)
                                                and t.value.id in params for t in node.targets):
            return True
    return False


# ------------------------------------------------------------------ shape specialization

def shape_specialization(path: str, tree: ast.Module, problem) -> list[Finding]:
    """Comparisons of an input's sizes with a literal that is one of the workloads' var-axis sizes."""
    suspicious = _workload_sizes(problem)
    if not suspicious:
        return []
    findings = []
    constants = {t.id: n.value for n in tree.body if isinstance(n, ast.Assign)
                 for t in n.targets if isinstance(t, ast.Name)}
    for function in functions_in(tree):
        facts_assigned: dict[str, list[ast.AST]] = {}
        for node in own_nodes(function):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    for element in (target.elts if isinstance(target, (ast.Tuple, ast.List)) else [target]):
                        if isinstance(element, ast.Name):
                            facts_assigned.setdefault(element.id, []).append(node.value)
        for node in own_nodes(function):
            if not isinstance(node, ast.Compare) or not all(isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn))
                                                            for op in node.ops):
                continue
            sides = [node.left] + node.comparators
            literals = [v for s in sides for v in _int_literals(constants.get(s.id, s) if isinstance(s, ast.Name) else s)]
            hits = sorted(set(literals) & suspicious)
            if hits and any(_is_size(s, facts_assigned) for s in sides):
                findings.append(Finding("shape-specialization", f"{path}:{node.lineno}: {ast.unparse(node)[:80]} "
                                                                f"compares a size with tested workload sizes {hits[:5]}"))
    return findings


def _workload_sizes(problem) -> set[int]:
    const = {a.value for a in problem.definition.axes.values() if a.kind == "const"}
    values: set[int] = set()
    for workload in problem.workloads:
        try:
            axes = problem.axes_for(workload)
        except Exception:
            continue
        values |= {v for name, v in axes.items() if problem.definition.axes[name].kind != "const"}
    expr_constant = {v for v in values if all(v in problem.axes_for(w).values() for w in problem.workloads)}
    return {v for v in values if v >= 3} - const - expr_constant


def _int_literals(node: ast.AST) -> list[int]:
    if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, int)]
    return []


def _is_size(node: ast.AST, assigned: dict[str, list[ast.AST]], depth: int = 0) -> bool:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Attribute) and sub.attr in ("shape",):
            return True
        if isinstance(sub, ast.Call) and leaf(sub.func) in ("size", "numel", "len"):
            return True
        if isinstance(sub, ast.Name) and sub.id in assigned and depth < 3:
            if any(_is_size(v, assigned, depth + 1) for v in assigned[sub.id]):
                return True
    return False
