"""Static rules for a training candidate: an AST scan in the parent, before any of its code runs.

The kernel audit's per-file scan (audit.static.scan_python) supplies the rules that mean the
same here (processes, network, patching, introspection, file access, computed code, imports of
the evaluator); its rules about numerics and global state do not apply to a training script,
which may set TF32 or its own environment. Added here:

- `evaluator-import`: imports of the trainers package (the harness and the evaluator).
- `val-data-access`: the shipped corpus is rebuilt from the standard library's docstrings and
  pydoc's topics, so reading those (``__doc__``, inspect.getdoc, help, pydoc, pydoc_data,
  walking the stdlib's modules) is reading the validation text by another road.
- `harness-tampering`: private attributes of ctx (``ctx._harness``), closures and their cells,
  the command line and stdin (where the harness's pipes are named).
- `seed-override`: seeding a random generator with a constant (a seed hunted for, not ctx.seed).
"""

from __future__ import annotations

import ast

from audit.findings import Finding, unique
from audit.static import Resolver, scan_python

from .rules import RULES

KERNEL_RULES_KEPT = {"subprocess", "network", "monkeypatch", "introspection", "file-access", "dynamic-code",
                     "evaluator-import"}
HARNESS_MODULES = ("trainers",)
CORPUS_MODULES = ("pydoc", "pydoc_data")
CORPUS_CALLS = {"inspect.getdoc", "inspect.getcomments", "builtins.help", "pkgutil.walk_packages",
                "pkgutil.iter_modules", "sys.stdlib_module_names"}
HARNESS_CHANNELS = {"sys.argv", "sys.stdin", "sys.orig_argv"}  # the pipes' descriptors are named on the command line
CLOSURE_ATTRS = {"__closure__", "cell_contents", "__globals__"}
SEED_CALLS = {"torch.manual_seed", "torch.cuda.manual_seed", "torch.cuda.manual_seed_all", "torch.random.manual_seed",
              "random.seed", "random.Random", "numpy.random.seed", "numpy.random.default_rng",
              "numpy.random.RandomState", "torch.Generator.manual_seed"}


def scan_candidate(path: str, source: str) -> list[Finding]:
    """Every static finding on a candidate file (a syntax error is left to the import to report)."""
    try:
        tree = ast.parse(source, filename=path)
    except (SyntaxError, ValueError):
        return []
    findings = [f for f in scan_python(path, source) if f.rule in KERNEL_RULES_KEPT]
    findings += _CandidateScan(path, tree).run()
    assert all(f.rule in RULES for f in findings)
    return unique(findings)


class _CandidateScan(ast.NodeVisitor):
    def __init__(self, path: str, tree: ast.Module):
        self.path, self.tree = path, tree
        self.names = Resolver(tree)
        self.context_names = _context_parameters(tree)
        self.findings: list[Finding] = []

    def flag(self, rule: str, node: ast.AST | int, what: str) -> None:
        line = node if isinstance(node, int) else getattr(node, "lineno", 0)
        self.findings.append(Finding(rule, f"{self.path}:{line}: {what}"))

    def run(self) -> list[Finding]:
        for line, module in self.names.imports:
            root = module.split(".")[0]
            if root in HARNESS_MODULES:
                self.flag("evaluator-import", line, f"imports {module}")
            if root in CORPUS_MODULES:
                self.flag("val-data-access", line, f"imports {module} (the shipped corpus is built from it)")
        self.visit(self.tree)
        return self.findings

    def visit_Attribute(self, node: ast.Attribute) -> None:
        name = self.names.dotted(node)
        if node.attr == "__doc__":
            self.flag("val-data-access", node, "reads a __doc__ (the shipped corpus is the stdlib's docstrings)")
        elif name in CORPUS_CALLS:
            self.flag("val-data-access", node, f"uses {name} (the shipped corpus is built from the stdlib's modules)")
        elif node.attr in CLOSURE_ATTRS:
            self.flag("harness-tampering", node, f"reads .{node.attr} (reaches into functions' hidden state)")
        elif name in HARNESS_CHANNELS:
            self.flag("harness-tampering", node, f"reads {name} (the harness's channel to this process)")
        elif (isinstance(node.value, ast.Name) and node.value.id in self.context_names and node.attr.startswith("_")
              and not node.attr.startswith("__")):
            self.flag("harness-tampering", node, f"reads {node.value.id}.{node.attr} (the harness's private state)")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        name = self.names.dotted(node.func)
        if name in CORPUS_CALLS and not isinstance(node.func, ast.Attribute):  # an attribute was flagged already
            self.flag("val-data-access", node, f"calls {name} (the shipped corpus is built from the stdlib's docs)")
        if name == "builtins.getattr" and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) \
                and node.args[1].value in ("__doc__", *CLOSURE_ATTRS):
            rule = "val-data-access" if node.args[1].value == "__doc__" else "harness-tampering"
            self.flag(rule, node, f"getattr(..., {node.args[1].value!r})")
        seeding = name in SEED_CALLS or (isinstance(node.func, ast.Attribute) and node.func.attr == "manual_seed")
        if seeding and node.args and _constant_only(node.args[0]):
            self.flag("seed-override", node, f"seeds with the constant {ast.unparse(node.args[0])} instead of ctx.seed")
        self.generic_visit(node)


def _context_parameters(tree: ast.Module) -> set[str]:
    """Names of the first parameter of every function (train(ctx), helpers taking ctx)."""
    names = {"ctx"}
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.args.args:
            first = node.args.args[0].arg
            if first not in ("self", "cls"):
                names.add(first)
    return names


def _constant_only(node: ast.AST) -> bool:
    """An expression built from literals alone (42, 1337 + 1): no name, attribute or call in it."""
    return not any(isinstance(sub, (ast.Name, ast.Attribute, ast.Call)) for sub in ast.walk(node))
