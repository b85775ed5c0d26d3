"""Triton statements for a row program (kernelbench.generate.rowprogram), for the rowwise template.

One kernel per group of outputs. A program takes tiles of BLOCK_M rows (persistent programs loop
over tiles); within a tile the row is either one BLOCK_N-wide tile (SINGLE: every value stays in
registers, straight-line code) or a loop over column tiles in passes: pass p computes the
vectors that need results of p earlier reductions, so a norm takes two passes over its row
(statistics, then output) and a cross-entropy one. A sum of exp(a - b) whose b comes from a
reduction of the same pass (softmax's max) is accumulated online (running max and rescaled
sum), so softmax takes two passes and cross-entropy one. A gather of one element per row is the
gathered expression evaluated at that column (one scalar load per input, no pass). Sums across
rows (grad_weight, a mean loss) go to a per-program workspace, reduced by a small second kernel
that also computes what depends on them.

Statements are tuples the template renders: ("line", text), ("load", var, pointer, offset, mask),
("store", pointer, offset, value, mask), ("for", "target in range(...)", init statements, body statements).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from kernelbench.generate.rowprogram import COMPARE, Unsupported

TL_TYPES = {"float32": "tl.float32", "bfloat16": "tl.bfloat16", "float16": "tl.float16", "int64": "tl.int64",
            "int32": "tl.int32", "int16": "tl.int16", "int8": "tl.int8", "uint8": "tl.uint8", "bool": "tl.int1"}
FLOAT = {"float32", "bfloat16", "float16"}

UNARY = {"neg": "-({0})", "exp": "tl.exp({0})", "log": "tl.log({0})", "log1p": "tl.log(1.0 + {0})",
         "expm1": "(tl.exp({0}) - 1.0)", "rsqrt": "tl.math.rsqrt({0})", "sqrt": "tl.sqrt({0})",
         "tanh": "_tanh({0})", "abs": "tl.abs({0})", "sigmoid": "tl.sigmoid({0})", "reciprocal": "(1.0 / ({0}))",
         "not": "({0} == 0)", "isinf": "(tl.abs({0}) == float('inf'))", "isnan": "({0} != {0})",
         "erf": "tl.math.erf({0})", "exp2": "tl.exp2({0})", "log2": "tl.log2({0})"}
BINARY = {"add": "({0} + {1})", "sub": "({0} - {1})", "mul": "({0} * {1})", "div": "({0} / {1})",
          "maximum": "tl.maximum({0}, {1})", "minimum": "tl.minimum({0}, {1})", "eq": "({0} == {1})",
          "ne": "({0} != {1})", "lt": "({0} < {1})", "le": "({0} <= {1})", "gt": "({0} > {1})",
          "ge": "({0} >= {1})", "and": "({0} & {1})", "or": "({0} | {1})", "xor": "({0} ^ {1})",
          "floordiv": "({0} // {1})"}
NEUTRAL = {"sum": "0", "max": "float('-inf')", "min": "float('inf')"}
COMBINE = {"sum": "{0} + {1}", "max": "tl.maximum({0}, {1})", "min": "tl.minimum({0}, {1})"}
REDUCE = {"sum": "tl.sum", "max": "tl.max", "min": "tl.min"}


@dataclass(frozen=True)
class KernelConfig:
    block_m: int = 1           # rows per tile
    block_n: int = 1024        # columns per tile; a row that fits is done in registers in one pass
    num_warps: int = 4
    num_stages: int = 1
    programs_per_sm: int = 0   # persistent programs per SM (0: one program per tile)
    block_f: int = 256         # columns per program of the cross-row finishing kernel
    split_target: int = 0      # split long rows over programs when rows alone give fewer than this many per SM

    @classmethod
    def from_dict(cls, config: dict) -> "KernelConfig":
        return cls(**{k: int(v) for k, v in config.items() if k in cls.__dataclass_fields__})


def identifier(name: str) -> str:
    clean = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name)
    return clean if clean and not clean[0].isdigit() else "_" + clean


class Context:
    """Where vector expressions are emitted: the column variable, the element mask, a name prefix."""

    def __init__(self, cols: str, ok: str, prefix: str, scalars: dict[int, str], lines: list, vector_shape: str,
                 col_ok: str | None = None):
        self.cols, self.ok, self.prefix, self.scalars, self.lines = cols, ok, prefix, scalars, lines
        self.col_ok = col_ok or ok
        self.vector_shape = vector_shape
        self.cache: dict[int, str] = {}


class GroupCode:
    """Statements of one group's row kernel (and its cross-row finishing kernel)."""

    def __init__(self, plan: dict, index: int, config: KernelConfig):
        self.plan, self.index, self.config = plan, index, config
        self.group = plan["groups"][index]
        self.nodes = plan["nodes"]
        self.column = self.group["column"]
        self.lead_dims = self.group["dims"]             # merged row dimensions, outermost first
        self.members = self.group["nodes"]               # topological
        self.inputs = {e["name"]: e for e in plan["inputs"]}
        self.outputs = [plan["outputs"][o] for o in self.group["outputs"]]
        self.row_nodes = [n for n in self.members if self.nodes[n]["phase"] == "row"]
        self.final_nodes = [n for n in self.members if self.nodes[n]["phase"] == "final"]
        self.cross = [n for n in self.members
                      if self.nodes[n]["op"] == "reduce" and self.nodes[n].get("scope") == "cross"]
        self.col_partials = [n for n in self.cross if self.is_vector(self.nodes[n]["args"][0])]
        self.scalar_partials = [n for n in self.cross if n not in self.col_partials]
        self.coords_needed: set[int] = set()
        self.online = self.find_online()
        self.running_max = self.find_running_max()
        self.level = self.levels()

    # -- classification

    def is_vector(self, n: int) -> bool:
        return self.column in self.nodes[n]["dims"]

    def find_online(self) -> dict[int, tuple[int, int]]:
        """Row sums of exp(a - b), b a per-row value: accumulated online against a's running max."""
        found = {}
        for n in self.row_nodes:
            node = self.nodes[n]
            if node["op"] != "reduce" or node["scope"] != "row" or node["kind"] != "sum":
                continue
            e = self.nodes[node["args"][0]]
            if e["op"] != "exp" or e["dtype"] != "float32":
                continue
            d = self.nodes[e["args"][0]]
            if d["op"] == "sub" and self.is_vector(d["args"][0]) and not self.is_vector(d["args"][1]):
                found[n] = (d["args"][0], d["args"][1])
        return found

    def find_running_max(self) -> dict[int, int]:
        """Row maxima of an online sum's `a` (softmax's max): the online sum's running max is that value."""
        found = {}
        for n in self.row_nodes:
            node = self.nodes[n]
            if node["op"] == "reduce" and node["scope"] == "row" and node["kind"] == "max" \
                    and node["dtype"] == "float32":
                online = [o for o, (a, _) in self.online.items() if a == node["args"][0]]
                if online:
                    found[n] = online[0]
        return found

    def levels(self) -> dict[int, int]:
        """The pass a vector is computed in / the boundary after which a per-row value is known."""
        level: dict[int, int] = {}
        for n in self.row_nodes:
            node = self.nodes[n]
            args = [level[a] for a in node["args"] if a in level]
            if node["op"] == "reduce" and node["scope"] == "row" and self.is_vector(node["args"][0]):
                if n in self.online:
                    a, b = self.online[n]
                    level[n] = max(level[a] + 1, level[b])
                else:
                    level[n] = level[node["args"][0]] + 1
            else:
                level[n] = max(args, default=0)
        return level

    def output_is_vector(self, out: dict) -> bool:
        return any(self.column in entry for entry in out["layout"])

    def passes(self) -> list[dict]:
        """Looped mode: per pass, its reductions, online reductions, column partials and vector outputs."""
        roots: dict[int, dict] = {}

        def at(p: int) -> dict:
            return roots.setdefault(p, {"reduce": [], "online": [], "partials": [], "outputs": []})

        for n in self.row_nodes:
            node = self.nodes[n]
            if node["op"] == "reduce" and node["scope"] == "row" and self.is_vector(node["args"][0]):
                if n in self.online:
                    at(self.level[self.online[n][0]])["online"].append(n)
                elif n not in self.running_max:
                    at(self.level[node["args"][0]])["reduce"].append(n)
        for n in self.col_partials:
            at(self.level[self.nodes[n]["args"][0]])["partials"].append(n)
        for out in self.outputs:
            if self.nodes[out["node"]]["phase"] == "row" and self.output_is_vector(out):
                at(self.level[out["node"]])["outputs"].append(out)
        count = max(roots, default=-1) + 1
        return [roots.get(p, {"reduce": [], "online": [], "partials": [], "outputs": []}) for p in range(count)]

    # -- addressing

    def dims_of_access(self, layout: list[list[int]]) -> tuple[list[int], bool]:
        """(lead dims it holds, in order; whether it holds the column) for a tensor's layout."""
        atoms = [c for entry in layout for c in entry]
        present, i = [], 0
        while i < len(atoms):
            if atoms[i] == self.column:
                i += 1
                continue
            for d, classes in enumerate(self.lead_dims):
                if atoms[i:i + len(classes)] == classes:
                    present.append(d)
                    i += len(classes)
                    break
            else:
                raise Unsupported("a tensor holds part of a merged row dimension")
        has_column = self.column in atoms
        if has_column and atoms[-1] != self.column:
            raise Unsupported("a tensor whose last dimension is not the column")
        return present, has_column

    def row_offset(self, layout: list[list[int]]) -> str:
        present, has_column = self.dims_of_access(layout)
        width = "n_cols" if has_column else "1"
        if present == list(range(len(self.lead_dims))):
            return "rows64" if width == "1" else f"rows64 * {width}"
        terms = []
        for position, d in enumerate(present):
            self.coords_needed.add(d)
            stride = [f"size_{e}" for e in present[position + 1:]] + ([width] if width != "1" else [])
            terms.append(" * ".join([f"c{d}"] + stride))
        return " + ".join(terms) if terms else "0"

    def coordinate_lines(self) -> list[str]:
        lines = []
        for d in sorted(self.coords_needed):
            inner = " * ".join(f"size_{e}" for e in range(d + 1, len(self.lead_dims)))
            value = f"rows64 // ({inner})" if inner else "rows64"
            lines.append(f"c{d} = {value}" if d == 0 else f"c{d} = ({value}) % size_{d}")
        return lines

    # -- expressions

    def emit(self, n: int, ctx: Context) -> str:
        """The variable holding node n in this context (emitting what it needs)."""
        if n in ctx.cache:
            return ctx.cache[n]
        if n in ctx.scalars:
            return ctx.scalars[n]
        node = self.nodes[n]
        op, dtype = node["op"], node["dtype"]
        name = f"{ctx.prefix}{n}"
        args = [self.emit(a, ctx) for a in node["args"]] if op not in ("gather",) else []
        if op == "load":
            entry = self.inputs[node["input"]]
            present, has_column = self.dims_of_access(entry["layout"])
            offset = self.row_offset(entry["layout"]) if ctx.vector_shape != "final" else "0"
            if has_column:
                offset = f"{offset} + {ctx.cols}" if offset != "0" else ctx.cols
            # a tensor without row dimensions (a weight) is loaded once per tile, not once per row
            mask = (ctx.ok if present else ctx.col_ok) if has_column else ("row_ok" if present else None)
            ctx.lines.append(("load", name, f"in_{identifier(node['input'])}", offset, mask))
        elif op == "param":
            return f"p_{identifier(node['input'])}"
        elif op == "const":
            return _literal(node["value"], dtype)
        elif op == "iota":
            if node["dim"] == self.column:
                expression = ctx.cols
            else:
                d = next(i for i, classes in enumerate(self.lead_dims) if classes == [node["dim"]])
                self.coords_needed.add(d)
                expression = f"c{d}"
            ctx.lines.append(("line", f"{name} = ({expression}).to(tl.int64)"))
        elif op == "size":
            return self.size_expression(node["over"])
        elif op == "cast":
            ctx.lines.append(("line", f"{name} = {_cast(args[0], dtype)}"))
        elif op == "where":
            compute = _compute(node, [self.nodes[a] for a in node["args"]])
            a, b = (_cast(x, compute, self.nodes[i]) for x, i in zip(args[1:], node["args"][1:]))
            ctx.lines.append(("line", f"{name} = {_cast(f'tl.where({args[0]}, {a}, {b})', dtype, compute=compute)}"))
        elif op in UNARY or op in BINARY:
            compute = _compute(node, [self.nodes[a] for a in node["args"]])
            operands = [_cast(x, compute, self.nodes[i]) for x, i in zip(args, node["args"])]
            expression = (UNARY.get(op) or BINARY[op]).format(*operands)
            result_type = "bool" if op in COMPARE or op in ("isinf", "isnan", "not", "and", "or", "xor") else compute
            ctx.lines.append(("line", f"{name} = {_cast(expression, dtype, compute=result_type)}"))
        elif op == "scatter":
            compute = _compute(node, [self.nodes[a] for a in node["args"]])
            x, index, src = (_cast(v, compute, self.nodes[i]) if k != 1 else v
                             for k, (v, i) in enumerate(zip(args, node["args"])))
            hit = f"({ctx.cols} == {index})"
            value = f"{x} + {src}" if node["accumulate"] else src
            ctx.lines.append(("line", f"{name} = {_cast(f'tl.where({hit}, {value}, {x})', dtype, compute=compute)}"))
        elif op == "gather":
            return self.emit_gather(n, ctx)
        elif op == "reduce":
            return self.emit_reduce_inline(n, ctx)
        else:
            raise Unsupported(f"no Triton for {op}")
        ctx.cache[n] = name
        return name

    def size_expression(self, over: list[int]) -> str:
        if over == [self.column]:
            return "n_cols"
        dims = [d for d, classes in enumerate(self.lead_dims) if set(classes) <= set(over)]
        if sorted(c for d in dims for c in self.lead_dims[d]) != sorted(over):
            raise Unsupported("the size of part of a merged row dimension")
        if len(dims) == len(self.lead_dims):
            return "n_rows"
        return "(" + " * ".join(f"size_{d}" for d in dims) + ")"

    def emit_gather(self, n: int, ctx: Context) -> str:
        """x[..., index] per row: x's expression evaluated at the indexed column."""
        node = self.nodes[n]
        index = self.emit(node["args"][1], ctx)
        where = f"gi{n}"
        ctx.lines.append(("line", f"{where} = ({index}).to(tl.int64)"))
        ctx.lines.append(("line", f"gok{n} = row_ok & ({where} >= 0) & ({where} < n_cols)"))
        inner = Context(where, f"gok{n}", f"g{n}_", {**ctx.scalars, **{k: v for k, v in ctx.cache.items()
                                                                       if not self.is_vector(k)}},
                        ctx.lines, "row")
        value = self.emit(node["args"][0], inner)
        name = f"v{n}"
        ctx.lines.append(("line", f"{name} = {_cast(value, node['dtype'])}"))
        ctx.cache[n] = name
        return name

    def emit_reduce_inline(self, n: int, ctx: Context) -> str:
        """A row reduction with the whole row in one tile (SINGLE), or of a per-row value along the column."""
        node = self.nodes[n]
        if node["scope"] != "row":
            raise Unsupported("a cross-row reduction inside a row expression")
        arg = node["args"][0]
        value = self.emit(arg, ctx)
        accumulate = "tl.float32" if node["dtype"] in FLOAT else "tl.int64"
        name = f"v{n}"
        if not self.is_vector(arg):
            result = f"({value}).to({accumulate}) * n_cols" if node["kind"] == "sum" else value
        else:
            masked = f"tl.where({ctx.ok}, ({value}).to({accumulate}), {NEUTRAL[node['kind']]})"
            result = f"{REDUCE[node['kind']]}({masked}, axis=1, keep_dims=True)"
        ctx.lines.append(("line", f"{name} = {_cast(result, node['dtype'])}"))
        ctx.cache[n] = name
        return name

    # -- kernel bodies

    def single_body(self) -> list:
        """Statements for one tile whose row fits in BLOCK_N columns."""
        lines: list = [("line", "cols = tl.arange(0, BLOCK_N)[None, :]"), ("line", "col_ok = cols < n_cols"),
                       ("line", "ok = row_ok & col_ok")]
        ctx = Context("cols", "ok", "v", {}, lines, "tile", "col_ok")
        for n in self.row_nodes:
            node = self.nodes[n]
            if node["op"] == "reduce" and node["scope"] == "row":
                self.emit(n, ctx)
        for out in self.outputs:
            if self.nodes[out["node"]]["phase"] == "row":
                self.store_output(out, ctx, vector=self.output_is_vector(out))
        for k, n in enumerate(self.col_partials):
            value = self.emit(self.nodes[n]["args"][0], ctx)
            kind = self.nodes[n]["kind"]
            partial = self.column_partial(value, kind, "ok")
            lines.append(("line", f"cacc{k} = {COMBINE[kind].format(f'cacc{k}', partial)}"))
        lines += self.scalar_partial_lines(ctx)
        return lines

    def column_partial(self, value: str, kind: str, mask: str) -> str:
        return f"{REDUCE[kind]}(tl.where({mask}, ({value}).to(tl.float32), {NEUTRAL[kind]}), axis=0, keep_dims=True)"

    def scalar_partial_lines(self, ctx: Context) -> list:
        lines = []
        for j, n in enumerate(self.scalar_partials):
            value = self.emit(self.nodes[n]["args"][0], ctx)
            kind = self.nodes[n]["kind"]
            masked = f"tl.where(row_ok, ({value}).to(tl.float32), {NEUTRAL[kind]})"
            part = f"{REDUCE[kind]}({masked}, axis=0, keep_dims=True)"
            lines.append(("line", f"sacc{j} = {COMBINE[kind].format(f'sacc{j}', part)}"))
        return lines

    def store_output(self, out: dict, ctx: Context, vector: bool) -> None:
        value = self.emit(out["node"], ctx)
        offset = self.row_offset(out["layout"])
        if vector:
            offset = f"{offset} + {ctx.cols}" if offset != "0" else ctx.cols
        ctx.lines.append(("store", f"out_{identifier(out['name'])}", offset, _cast(value, out["dtype"]),
                          ctx.ok if vector else "row_ok"))

    def looped_body(self, phase: int | None = None) -> list:
        """Statements for one tile in passes over column tiles. With `phase` (split rows), the statements of
        that launch of the split kernel: reductions of earlier passes combined from every chunk's partials in
        the stats workspace, pass `phase` over this program's column chunk, its partials stored; the launch
        after the last pass stores the per-row outputs."""
        passes = self.passes()
        scalars: dict[int, str] = {}
        lines: list = []
        boundary_nodes: dict[int, list[int]] = {}
        for n in self.row_nodes:
            if not self.is_vector(n):
                boundary_nodes.setdefault(self.level[n], []).append(n)
        last = len(passes) if phase is None else phase
        settled: set[int] = set()

        def settle(online: int) -> None:
            """The online sum's final running max mx (raw) and reference point m (0 for an all -inf row)."""
            if online not in settled:
                settled.add(online)
                lines.extend([("line", f"mx{online} = m{online}")] if phase is None else self.combine_online(online))
                lines.append(("line", f"m{online} = tl.where(mx{online} == float('-inf'), 0.0, mx{online})"))

        for p in range(last + 1):
            ctx = Context("cols", "ok", "v", scalars, lines, "row")
            for n in boundary_nodes.get(p, []):
                node = self.nodes[n]
                if n in self.running_max:
                    settle(self.running_max[n])
                    lines.append(("line", f"v{n} = mx{self.running_max[n]}"))
                    ctx.cache[n] = f"v{n}"
                elif n in self.online:
                    settle(n)
                    lines.append(("line", f"v{n} = s{n} * tl.exp(m{n} - {self.emit(self.online[n][1], ctx)})"))
                    ctx.cache[n] = f"v{n}"
                elif node["op"] == "reduce" and node["scope"] == "row" and self.is_vector(node["args"][0]):
                    if phase is None:
                        combine = f"{REDUCE[node['kind']]}(acc{n}, axis=1, keep_dims=True)"
                    else:
                        lines += self.combine_partials(n)
                        combine = f"acc{n}"
                    lines.append(("line", f"v{n} = {_cast(combine, node['dtype'])}"))
                    ctx.cache[n] = f"v{n}"
                else:
                    self.emit(n, ctx)
                scalars.update(ctx.cache)
            if p < len(passes) and (phase is None or p == phase):
                lines.append(self.pass_loop(passes[p], scalars, split=phase is not None))
                if phase is not None:
                    lines += self.store_partials(passes[p])
        if phase is None or phase == len(passes):
            ctx = Context("cols", "ok", "v", scalars, lines, "row")
            for out in self.outputs:
                if self.nodes[out["node"]]["phase"] == "row" and not self.output_is_vector(out):
                    self.store_output(out, ctx, vector=False)
            lines += self.scalar_partial_lines(ctx)
        return lines

    def pass_loop(self, roots: dict, scalars: dict[int, str], split: bool = False) -> tuple:
        init, body = [], [("line", "cols = start + tl.arange(0, BLOCK_N)[None, :]"), ("line", "col_ok = cols < n_cols"),
                          ("line", "ok = row_ok & col_ok")]
        ctx = Context("cols", "ok", "v", scalars, body, "tile", "col_ok")
        for n in roots["reduce"]:
            node = self.nodes[n]
            accumulate = "tl.float32" if node["dtype"] in FLOAT else "tl.int64"
            init.append(("line", f"acc{n} = tl.full([BLOCK_M, BLOCK_N], {NEUTRAL[node['kind']]}, {accumulate})"))
            value = self.emit(node["args"][0], ctx)
            masked = f"tl.where(ok, ({value}).to({accumulate}), {NEUTRAL[node['kind']]})"
            body.append(("line", f"acc{n} = {COMBINE[node['kind']].format(f'acc{n}', masked)}"))
        for n in roots["online"]:
            a = self.emit(self.online[n][0], ctx)
            init += [("line", f"m{n} = tl.full([BLOCK_M, 1], float('-inf'), tl.float32)"),
                     ("line", f"s{n} = tl.zeros([BLOCK_M, 1], tl.float32)")]
            body += [("line", f"t{n} = tl.where(ok, ({a}).to(tl.float32), float('-inf'))"),
                     ("line", f"mn{n} = tl.maximum(m{n}, tl.max(t{n}, axis=1, keep_dims=True))"),
                     ("line", f"rn{n} = tl.where(mn{n} == float('-inf'), 0.0, mn{n})"),
                     ("line", f"s{n} = s{n} * tl.exp(tl.where(m{n} == float('-inf'), 0.0, m{n}) - rn{n})"
                              f" + tl.sum(tl.exp(t{n} - rn{n}), axis=1, keep_dims=True)"),
                     ("line", f"m{n} = mn{n}")]
        for n in roots["partials"]:
            k = self.col_partials.index(n)
            value = self.emit(self.nodes[n]["args"][0], ctx)
            kind = self.nodes[n]["kind"]
            body += [("load", f"w{n}", "ws", f"pid * width + {k} * n_cols + cols", "col_ok"),
                     ("line", f"w{n} = tl.where(tile == pid, {NEUTRAL[kind]}, w{n})"),  # a program's first tile
                     ("store", "ws", f"pid * width + {k} * n_cols + cols",
                      COMBINE[kind].format(f"w{n}", self.column_partial(value, kind, "ok")), "col_ok")]
        for out in roots["outputs"]:
            self.store_output(out, ctx, vector=True)
        header = "start in range(chunk_start, chunk_start + chunk, BLOCK_N)" if split else \
            "start in range(0, n_cols, BLOCK_N)"
        return ("for", header, init, body)

    # -- split rows: partial statistics per column chunk

    def slots(self) -> dict[int, int]:
        """Stats workspace slots of the row reductions accumulated in passes (online sums take two: max, sum)."""
        slots, next_slot = {}, 0
        for n in self.row_nodes:
            node = self.nodes[n]
            if node["op"] == "reduce" and node["scope"] == "row" and self.is_vector(node["args"][0]) \
                    and n not in self.running_max:
                slots[n] = next_slot
                next_slot += 2 if n in self.online else 1
        return slots

    def slot_count(self) -> int:
        return sum(2 if n in self.online else 1 for n in self.slots())

    def stats_offset(self, slot: int, part: str) -> str:
        return f"(rows64 * n_split + {part}) * {self.slot_count()} + {slot}"

    def store_partials(self, roots: dict) -> list:
        lines = []
        slots = self.slots()
        for n in roots["reduce"]:
            kind = self.nodes[n]["kind"]
            lines.append(("store", "stats", self.stats_offset(slots[n], "sid"),
                          f"({REDUCE[kind]}(acc{n}, axis=1, keep_dims=True)).to(tl.float32)", "row_ok"))
        for n in roots["online"]:
            lines += [("store", "stats", self.stats_offset(slots[n], "sid"), f"m{n}", "row_ok"),
                      ("store", "stats", self.stats_offset(slots[n] + 1, "sid"), f"s{n}", "row_ok")]
        return lines

    def combine_partials(self, n: int) -> list:
        node = self.nodes[n]
        kind = node["kind"]
        accumulate = "tl.float32" if node["dtype"] in FLOAT else "tl.int64"
        return [("for", "part in range(n_split)",
                 [("line", f"acc{n} = tl.full([BLOCK_M, 1], {NEUTRAL[kind]}, {accumulate})")],
                 [("load", f"x{n}", "stats", self.stats_offset(self.slots()[n], "part"), "row_ok"),
                  ("line", f"acc{n} = {COMBINE[kind].format(f'acc{n}', f'x{n}.to({accumulate})')}")])]

    def combine_online(self, n: int) -> list:
        """Running (max, sum) pairs of the chunks folded into one: mx{n} the largest max, s{n} the sums rescaled
        to its reference point (0 when every element was -inf)."""
        slot = self.slots()[n]
        start = [("line", f"mx{n} = tl.full([BLOCK_M, 1], float('-inf'), tl.float32)")]
        return [("for", "part in range(n_split)", start,
                 [("load", f"x{n}", "stats", self.stats_offset(slot, "part"), "row_ok"),
                  ("line", f"mx{n} = tl.maximum(mx{n}, x{n})")]),
                ("line", f"r{n} = tl.where(mx{n} == float('-inf'), 0.0, mx{n})"),
                ("for", "part in range(n_split)", [("line", f"s{n} = tl.zeros([BLOCK_M, 1], tl.float32)")],
                 [("load", f"x{n}", "stats", self.stats_offset(slot, "part"), "row_ok"),
                  ("load", f"y{n}", "stats", self.stats_offset(slot + 1, "part"), "row_ok"),
                  ("line", f"s{n} = s{n} + y{n} * tl.exp(tl.where(x{n} == float('-inf'), 0.0, x{n}) - r{n})")])]

    def split_phases(self) -> list[list]:
        """The split kernel's statements per launch (empty when this group cannot split its rows)."""
        if self.col_partials or not self.passes():
            return []
        phases = [self.looped_body(p) for p in range(len(self.passes()))]
        if any(self.nodes[o["node"]]["phase"] == "row" and not self.output_is_vector(o) for o in self.outputs) \
                or self.scalar_partials:
            phases.append(self.looped_body(len(self.passes())))
        return phases

    # -- the finishing kernel

    def final_body(self) -> list:
        """Reduce the partials of every program, then compute and store the cross-row outputs."""
        lines: list = [("line", "cols = pid * BLOCK_F + tl.arange(0, BLOCK_F)"), ("line", "col_ok = cols < n_cols")]
        init, body = [], []
        cache: dict[int, str] = {}
        for k, n in enumerate(self.col_partials):
            kind = self.nodes[n]["kind"]
            init.append(("line", f"f{n} = tl.full([BLOCK_F], {NEUTRAL[kind]}, tl.float32)"))
            body += [("load", f"x{n}", "ws", f"part * width + {k} * n_cols + cols", "col_ok"),
                     ("line", f"f{n} = {COMBINE[kind].format(f'f{n}', f'x{n}')}")]
            cache[n] = f"f{n}"
        base = len(self.col_partials)
        for j, n in enumerate(self.scalar_partials):
            kind = self.nodes[n]["kind"]
            init.append(("line", f"f{n} = tl.full([BLOCK_F], {NEUTRAL[kind]}, tl.float32)"))
            body += [("load", f"x{n}", "ws", f"part * width + {base} * n_cols + {j}", None),
                     ("line", f"f{n} = {COMBINE[kind].format(f'f{n}', f'x{n}')}")]
            cache[n] = f"f{n}"
        lines.append(("for", "part in range(n_partials)", init, body))
        for n in self.cross:
            node = self.nodes[n]
            lines.append(("line", f"f{n} = {_cast(f'f{n}', node['dtype'])}"))
        ctx = Context("cols", "col_ok", "u", dict(cache), lines, "final")
        for out in self.outputs:
            if self.nodes[out["node"]]["phase"] == "final":
                for n in self.final_ancestors(out["node"]):
                    node = self.nodes[n]
                    if set(node["dims"]) - {self.column} or node["op"] in ("gather", "scatter") or \
                            (node["op"] == "reduce" and node["scope"] == "row"):
                        raise Unsupported(f"{node['op']} of per-row values after a cross-row reduction")
        for out in self.outputs:
            if self.nodes[out["node"]]["phase"] != "final":
                continue
            value = self.emit(out["node"], ctx)
            vector = self.output_is_vector(out)
            value = _cast(value, out["dtype"])
            if vector:
                lines.append(("store", f"out_{identifier(out['name'])}", "cols", value, "col_ok"))
            else:
                lines.append(("store", f"out_{identifier(out['name'])}", "cols * 0",
                              f"({value}) + tl.zeros([BLOCK_F], {TL_TYPES[out['dtype']]})", "(cols == 0)"))
        return lines

    def final_ancestors(self, root: int) -> set[int]:
        """Nodes the finishing kernel computes for `root`: up to the cross-row reductions."""
        seen, stack = set(), [root]
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen.add(n)
            if not (self.nodes[n]["op"] == "reduce" and self.nodes[n].get("scope") == "cross"):
                stack.extend(self.nodes[n]["args"])
        return seen - set(self.cross)

    # -- what the template needs

    def kernel(self) -> dict:
        single = self.single_body()
        looped = self.looped_body()
        final = self.final_body() if self.cross else None
        coordinates = self.coordinate_lines()
        tensors = sorted({self.nodes[n]["input"] for n in self.members if self.nodes[n]["op"] == "load"},
                         key=list(self.inputs).index)
        params = sorted({self.nodes[n]["input"] for n in self.members if self.nodes[n]["op"] == "param"},
                        key=list(self.inputs).index)
        config = self.config
        return {
            "name": f"_rows{self.index}",
            "inputs": [identifier(t) for t in tensors],
            "params": [identifier(p) for p in params],
            "input_names": tensors, "param_names": params,
            "outputs": [identifier(o["name"]) for o in self.outputs],
            "row_outputs": [identifier(o["name"]) for o in self.outputs if self.nodes[o["node"]]["phase"] == "row"],
            "final_outputs": [identifier(o["name"]) for o in self.outputs if self.nodes[o["node"]]["phase"] == "final"],
            "lead": len(self.lead_dims),
            "coordinates": coordinates,
            "single": single, "looped": looped, "final": final,
            "split": self.split_phases() if config.split_target else [], "slots": self.slot_count(),
            "split_target": config.split_target, "passes": len(self.passes()),
            "col_partials": [{"index": k, "kind": self.nodes[n]["kind"]} for k, n in enumerate(self.col_partials)],
            "scalar_partials": [{"index": j, "kind": self.nodes[n]["kind"]}
                                for j, n in enumerate(self.scalar_partials)],
            "neutral": NEUTRAL,
            "block_m": config.block_m, "block_n": config.block_n, "block_f": config.block_f,
            "num_warps": config.num_warps, "num_stages": config.num_stages,
            "programs_per_sm": config.programs_per_sm if not self.cross else max(config.programs_per_sm, 1),
            "unspecialized": [f"p_{identifier(p)}" for p in params],
            "final_column": any(self.output_is_vector(o) for o in self.outputs
                                if self.nodes[o["node"]]["phase"] == "final"),
            "host": self.host_lines(),
        }

    def host_lines(self) -> list[str]:
        """Python lines computing n_cols, size_i and n_rows from the arguments' shapes."""
        sources = self.plan["sizes"]

        def size_of(c: int) -> str:
            source = sources[str(c)]
            if isinstance(source, int):
                return str(source)
            return f"{identifier(source[1])}.shape[{source[2]}]"

        g = self.index
        lines = [f"n_cols{g} = {size_of(self.column)}"]
        for d, classes in enumerate(self.lead_dims):
            lines.append(f"size{g}_{d} = {' * '.join(size_of(c) for c in classes)}")
        rows = " * ".join(f"size{g}_{d}" for d in range(len(self.lead_dims))) or "1"
        lines.append(f"n_rows{g} = {rows}")
        return lines


def _literal(value, dtype: str) -> str:
    if dtype == "bool":
        return "True" if value else "False"
    if dtype in FLOAT:
        if math.isinf(value):
            return "float('inf')" if value > 0 else "float('-inf')"
        if math.isnan(value):
            return "float('nan')"
        return repr(float(value))
    return str(int(value))


def _compute(node: dict, args: list[dict]) -> str:
    """The Triton type an op computes in (see rowprogram.compute_dtype)."""
    if node["op"] in COMPARE or node["op"] in ("isinf", "isnan"):
        kinds = [a["dtype"] for a in args]
        if any(k in FLOAT for k in kinds):
            return "float32"
        return "bool" if all(k == "bool" for k in kinds) else "int64"
    if node["dtype"] in FLOAT:
        return "float32"
    return "bool" if node["dtype"] == "bool" else "int64"


def _cast(expression: str, dtype: str, source: dict | None = None, compute: str | None = None) -> str:
    """`expression` converted to dtype; skipped for literals and values already of that type. Sizes are
    kernel arguments Triton may turn into constants (a size of 1): converted by arithmetic, not `.to`."""
    if source is not None and source["op"] == "size":
        return f"({expression} * 1.0)" if dtype in FLOAT else expression
    if source is not None and (source["op"] in ("const",) or source["dtype"] == dtype):
        return expression
    if compute is not None and compute == dtype:
        return expression
    return f"({expression}).to({TL_TYPES[dtype]})"
