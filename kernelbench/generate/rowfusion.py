"""Row fusion in the front end: a reduction over the innermost dimensions of its input, lowered as ONE
Triton kernel together with its neighbours, so the row is read once (or once per pass when it is long).

A row region joins, around a reduction of a [rows, width] operand:
  - its prologue: the elementwise region that produces the reduced operand;
  - the small elementwise ops on the reduced values ([rows, 1] or [rows]);
  - its epilogue: elementwise consumers of the row's shape reading the reduced values by broadcast;
  - other reductions over the same rows (mean and variance, max and sum in softmax);
  - scans along the rows (cumsum, cumprod, logcumsumexp: kernelbench.generate.scans), full-size like the epilogue.
Every part keeps the flat order of its values, so a full-size value at (row, col) sits at flat index
row * width + col and a reduced one at row; the region stays convex (the regions, as super-nodes, a DAG).

The kernel runs one program per block of rows. A row of up to MAX_ROW_BLOCK elements is held in registers
(one tile of BLOCK_R rows x BLOCK_D columns); a longer one is swept in passes of LOOP_BLOCK columns:
pass p accumulates the reductions whose operand needs the results of pass p - 1 (variance after its
mean), a softmax's max and sum of exponentials come from one pass (the sum rescaled as the max grows),
and a last pass computes and stores the full-size results.
Accumulation is fp32 (fp64 for fp64), and half-precision results are rounded as eager rounds them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx

from kernelbench.generate import gathers, scans
from kernelbench.generate.frontend import (
    INTERPRETER_TILE,
    ORDER_KEEPING_VIEWS,
    RULES,
    TL,
    KernelInput,
    Partition,
    Region,
    Unsupported,
    Value,
    canonical_names,
    compute_type,
    constant_value,
    is_symbolic,
    literal,
    literal_type,
    strided_load,
    tensor_meta,
)

aten = torch.ops.aten
prims = torch.ops.prims

MAX_ROW_BLOCK = 16384   # the longest row held in registers
LOOP_BLOCK = 2048       # columns per step of a long row's passes
ROW_TILE = 4096         # elements per program when rows are short (several rows per program)
MIN_LOOPED_ROWS = 64    # fewer long rows than this: too few programs for a sweep per row; the library reduces

REDUCTIONS = {aten.sum.dim_IntList: "sum", aten.mean.dim: "mean", prims.sum.default: "sum",
              aten.amax.default: "max", aten.amin.default: "min", prims.var.default: "var",
              aten._softmax.default: "softmax", aten._log_softmax.default: "log_softmax",
              aten.argmax.default: "argmax", aten.argmin.default: "argmin"}
SINGLE_DIM = {"softmax", "log_softmax", "argmax", "argmin"}


@dataclass(eq=False)
class RowRegion(Region):
    rows: int = 0
    width: int = 0
    parts: list = field(default_factory=list)   # the regions and nodes it joined, each lowerable alone
    broadcast: set = field(default_factory=set)  # members recomputed where they are read (see _is_broadcast_operand)

    def split(self, late, index) -> list:
        """Finer parts (Partition.split_cycles): the parts it joined, each lowerable alone."""
        return list(self.parts)


# ----------------------------------------------------------------------------- which reductions

def row_shape(node: torch.fx.Node) -> tuple[int, int] | None:
    """(rows, width) of a supported reduction over the innermost dimensions of a float tensor, or of a scan
    along the innermost dimension (kernelbench.generate.scans), else None."""
    if node.op == "call_function" and node.target in scans.ROW_SCANS:
        shape = scans.row_shape(node)
        return None if shape is None or shape[1] > MAX_ROW_BLOCK and shape[0] < MIN_LOOPED_ROWS else shape
    kind = REDUCTIONS.get(node.target) if node.op == "call_function" else None
    source = node.args[0] if kind else None
    if not kind or not _static(source) or not _static(node):
        return None
    meta, result = tensor_meta(source), tensor_meta(node)
    if meta.dtype not in TL or not meta.dtype.is_floating_point \
            or result.dtype not in TL or meta.dim() == 0 or meta.numel() == 0:
        return None
    dims = node.args[1] if len(node.args) > 1 else None
    if kind in SINGLE_DIM:
        dims = None if dims is None else [dims]
    if not dims:
        return None   # a whole-tensor reduction: one program would do it all
    rank = meta.dim()
    dims = sorted({d % rank for d in dims})
    if dims != list(range(rank - len(dims), rank)):
        return None
    width = math.prod(meta.shape[rank - len(dims):])
    rows = meta.numel() // width
    if width <= 1 or width > MAX_ROW_BLOCK and (kind in ("argmax", "argmin") or rows < MIN_LOOPED_ROWS):
        return None
    return rows, width


def _numel(node: torch.fx.Node) -> int:
    return tensor_meta(node).numel()


def _same_order(value: tuple, consumer: tuple) -> bool:
    return [s for s in value if s != 1] == [s for s in consumer if s != 1]


def _per_row(value: tuple, consumer: tuple, width: int) -> bool:
    """A [rows]-sized value broadcast over the innermost `width` elements of the consumer's shape."""
    if len(value) > len(consumer):
        return False
    padded = [1] * (len(consumer) - len(value)) + list(value)
    tail = 1
    for j in range(1, len(consumer) + 1):
        tail *= consumer[-j]
        if tail == width:
            return all(s == 1 for s in padded[-j:]) and padded[:-j] == list(consumer[:-j])
        if tail > width:
            return False
    return False


def _static(node: Any) -> bool:
    """A tensor value whose sizes are known when traced (not read from data): only those join row regions."""
    meta = tensor_meta(node) if isinstance(node, torch.fx.Node) else None
    return meta is not None and not is_symbolic(meta)


def _is_view(node: torch.fx.Node) -> bool:
    """A view that keeps the element order and count (prims.broadcast_in_dim only adds size-1 dims here)."""
    if node.op != "call_function" or not node.args or not _static(node) or not _static(node.args[0]):
        return False
    if node.target in ORDER_KEEPING_VIEWS:
        return True
    return node.target is prims.broadcast_in_dim.default and _numel(node) == _numel(node.args[0])


# ----------------------------------------------------------------------------- grouping

def fuse_rows(partition: Partition) -> None:
    """Grow a row region around each supported reduction, in place; one that joins nothing stays a library call."""
    for node in partition.nodes:
        shape = row_shape(node)
        if shape is None or node in partition.region_of:
            continue
        group = _grow(partition, node, *shape)
        if len(group.parts) < 2:
            continue
        group.nodes.sort(key=partition.index.__getitem__)
        for member in group.nodes:
            partition.region_of[member] = group
    partition.regions = list({id(r): r for r in partition.region_of.values()}.values())


def _grow(partition: Partition, reduction: torch.fx.Node, rows: int, width: int) -> RowRegion:
    group = RowRegion(rows=rows, width=width)
    _join(partition, group, [reduction])
    changed = True
    while changed:
        changed = False
        for candidate in _neighbours(partition, group):
            if _join(partition, group, candidate):
                changed = True
                break
    return group


def _neighbours(partition: Partition, group: RowRegion) -> list:
    """Parts next to the group, readers and producers: flat regions, views of members, reductions of its rows
    (also those reading a tensor the group reads: it is then read once)."""
    members = set(group.nodes)
    touching = [t for node in group.nodes for t in list(node.users) + node.all_input_nodes]
    touching += [u for node in group.nodes for a in node.all_input_nodes if a not in members for u in a.users
                 if row_shape(u) == (group.rows, group.width)]
    found: list = []
    for other in touching:
        if other in members or other.op != "call_function":
            continue
        owner = partition.region_of.get(other)
        if isinstance(owner, RowRegion):
            continue
        if owner is not None:
            found.append(owner)
        elif row_shape(other) == (group.rows, group.width):
            found.append([other])
        elif _is_view(other):
            chain = [other]        # views of views down to a member, or to a reduction of these rows
            while _is_view(chain[-1]) and chain[-1].args[0] not in members \
                    and chain[-1].args[0] not in partition.region_of:
                chain.append(chain[-1].args[0])
            if _is_view(chain[-1]) and chain[-1].args[0] in members \
                    or row_shape(chain[-1]) == (group.rows, group.width):
                found.append(chain[::-1])
    return list({id(f) if isinstance(f, Region) else tuple(f): f for f in found}.values())


def nodes_of(part: Any) -> list:
    """A joined part: a flat region, or a reduction and the views that reshape its result."""
    return part.nodes if isinstance(part, Region) else part


def _join(partition: Partition, group: RowRegion, part: Any) -> bool:
    nodes = nodes_of(part)
    if not all(_static(n) for n in nodes):
        return False
    full, short = group.rows * group.width, group.rows
    broadcast = _is_broadcast_operand(part, group, full)
    if not broadcast and any(_numel(n) not in (full, short) for n in nodes):
        return False
    members = set(group.nodes) | set(nodes)
    if gathers.table_inside(members) or any(n.target is gathers.scatter_add_into for n in members):
        return False   # a row kernel reads a gather's table only outside the row, and takes no scatter
    new = set(nodes)
    for node in members:
        if node.target in REDUCTIONS or _is_view(node) or node in group.broadcast or broadcast:
            continue
        for arg in node.all_input_nodes:
            if arg not in members or (node not in new and arg not in new) or arg in group.broadcast:
                continue
            value, consumer = tuple(tensor_meta(arg).shape), tuple(tensor_meta(node).shape)
            if _numel(node) == short and _numel(arg) == full:
                return False
            if _numel(node) == _numel(arg) and not _same_order(value, consumer):
                return False
            if _numel(node) == full and _numel(arg) == short and not _per_row(value, consumer, group.width):
                return False
    merged = Region()
    for member in list(group.nodes) + nodes:
        merged.add(member, partition.index[member])
    if not partition.convex(merged):
        return False
    for node in nodes:
        group.add(node, partition.index[node])
    group.parts.append(part)
    if broadcast:
        group.broadcast |= set(nodes)
    return True


def _is_broadcast_operand(part: Any, group: RowRegion, full: int) -> bool:
    """A small flat region (a weight's `1 + w.float()`) read only by the group, by broadcast: recomputed where it
    is read instead of being a launch of its own. All its values have one shape and read no member."""
    if not isinstance(part, Region) or _numel(part.nodes[0]) == full:
        return False
    shape = tuple(tensor_meta(part.nodes[0]).shape)
    inside = set(part.nodes)
    for node in part.nodes:
        if tuple(tensor_meta(node).shape) != shape or any(a in group.nodes for a in node.all_input_nodes):
            return False
        for user in node.users.keys() - inside:
            if user not in group.nodes or user.target in REDUCTIONS or _is_view(user):
                return False
            consumer = tuple(tensor_meta(user).shape)
            if len(shape) > len(consumer) or any(s not in (1, c) for s, c in zip(shape[::-1], consumer[::-1])):
                return False
    return True


# ----------------------------------------------------------------------------- emission

@dataclass
class Step:
    """One accumulation over the row: `kind` (sum, max, min, argmax, argmin, online) of `operand` (full-size),
    keyed by (reduced value, what of it), so reductions of one value share it (layer norm's mean and variance)."""
    key: tuple
    kind: str
    operand: Any          # (tile) -> Value of the operand at the tile's columns
    level: int
    source: torch.fx.Node


@dataclass
class Tile:
    """The columns being computed: the whole row (registers) or one step of a pass; `indent` for the loop."""
    indent: str
    values: dict = field(default_factory=dict)
    coordinates: dict = field(default_factory=dict)


NEUTRAL = {"sum": "0.0", "max": "float('-inf')", "online": "float('-inf')", "min": "float('inf')",
           "argmax": "float('-inf')", "argmin": "float('inf')"}


class RowKernel:
    def __init__(self, lowering, region: RowRegion):
        self.lowering = lowering
        self.region = region
        self.rows, self.width = region.rows, region.width
        self.full = self.rows * self.width
        self.members = set(region.nodes)
        self.looped = self.width > MAX_ROW_BLOCK
        self.inputs: dict[torch.fx.Node, KernelInput] = {}
        self.scalars: dict[str, str] = {}
        self.body: list[str] = []
        self.per_row: dict[Any, Value] = {}      # node or step key -> its value for the block's rows
        self.row_tile = Tile("")
        self.fresh = 0
        self.steps: list[Step] = []
        self.levels: dict[torch.fx.Node, int] = {}
        for node in region.nodes:
            self.level(node)

    def name(self, prefix: str) -> str:
        self.fresh += 1
        return f"{prefix}{self.fresh}"

    def is_full(self, node: torch.fx.Node) -> bool:
        return _numel(node) == self.full

    # -------------------------------------------------------------- passes

    def level(self, node: torch.fx.Node) -> int:
        """The pass after which the node's value exists (0: computable from the inputs alone)."""
        if node not in self.members:
            return 0
        if node in self.levels:
            return self.levels[node]
        kind = REDUCTIONS.get(node.target) if not _is_view(node) else None
        base = max([self.level(a) for a in node.all_input_nodes] + [0])
        if kind is None:
            self.levels[node] = base
            return base
        source = node.args[0]
        plain = (lambda tile, s=source: self.value(s, tile, tuple(tensor_meta(s).shape)))
        if kind in ("sum", "mean"):
            wanted = [("sum", "sum", plain, 1)]
        elif kind in ("max", "min", "argmax", "argmin"):
            wanted = [(kind, kind, plain, 1)]
        elif kind == "var":
            wanted = [("sum", "sum", plain, 1),
                      ("squares", "sum", lambda tile, s=source: self.deviation_squared(s, tile), 2)]
        elif self.looped:   # softmax, log-softmax over a long row: max and sum of exp(x - max) in one pass
            wanted = [("online", "online", plain, 1)]
        else:   # softmax, log-softmax: the row's max, then the sum of exp(x - max)
            wanted = [("max", "max", plain, 1), ("exp", "sum", lambda tile, s=source: self.shifted_exp(s, tile), 2)]
        known = {step.key for step in self.steps}
        for tag, step_kind, operand, depth in wanted:
            if (source, tag) not in known:
                self.steps.append(Step((source, tag), step_kind, operand, base + depth, source))
        self.levels[node] = base + max(depth for *_, depth in wanted)
        return self.levels[node]

    def emit(self) -> dict:
        rows, width = self.rows, self.width
        index = "tl.int64" if (self.rows + ROW_TILE) * self.width >= 2 ** 31 else "tl.int32"   # masked rows too
        self.body += [f"row = tl.program_id(0).to({index}) * BLOCK_R + tl.arange(0, BLOCK_R)[:, None]",
                      f"row_mask = row < {rows}"]
        register_tile = None
        if not self.looped:
            self.body += ["col = tl.arange(0, BLOCK_D)[None, :]", f"mask = row_mask & (col < {width})",
                          f"offs = row * {width} + col"]
            register_tile = Tile("")
        outputs = list(dict.fromkeys(self.stored_outputs().values()))
        passes = max([s.level for s in self.steps] + [0])
        self.short_values(0, outputs)
        for p in range(1, passes + 1):
            steps = [s for s in self.steps if s.level == p]
            if register_tile is not None:
                for step in steps:
                    self.reduce_in_registers(step, register_tile)
            else:
                self.reduce_in_a_loop(steps)
            self.short_values(p, outputs)
        stores = [(i, n) for i, n in enumerate(outputs) if self.is_full(n)]
        if stores:
            tile = register_tile or self.open_loop()
            for i, node in stores:
                self.store(tile, i, node, "offs", "mask")
        return self.kernel(outputs)

    def read_outside(self) -> list[torch.fx.Node]:
        return [n for n in self.region.nodes if n.users.keys() - self.members - self.lowering.partition.inline]

    def stored_outputs(self) -> dict[torch.fx.Node, torch.fx.Node]:
        """Each value read outside -> the one stored for it: the views of one value share one store (the host
        views the buffer), the one with a destination preferred."""
        by_source: dict[torch.fx.Node, list] = {}
        for node in self.read_outside():
            source = node
            while _is_view(source) and source.args[0] in self.members:
                source = source.args[0]
            by_source.setdefault(source, []).append(node)
        stored = {}
        for views in by_source.values():
            chosen = next((n for n in views if n in self.lowering.destinations), views[0])
            stored.update({n: chosen for n in views})
        return stored

    def short_values(self, level: int, outputs: list) -> None:
        """The per-row values that exist after pass `level`, computed (and stored) outside any loop."""
        for node in self.region.nodes:
            if not self.is_full(node) and node not in self.region.broadcast and self.levels[node] == level:
                self.value(node, self.row_tile, tuple(tensor_meta(node).shape))
                if node in outputs:
                    self.store(self.row_tile, outputs.index(node), node, "row", "row_mask")

    def open_loop(self) -> Tile:
        self.loop_at = len(self.body)   # where a scan's running value is set before the loop
        self.body += [f"for start in range(0, {self.width}, BLOCK_D):",
                      "    col = start + tl.arange(0, BLOCK_D)[None, :]",
                      f"    mask = row_mask & (col < {self.width})",
                      f"    offs = row * {self.width} + col"]
        return Tile("    ")

    def reduce_in_registers(self, step: Step, tile: Tile) -> None:
        operand = step.operand(tile)
        masked = f"tl.where(mask, {operand.text}, {NEUTRAL[step.kind]})"
        var = self.name("r")
        if step.kind in ("argmax", "argmin"):
            # eager ranks NaN as the extreme; ties go to the first index
            nan_rank = "float('inf')" if step.kind == "argmax" else "float('-inf')"
            ranked = f"tl.where(mask, tl.where({operand.text} != {operand.text}, {nan_rank}, {operand.text}), " \
                     f"{NEUTRAL[step.kind]})"
            self.body.append(f"{var} = tl.{step.kind}({ranked}, 1, tie_break_left=True)[:, None].to(tl.int64)")
            self.per_row[step.key] = Value(var, torch.int64)
            return
        reducer = {"sum": "tl.sum", "max": "tl.max", "min": "tl.min"}[step.kind]
        self.body.append(f"{var} = {reducer}({masked}, 1)[:, None]")
        if step.kind != "sum":   # tl.max may drop a NaN: eager's amax/amin return it
            self.body.append(f"{var} = tl.where(tl.sum(tl.where(mask & ({operand.text} != {operand.text}), 1, 0), 1)"
                             f"[:, None] > 0, float('nan'), {var})")
        self.per_row[step.key] = Value(var, operand.ctype)

    def reduce_in_a_loop(self, steps: list[Step]) -> None:
        """Accumulate elementwise over the tiles of the row (one cross-lane reduction at the end)."""
        accumulators = []
        for step in steps:
            accumulator, nans = self.name("acc"), self.name("nan")
            accumulators.append((step, accumulator, nans))
            ctype = self.operand_type(step)
            self.body.append(f"{accumulator} = tl.full([BLOCK_R, BLOCK_D], {NEUTRAL[step.kind]}, {TL[ctype]})")
            if step.kind != "sum":
                self.body.append(f"{nans} = tl.zeros([BLOCK_R, BLOCK_D], tl.int32)")
            if step.kind == "online":
                self.body.append(f"{accumulator}_sum = tl.zeros([BLOCK_R, BLOCK_D], {TL[ctype]})")
        tile = self.open_loop()
        for step, accumulator, nans in accumulators:
            operand = step.operand(tile).text
            masked = f"tl.where(mask, {operand}, {NEUTRAL[step.kind]})"
            if step.kind == "online":
                # per lane: the running max m and the sum of exp(x - m), rescaled when m grows (-inf: nothing yet)
                top, x = self.name("m"), self.name("x")
                rescaled = f"{accumulator}_sum * tl.exp({accumulator} - {top}) + tl.exp({x} - {top})"
                self.body += [f"    {x} = {masked}",
                              f"    {top} = tl.maximum({accumulator}, {x})",
                              f"    {accumulator}_sum = tl.where({top} == float('-inf'), 0.0, {rescaled})",
                              f"    {accumulator} = {top}",
                              f"    {nans} += tl.where(mask & ({operand} != {operand}), 1, 0)"]
            elif step.kind == "sum":
                self.body.append(f"    {accumulator} += {masked}")
            else:
                self.body.append(f"    {accumulator} = tl.{'maximum' if step.kind == 'max' else 'minimum'}"
                                 f"({accumulator}, {masked})")
                self.body.append(f"    {nans} += tl.where(mask & ({operand} != {operand}), 1, 0)")
        for step, accumulator, nans in accumulators:
            var = self.name("r")
            if step.kind == "online":   # the lanes combined: the row's max, and each lane's sum rescaled to it
                total = self.name("r")
                rescaled = f"{accumulator}_sum * tl.exp({accumulator} - {var})"
                self.body += [f"{var} = tl.max({accumulator}, 1)[:, None]",
                              f"{total} = tl.sum(tl.where({accumulator} == float('-inf'), 0.0, {rescaled}), 1)[:, None]",
                              f"{var} = tl.where(tl.sum({nans}, 1)[:, None] > 0, float('nan'), {var})"]
                self.per_row[(step.source, "max")] = Value(var, self.operand_type(step))
                self.per_row[(step.source, "exp")] = Value(total, self.operand_type(step))
                continue
            reducer = {"sum": "tl.sum", "max": "tl.max", "min": "tl.min"}[step.kind]
            self.body.append(f"{var} = {reducer}({accumulator}, 1)[:, None]")
            if step.kind != "sum":
                self.body.append(f"{var} = tl.where(tl.sum({nans}, 1)[:, None] > 0, float('nan'), {var})")
            self.per_row[step.key] = Value(var, self.operand_type(step))

    def operand_type(self, step: Step) -> torch.dtype:
        return compute_type(tensor_meta(step.source).dtype)

    # -------------------------------------------------------------- values

    def value(self, node: Any, tile: Tile, shape: tuple[int, ...]) -> Value:
        """`node` as read by a consumer of this shape in this tile: a member's value, a load, a constant or a
        scalar."""
        partition = self.lowering.partition
        if not isinstance(node, torch.fx.Node):
            if node is None or isinstance(node, str):
                return Value(repr(node), torch.float32)
            if isinstance(node, torch.dtype):
                return Value(str(node), torch.float32)
            return literal(node, literal_type(node))
        if node in partition.inline:
            return literal(constant_value(node), compute_type(tensor_meta(node).dtype))
        if node in self.lowering.scalar_names:
            return self.scalar(self.lowering.scalar_names[node], compute_type(tensor_meta(node).dtype))
        if tensor_meta(node) is None:
            value = node.meta.get("val")
            return self.scalar(self.lowering.names[node], literal_type(value) if isinstance(value, (int, float, bool))
                               else torch.float32)
        if node not in self.members:
            return self.load(node, shape, tile)
        if node in self.region.broadcast:   # computed at the consumer's coordinates, like a load
            if math.prod(shape) != self.full:
                tile = self.row_tile
            if (node, shape) not in tile.values:
                tile.values[(node, shape)] = self.compute(node, tile, shape, self.name("b"))
            return tile.values[(node, shape)]
        if not self.is_full(node):
            tile = self.row_tile     # per-row values live outside the loops
            if node in self.per_row:
                return self.per_row[node]
        elif node in tile.values:
            return tile.values[node]
        result = self.compute(node, tile, tuple(tensor_meta(node).shape), f"v{self.lowering.partition.index[node]}")
        (self.per_row if not self.is_full(node) else tile.values)[node] = result
        return result

    def compute(self, node: torch.fx.Node, tile: Tile, shape: tuple[int, ...], var: str) -> Value:
        """The node's expression into `var`, its operands read at `shape` (its own, or its consumer's for a
        recomputed broadcast operand)."""
        meta = tensor_meta(node)
        ctype = compute_type(meta.dtype)
        if _is_view(node):
            return self.value(node.args[0], tile, shape)
        kind = REDUCTIONS.get(node.target)
        if node.target in gathers.GATHERS:
            expression, rounded = self.gather(node, tile, shape), False
        elif node.target in scans.ROW_SCANS:
            expression, rounded = scans.row_scan(self, node, tile, shape), True
        elif kind is None:
            arguments = [self.value(a, tile, shape) for a in node.args]
            keywords = {k: v for k, v in node.kwargs.items() if not isinstance(v, torch.fx.Node)}
            expression = RULES[node.target](arguments, keywords, ctype)
            rounded = node.target not in (aten.clone.default, aten.alias.default)
        else:
            expression, rounded = self.reduction_result(node, kind, tile), True
        if rounded and meta.dtype in (torch.float16, torch.bfloat16):
            expression = f"({expression}).to({TL[meta.dtype]}).to(tl.float32)"   # eager rounds every half result
        self.body.append(f"{tile.indent}{var} = {expression}")
        return Value(var, ctype)

    def gather(self, node: torch.fx.Node, tile: Tile, shape: tuple[int, ...]) -> str:
        """A full-size gather at its own coordinates in this tile (kernelbench.generate.gathers)."""
        if not self.is_full(node) or shape != tuple(tensor_meta(node).shape):
            raise Unsupported(f"{node.name}: a gather read per row or by broadcast")

        def register(arg: torch.fx.Node) -> KernelInput:
            if arg not in self.inputs:
                meta = tensor_meta(arg)
                self.inputs[arg] = KernelInput(arg, f"in{len(self.inputs)}", tuple(meta.shape), meta.dtype)
            return self.inputs[arg]

        def member(arg: torch.fx.Node) -> Value | None:
            if arg in self.lowering.partition.inline:
                raise Unsupported("a constant index tensor")
            return self.value(arg, tile, shape) if arg in self.members else None

        site = gathers.Site(self.body, register, lambda dim: self.coordinate(tile, shape, dim, "offs"), member,
                            indent=tile.indent)
        return gathers.emit_gather(node, site)

    def reduction_result(self, node: torch.fx.Node, kind: str, tile: Tile) -> str:
        source, width = node.args[0], float(self.width)
        if kind == "sum":
            return self.per_row[(source, "sum")].text
        if kind == "mean":
            return f"({self.per_row[(source, 'sum')].text} / {width!r})"
        if kind in ("max", "min", "argmax", "argmin"):
            return self.per_row[(source, kind)].text
        if kind == "var":
            correction = node.kwargs.get("correction", node.args[2] if len(node.args) > 2 else 1)
            return f"({self.per_row[(source, 'squares')].text} / {width - float(correction)!r})"
        x = self.value(source, tile, tuple(tensor_meta(source).shape)).text
        shifted, total = f"({x} - {self.per_row[(source, 'max')].text})", self.per_row[(source, "exp")].text
        return f"(tl.exp({shifted}) / {total})" if kind == "softmax" else f"({shifted} - tl.log({total}))"

    def deviation_squared(self, source: torch.fx.Node, tile: Tile) -> Value:
        """(x - mean)^2 for the variance's second pass."""
        x = self.value(source, tile, tuple(tensor_meta(source).shape))
        var = self.name("d")
        mean = f"{self.per_row[(source, 'sum')].text} / {float(self.width)!r}"
        self.body.append(f"{tile.indent}{var} = {x.text} - {mean}")
        return Value(f"({var} * {var})", x.ctype)

    def shifted_exp(self, source: torch.fx.Node, tile: Tile) -> Value:
        x = self.value(source, tile, tuple(tensor_meta(source).shape))
        return Value(f"tl.exp({x.text} - {self.per_row[(source, 'max')].text})", x.ctype)

    def scalar(self, host: str, kind: torch.dtype) -> Value:
        """A Python number known only at run time: a kernel parameter (never specialized)."""
        parameter = self.scalars.setdefault(host, f"p{len(self.scalars)}")
        return Value(parameter, torch.float32 if kind.is_floating_point else
                     torch.bool if kind == torch.bool else torch.int64)

    def load(self, node: torch.fx.Node, consumer_shape: tuple[int, ...], tile: Tile) -> Value:
        """An input read at the consumer's coordinates (stride 0 where it broadcasts): full-size consumers
        index by `offs`, per-row ones by `row`."""
        per_row = math.prod(consumer_shape) != self.full
        if per_row:
            tile = self.row_tile
        key = (node, consumer_shape)
        if key in tile.values:
            return tile.values[key]
        meta = tensor_meta(node)
        if node not in self.inputs:
            self.inputs[node] = KernelInput(node, f"in{len(self.inputs)}", tuple(meta.shape), meta.dtype)
        entry = self.inputs[node]
        ctype, var, pad = compute_type(meta.dtype), self.name("x"), tile.indent
        index, mask = ("row", "row_mask") if per_row else ("offs", "mask")
        if meta.numel() == 1:
            self.body.append(f"{pad}{var} = tl.load({entry.name}).to({TL[ctype]})")
        else:
            lines = strided_load(entry, tuple(meta.shape), tuple(consumer_shape),
                                 lambda dim: self.coordinate(tile, consumer_shape, dim, index), index, mask, var, ctype)
            self.body += [pad + line for line in lines]
        tile.values[key] = Value(var, ctype)
        return tile.values[key]

    def coordinate(self, tile: Tile, shape: tuple[int, ...], dim: int, index: str) -> str:
        if shape not in tile.coordinates:
            tag = tile.coordinates[shape] = self.name("c")
            for d in range(len(shape)):
                inner = math.prod(shape[d + 1:])
                text = f"{index} // {inner}" if inner > 1 else index
                self.body.append(f"{tile.indent}{tag}_{d} = ({text}) % {shape[d]}" if d > 0 else
                                 f"{tile.indent}{tag}_{d} = {text}")
        return f"{tile.coordinates[shape]}_{dim}"

    def store(self, tile: Tile, i: int, node: torch.fx.Node, index: str, mask: str) -> None:
        meta = tensor_meta(node)
        value = self.value(node, tile, tuple(meta.shape)).to(compute_type(meta.dtype))
        self.body.append(f"{tile.indent}tl.store(out{i} + {index}, {value}.to({TL[meta.dtype]}), mask={mask})")

    # -------------------------------------------------------------- the kernel and its launch

    def kernel(self, outputs: list) -> dict:
        tensors = list(self.inputs.values())
        parameters = [e.name for e in tensors] + list(self.scalars.values()) + [f"out{i}" for i in range(len(outputs))]
        for entry in tensors:
            parameters += [f"{entry.name}_s{d}" for d in range(len(entry.shape))]
        parameters += [f"C_{e.name}: tl.constexpr" for e in tensors] + ["BLOCK_R: tl.constexpr", "BLOCK_D: tl.constexpr"]
        return {"parameters": parameters, "body": canonical_names(self.body), "unspecialized": list(self.scalars.values()),
                "uses_tanh": any("_tanh(" in line for line in self.body), "outputs": outputs, "inputs": tensors}

    def launch_sizes(self) -> tuple[int, int, int]:
        """(BLOCK_R, BLOCK_D, warps): a short row's tile takes several rows; ~8-16 elements a thread."""
        if self.looped:
            return 1, LOOP_BLOCK, 8
        block_d = 1 << (self.width - 1).bit_length()
        block_r = min(1 << (self.rows - 1).bit_length(), max(1, ROW_TILE // block_d))
        return block_r, block_d, min(16, max(1, block_r * block_d // 512))


def emit_row_region(lowering, region: RowRegion) -> None:
    """The region's kernel and its launch, appended to the lowering (nothing changes when Unsupported is raised)."""
    emitter = RowKernel(lowering, region)
    kernel = emitter.emit()
    outputs, tensors = kernel.pop("outputs"), kernel.pop("inputs")
    kernel["name"] = name = f"{lowering.prefix}_k{len(lowering.kernels)}"
    lowering.kernels.append(kernel)
    for node in outputs:
        meta = tensor_meta(node)
        if node in lowering.destinations:   # a returned value is stored straight into its destination
            lowering.names[node] = lowering.destinations[node][0]
            continue
        lowering.names[node] = f"v{lowering.partition.index[node]}"
        lowering.lines.append(f"{lowering.names[node]} = torch.empty({tuple(meta.shape)}, dtype={meta.dtype}, "
                              f"device={lowering.device})")
    for node, stored in emitter.stored_outputs().items():
        if node is not stored:
            lowering.names[node] = f"v{lowering.partition.index[node]}"
            lowering.lines.append(f"{lowering.names[node]} = {lowering.names[stored]}.view({tuple(tensor_meta(node).shape)})")
    block_r, block_d, warps = emitter.launch_sizes()
    interpreted_r = block_r if emitter.looped else \
        max(block_r, min(1 << (region.rows - 1).bit_length(), INTERPRETER_TILE // block_d))
    rows = f"({interpreted_r} if _INTERPRETED else {block_r})" if interpreted_r != block_r else str(block_r)
    arguments = [lowering.names[e.node] for e in tensors] + list(emitter.scalars) + [lowering.names[n] for n in outputs]
    arguments += [f"*{lowering.names[e.node]}.stride()" for e in tensors if len(e.shape)]
    arguments += [f"C_{e.name}={lowering.names[e.node]}.is_contiguous()" for e in tensors]
    lowering.lines.append(f"_lean({name})[(_cdiv({region.rows}, {rows}),)]({', '.join(arguments)}, "
                          f"BLOCK_R={rows}, BLOCK_D={block_d}, num_warps={warps})")
    lowering.launches += 1


def ordered_parts(region: RowRegion) -> list:
    """The joined parts in an order that respects their dependencies (to lower them one by one instead)."""
    owner = {n: i for i, part in enumerate(region.parts) for n in nodes_of(part)}
    needs = {i: {owner[a] for n in nodes_of(part)
                 for a in n.all_input_nodes if a in owner} - {i} for i, part in enumerate(region.parts)}
    ordered: list[int] = []
    while len(ordered) < len(needs):
        ready = min(i for i in needs if i not in ordered and needs[i] <= set(ordered))
        ordered.append(ready)
    return [region.parts[i] for i in ordered]
