"""Scans in the front end: cumsum, cumprod, logcumsumexp, cummax and cummin along one dimension as generated
kernels, so a graph of scans (chunk cumsums, top-p filters, MoE offsets, cu_seqlens) is not left to the library.

A cumsum / cumprod / logcumsumexp along the innermost dimension joins the row machinery
(kernelbench.generate.rowfusion: `row_shape` seeds or joins a row region, `row_scan` writes it into the row
kernel), so it is fused with the elementwise work and the reductions on the same rows (exp -> cumsum -> log,
mask -> cumsum -> compare, softmax -> cumsum -> top-p mask): in registers the whole row is one tl.cumsum; in a
long row's passes the running value is set before each pass's loop and carried from step to step. Any other
scan (another dimension, cummax/cummin, a scan that joins nothing or whose row region cannot be lowered) is
its own kernel, below.

The scanned tensor is viewed as [outer, width, inner] (the scanned dimension in the middle, read by its strides:
the innermost dimension reads rows, another one reads columns of stride `inner`), one row per (outer, inner)
pair. One program scans BLOCK_R rows: a row of up to TILE elements in one tile; a longer one swept in passes of
BLOCK_D columns, each pass's tile scanned with `tl.associative_scan` (tl.cumsum / tl.cumprod for sums and
products) and combined with the running total the previous passes left (`carry`: the tile's last prefix, read
back with a masked sum so it is exactly the value stored there).

Too few rows to fill the GPU (fewer than FEW_PROGRAMS row blocks, rows longer than SPLIT_WIDTH: a 1 x 1M cumsum
swept by one program is ~80x slower than the library's) split each row into chunks over many programs, in three
launches (`chunk_width` decides from the traced rows and width): each program reduces its chunk with the op's
combine and writes the chunk's total (the chunk's last prefix, taken as above); one small kernel scans the totals
of each row in place (the same sweep, the chunk's index carried beside cummax/cummin totals); each program scans
its chunk again, seeded with the total of the chunks before it, and stores. Types and rounding are those of one
sweep (fp32 totals for half types, each output rounded once); sums, products and logcumsumexp are added in another
order, cummax/cummin and their indices are exact (the later chunk wins ties, as the later element does). The
split is this standalone sequence, never in a row kernel: rowfusion keeps a row scan fused (one program per row)
from MIN_LOOPED_ROWS long rows up, where the reductions it is fused with would be as short of programs, and leaves
fewer long rows to these kernels, which always split them. The chunk grows with the data (about SPLIT_PROGRAMS
programs), so a row has at most about SPLIT_PROGRAMS chunks and their scan is one short sweep, never recursive.

torch's dtype rules (checked on CPU, torch 2.11): cumsum and cumprod of bool and integers give int64 (or the
`dtype=` asked, the input converted to it first); half inputs are accumulated in fp32 and each prefix rounded
once to the output type (CPU: acc_type<Half> is float, so cumsum(ones(5000, fp16)) is 5000, where an fp16
running sum would stop at 2048); fp64 and integers accumulate in their own type (integer overflow wraps as
torch's does). cummax/cummin keep the input's type and return int64 indices; on a tie the later index wins
(torch compares with >=), and a NaN is larger than everything and sticks (the latest NaN's index), as torch's
CPU and CUDA kernels do. logcumsumexp is float only. bool cummax/cummin, complex types, 0-d tensors and run-time
sizes raise Unsupported: the op stays a library call.
"""

from __future__ import annotations

import math
import operator

import torch
import torch.fx

from kernelbench.generate.frontend import (
    TL,
    Unsupported,
    compute_type,
    is_symbolic,
    lower_with,
    result_slots,
    tensor_meta,
)

aten = torch.ops.aten

TILE = 1024              # columns of one pass (a power of two); a longer row is swept in passes
TILE_ELEMENTS = 4096     # elements one program holds: short rows go several to a program
SPLIT_WIDTH = 16384      # a longer row in too few programs is split into chunks (a shorter one is one sweep)
FEW_PROGRAMS = 264       # row blocks below 2 per SM of an H100/H200 (132 SMs) leave SMs idle: split
SPLIT_PROGRAMS = 1024    # the programs (row blocks x chunks) a split scan aims at
KINDS = {aten.cumsum.default: "sum", aten.cumprod.default: "prod", aten.logcumsumexp.default: "logsumexp",
         aten.cummax.default: "max", aten.cummin.default: "min"}
PAIRED = ("max", "min")  # values and indices
# what a column past the row's end holds (never stored, never in an earlier prefix; keeps the tile finite)
IDENTITY = {"sum": "0", "prod": "1", "logsumexp": "float('-inf')", "max": "0", "min": "0"}

# Combine functions of tl.associative_scan: (earlier, later) -> their combination. Emitted once per module by
# the template (templates/fused.py.j2) for the kernels that name them.
HELPERS = {
    "_scan_logaddexp": '''@triton.jit
def _scan_logaddexp(a, b):
    # log(e^a + e^b) = m + log(1 + e^(n - m)); equal operands (+-inf included) give m + log 2; NaN stays NaN
    m = tl.maximum(a, b)
    n = tl.minimum(a, b)
    s = tl.where(m == n, m + 0.6931471805599453, m + tl.log(1.0 + tl.exp(n - m)))
    return tl.where((a != a) | (b != b), a + b, s)''',
    "_scan_max": '''@triton.jit
def _scan_max(v1, i1, v2, i2):
    # the later element wins ties and NaN beats everything: torch's cummax (x >= running or isnan(x))
    later = (v2 != v2) | ((v1 == v1) & (v2 >= v1))
    return tl.where(later, v2, v1), tl.where(later, i2, i1)''',
    "_scan_min": '''@triton.jit
def _scan_min(v1, i1, v2, i2):
    later = (v2 != v2) | ((v1 == v1) & (v2 <= v1))
    return tl.where(later, v2, v1), tl.where(later, i2, i1)''',
}


def blocks(rows: int, width: int) -> tuple[int, int]:
    """(BLOCK_R, BLOCK_D): the rows one program scans and the columns of one pass."""
    block_d = min(1 << (width - 1).bit_length(), TILE)
    return max(1, min(1 << (rows - 1).bit_length(), TILE_ELEMENTS // block_d)), block_d


def chunk_width(rows: int, width: int) -> int | None:
    """The columns of one chunk when rows of `width` are split over many programs (a multiple of the pass), or
    None: each row is swept by one program (rows short, or enough of them to fill the GPU)."""
    block_r, block_d = blocks(rows, width)
    row_blocks = -(-rows // block_r)
    if width <= SPLIT_WIDTH or row_blocks >= FEW_PROGRAMS:
        return None
    chunk = max(block_d, 1 << (-(-row_blocks * width // SPLIT_PROGRAMS) - 1).bit_length())
    return chunk if chunk < width else None


ROW_SCANS = {aten.cumsum.default: "sum", aten.cumprod.default: "prod", aten.logcumsumexp.default: "logsumexp"}


def row_shape(node: torch.fx.Node) -> tuple[int, int] | None:
    """(rows, width) of a one-result scan over the innermost dimension (kernelbench.generate.rowfusion joins it
    to the elementwise work on its rows), else None."""
    meta = tensor_meta(node.args[0]) if isinstance(node.args[0], torch.fx.Node) else None
    result = tensor_meta(node)
    if meta is None or result is None or is_symbolic(meta) or meta.dim() == 0 or meta.numel() == 0 \
            or meta.dtype not in TL or result.dtype not in TL or result.dtype == torch.bool \
            or node.args[1] % meta.dim() != meta.dim() - 1:
        return None
    width = meta.shape[-1]
    return (meta.numel() // width, width) if width > 1 else None


def row_scan(kernel, node: torch.fx.Node, tile, shape: tuple[int, ...]) -> str:
    """The scan's expression in a row kernel's tile (kernelbench.generate.rowfusion.RowKernel): the whole row in
    registers, or one step of a pass, combined with a running value set before the pass's loop and updated
    after each step."""
    if shape != tuple(tensor_meta(node).shape):
        raise Unsupported(f"{node.name}: a scan read by broadcast")
    kind, acc = ROW_SCANS[node.target], compute_type(tensor_meta(node).dtype)
    identity = IDENTITY[kind]
    source = kernel.value(node.args[0], tile, shape)
    x = kernel.name("s")
    pad = tile.indent
    # the input converted to the result's type first (cumsum(x, dtype=...)), then held in the accumulation type
    converted = source.to(tensor_meta(node).dtype) if source.ctype != acc else source.text
    kernel.body.append(f"{pad}{x} = tl.where(mask, {converted}, {identity}).to({TL[acc]})")
    scanned = {"sum": f"tl.cumsum({x}, 1)", "prod": f"tl.cumprod({x}, 1)",
               "logsumexp": f"tl.associative_scan({x}, 1, _scan_logaddexp)"}[kind]
    if not pad:   # the whole row in this tile
        return scanned
    carry, y = kernel.name("carry"), kernel.name("y")
    kernel.body.insert(kernel.loop_at, f"{carry} = tl.full([BLOCK_R, 1], {identity}, {TL[acc]})")
    combined = {"sum": f"{carry} + {scanned}", "prod": f"{carry} * {scanned}",
                "logsumexp": f"_scan_logaddexp({carry}, {scanned})"}[kind]
    kernel.body += [f"{pad}{y} = {combined}",
                    f"{pad}{carry} = tl.sum(tl.where(col == start + BLOCK_D - 1, {y}, 0), 1)[:, None]"]
    return y


def helper_sources(kernels: list[dict]) -> list[str]:
    """The combine functions the kernels call, each once."""
    used = {name for k in kernels for line in k["body"] for name in HELPERS if name in line}
    return [HELPERS[name] for name in sorted(used)]


def lowered(lowering, node: torch.fx.Node) -> bool:
    """Lower a scan node into a kernel (and name its results); True when done, or when the node is an element
    of a scan already lowered. False leaves the node to the library (nothing was changed)."""
    return lower_with(lowering, node, KINDS, Scan)


class Scan:
    """The kernel and launch of one scan node (checked in the constructor, emitted by emit())."""

    def __init__(self, lowering, node: torch.fx.Node):
        self.lowering, self.node = lowering, node
        self.kind = KINDS[node.target]
        source = node.args[0]
        meta = tensor_meta(source) if isinstance(source, torch.fx.Node) else None
        if meta is None or is_symbolic(meta) or any(is_symbolic(tensor_meta(r)) for r in self.results()):
            raise Unsupported("a scan of run-time size")
        if meta.dim() == 0 or meta.numel() == 0:
            raise Unsupported("a scan of a 0-d or empty tensor")
        if meta.dtype not in TL:
            raise Unsupported(f"a scan over {meta.dtype}")
        self.source_dtype = meta.dtype
        if self.kind in PAIRED:
            if meta.dtype == torch.bool:
                raise Unsupported("cummax/cummin of bool")
            self.out_dtype = meta.dtype
        else:
            self.out_dtype = tensor_meta(node).dtype
            if self.out_dtype not in TL or self.out_dtype == torch.bool:
                raise Unsupported(f"a scan into {self.out_dtype}")
            if self.kind == "logsumexp" and not self.out_dtype.is_floating_point:
                raise Unsupported("logcumsumexp of integers")
        self.acc = compute_type(self.out_dtype)
        shape = tuple(meta.shape)
        d = node.args[1] % len(shape)
        self.outer, self.width, self.inner = math.prod(shape[:d]), shape[d], math.prod(shape[d + 1:])
        self.rows = self.outer * self.inner
        if self.rows * self.width >= 2 ** 31:
            raise Unsupported("a scan of 2^31 elements or more")
        self.block_r, self.block_d = blocks(self.rows, self.width)
        self.chunk = chunk_width(self.rows, self.width)
        self.chunks = -(-self.width // self.chunk) if self.chunk else 1

    def results(self) -> list[torch.fx.Node]:
        """The nodes holding the results: the node itself, or the getitem users of cummax/cummin."""
        if self.kind not in PAIRED:
            return [self.node]
        users = list(self.node.users)
        if not all(u.target is operator.getitem and u.args[1] in (0, 1) for u in users):
            raise Unsupported("a cummax/cummin read other than by its values and indices")
        return users

    # ------------------------------------------------------------------ kernel text

    def scan_lines(self, index: str = "col + tl.zeros_like(row)") -> list[str]:
        """`y` (and `j`, the indices: `index` holds each element's) from `x` [BLOCK_R, BLOCK_D] combined with the
        running `carry`."""
        if self.kind == "sum":
            return ["y = carry + tl.cumsum(x, 1)"]
        if self.kind == "prod":
            return ["y = carry * tl.cumprod(x, 1)"]
        if self.kind == "logsumexp":
            return ["y = _scan_logaddexp(carry, tl.associative_scan(x, 1, _scan_logaddexp))"]
        combine = "_scan_max" if self.kind == "max" else "_scan_min"
        # carry_j < 0: no earlier pass, whose carry must lose to every element (a NaN included)
        return [f"y, j = tl.associative_scan((x, {index}), 1, {combine})",
                f"y2, j2 = {combine}(carry, carry_j, y, j)",
                "y = tl.where(carry_j < 0, y, y2)",
                "j = tl.where(carry_j < 0, j, j2)"]

    def start_lines(self) -> list[str]:
        """The running value before the first pass: nothing yet (the identity; for cummax/cummin index -1)."""
        if self.kind in PAIRED:
            return [f"carry = tl.zeros([BLOCK_R, 1], {TL[self.acc]})",
                    "carry_j = tl.full([BLOCK_R, 1], -1, tl.int64)"]
        return [f"carry = tl.full([BLOCK_R, 1], {IDENTITY[self.kind]}, {TL[self.acc]})"]

    def carry_lines(self) -> list[str]:
        """After a pass: the running value is the pass's last prefix (read back exactly by a masked sum)."""
        lines = ["last = col == start + BLOCK_D - 1",
                 "carry = tl.sum(tl.where(last, y, 0), 1)[:, None]"]
        if self.kind in PAIRED:
            lines.append("carry_j = tl.sum(tl.where(last, j, 0), 1)[:, None]")
        return lines

    def kernel_body(self, phase: str = "whole") -> list[str]:
        """A sweep over the source's rows: "whole" rows, storing the scan; or, for split rows, one chunk per
        program: "reduce" stores the chunk's total, "finish" starts from the totals before it and stores."""
        acc = TL[self.acc]
        converted = "x" if self.source_dtype == self.out_dtype else f"x.to({TL[self.out_dtype]})"
        split = phase != "whole"
        block = f"tl.program_id(0) // {self.chunks}" if split else "tl.program_id(0)"
        body = [f"row = ({block}).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)[:, None]",
                f"live = row < {self.rows}",
                f"base = (row // {self.inner}) * s0 + (row % {self.inner}) * s2"]
        if phase != "reduce":
            body.append(f"at = (row // {self.inner}) * {self.width * self.inner} + row % {self.inner}")
        if split:
            body += [f"chunk = tl.program_id(0) % {self.chunks}",
                     f"total_at = row * {self.chunks} + chunk"]
        if phase == "finish":   # the inclusive total of the chunks before this one (none before the first)
            body += ["earlier = live & (chunk + tl.zeros_like(row) > 0)",   # a tile: the interpreter masks with arrays
                     f"carry = tl.load(total + total_at - 1, mask=earlier, other={IDENTITY[self.kind]})"]
            if self.kind in PAIRED:
                body.append("carry_j = tl.load(total_j + total_at - 1, mask=earlier, other=-1)")
        else:
            body += self.start_lines()
        if split:
            body += [f"for step in range(0, {self.chunk}, BLOCK_D):",
                     f"    start = chunk * {self.chunk} + step"]
        else:
            body.append(f"for start in range(0, {self.width}, BLOCK_D):")
        body += ["    col = start + tl.arange(0, BLOCK_D)[None, :]",
                 f"    mask = live & (col < {self.width})",
                 f"    x = tl.load(in0 + base + col * s1, mask=mask, other={IDENTITY[self.kind]})",
                 f"    x = {converted}.to({acc})"]
        body += ["    " + line for line in self.scan_lines() + self.carry_lines()]
        if phase == "reduce":
            body.append("tl.store(total + total_at, carry, mask=live)")
            if self.kind in PAIRED:
                body.append("tl.store(total_j + total_at, carry_j, mask=live)")
        else:
            body.append(f"    tl.store(out0 + at + col * {self.inner}, y.to({TL[self.out_dtype]}), mask=mask)")
            if self.kind in PAIRED:
                body.append(f"    tl.store(out1 + at + col * {self.inner}, j, mask=mask)")
        return body

    def totals_body(self) -> list[str]:
        """The inclusive scan, in place, of each row's chunk totals [rows, chunks] (accumulation type; cummax and
        cummin keep each total's index beside it)."""
        body = ["row = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)[:, None]",
                f"live = row < {self.rows}"]
        body += self.start_lines()
        body += [f"for start in range(0, {self.chunks}, BLOCK_D):",
                 "    col = start + tl.arange(0, BLOCK_D)[None, :]",
                 f"    mask = live & (col < {self.chunks})",
                 f"    at = row * {self.chunks} + col",
                 f"    x = tl.load(total + at, mask=mask, other={IDENTITY[self.kind]})"]
        if self.kind in PAIRED:
            body.append("    x_j = tl.load(total_j + at, mask=mask, other=0)")
        body += ["    " + line for line in self.scan_lines("x_j") + self.carry_lines()]
        body.append("    tl.store(total + at, y, mask=mask)")
        if self.kind in PAIRED:
            body.append("    tl.store(total_j + at, j, mask=mask)")
        return body

    # ------------------------------------------------------------------ host code

    def emit(self) -> None:
        lowering, node = self.lowering, self.node
        name = f"v{lowering.partition.index[node]}"
        source = lowering.argument(node.args[0])
        slots = result_slots(lowering, name, self.results(),
                             lambda result: 1 if result is not node and result.args[1] == 1 else 0)
        positions = (0, 1) if self.kind in PAIRED else (0,)
        for position in positions:   # a result nobody reads still needs a buffer to be stored into
            if position not in slots:
                dtype = torch.int64 if position else self.out_dtype
                slots[position] = f"{name}_{'indices' if position else 'values'}"
                lowering.lines.append(f"{slots[position]} = torch.empty(({self.rows * self.width},), "
                                      f"dtype={dtype}, device={lowering.device})")
        outputs = [slots[p] for p in positions]
        lowering.lines.append(f"{name}_x = {source}.reshape({self.outer}, {self.width}, {self.inner})")
        strides = f"{name}_x.stride(0), {name}_x.stride(1), {name}_x.stride(2)"
        paired = self.kind in PAIRED
        row_blocks = -(-self.rows // self.block_r)
        if not self.chunk:
            self.launch("whole", ["in0", *[f"out{p}" for p in positions], "s0", "s1", "s2"], row_blocks,
                        [f"{name}_x", *outputs, strides], self.block_r, self.block_d)
            return
        totals = [f"{name}_total", *([f"{name}_total_j"] if paired else [])]
        total_parameters = ["total", *(["total_j"] if paired else [])]
        lowering.lines.append(f"{totals[0]} = torch.empty(({self.rows * self.chunks},), dtype={self.acc}, "
                              f"device={lowering.device})")
        if paired:
            lowering.lines.append(f"{totals[1]} = torch.empty(({self.rows * self.chunks},), dtype=torch.int64, "
                                  f"device={lowering.device})")
        self.launch("reduce", ["in0", *total_parameters, "s0", "s1", "s2"], row_blocks * self.chunks,
                    [f"{name}_x", *totals, strides], self.block_r, self.block_d)
        block_r, block_d = blocks(self.rows, self.chunks)
        self.launch("totals", total_parameters, -(-self.rows // block_r), totals, block_r, block_d)
        self.launch("finish", ["in0", *total_parameters, *[f"out{p}" for p in positions], "s0", "s1", "s2"],
                    row_blocks * self.chunks, [f"{name}_x", *totals, *outputs, strides], self.block_r, self.block_d)

    def launch(self, phase: str, parameters: list[str], programs: int, arguments: list[str], block_r: int,
               block_d: int) -> None:
        """One kernel of the scan and its launch."""
        lowering = self.lowering
        kernel = f"{lowering.prefix}_k{len(lowering.kernels)}"
        body = self.totals_body() if phase == "totals" else self.kernel_body(phase)
        lowering.kernels.append({"name": kernel, "parameters": [*parameters, "BLOCK_R: tl.constexpr",
                                                                "BLOCK_D: tl.constexpr"],
                                 "body": body, "unspecialized": [], "uses_tanh": False})
        warps = min(8, max(1, block_r * block_d // 512))
        lowering.lines.append(f"_lean({kernel})[({programs},)]({', '.join(arguments)}, BLOCK_R={block_r}, "
                              f"BLOCK_D={block_d}, num_warps={warps})")
        lowering.launches += 1
