"""Static rules about state kept across calls: output caches, call counters and skipped work.

Keeping state across calls is legitimate for compiled kernels, autotuned configs and other
things that do not depend on the inputs' values; it is a hack when the *outputs* (or the
decision to skip work) come from that state. So:

- a module-level container (dict/list/OrderedDict/lru_cache...) indexed with an input's address
  (`data_ptr()`, `id()`, storage, the tensor object itself) or a fingerprint of its values
  (`item()`, `sum()`, `tobytes()`, `hash`) is flagged wherever it is used; an address's alignment
  class (`x.data_ptr() % 16`, as a compiled kernel is specialized on) counts as a shape;
- a container or global read whose value flows to a `return` (or into an output buffer via
  `copy_`/slice assignment) is flagged, named by the key or test that guards it (shape -> cache-by-shape,
  nothing input-derived -> cache-by-call-count); calling a cached object (a kernel) is not a flow;
- a counter incremented in a function and then tested is cache-by-call-count;
- an early `return` in the entry point under a test of cross-call state is skipped-work.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

from .astutil import functions_in, leaf, own_nodes, params_of, ref_of
from .findings import Finding

CONTAINER_CALLS = {"dict", "list", "set", "OrderedDict", "defaultdict", "deque", "WeakValueDictionary",
                   "WeakKeyDictionary", "Counter", "ChainMap"}
CACHE_DECORATORS = {"lru_cache", "cache", "cached", "memoize"}
POINTER_ATTRS = {"data_ptr", "untyped_storage", "storage", "_cdata", "__cuda_array_interface__",
                 "__array_interface__", "__dlpack__", "unsafe_ptr", "ctypes", "storage_offset"}
VALUE_ATTRS = {"item", "tolist", "tobytes", "numpy", "sum", "mean", "amax", "amin", "max", "min", "norm", "std",
               "var", "prod", "any", "all", "__hash__"}
SHAPE_ATTRS = {"shape", "size", "numel", "stride"}
PASS_METHODS = {"clone", "to", "view", "reshape", "contiguous", "detach", "float", "half", "bfloat16", "type",
                "view_as", "expand", "expand_as", "squeeze", "unsqueeze", "permute", "transpose", "t", "flatten",
                "narrow", "cuda", "cpu", "copy", "__getitem__", "get", "setdefault", "pop", "values"}
MAX_ALIGNMENT = 256   # bytes: `x.data_ptr() % A` for a power of two A up to this is an alignment class, not an address
RANK = ("pointer", "value", "shape", "count")
RULE_OF = {"pointer": "cache-by-pointer", "value": "cache-by-value", "shape": "cache-by-shape",
           "count": "cache-by-call-count"}


def scan_cross_call_state(trees: dict[str, ast.Module], solution) -> list[Finding]:
    findings: list[Finding] = []
    for path, tree in trees.items():
        findings += ModuleState(path, tree, solution.entry_function if path == solution.entry_file else None).findings()
    return findings


@dataclass
class FunctionFacts:
    node: ast.AST
    params: list[str]
    assigned: dict[str, list[ast.AST]] = field(default_factory=dict)  # local name -> values assigned to it
    declared_global: set[str] = field(default_factory=set)


class ModuleState:
    def __init__(self, path: str, tree: ast.Module, entry: str | None = None):
        self.path, self.tree, self.entry = path, tree, entry
        self.module_names = self._module_level_names()
        self.containers = self._containers()
        self.cached_functions = {f.name for f in tree.body if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                                 and any(leaf(d.func if isinstance(d, ast.Call) else d) in CACHE_DECORATORS
                                         for d in f.decorator_list)}
        self.facts = {id(f): self._facts(f) for f in functions_in(tree)}
        self.state = self._cross_call_state()
        self.counters = self._counters()
        self.out: list[Finding] = []

    # -------------------------------------------------------------- module facts

    def _module_level_names(self) -> set[str]:
        names = set()
        for node in self.tree.body:
            for sub in ast.walk(node) if isinstance(node, (ast.If, ast.Try)) else [node]:
                if isinstance(sub, (ast.Assign, ast.AnnAssign)):
                    targets = sub.targets if isinstance(sub, ast.Assign) else [sub.target]
                    names |= {t.id for t in targets if isinstance(t, ast.Name)}
                elif isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    names.add(sub.name)
        return names

    def _containers(self) -> set[str]:
        found = set()
        for node in ast.walk(self.tree):
            if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None and _is_container(node.value):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    ref = ref_of(target)
                    if ref and (ref.split(".")[0] in self.module_names or ref.startswith("self.")):
                        found.add(ref)
        return found

    def _facts(self, function: ast.AST) -> FunctionFacts:
        facts = FunctionFacts(function, params_of(function))
        for node in own_nodes(function):
            if isinstance(node, (ast.Global, ast.Nonlocal)):
                facts.declared_global |= set(node.names)
            elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign, ast.NamedExpr)) and node.value is not None:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    elements = target.elts if isinstance(target, (ast.Tuple, ast.List)) else [target]
                    for element in elements:
                        if isinstance(element, ast.Name):
                            facts.assigned.setdefault(element.id, []).append(node.value)
        return facts

    def _cross_call_state(self) -> set[str]:
        """Names and name.attr references that keep values from one call to the next."""
        state = set(self.containers)
        for facts in self.facts.values():
            state |= {n for n in facts.declared_global if n in facts.assigned}
            for node in own_nodes(facts.node):
                if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    for target in targets:
                        ref = ref_of(target)
                        if ref and "." in ref and (ref.split(".")[0] in self.module_names
                                                   and ref.split(".")[0] not in facts.params or ref.startswith("self.")):
                            state.add(ref)
        return state

    def _counters(self) -> set[str]:
        counters = set()
        for facts in self.facts.values():
            for node in own_nodes(facts.node):
                if isinstance(node, ast.AugAssign) and isinstance(node.op, (ast.Add, ast.Sub)):
                    ref = ref_of(node.target)
                    if ref in self.state:
                        counters.add(ref)
                elif isinstance(node, ast.Call) and leaf(node.func) == "next" and node.args:
                    source = ref_of(node.args[0])
                    if source and any(isinstance(v, ast.Call) and leaf(v.func) == "count"
                                      for v in self._module_values(source)):
                        counters.add(source)
        return counters

    def _module_values(self, name: str) -> list[ast.AST]:
        return [n.value for n in self.tree.body if isinstance(n, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == name for t in n.targets)]

    # -------------------------------------------------------------- rules

    def findings(self) -> list[Finding]:
        producers = self._output_producers()
        for facts in self.facts.values():
            self._cache_keys(facts)
            if getattr(facts.node, "name", None) in producers:
                self._output_flows(facts)  # helpers returning cached kernels or configs are ordinary
            if getattr(facts.node, "name", None) == self.entry:
                self._skipped_work(facts)  # helpers may return early (`if _ready: return`); the timed call may not
        self._tested_counters()
        return self.out

    def _output_producers(self) -> set[str]:
        """The entry function and the module functions whose result it returns (`return _impl(x)`)."""
        functions = {f.name: f for f in self.tree.body if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))}
        found, pending = set(), [self.entry] if self.entry in functions else []
        while pending:
            name = pending.pop()
            if name in found:
                continue
            found.add(name)
            for node in own_nodes(functions[name]):
                if isinstance(node, ast.Return) and isinstance(node.value, ast.Call) \
                        and isinstance(node.value.func, ast.Name) and node.value.func.id in functions:
                    pending.append(node.value.func.id)
        return found

    def flag(self, rule: str, node: ast.AST, what: str) -> None:
        finding = Finding(rule, f"{self.path}:{getattr(node, 'lineno', 0)}: {what}")
        if finding not in self.out:
            self.out.append(finding)

    def is_state(self, node: ast.AST, facts: FunctionFacts) -> str | None:
        ref = ref_of(node)
        if ref is None or ref not in self.state:
            return None
        base = ref.split(".")[0]
        if base in facts.params and not ref.startswith("self."):
            return None
        if "." not in ref and base in facts.assigned and base not in facts.declared_global:
            return None  # a local of the same name
        return ref

    def reads(self, facts: FunctionFacts):
        """(node, state ref, key expression or None) for every read of cross-call state in a function."""
        for node in own_nodes(facts.node):
            if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
                ref = self.is_state(node.value, facts)
                if ref:
                    yield node, ref, node.slice
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr in ("get", "setdefault", "pop", "__getitem__") and node.args:
                ref = self.is_state(node.func.value, facts)
                if ref:
                    yield node, ref, node.args[0]
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in self.cached_functions:
                yield node, node.func.id, ast.Tuple(elts=list(node.args), ctx=ast.Load())
            elif isinstance(node, ast.Compare) and any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops):
                ref = next((self.is_state(c, facts) for c in node.comparators if self.is_state(c, facts)), None)
                if ref:
                    yield node, ref, node.left
            elif isinstance(node, (ast.Name, ast.Attribute)) and isinstance(getattr(node, "ctx", None), ast.Load):
                ref = self.is_state(node, facts)
                if ref and ref not in self.containers:
                    yield node, ref, None

    def classify(self, expressions: list[ast.AST], facts: FunctionFacts, bare_params_are_pointers: bool) -> str | None:
        """The strongest kind of key among the expressions: pointer > value > shape > count (None: no key)."""
        kinds = set()
        seen: set[int] = set()
        pending = [(e, 0) for e in expressions if e is not None]
        while pending:
            expr, depth = pending.pop()
            if id(expr) in seen:
                continue
            seen.add(id(expr))
            if bare_params_are_pointers and _is_bare_param(expr, facts.params):
                kinds.add("pointer")
            alignments = _alignment_tests(expr)
            if alignments:
                kinds.add("shape")
            for sub in ast.walk(expr):
                name = leaf(sub.func) if isinstance(sub, ast.Call) else None
                if id(sub) in alignments:
                    continue
                if isinstance(sub, ast.Attribute) and sub.attr in POINTER_ATTRS or name == "id":
                    kinds.add("pointer")
                elif isinstance(sub, ast.Attribute) and sub.attr in VALUE_ATTRS or name in ("hash", "sha256", "md5", "crc32"):
                    kinds.add("value")
                elif isinstance(sub, ast.Attribute) and sub.attr in SHAPE_ATTRS or name == "len":
                    kinds.add("shape")
                elif ref_of(sub) in self.counters:
                    kinds.add("count")
                if isinstance(sub, ast.Name) and sub.id in facts.assigned and depth < 4 and sub.id not in facts.params:
                    pending += [(v, depth + 1) for v in facts.assigned[sub.id]]
        return next((k for k in RANK if k in kinds), None)

    def _cache_keys(self, facts: FunctionFacts) -> None:
        """Containers indexed by an address or a value fingerprint: flagged however the entry is used."""
        keyed = list(self.reads(facts))
        for node in own_nodes(facts.node):  # stores: cache[key] = value
            if isinstance(node, (ast.Assign, ast.AugAssign)):
                for target in (node.targets if isinstance(node, ast.Assign) else [node.target]):
                    if isinstance(target, ast.Subscript) and self.is_state(target.value, facts):
                        keyed.append((target, self.is_state(target.value, facts), target.slice))
        flagged = set()
        for node, ref, key in keyed:
            if key is None or ref in flagged:
                continue
            kind = self.classify([key], facts, bare_params_are_pointers=False)  # a bare key may be a scalar input
            if kind in ("pointer", "value"):
                flagged.add(ref)
                self.flag(RULE_OF[kind], node, f"`{ref}` is keyed by {_explain(key, facts)} across calls")
        for node in own_nodes(facts.node):  # `if x.data_ptr() == _last_ptr:` compares an address with the last call's
            if isinstance(node, ast.Compare) and all(isinstance(op, (ast.Eq, ast.NotEq, ast.Is, ast.IsNot))
                                                     for op in node.ops):
                sides = [node.left] + node.comparators
                if any(self.is_state(s, facts) for s in sides) and \
                        self.classify([s for s in sides if not self.is_state(s, facts)], facts, False) in ("pointer", "value"):
                    kind = self.classify([s for s in sides if not self.is_state(s, facts)], facts, False)
                    self.flag(RULE_OF[kind], node, f"compares {ast.unparse(node)[:80]} with the previous call's")

    def _output_flows(self, facts: FunctionFacts) -> None:
        reads = [(node, ref, key) for node, ref, key in self.reads(facts)]
        if not reads or _replays_graph(facts.node):
            return  # a replayed CUDA graph recomputes its static buffers: the probes judge it
        read_ids = {id(node): (ref, key) for node, ref, key in reads}
        tainted: dict[str, tuple[str, ast.AST | None]] = {}
        changed = True
        while changed:
            changed = False
            for name, values in facts.assigned.items():
                if name in tainted:
                    continue
                for value in values:
                    hit = self._value_hit(value, read_ids, tainted)
                    if hit:
                        tainted[name] = hit
                        changed = True
                        break
        parents = {id(child): node for node in own_nodes(facts.node) for child in ast.iter_child_nodes(node)}
        sinks = list(self._sinks(facts))
        refreshed = self._refreshed(facts, read_ids, tainted, {id(s) for s, _ in sinks})
        for sink, what in sinks:
            hit = self._value_hit(sink, read_ids, tainted)
            if not hit or (hit[0], id(hit[1])) in refreshed or hit[0].startswith("self."):
                continue  # an object memoizing its own attribute is ordinary; counters on self still count
            ref, key = hit
            guards = [key] if key is not None else []
            guards += self._tests_mentioning(facts, ref)
            ancestor = parents.get(id(sink))
            while ancestor is not None:  # the tests that lead to this sink
                if isinstance(ancestor, (ast.If, ast.IfExp, ast.While)):
                    guards.append(ancestor.test)
                ancestor = parents.get(id(ancestor))
            kind = self.classify(guards, facts, bare_params_are_pointers=key is not None) or "count"
            self.flag(RULE_OF[kind], sink, f"{what} `{ref}`, kept across calls"
                      + (f" (keyed by {ast.unparse(key)[:60]})" if key is not None else ""))

    def _refreshed(self, facts: FunctionFacts, read_ids, tainted, sink_ids: set[int]) -> set[tuple[str, int]]:
        """Cached objects this call writes into (an in-place method, or an argument of a kernel or
        other call): a reused buffer or workspace, recomputed, not a stale output."""
        out = set()
        for node in own_nodes(facts.node):
            if not isinstance(node, ast.Call):
                continue
            written = []
            if isinstance(node.func, ast.Attribute) and node.func.attr.endswith("_") and not node.func.attr.startswith("_"):
                written.append(node.func.value)
            if not (isinstance(node.func, ast.Attribute) and node.func.attr in PASS_METHODS | {"copy_"}) \
                    and leaf(node.func) not in PASS_METHODS:
                written += [a for a in node.args if id(a) not in sink_ids]
                written += [k.value for k in node.keywords if id(k.value) not in sink_ids]
            for expr in written:
                hit = self._value_hit(expr, read_ids, tainted)
                if hit:
                    out.add((hit[0], id(hit[1])))
        return out

    def _value_hit(self, expr, read_ids, tainted):
        """The cache read (or tainted name) that `expr` evaluates to, through tensor-preserving steps."""
        if id(expr) in read_ids:
            return read_ids[id(expr)]
        if isinstance(expr, ast.Name) and expr.id in tainted:
            return tainted[expr.id]
        if isinstance(expr, (ast.Tuple, ast.List)):
            for element in expr.elts:
                hit = self._value_hit(element, read_ids, tainted)
                if hit:
                    return hit
        if isinstance(expr, ast.IfExp):
            return self._value_hit(expr.body, read_ids, tainted) or self._value_hit(expr.orelse, read_ids, tainted)
        if isinstance(expr, ast.BoolOp):
            for value in expr.values:
                hit = self._value_hit(value, read_ids, tainted)
                if hit:
                    return hit
        if isinstance(expr, ast.Subscript):
            return self._value_hit(expr.value, read_ids, tainted)
        if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Attribute) and expr.func.attr in PASS_METHODS:
            return self._value_hit(expr.func.value, read_ids, tainted) or (
                self._value_hit(expr.args[0], read_ids, tainted) if expr.args else None)  # torch.clone(x) too
        if isinstance(expr, ast.Starred):
            return self._value_hit(expr.value, read_ids, tainted)
        return None

    def _sinks(self, facts: FunctionFacts):
        """Where outputs leave: return values, and (destination passing) writes into a parameter."""
        for node in own_nodes(facts.node):
            if isinstance(node, ast.Return) and node.value is not None:
                yield node.value, "returns"
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "copy_" \
                    and isinstance(node.func.value, ast.Name) and node.func.value.id in facts.params and node.args:
                yield node.args[0], f"copies into output {node.func.value.id}"
            elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Subscript) and isinstance(t.value, ast.Name)
                                                      and t.value.id in facts.params for t in node.targets):
                yield node.value, "writes into an output"
        if isinstance(facts.node, ast.Lambda):
            yield facts.node.body, "returns"

    def _tests_mentioning(self, facts: FunctionFacts, ref: str) -> list[ast.AST]:
        tests = []
        for node in own_nodes(facts.node):
            test = getattr(node, "test", None) if isinstance(node, (ast.If, ast.IfExp, ast.While, ast.Assert)) else None
            if test is not None and any(ref_of(sub) == ref for sub in ast.walk(test)):
                tests.append(test)
        return tests

    def _skipped_work(self, facts: FunctionFacts) -> None:
        for node in own_nodes(facts.node):
            if not isinstance(node, ast.If):
                continue
            state = [self.is_state(sub, facts) for sub in ast.walk(node.test)]
            state = [s for s in state if s]
            if not state:
                continue
            for statement in node.body:
                if isinstance(statement, ast.Return) and _returns_nothing_new(statement, facts.params):
                    self.flag("skipped-work", statement, f"returns early when `{state[0]}` (kept across calls) says "
                                                         f"so: {ast.unparse(node.test)[:80]}")

    def _tested_counters(self) -> None:
        for counter in sorted(self.counters):
            for node in ast.walk(self.tree):
                test = getattr(node, "test", None) if isinstance(node, (ast.If, ast.IfExp, ast.While, ast.Assert)) else None
                parts = [test] if test is not None else []
                if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
                    parts.append(node)
                if any(ref_of(sub) == counter or (isinstance(sub, ast.Name) and self._derived_from(sub.id, counter))
                       for part in parts for sub in ast.walk(part)):
                    self.flag("cache-by-call-count", node, f"call counter `{counter}` decides behaviour: "
                                                           f"{ast.unparse(test if test is not None else node)[:80]}")
                    break

    def _derived_from(self, name: str, counter: str) -> bool:
        for facts in self.facts.values():
            for value in facts.assigned.get(name, []):
                if any(ref_of(sub) == counter for sub in ast.walk(value)):
                    return True
        return False


def _alignment_tests(expr: ast.AST) -> set[int]:
    """ids of the `.data_ptr` attributes read only as `x.data_ptr() % A` with A a power of two up to
    MAX_ALIGNMENT: an alignment class (what Triton specializes a pointer on), a layout fact like a stride,
    not an address that tells one input buffer from another."""
    found = set()
    for node in ast.walk(expr):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod) and isinstance(node.right, ast.Constant) \
                and isinstance(node.right.value, int) and 0 < node.right.value <= MAX_ALIGNMENT \
                and node.right.value & (node.right.value - 1) == 0 and isinstance(node.left, ast.Call) \
                and not node.left.args and isinstance(node.left.func, ast.Attribute) and node.left.func.attr == "data_ptr":
            found.add(id(node.left.func))
    return found


def _explain(key: ast.AST, facts: FunctionFacts) -> str:
    """The key's source, with one level of local names expanded: `k (k = x.data_ptr())`."""
    text = ast.unparse(key)[:60]
    if isinstance(key, ast.Name) and facts.assigned.get(key.id):
        text += f" ({key.id} = {ast.unparse(facts.assigned[key.id][0])[:60]})"
    return text


def _replays_graph(function: ast.AST) -> bool:
    return any(isinstance(n, ast.Call) and leaf(n.func) in ("replay", "graph", "CUDAGraph", "make_graphed_callables")
               for n in own_nodes(function))


def _is_container(value: ast.AST) -> bool:
    if isinstance(value, (ast.Dict, ast.List, ast.Set, ast.DictComp, ast.ListComp, ast.SetComp)):
        return True
    return isinstance(value, ast.Call) and leaf(value.func) in CONTAINER_CALLS


def _is_bare_param(expr: ast.AST, params: list[str]) -> bool:
    """A tensor used as a key hashes by identity: `cache[x]`, `cache[(x, w)]`, `f(x)` under lru_cache."""
    if isinstance(expr, ast.Name):
        return expr.id in params
    if isinstance(expr, ast.Tuple):
        return any(isinstance(e, ast.Name) and e.id in params for e in expr.elts)
    return False


def _returns_nothing_new(statement: ast.Return, params: list[str]) -> bool:
    value = statement.value
    if value is None or (isinstance(value, ast.Constant) and value.value is None):
        return True
    if isinstance(value, ast.Name) and value.id in params:
        return True  # destination passing: "the output buffer already holds it"
    return isinstance(value, ast.Tuple) and all(isinstance(e, ast.Name) and e.id in params for e in value.elts)
