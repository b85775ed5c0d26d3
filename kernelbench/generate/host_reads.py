"""A reference's reads of tensor values into Python numbers, kept symbolic for a data-dependent trace.

Traced under fake tensors with a shape environment, `t.item()` gives an unbacked symbol (`u0`) that
shapes, slices and later ops can use. Two other spellings of that read cannot: `t.tolist()` needs the
tensor's memory, and `int(t)` / `float(t)` must return a real Python number, so they would fix the value.
`reference_reading_symbols` compiles the reference again with every one-argument call of the builtins
`int` and `float` routed through helpers that return symbols for tensors (and the builtin's result for
anything else); `ListsAsSymbols` turns `tolist()` into one `item()` per element. Both only matter while
tracing: the generated program calls the same aten ops the trace recorded.
"""

from __future__ import annotations

import ast
import hashlib
import sys
import types

import torch
from torch.overrides import TorchFunctionMode

INT_READ = "_kernelbench_int"
FLOAT_READ = "_kernelbench_float"


def read_int(value):
    """int(value), a symbol when the value is a tensor's or already symbolic (truncated, as int() does)."""
    if isinstance(value, torch.Tensor):
        value = value.item()
    if isinstance(value, torch.SymInt):
        return value
    if isinstance(value, torch.SymFloat):
        return torch.sym_int(value)
    return int(value)


def read_float(value):
    """float(value), a symbol when the value is a tensor's or already symbolic."""
    if isinstance(value, torch.Tensor):
        value = value.item()
    if isinstance(value, (torch.SymInt, torch.SymFloat)):
        return torch.sym_float(value)
    return float(value)


class _RouteNumberCasts(ast.NodeTransformer):
    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.func, ast.Name) and node.func.id in ("int", "float") \
                and len(node.args) == 1 and not node.keywords and not isinstance(node.args[0], ast.Starred):
            node.func = ast.copy_location(ast.Name(INT_READ if node.func.id == "int" else FLOAT_READ, ast.Load()),
                                          node.func)
        return node


def reference_reading_symbols(source: str, name: str) -> types.ModuleType:
    """The reference module compiled with int()/float() of a tensor read as symbols (a module of its own,
    registered as compile_reference registers the plain one: dataclasses in the reference need it)."""
    tree = ast.fix_missing_locations(_RouteNumberCasts().visit(ast.parse(source)))
    module_name = f"kb_reference_{hashlib.sha256(source.encode()).hexdigest()[:12]}_symbolic_reads"
    module = sys.modules.get(module_name)
    if module is None:
        module = types.ModuleType(module_name)
        module.__file__ = f"<reference of {name}, symbolic reads>"
        module.__dict__.update({INT_READ: read_int, FLOAT_READ: read_float})
        sys.modules[module_name] = module
        try:
            exec(compile(tree, module.__file__, "exec"), module.__dict__)  # noqa: S102 - the problem's own reference
        except Exception:
            del sys.modules[module_name]
            raise
    return module


class ListsAsSymbols(TorchFunctionMode):
    """`t.tolist()` as nested lists of `item()` symbols (a fake tensor has no memory to list)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch.Tensor.tolist:
            return _as_list(args[0])
        return func(*args, **(kwargs or {}))


def _as_list(tensor: torch.Tensor):
    if tensor.dim() == 0:
        return tensor.item()
    return [_as_list(tensor[i]) for i in range(tensor.shape[0])]
