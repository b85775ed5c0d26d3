"""A captured graph read as a grouped matrix product: experts over routing offsets (the grouped_gemm family's
front end).

The pattern, found in the traced aten graph whatever the reference's spelling:

    for e in range(G):                     # unrolled by the trace
        s, t = off[e], off[e + 1]          # _local_scalar_dense(select(off, 0, i)): reads of one offsets input
        out[s:t] = x[s:t] @ W[e]^T         # mm(slice(x, 0, s, t), [permute](select(W, 0, e))), its value copied
                                           # into slice(prev, 0, s, t) and slice_scatter'ed into prev
    ...elementwise work on out...          # a routing-weight scale, a cast: the gemm family's epilogue

the operands maybe through casts, `prev` a fresh `empty` for e = 0 and the previous group's scatter after it.
A group may be a chain of such products (stages), elementwise work on a stage's product (or on its equal
column pieces: `gate, up = h.chunk(2, -1)`) and on inputs' rows s:t (`w[s:t, None]`) feeding the next one:
an expert MLP. Each stage is one launch over all the groups; a piece is one more accumulator of the same
tile; an intermediate sits at its rows' own positions, so a row's chain stays in its row. The last scatter
stands for the product in GemmLowering's epilogue reading (at global (row, column) coordinates), so
everything the gemm family fuses after a product is fused here. Rows no group covers keep the uninitialized
`empty`'s values in the reference, so the program leaves them alone too.

Tracing (`grouped_capture`). The reference reads the offsets into Python, so it is traced along examples
(kernelbench.generate.branch_guards), chosen: every 1-D integer input (an offsets candidate) is replaced by
  - arange(n): every group has rows, so every group's work is in the graph (the `full` trace);
  - zeros(n): every group is empty (the `empty` trace).
Guards. `if t > s:` (or `if t == s: continue`) leaves one guard per group in the full trace, `s < t` (`s != t`). Such a
guard only skips an empty group, and the program need not check it on the host, when
  1. the empty trace's graph is the full trace's less the groups' work (the skipped branch records no op,
     and its guards are exactly the negated group guards), and
  2. the kernel gives a group whose guard fails no rows, which is what the reference then does (nothing).
The loop's iterations are independent given the recorded structure (a reference that looks at several
groups at once leaves other guards, which are refused). Any other guard is refused: the program never syncs.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

import sympy
import torch
import torch.fx

from kernelbench.core.dtypes import torch_dtype
from kernelbench.core.errors import KernelBenchError
from kernelbench.core.problem import Problem
from kernelbench.generate.frontend import RULES, TL, Unsupported, Value, compute_type, rounded_as_eager, tensor_meta
from kernelbench.generate.gemmprogram import DOT_DTYPES, PERMUTES, GemmLowering, _is_cast, _permutation
from kernelbench.generate.graph import Capture, CaptureError, example_capture, fake_trace, reads_data, workload_scalar

aten = torch.ops.aten

BASES = {aten.empty.memory_format, aten.empty_like.default, aten.empty_strided.default, aten.empty_permuted.default}
# views in a group's work that keep its rows (a routing weight's [rows] -> [rows, 1] -> [rows, n]; a product's
# [rows, n] viewed as itself before its copy)
ROW_VIEWS = {aten.view.default, aten._unsafe_view.default, aten.reshape.default, aten.expand.default,
             aten.alias.default, aten.clone.default, aten.unsqueeze.default}
SPLITS = {aten.split_with_sizes.default, aten.split.Tensor}


@dataclass(frozen=True)
class GroupedCapture(Capture):
    """The full trace, with the empty trace and its guards beside it (None: the full one has no guards to drop)."""
    empty: torch.fx.GraphModule | None = None
    empty_guards: tuple = ()


def grouped_capture(problem: Problem, workload, module) -> GroupedCapture:
    """The reference traced at the workload's shapes along the two chosen examples (module docstring)."""
    offsets = [n for n, s in problem.definition.inputs.items()
               if s.shape is not None and len(s.shape) == 1 and not torch_dtype(s.dtype).is_floating_point
               and torch_dtype(s.dtype) != torch.bool]
    if not offsets:
        raise CaptureError(f"{problem.name}: no 1-D integer input to read group offsets from")
    scalar_specs = {n: s for n, s in problem.definition.inputs.items() if s.is_scalar}
    values = {n: workload_scalar(problem, workload, n) for n in scalar_specs}
    as_tensors = {n: torch.tensor(v, dtype=torch_dtype(scalar_specs[n].dtype)) for n, v in values.items()}
    try:   # fake tensors, fast: a reference that reads no offsets into Python is no loop over groups
        fake_trace(module.run, problem, problem.axes_for(workload), as_tensors)
        raise CaptureError(f"{problem.name}: the reference reads no tensor values into Python (no group bounds)")
    except CaptureError:
        raise
    except Exception as exc:  # noqa: BLE001 - any tracing failure but a read of data: not this family's
        if not reads_data(exc):
            raise CaptureError(f"{problem.name}: the reference cannot be traced: {type(exc).__name__}: "
                               f"{str(exc)[:200]}") from None
    failures = []
    for scalars in [as_tensors] + [values] * bool(scalar_specs):
        try:
            full, guards = example_capture(problem, workload, module, scalars, chosen={
                n: lambda t: torch.arange(t.numel(), dtype=t.dtype) for n in offsets})
            empty, empty_guards = example_capture(problem, workload, module, scalars, chosen={
                n: torch.zeros_like for n in offsets}) if guards else (None, ())
        except Exception as exc:  # noqa: BLE001 - any tracing failure: the next way, then refused
            failures.append(exc)
            continue
        return GroupedCapture(full, tuple(problem.definition.inputs), frozenset(scalar_specs), {},
                              problem.axes_for(workload), specialized=scalars is values and bool(values),
                              guards=guards, empty=empty, empty_guards=empty_guards)
    if any(isinstance(e, KernelBenchError) for e in failures):
        raise next(e for e in failures if isinstance(e, KernelBenchError))
    raise CaptureError(f"{problem.name}: the reference cannot be traced along chosen offsets: "
                       + "; ".join(f"{type(e).__name__}: {str(e)[:200]}" for e in failures))


def _bound(node: Any) -> tuple[torch.fx.Node, int] | None:
    """(offsets placeholder, index) of a read `off[i]` into Python, else None."""
    if not (isinstance(node, torch.fx.Node) and node.target is aten._local_scalar_dense.default):
        return None
    select = node.args[0]
    if (isinstance(select, torch.fx.Node) and select.target is aten.select.int and select.args[1] == 0
            and select.args[0].op == "placeholder" and isinstance(select.args[2], int) and select.args[2] >= 0):
        return select.args[0], select.args[2]
    return None


def _row_slice(node: Any) -> tuple[Any, Any, Any] | None:
    """(tensor, start, end) of `tensor[start:end]` along dim 0 (step 1), else None."""
    if not (isinstance(node, torch.fx.Node) and node.target is aten.slice.Tensor):
        return None
    args = list(node.args) + [None] * (5 - len(node.args))
    dim, start, end, step = args[1:5]
    if (dim or 0) != 0 or (step or 1) != 1:
        return None
    return node.args[0], start, end


def _through_casts(node: Any, casts: list, chain: list) -> Any:
    while isinstance(node, torch.fx.Node) and _is_cast(node):
        casts.append(tensor_meta(node).dtype)
        chain.append(node)
        node = node.args[0]
    return node


def _placeholder(node: Any) -> torch.fx.Node:
    if not (isinstance(node, torch.fx.Node) and node.op == "placeholder"):
        raise Unsupported("a grouped product's operand that is not an input tensor")
    return node


def _strict_order(guard: sympy.Basic) -> tuple[sympy.Symbol, sympy.Symbol] | None:
    """(a, b) when the guard states a < b of two symbols (in any spelling: `b > a`, `b - a >= 1`), else None."""
    if not isinstance(guard, (sympy.StrictLessThan, sympy.StrictGreaterThan, sympy.LessThan, sympy.GreaterThan)):
        return None
    strict = isinstance(guard, (sympy.StrictLessThan, sympy.StrictGreaterThan))
    difference = sympy.expand(guard.gts - guard.lts + (0 if strict else 1))   # integers: x >= y is x - y + 1 > 0
    terms = sympy.Add.make_args(difference)
    if len(terms) != 2 or not all(isinstance(t, sympy.Symbol) or (-t).is_Symbol for t in terms):
        return None
    positive = [t for t in terms if isinstance(t, sympy.Symbol)]
    negative = [-t for t in terms if not isinstance(t, sympy.Symbol)]
    return (negative[0], positive[0]) if len(positive) == len(negative) == 1 else None


class GroupedLowering(GemmLowering):
    """GemmLowering with the groups' last scatter as the product (see the module docstring)."""

    def __init__(self, capture: Capture):
        self.capture = capture
        super().__init__(capture)

    # -------------------------------------------------------------- the groups

    def find_product(self) -> torch.fx.Node:
        products = [n for n in self.nodes if n.op == "call_function" and n.target is aten.mm.default]
        firsts = [mm for mm in products if _row_slice(_through_casts(mm.args[0], [], [])) is not None]
        if not firsts:
            raise Unsupported("no matrix product whose rows are a slice of an input by offsets")
        self.groups = sorted((self.group(mm) for mm in firsts), key=lambda g: g["expert"])
        if sum(len(g["stages"]) for g in self.groups) != len(products):
            raise Unsupported("matrix products outside the groups")
        first = self.groups[0]
        for e, group in enumerate(self.groups):
            if group["expert"] != e or group["bounds"] != [(first["offsets"], e), (first["offsets"], e + 1)]:
                raise Unsupported(f"the product reading weight {group['expert']} takes rows between offsets "
                                  f"{[i for _, i in group['bounds']]} (group e must take off[e]:off[e+1])")
            for key in ("x", "a_casts", "offsets", "signature"):
                if group[key] != first[key]:
                    raise Unsupported(f"groups differ in their {key}")
            if group["previous"] is not (self.groups[e - 1]["scatter"] if e else first["previous"]):
                raise Unsupported("the groups' results are not written one after the other into one tensor")
        self.base = first["previous"]
        self.reads = {n for n in self.nodes if _bound(n)} | {n.args[0] for n in self.nodes if _bound(n)}
        self.grouped = self.group_nodes()
        if self.base.target not in BASES or not set(self.base.users) <= self.grouped:
            raise Unsupported("the groups write into a tensor that is not a fresh `empty` used for them alone")
        product, x_shape = self.groups[-1]["scatter"], tensor_meta(first["x"]).shape
        if len(x_shape) != 2 or tensor_meta(product).dim() != 2 or tensor_meta(product).shape[0] != x_shape[0]:
            raise Unsupported(f"rows of a {list(x_shape)} input written into {list(tensor_meta(product).shape)}")
        return product

    def group(self, mm: torch.fx.Node) -> dict:
        """One group: its rows of the input, then one stage per product (the expert's weight, the elementwise
        work on the product up to the next product or the copy into the output), the scatter at the end."""
        a_casts, a_chain = [], []
        node = _through_casts(mm.args[0], a_casts, a_chain)
        x, start, end = _row_slice(node)
        a_chain.append(node)
        x = _through_casts(x, a_casts, a_chain)
        bounds = [_bound(start), _bound(end)]
        if None in bounds:
            raise Unsupported("a row slice whose bounds are not read from an offsets input")
        stages, nodes, expert = [], {mm, *a_chain}, None
        while True:
            stage = self.stage(mm, start, end)
            if expert not in (None, stage["expert"]):
                raise Unsupported("one group's products read different experts' weights")
            expert = stage["expert"]
            stages.append(stage)
            nodes |= stage["nodes"]
            following = stage["next"]
            if following.target is aten.copy.default:
                break
            mm = following
        previous, scatter, path = self.written(following, start, end)
        signature = [_signature(stage) for stage in stages]
        return {"expert": expert, "x": _placeholder(x), "bounds": bounds, "offsets": bounds[0][0],
                "a_casts": a_casts[::-1], "stages": stages, "nodes": nodes | set(path), "previous": previous,
                "scatter": scatter, "signature": signature}

    def stage(self, mm: torch.fx.Node, start: Any, end: Any) -> dict:
        """A product by select(w, 0, e) (maybe transposed, cast) and the nodes after it up to the next product
        or the copy: elementwise ops on it (or on equal column pieces of it: a gate | up split) and on inputs'
        rows start:end."""
        b_casts, b_chain, transposed = [], [], False
        node = _through_casts(mm.args[1], b_casts, b_chain)
        if isinstance(node, torch.fx.Node) and node.target in PERMUTES:
            transposed = _permutation(node) == [1, 0]
            b_chain.append(node)
            node = _through_casts(node.args[0], b_casts, b_chain)
        if not (isinstance(node, torch.fx.Node) and node.target is aten.select.int and node.args[1] == 0
                and isinstance(node.args[2], int)):
            raise Unsupported("a matrix product whose weight is not one expert's select(w, 0, e)")
        b_chain.append(node)
        w = _placeholder(_through_casts(node.args[0], b_casts, b_chain))
        inside, region, following = {mm}, [], None
        for later in self.nodes[self.nodes.index(mm) + 1:]:
            if not any(a in inside for a in later.all_input_nodes):
                continue
            if later.target in (aten.mm.default, aten.copy.default):
                following = later
                break
            region.append(later)
            inside.add(later)
        sink = following and following.args[0 if following.target is aten.mm.default else 1]
        if following is None or sink not in inside or any(a in inside for a in following.args if a is not sink):
            raise Unsupported("a group's product that feeds neither one next product nor one copy into the output")
        if any(not set(n.users) <= inside | {following} for n in inside):
            raise Unsupported("a group's intermediate value is read outside its group")
        operands = [a for n in region for a in n.all_input_nodes if a not in inside]
        outside = set().union(*(self.row_operand_chain(a, start, end) for a in operands)) if operands else set()
        width = tensor_meta(mm).shape[1]
        pieces = _pieces(mm, width)
        if not pieces:
            raise Unsupported("a product split into unequal column pieces")
        w_shape = tensor_meta(w).shape
        k, n = (w_shape[2], w_shape[1]) if transposed else (w_shape[1], w_shape[2])
        if len(w_shape) != 3 or n != width:
            raise Unsupported(f"a product by experts {list(w_shape)} of width {width}")
        return {"mm": mm, "w": w, "b_casts": b_casts[::-1], "transposed": transposed, "expert": node.args[2],
                "region": region, "sink": sink, "next": following, "pieces": pieces, "k": k, "n": n,
                "nodes": {mm, *b_chain, *region, *outside}}

    def row_operand_chain(self, arg: torch.fx.Node, start: Any, end: Any) -> set:
        """The nodes from an input to an operand read at the group's rows (`w[lo:hi, None]`, casts), or none for
        a scalar input or a size; Unsupported otherwise."""
        if arg.op == "placeholder" and arg in self.scalars or not isinstance(arg.meta.get("val"), torch.Tensor):
            return set()
        chain, node = [], arg
        while isinstance(node, torch.fx.Node) and (node.target in ROW_VIEWS or _is_cast(node)):
            chain.append(node)
            node = node.args[0]
        sliced = _row_slice(node)
        if sliced is None or sliced[1:] != (start, end) or sliced[0].op != "placeholder":
            raise Unsupported(f"{arg.name}, an operand of a group's elementwise work, is no input's rows of the group")
        return {*chain, node}

    @staticmethod
    def written(copy: torch.fx.Node, start: Any, end: Any) -> tuple[torch.fx.Node, torch.fx.Node, list]:
        """(the tensor written into, the scatter that writes the copy into its rows start:end, the nodes)."""
        scatter, destination = next(iter(copy.users)), _row_slice(copy.args[0])
        if (len(copy.users) != 1 or scatter.target is not aten.slice_scatter.default or destination is None
                or tuple(scatter.args[1:5]) != (copy, 0, start, end) or scatter.args[0] is not destination[0]
                or destination[1:] != (start, end)):
            raise Unsupported("a group's result written elsewhere than the rows it was computed from")
        return scatter.args[0], scatter, [copy, copy.args[0], scatter]

    # -------------------------------------------------------------- guards: each only skips an empty group

    def guarded(self) -> bool:
        """Whether the kernel must skip a group whose offsets are not ascending (the reference's `if t > s`; an
        `if t == s: continue` skips groups whose slice is empty anyway); Unsupported when a guard is anything
        else, or the skipped branch is not proved a no-op."""
        guards = self.capture.guards
        if not guards:
            return False
        offsets = self.groups[0]["offsets"]
        kinds = [kind for kind in ("<", "!=") if _conditions(guards) == _group_conditions(self.nodes, offsets,
                                                                                            len(self.groups), kind)]
        if not kinds:
            raise Unsupported(f"branches on data other than one `off[e+1] > off[e]` (or `!=`) per group: {guards[:4]}")
        empty = getattr(self.capture, "empty", None)
        if empty is None:
            raise Unsupported("no trace along empty groups to prove the skipped branch a no-op")
        same_offsets = next(n for n in empty.graph.nodes if n.op == "placeholder" and n.target == offsets.target)
        if _conditions([sympy.Not(g) for g in self.capture.empty_guards]) != \
                _group_conditions(list(empty.graph.nodes), same_offsets, len(self.groups), kinds[0]):
            raise Unsupported("the trace along empty groups took other branches than skipping each group")
        empty.graph.eliminate_dead_code()   # as the full graph was (the reads a guard kept are not work)
        skipped = list(empty.graph.nodes)
        full = _canonical(self.nodes, self.reads | self.grouped, {self.product: self.base})
        bare = _canonical(skipped, {n for n in skipped if _bound(n)} | {n.args[0] for n in skipped if _bound(n)}, {})
        if full is None or bare is None or full != bare:
            raise Unsupported("the branch that skips an empty group does work of its own")
        return kinds[0] == "<"

    def group_nodes(self) -> set:
        """The groups' nodes, with the nodes only they use (the sizes their views take)."""
        nodes = set().union(*(g["nodes"] for g in self.groups))
        grown = True
        while grown:
            more = {n for n in self.nodes if n not in nodes and n not in self.reads and n is not self.base and
                    n.op == "call_function" and n.users and set(n.users) <= nodes}
            nodes |= more
            grown = bool(more)
        return nodes

    # -------------------------------------------------------------- the program

    def stage_value(self, stage: dict) -> Value:
        """The stage's elementwise work as kernel lines (self.body): the product's pieces (acc, or acc0 .. for a
        split into column pieces), rounded as eager rounds the product, then each node by the front end's rules;
        the value flowing on (into the next product or the output)."""
        mm, width = stage["mm"], stage["n"] // stage["pieces"]
        accumulators = [f"acc{i}" for i in range(stage["pieces"])] if stage["pieces"] > 1 else ["acc"]
        pieces = []
        for accumulator in accumulators:
            pieces.append(Value(f"g{len(self.body)}", compute_type(tensor_meta(mm).dtype)))
            self.body.append(f"{pieces[-1].text} = {rounded_as_eager(accumulator, mm)}")
        values: dict[torch.fx.Node, Any] = {mm: pieces[0]} if stage["pieces"] == 1 else {}
        for node in stage["region"]:
            meta, source = tensor_meta(node), node.args[0] if node.args else None
            if node.target in SPLITS and source is mm:
                continue
            if node.target is operator.getitem and getattr(source, "target", None) in SPLITS:
                values[node] = pieces[node.args[1]]
            elif node.target is aten.slice.Tensor and source is mm and stage["pieces"] > 1:
                values[node] = pieces[_column_cut(node, stage["n"])[0] // width]
            elif node.target in ROW_VIEWS and source in values and meta is not None and meta.shape[-1] == width:
                values[node] = values[source]
            elif node.target in RULES and meta is not None and meta.dim() == 2 and meta.shape[-1] == width:
                arguments = [self.stage_operand(a, values, stage) for a in node.args]
                keywords = {k: v for k, v in node.kwargs.items() if not isinstance(v, torch.fx.Node)}
                expression = rounded_as_eager(RULES[node.target](arguments, keywords, compute_type(meta.dtype)), node)
                values[node] = Value(f"g{len(self.body)}", compute_type(meta.dtype))
                self.body.append(f"{values[node].text} = {expression}")
            else:
                raise Unsupported(f"{node.target} in a group's work on its product")
        return values[stage["sink"]]

    def stage_operand(self, arg: Any, values: dict, stage: dict) -> Value:
        if not isinstance(arg, torch.fx.Node):
            return self.operand(arg, {}, {}, None)
        if arg in values:
            return values[arg]
        if arg in self.scalars:
            return self.operand(arg, {}, {}, None)
        if arg not in self.loads:   # an input's rows of the group: the whole input, read at the global rows
            chain, node = [], arg
            while node.target in ROW_VIEWS or _is_cast(node):
                chain.append(node)
                node = node.args[0]
            source = node.args[0]
            text, casts = self.parameters[source], [tensor_meta(n).dtype for n in chain[::-1] if _is_cast(n)]
            for view in chain[::-1]:
                if view.target is aten.unsqueeze.default:
                    text = f"{text}.unsqueeze({view.args[1]})"
                elif not _is_cast(view) and view.target not in (aten.expand.default, aten.alias.default):
                    raise Unsupported(f"{view.target} of an input's rows in a group's work")
            rows = tensor_meta(self.groups[0]["x"]).shape[0]
            self.loads[arg] = self.load_named(f"{text}.expand({rows}, {stage['n'] // stage['pieces']})",
                                              tensor_meta(source).dtype, casts)
        return self.loads[arg]

    def product_value(self) -> Value:
        """The last stage's value, rounded as the copy into the written tensor rounds it."""
        stage = self.groups[0]["stages"][-1]
        value = self.stage_value(stage)
        if tensor_meta(stage["sink"]).dtype != self.product_meta.dtype:
            value = Value(rounded_as_eager(value.text, self.product), value.ctype)
        self.body.append(f"v0 = {value.to(compute_type(self.product_meta.dtype))}")
        return Value("v0", compute_type(self.product_meta.dtype))

    def lower(self) -> dict:
        first = self.groups[0]
        guarded = self.guarded()
        x = self.parameters[first["x"]]
        rows = tensor_meta(first["x"]).shape[0]
        self.lines.append(f"OFFSETS = {self.parameters[first['offsets']]}")
        a_text, k, launches = x, tensor_meta(first["x"]).shape[1], []
        for index, stage in enumerate(first["stages"]):
            self.body, self.loads = [], {}
            operands, scalars = len(self.operands), len(self.kernel_scalars)
            if stage["k"] != k:
                raise Unsupported(f"a product of width {k} times experts of {stage['k']} rows")
            if index + 1 < len(first["stages"]):   # into an intermediate tensor of the group's rows
                value, dtype = self.stage_value(stage), tensor_meta(stage["sink"]).dtype
                width = stage["n"] // stage["pieces"]
                self.lines.append(f"t{index} = torch.empty(({rows}, {width}), dtype={dtype}, device={x}.device)")
                stores = [{"name": f"t{index}", "value": f"{value.to(compute_type(dtype))}.to({TL[dtype]})"}]
            else:
                stores = self.epilogue()
            a_type, b_type = (tensor_meta(stage["mm"].args[i]).dtype for i in (0, 1))
            if a_type != b_type or a_type not in DOT_DTYPES:
                raise Unsupported(f"matrix operands of dtypes {a_type} and {b_type}")
            weight = self.parameters[stage["w"]]
            self.lines.append(f"b{index} = {weight}.transpose(1, 2)" if stage["transposed"] else f"b{index} = {weight}")
            names = [o.upper() for o in self.operands[operands:]]
            stored = [{**s, "name": s["name"].upper()} for s in stores]
            pieces = stage["pieces"]
            kernel = {"a_casts": [f"a = a.to({TL[d]})" for d in first["a_casts"]] if index == 0 else [],
                      "b_casts": [f"b = b.to({TL[d]})" for d in stage["b_casts"]],
                      "dot_dtype": str(a_type).replace("torch.", ""), "body": self.body, "stores": stored,
                      "accumulators": [f"acc{i}" for i in range(pieces)] if pieces > 1 else ["acc"],
                      "parameters": [f"{t}{suffix}" for t in names for suffix in ("", "_sb", "_sm", "_sn")]
                      + [f"p{i}" for i in range(scalars, len(self.kernel_scalars))]
                      + [f"{s['name']}{suffix}" for s in stored for suffix in ("", "_sb", "_sm", "_sn")]}
            launches.append({"kernel": kernel, "arguments": (
                f"{a_text}, b{index}, OFFSETS, {len(self.groups)}, {guarded}, {_tuple(self.operands[operands:])}, "
                f"{_tuple(self.kernel_scalars[scalars:])}, {_tuple([s['name'].lower() for s in stored])}")})
            a_text, k = f"t{index}", stage["n"] // pieces
        return {"lines": self.lines, "launches": launches, "groups": len(self.groups), "m": rows,
                "n": first["stages"][-1]["n"], "k": tensor_meta(first["x"]).shape[1],
                "stages": len(first["stages"]), "guards": len(self.capture.guards),
                "rows_input": list(self.parameters).index(first["x"]),
                "weights": [[list(self.parameters).index(st["w"]), st["transposed"]] for st in first["stages"]]}


def _pieces(mm: torch.fx.Node, width: int) -> int:
    """Into how many equal column pieces the product is split (`chunk(2, -1)` of a gate | up product, or column
    slices that tile it), 1 if it is not split, 0 if it is split otherwise."""
    users = list(mm.users)
    if len(users) == 1 and users[0].target is aten.split_with_sizes.default and \
            tuple(users[0].args[2:]) in ((1,), (-1,)):
        sizes = users[0].args[1]
        return len(sizes) if len(set(sizes)) == 1 else 0
    if len(users) == 1 and users[0].target is aten.split.Tensor and tuple(users[0].args[2:]) in ((1,), (-1,)) \
            and width % users[0].args[1] == 0:
        return width // users[0].args[1]
    cuts = [_column_cut(u, width) for u in users if u.target is aten.slice.Tensor]
    if users and len(cuts) == len(users) and None not in cuts:
        size = cuts[0][1] - cuts[0][0]
        if size > 0 and width % size == 0 and all(b - a == size and a % size == 0 for a, b in cuts):
            return width // size
        return 0
    return 0 if any(u.target in SPLITS or u.target is aten.slice.Tensor for u in users) else 1


def _column_cut(node: torch.fx.Node, width: int) -> tuple[int, int] | None:
    """(start, end) of a slice of columns (step 1) of a product `width` wide, else None."""
    _, dim, start, end, step = list(node.args) + [None] * (5 - len(node.args))
    if dim not in (1, -1) or (step or 1) != 1 or not isinstance(start or 0, int) or not isinstance(end or 0, int):
        return None
    return start or 0, width if end is None else min(end, width)


def _signature(stage: dict) -> tuple:
    """What must agree across groups for one kernel to serve them: the stage's ops, weights and casts."""
    region = {n: i for i, n in enumerate(stage["region"])}

    def argument(a):
        if isinstance(a, torch.fx.Node):
            return ("region", region[a]) if a in region else ("product",) if a is stage["mm"] else (
                "input", a.name) if a.op == "placeholder" else ("outside", str(a.target))
        return repr(a) if not isinstance(a, (list, tuple)) else tuple(argument(v) for v in a)
    return (stage["w"].name, tuple(stage["b_casts"]), stage["transposed"], stage["pieces"],
            tuple((str(n.target), tuple(argument(a) for a in n.args if not isinstance(a, torch.SymInt)))
                  for n in stage["region"]))


def _condition(guard: sympy.Basic) -> tuple | None:
    """A guard comparing two symbols as ((a, b), "<") for a < b, ({a, b}, "!=") for a != b, else None."""
    if isinstance(guard, sympy.Ne) and all(isinstance(a, sympy.Symbol) for a in guard.args):
        return frozenset(guard.args), "!="
    pair = _strict_order(guard)
    return None if pair is None else (pair, "<")


def _conditions(guards) -> set | None:
    """The guards as _condition's; None when one is anything else, or two are one."""
    found = [_condition(g) for g in guards]
    return None if None in found or len(set(found)) != len(found) else set(found)


def _group_conditions(nodes: list[torch.fx.Node], offsets: torch.fx.Node, groups: int, kind: str) -> set:
    """off[e] < off[e+1] (or !=) for e < groups, in the graph's symbols, as _condition's."""
    symbols = {}
    for node in nodes:
        read = _bound(node)
        value = node.meta.get("val")
        if read and read[0] is offsets and isinstance(value, torch.SymInt):
            symbols[read[1]] = value.node.expr
    pairs = [(symbols.get(e), symbols.get(e + 1)) for e in range(groups)]
    return {(pair if kind == "<" else frozenset(pair), kind) for pair in pairs}


def _canonical(nodes: list[torch.fx.Node], skipped: set, alias: dict) -> list | None:
    """The graph as (op, target, arguments) in order, leaving out `skipped` and reading a node of `alias` as
    its stand-in; None when a node left in reads a skipped one."""
    index: dict[torch.fx.Node, int] = {}

    def argument(a):
        if isinstance(a, torch.fx.Node):
            a = alias.get(a, a)
            if a not in index:
                raise KeyError(a)
            return ("node", index[a])
        if isinstance(a, (list, tuple)):
            return tuple(argument(x) for x in a)
        return repr(a)
    shape = []
    try:
        for node in nodes:
            if node in skipped or node in alias:
                continue
            shape.append((node.op, str(node.target), argument(node.args),
                          tuple(sorted((k, argument(v)) for k, v in node.kwargs.items()))))
            index[node] = len(index)
    except KeyError:
        return None
    return shape


def _tuple(items: list[str]) -> str:
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


def grouped_program(capture: Capture) -> dict:
    """The program for one captured shape: host lines, one launch per stage (its kernel-side pieces: operand
    casts, epilogue body, stores; its arguments), the group count and the product's sizes. Raises Unsupported."""
    return GroupedLowering(capture).lower()
