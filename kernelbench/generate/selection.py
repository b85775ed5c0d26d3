"""Selection ops in the front end: argmax/argmin, max/min along a dimension, top-k and the sort of rows of up to
TILE elements as generated kernels,
so a graph of selection ops alone (greedy decoding, a top-k sampling filter) is not left to the library.

Every element is ranked by one int64 key, so one `tl.max` (argmax) or one `tl.topk` (top-k) both selects and
breaks ties, and a partial result is a key that a second kernel merges:
    key = (order << 32) | (2^32 - 1 - column)
`order` is an int32 that sorts as the value does (a float's bits with the magnitude bits flipped when
negative; an integer itself; its complement for the smallest), so larger keys are better values and, among
equal values, lower columns: torch's argmax/max(dim) return the first extreme index, and lowest-index-first is
the order CUDA's topk gives equal values. NaN is made one canonical NaN, which ranks above +inf as torch ranks
NaN above everything (and, for argmin/min, is forced to the top: the NaN wins there too, while topk(largest=
False) puts it last); -0.0 becomes 0.0 so it ties with 0.0 as torch compares them.

A row that fits one tile (up to TILE columns) is ranked by one program per block of rows, straight into
the outputs. A longer one is split: programs of TILE columns each write their best key (argmax) or their
top-KP keys (KP: k rounded up to a power of two), and a merge kernel ranks each row's candidates; so one
152K-wide row keeps dozens of SMs busy. A tile's top-k is k rounds of max (k <= ROUNDS_MAX_K) or Triton's
bitonic tl.topk; a sort is tl.sort of the keys (equal values in index order: what a stable sort gives). fp64 and
int64 values (no room for the column in the key), sorted=False (torch's order is unspecified) and run-time sizes
raise Unsupported: the op stays a library call.

A top-k of more than MAX_K (a sparse-attention indexer keeps 2048 of 128K keys) is a radix select instead
(RadixTopK): four passes of 256-bin histograms over the 8-bit digits of the value's 32-bit order, each counting
only the elements whose higher digits equal those fixed so far, find the k-th value T and how many elements
equal to T it takes; a collect pass writes the keys above T (slots taken with an atomic counter: their order does
not matter) and counts each tile's keys equal to T; a last program per row adds the equal ones of the lowest
columns, reading only the tiles that hold some, and sorts the k keys. The row is read five times; nothing is
sorted but the k results.
"""

from __future__ import annotations

import math
import operator

import torch
import torch.fx

from kernelbench.generate.frontend import (
    TL,
    Unsupported,
    is_symbolic,
    lower_with,
    result_slots,
    tensor_meta,
)

aten = torch.ops.aten

MAX_K = 128              # top-k beyond this: a radix select (a sort per tile loses to the library's)
RADIX_MAX_K = 8192       # the radix select's k keys are sorted by one program
ROUNDS_MAX_K = 16        # top-k up to this: k rounds of max; beyond, a bitonic top-k (benchmarks/family_selection.py)
TILE = 4096              # columns one program ranks (a power of two)
MAX_CANDIDATES = 8192    # keys a merge program ranks per row
TARGET_PROGRAMS = 264    # two programs per SM of an H100: a split argmax keeps the GPU busy on few rows
RANKED = (torch.float32, torch.float16, torch.bfloat16, torch.int32, torch.int16, torch.int8, torch.uint8)
MASKED = "-9223372036854775807"   # below every real key: a column past the row's end
LOW = "4294967295"                # 2^32 - 1


def _index_of(node: torch.fx.Node) -> tuple[str, int, bool, bool]:
    """(kind, k, largest, keeps values) of a selection node; kind is 'arg' (one index) or 'top'."""
    args = list(node.args) + [None] * 5
    if node.target in (aten.argmax.default, aten.argmin.default):
        return "arg", 1, node.target is aten.argmax.default, False
    if node.target in (aten.max.dim, aten.min.dim):
        return "arg", 1, node.target is aten.max.dim, True
    if node.target in (aten.sort.default, aten.sort.stable):   # a top-k of the whole row (k set by the caller)
        descending = node.kwargs.get("descending", args[2] if node.target is aten.sort.default else None)
        return "sort", 0, bool(descending), True
    k = args[1]
    largest = node.kwargs.get("largest", True if args[3] is None else args[3])
    ordered = node.kwargs.get("sorted", True if args[4] is None else args[4])
    if not isinstance(k, int) or not 1 <= k <= RADIX_MAX_K:
        raise Unsupported(f"topk with k={k} (at most {RADIX_MAX_K})")
    if not ordered and k > 1:
        raise Unsupported("topk with sorted=False: torch's order of the k values is unspecified")
    return "top", k, bool(largest), True


SELECTIONS = {aten.argmax.default, aten.argmin.default, aten.max.dim, aten.min.dim, aten.topk.default,
              aten.sort.default, aten.sort.stable}


def lowered(lowering, node: torch.fx.Node) -> bool:
    """Lower a selection node into kernels (and name its results); True when done, or when the node is an
    element of a selection already lowered. False leaves the node to the library (nothing was changed)."""
    return lower_with(lowering, node, SELECTIONS, lambda lowering, node: (
        RadixTopK if node.target is aten.topk.default and _index_of(node)[1] > MAX_K else Selection)(lowering, node))


class Selection:
    """The kernels and launches of one selection node (checked in the constructor, emitted by emit())."""

    def __init__(self, lowering, node: torch.fx.Node):
        self.lowering, self.node = lowering, node
        source = node.args[0]
        meta = tensor_meta(source) if isinstance(source, torch.fx.Node) else None
        if meta is None or is_symbolic(meta) or any(is_symbolic(tensor_meta(u)) for u in self.results()):
            raise Unsupported("a selection of run-time size")
        if meta.dtype not in RANKED:
            raise Unsupported(f"a selection over {meta.dtype} (no room for the column beside the value)")
        self.kind, self.k, self.largest, self.values = _index_of(node)
        self.dtype = meta.dtype
        args = list(node.args) + [None] * 3
        if self.kind == "sort":
            dim = node.kwargs.get("dim", -1 if node.target is aten.sort.stable or args[1] is None else args[1])
        else:
            dim = args[1] if self.kind == "arg" else (args[2] if args[2] is not None else -1)
        shape = tuple(meta.shape)
        if dim is None:   # argmax over the whole tensor: one row of all its elements
            self.outer, self.width, self.inner = 1, max(1, math.prod(shape)), 1
            self.flat = True
        else:
            d = dim % max(1, len(shape))
            self.outer = math.prod(shape[:d]) if shape else 1
            self.width = shape[d] if shape else 1
            self.inner = math.prod(shape[d + 1:]) if shape else 1
            self.flat = False
        self.rows = self.outer * self.inner
        if self.kind == "sort":
            if self.width > TILE:
                raise Unsupported(f"a sort of rows of {self.width} (one tile of {TILE} at most)")
            self.k = self.width
        if self.rows == 0 or self.width == 0:
            raise Unsupported("an empty selection")
        if self.width >= 2 ** 31:
            raise Unsupported("a row of 2^31 elements or more")
        if self.k > self.width:
            raise Unsupported(f"topk of {self.k} from {self.width}")
        self.kp = 1 << (self.k - 1).bit_length()
        self.block_d, self.splits = self.tiling()
        self.block_r = 1 if self.splits > 1 else \
            max(1, min(1 << (self.rows - 1).bit_length(), TILE // self.block_d))

    def results(self) -> list[torch.fx.Node]:
        """The nodes holding the results: the node itself (argmax) or its getitem users (max.dim, topk)."""
        if self.node.target in (aten.argmax.default, aten.argmin.default):
            return [self.node]
        users = list(self.node.users)
        if not all(u.target is operator.getitem and u.args[1] in (0, 1) for u in users):
            raise Unsupported("a selection read other than by its values and indices")
        return users

    def tiling(self) -> tuple[int, int]:
        """(columns a program ranks, programs per row)."""
        whole = 1 << (self.width - 1).bit_length()
        if self.k == 1:
            block = TILE * 2
            while block > TILE // 4 and self.rows * math.ceil(self.width / block) < TARGET_PROGRAMS:
                block //= 2
            block = min(block, whole)
            return block, math.ceil(self.width / block)
        if whole <= TILE:
            return whole, 1
        block = TILE
        while math.ceil(self.width / block) * self.kp > MAX_CANDIDATES:
            block *= 2
        if block > 4 * TILE:
            raise Unsupported(f"topk of {self.k} over rows of {self.width}: too many candidates to merge")
        return block, math.ceil(self.width / block)

    # ------------------------------------------------------------------ kernel text

    def key_lines(self, value: str) -> list[str]:
        """`key` from the loaded `value` (its compute type) at `col`, masked by `mask`."""
        lines = []
        if self.dtype.is_floating_point:
            lines += [f"v = tl.where({value} != {value}, float('nan'), tl.where({value} == 0.0, 0.0, {value}))",
                      "b = v.to(tl.int32, bitcast=True)",
                      "order = tl.where(b >= 0, b, b ^ 2147483647)"]
        else:
            lines.append(f"order = {value}.to(tl.int32)")
        if not self.largest:
            lines.append("order = ~order")
            if self.dtype.is_floating_point and self.kind == "arg":   # argmin and min(dim) pick the NaN
                lines.append("order = tl.where(v != v, 2147483647, order)")
        lines += [f"key = (order.to(tl.int64) << 32) | ({LOW} - col.to(tl.int64))",
                  f"key = tl.where(mask, key, {MASKED})"]
        return lines

    def decode_lines(self, key: str) -> list[str]:
        """`index` (int64) and `value` (the input's compute type) of `key`."""
        lines = [f"index = {LOW} - ({key} & {LOW})"]
        if self.values:
            lines.append(f"order = ({key} >> 32).to(tl.int32)")
            if not self.largest:
                lines.append("order = ~order")
            if self.dtype.is_floating_point:
                lines.append("value = tl.where(order >= 0, order, order ^ 2147483647).to(tl.float32, bitcast=True)")
            else:
                lines.append("value = order")
        return lines

    def select_lines(self) -> list[str]:
        """`best` from `key` [BLOCK_R, BLOCK_D]: the row's best key [BLOCK_R, 1] or its top KP [BLOCK_R, KP]."""
        if self.k == 1:
            return ["best = tl.max(key, 1)[:, None]"]
        if self.kind == "sort":   # better keys first: equal values in index order, as a stable sort leaves them
            return ["best = tl.sort(key, 1, True)"]
        # k rounds of max pick the same keys in the same order (each key is unique: it holds its column): a few
        # reductions for a small k; for a larger one a bitonic top-k on the GPU (Triton's CPU interpreter sorts
        # very slowly, so it takes the rounds whatever k)
        rounds = [f"best = tl.full([BLOCK_R, {self.kp}], {MASKED}, tl.int64)",
                  f"for t in tl.static_range({self.k}):",
                  "    top = tl.max(key, 1)[:, None]",
                  f"    best = tl.where(tl.arange(0, {self.kp})[None, :] == t, top, best)",
                  f"    key = tl.where(key == top, {MASKED}, key)"]
        if self.k <= ROUNDS_MAX_K:
            return rounds
        return ["if INTERPRETED:", *["    " + line for line in rounds], "else:", f"    best = tl.topk(key, {self.kp})"]

    def store_lines(self) -> list[str]:
        """The decoded `best` into the outputs: element j of row r at (r // INNER, j, r % INNER)."""
        lines = self.decode_lines("best")
        j = "tl.arange(0, 1)[None, :]" if self.k == 1 else f"tl.arange(0, {self.kp})[None, :]"
        lines += [f"j = {j}",
                  f"at = (row // {self.inner}) * {self.k * self.inner} + j * {self.inner} + row % {self.inner}",
                  f"keep = (row < {self.rows}) & (j < {self.k})"]
        out = 0
        if self.values:
            lines.append(f"tl.store(out0 + at, value.to({TL[self.dtype]}), mask=keep)")
            out = 1
        lines.append(f"tl.store(out{out} + at, index, mask=keep)")
        return lines

    def rank_kernel(self) -> tuple[list[str], list[str]]:
        """(parameters, body) of the kernel that ranks tiles of the input rows."""
        body = ["row = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)[:, None]",
                "col = tl.program_id(1).to(tl.int64) * BLOCK_D + tl.arange(0, BLOCK_D)[None, :]",
                f"mask = (row < {self.rows}) & (col < {self.width})",
                self.load_line()]
        body += self.key_lines("x") + self.select_lines()
        if self.splits == 1:
            body += self.store_lines()
            outputs = ["out0", "out1"] if self.values else ["out0"]
        else:   # the tile's best keys, KP a tile, for the merge
            body += [f"j = tl.arange(0, {self.kp})[None, :]",
                     f"tl.store(part + row * {self.splits * self.kp} + tl.program_id(1) * {self.kp} + j, best, "
                     f"mask=row < {self.rows})"]
            outputs = ["part"]
        return ["in0", *outputs, "s0", "s1", "s2", "BLOCK_R: tl.constexpr", "BLOCK_D: tl.constexpr",
                "INTERPRETED: tl.constexpr"], body

    def merge_kernel(self) -> tuple[list[str], list[str]]:
        candidates = self.splits * self.kp
        body = ["row = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)[:, None]",
                "col = tl.arange(0, BLOCK_D)[None, :]",
                f"mask = col < {candidates}",
                f"key = tl.load(part + row * {candidates} + col, mask=mask, other={MASKED})"]
        body += self.select_lines() + self.store_lines()
        outputs = ["out0", "out1"] if self.values else ["out0"]
        return ["part", *outputs, "BLOCK_R: tl.constexpr", "BLOCK_D: tl.constexpr", "INTERPRETED: tl.constexpr"], body

    # ------------------------------------------------------------------ host code

    def emit(self) -> None:
        lowering, node = self.lowering, self.node
        name = f"v{lowering.partition.index[node]}"
        source = lowering.argument(node.args[0])
        outputs = self.output_buffers(name)
        if self.flat:
            lowering.lines.append(f"{name}_x = {source}.reshape(1, {self.width}, 1)")
        else:
            lowering.lines.append(f"{name}_x = {source}.reshape({self.outer}, {self.width}, {self.inner})")
        strides = f"{name}_x.stride(0), {name}_x.stride(1), {name}_x.stride(2)"
        warps = min(8, max(1, self.block_r * self.block_d // 512))
        parameters, body = self.rank_kernel()
        rank = self.kernel(parameters, body)
        grid = f"(_cdiv({self.rows}, {self.block_r}), {self.splits})"
        if self.splits == 1:
            lowering.lines.append(f"_lean({rank})[{grid}]({name}_x, {', '.join(outputs)}, {strides}, "
                                  f"BLOCK_R={self.block_r}, BLOCK_D={self.block_d}, INTERPRETED=_INTERPRETED, num_warps={warps})")
            lowering.launches += 1
            return
        candidates = self.splits * self.kp
        lowering.lines += [f"{name}_part = torch.empty(({self.rows * candidates},), dtype=torch.int64, "
                           f"device={lowering.device})",
                           f"_lean({rank})[{grid}]({name}_x, {name}_part, {strides}, BLOCK_R=1, BLOCK_D={self.block_d}, "
                           f"INTERPRETED=_INTERPRETED, num_warps={warps})"]
        parameters, body = self.merge_kernel()
        merge = self.kernel(parameters, body)
        block_c = 1 << (candidates - 1).bit_length()
        lowering.lines.append(f"_lean({merge})[({self.rows},)]({name}_part, {', '.join(outputs)}, BLOCK_R=1, BLOCK_D={block_c}, "
                              f"INTERPRETED=_INTERPRETED, num_warps={min(8, max(1, block_c // 256))})")
        lowering.launches += 2

    def output_buffers(self, name: str) -> list[str]:
        """The host names the kernels store into: the values (when kept) and the indices, each a result's name or
        its destination; a result nobody reads still gets a buffer."""
        lowering, node = self.lowering, self.node
        slots = result_slots(lowering, name, self.results(),
                             lambda result: 1 if result is node or result.args[1] == 1 else 0)
        for position in (0, 1):
            if position not in slots and (position == 1 or self.values):
                dtype = torch.int64 if position else self.dtype
                slots[position] = f"{name}_{'indices' if position else 'values'}"
                lowering.lines.append(f"{slots[position]} = torch.empty(({self.rows * self.k},), dtype={dtype}, "
                                      f"device={lowering.device})")
        return [slots[0], slots[1]] if self.values else [slots[1]]

    def load_line(self) -> str:
        """`x`: the input at (`row`, `col`) under `mask`, in its compute type."""
        compute = "tl.float32" if self.dtype.is_floating_point else "tl.int32"
        return (f"x = tl.load(in0 + (row // {self.inner}) * s0 + (row % {self.inner}) * s2 + col * s1, mask=mask)"
                f".to({compute})")

    def kernel(self, parameters: list[str], body: list[str]) -> str:
        name = f"{self.lowering.prefix}_k{len(self.lowering.kernels)}"
        self.lowering.kernels.append({"name": name, "parameters": parameters, "body": body, "unspecialized": [],
                                      "uses_tanh": False})
        return name


class RadixTopK(Selection):
    """A top-k of more than MAX_K as a radix select over the values' 32-bit order (the module's docstring)."""

    PASSES = 4   # 8-bit digits of the order, highest first

    def tiling(self) -> tuple[int, int]:
        whole = 1 << (self.width - 1).bit_length()
        block = min(TILE, whole)
        return block, math.ceil(self.width / block)

    def load_lines(self, tile: str) -> list[str]:
        """`x`, `col`, `mask` of one tile of the row `row` (a scalar), then its `order` and `key`, and `u`: the order
        as an unsigned 32-bit number (larger is better)."""
        return [f"col = ({tile}) * BLOCK_D + tl.arange(0, BLOCK_D).to(tl.int64)",
                f"mask = col < {self.width}",
                self.load_line(),
                *self.key_lines("x"),
                "u = order.to(tl.int64) + 2147483648"]

    def state_lines(self, step: str) -> list[str]:
        """`prefix` (the digits fixed before pass `step`, in place) and `need` (how many of the elements having that
        prefix the top-k still takes), from the state and histogram the pass before left; program (row, 0) stores
        them for the next pass."""
        return [f"if {step} == 0:",
                "    prefix = tl.zeros([], tl.int64)",
                f"    need = tl.full([], {self.k}, tl.int64)",
                "else:",
                f"    counts = tl.load(hist + (({step} - 1) * {self.rows} + row) * 256 + tl.arange(0, 256)).to(tl.int64)",
                f"    prefix = tl.load(state + (({step} - 1) * {self.rows} + row) * 2)",
                f"    need = tl.load(state + (({step} - 1) * {self.rows} + row) * 2 + 1)",
                "    above = tl.sum(counts, 0) - tl.cumsum(counts, 0)   # elements in the bins above each digit",
                "    hit = (above < need) & (above + counts >= need)     # the digit of the k-th element",
                "    prefix = prefix | (tl.max(tl.where(hit, tl.arange(0, 256), 0), 0).to(tl.int64) << "
                f"(24 - 8 * ({step} - 1)))",
                "    need = need - tl.sum(tl.where(hit, above, 0), 0)",
                "if tl.program_id(1) == 0:",
                f"    tl.store(state + ({step} * {self.rows} + row) * 2, prefix)",
                f"    tl.store(state + ({step} * {self.rows} + row) * 2 + 1, need)"]

    def histogram_kernel(self) -> tuple[list[str], list[str]]:
        body = ["row = tl.program_id(0).to(tl.int64)", *self.load_lines("tl.program_id(1).to(tl.int64)"),
                *self.state_lines("PASS"),
                "shift = 24 - 8 * PASS",
                "same = mask & ((u >> (shift + 8)) == (prefix >> (shift + 8)))",
                "counted = tl.histogram(((u >> shift) & 255).to(tl.int32), 256, mask=same)",
                f"tl.atomic_add(hist + (PASS * {self.rows} + row) * 256 + tl.arange(0, 256), counted)"]
        return ["in0", "hist", "state", "s0", "s1", "s2", "BLOCK_D: tl.constexpr", "PASS: tl.constexpr"], body

    def collect_kernel(self) -> tuple[list[str], list[str]]:
        """The keys above T into the row's first k - need slots; each tile's count of keys equal to T."""
        body = ["row = tl.program_id(0).to(tl.int64)", *self.load_lines("tl.program_id(1).to(tl.int64)"),
                *self.state_lines(str(self.PASSES)),
                "above = mask & (u > prefix)",
                "count = tl.sum(above.to(tl.int32), 0)",
                "first = tl.atomic_add(taken + row, count)",
                "slot = first + tl.cumsum(above.to(tl.int32), 0) - 1",
                f"tl.store(keys + row * {self.kp} + slot, key, mask=above)",
                f"tl.store(equal + row * {self.splits} + tl.program_id(1), tl.sum((mask & (u == prefix)).to(tl.int32), 0))"]
        return ["in0", "hist", "state", "taken", "keys", "equal", "s0", "s1", "s2", "BLOCK_D: tl.constexpr"], body

    def finish_kernel(self) -> tuple[list[str], list[str]]:
        """The `need` keys equal to T of the lowest columns after the others, then the k keys sorted."""
        body = ["row = tl.program_id(0).to(tl.int64)",
                f"prefix = tl.load(state + ({self.PASSES} * {self.rows} + row) * 2)",
                f"need = tl.load(state + ({self.PASSES} * {self.rows} + row) * 2 + 1)",
                # each tile's count of equal keys and how many come before it, in registers: a tile is read only
                # when it holds some of the `need` lowest-column ones
                f"t = tl.arange(0, {1 << (self.splits - 1).bit_length()})",
                f"counts = tl.load(equal + row * {self.splits} + t, mask=t < {self.splits}, other=0).to(tl.int64)",
                "before = tl.cumsum(counts, 0) - counts",
                f"for tile in range(0, {self.splits}):",
                "    start = tl.sum(tl.where(t == tile, before, 0), 0)",
                "    if (start < need) & (tl.sum(tl.where(t == tile, counts, 0), 0) > 0):",
                *["        " + line for line in self.load_lines("tile")],
                "        same = mask & (u == prefix)",
                "        rank = start + tl.cumsum(same.to(tl.int64), 0)",
                f"        tl.store(keys + row * {self.kp} + {self.k} - need + rank - 1, key, mask=same & (rank <= need))",
                "tl.debug_barrier()",
                f"j = tl.arange(0, {self.kp})[None, :]",
                f"key = tl.load(keys + row * {self.kp} + j, mask=j < {self.k}, other={MASKED})",
                "row = row + tl.zeros([1, 1], tl.int64)",
                *self.sort_lines(),
                *self.store_lines()]
        outputs = ["out0", "out1"] if self.values else ["out0"]
        return ["in0", "state", "keys", "equal", *outputs, "s0", "s1", "s2", "BLOCK_D: tl.constexpr",
                "INTERPRETED: tl.constexpr"], body

    def sort_lines(self) -> list[str]:
        """`best` [1, KP]: the keys in descending order (k rounds of max in the interpreter, which sorts slowly)."""
        rounds = [f"best = tl.full([1, {self.kp}], {MASKED}, tl.int64)",
                  f"for t in range(0, {self.k}):",
                  "    top = tl.max(key, 1)[:, None]",
                  f"    best = tl.where(tl.arange(0, {self.kp})[None, :] == t, top, best)",
                  f"    key = tl.where(key == top, {MASKED}, key)"]
        return ["if INTERPRETED:", *["    " + line for line in rounds], "else:", "    best = tl.sort(key, 1, True)"]

    def emit(self) -> None:
        lowering, node = self.lowering, self.node
        name = f"v{lowering.partition.index[node]}"
        outputs = ", ".join(self.output_buffers(name))
        source = lowering.argument(node.args[0])
        rows, device = self.rows, lowering.device
        strides = f"{name}_x.stride(0), {name}_x.stride(1), {name}_x.stride(2)"
        warps = min(8, max(1, self.block_d // 512))
        histogram, collect, finish = (self.kernel(*make()) for make in (self.histogram_kernel, self.collect_kernel,
                                                                        self.finish_kernel))
        lowering.lines += [
            f"{name}_x = {source}.reshape({self.outer}, {self.width}, {self.inner})",
            f"{name}_counts = torch.zeros(({self.PASSES * rows * 256 + rows},), dtype=torch.int32, device={device})",
            f"{name}_hist, {name}_taken = {name}_counts[:{self.PASSES * rows * 256}], "
            f"{name}_counts[{self.PASSES * rows * 256}:]",
            f"{name}_state = torch.empty(({(self.PASSES + 1) * rows * 2},), dtype=torch.int64, device={device})",
            f"{name}_keys = torch.empty(({rows * self.kp},), dtype=torch.int64, device={device})",
            f"{name}_equal = torch.empty(({rows * self.splits},), dtype=torch.int32, device={device})",
            *[f"_lean({histogram})[({rows}, {self.splits})]({name}_x, {name}_hist, {name}_state, {strides}, "
              f"BLOCK_D={self.block_d}, PASS={p}, num_warps={warps})" for p in range(self.PASSES)],
            f"_lean({collect})[({rows}, {self.splits})]({name}_x, {name}_hist, {name}_state, {name}_taken, {name}_keys, "
            f"{name}_equal, {strides}, BLOCK_D={self.block_d}, num_warps={warps})",
            f"_lean({finish})[({rows},)]({name}_x, {name}_state, {name}_keys, {name}_equal, {outputs}, {strides}, "
            f"BLOCK_D={self.block_d}, INTERPRETED=_INTERPRETED, num_warps={min(8, max(1, self.kp // 256))})"]
        lowering.launches += self.PASSES + 3
