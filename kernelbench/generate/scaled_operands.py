"""A matrix product of scaled fp8 operands, read from a captured graph and rewritten into one scaled_mm node.

References write an fp8 GEMM as dequantize-then-matmul: each operand is `(fp8 tensor -> float32) * scale`, the
scale a scalar, a [M, 1] / [1, N] vector, or block scales broadcast to the operand (repeat_interleave, or a
reshape to (M/bm, bm, K/bk, bk)), then a float32 mm. `rewrite_scaled_products(capture)` replaces each such mm with
`kernelbench::scaled_mm(a8, b8, scale_a, scale_b, a_map, b_map, scale_a_map, scale_b_map)`: the fp8 tensors and
the scale tensors as they were before any broadcast, and index maps that say where each element of the product's
operands is read:
  - a_map [offset, row stride, column stride]: operand[r, c] = flat(a8)[offset + r * sr + c * sc];
  - scale_a_map [offset, row block, row stride, column block, column stride]:
    scale of operand[r, c] = flat(scale_a)[offset + (r // row block) * row stride + (c // column block) * column stride]
(flat(): the tensor's elements in contiguous order). A is the product's [M, K] operand, B its [K, N] one, so a
scale constant over K has column block K for A and row block K for B: per-tensor scales have both blocks whole,
per-row (per-token, per-channel) ones a block of 1 along M or N, 1x128 / 128x128 ones a block of 128 along K.

Nothing is assumed: the maps are computed by replaying the graph's own view ops (unsqueeze, expand, clone, view,
slice, permute, ...) on tensors of flat indices at the captured (concrete) sizes, and a map is accepted only when
the replayed indices equal the affine / block formula at every element. The scale blocks are therefore proven
aligned at 0 and constant over each block. Maths: mm(qa * sa, qb * sb)[m, n] = sum_g sa[m, g] sb[g, n] sum_{k in g}
qa[m, k] qb[k, n] over the K blocks g on which both scales are constant, which is what the kernel computes.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.fx

from kernelbench.generate.frontend import ORDER_KEEPING_VIEWS, TEMPLATE_CALLS, Unsupported, tensor_meta
from kernelbench.generate.graph import Capture

aten = torch.ops.aten
prims = torch.ops.prims

FP8 = (torch.float8_e4m3fn, torch.float8_e5m2)
# Exact holders of every fp8 value (e4m3 and e5m2 fit in the exponent and mantissa of each): casts through them
# change no fp8 value.
WIDE = (torch.float16, torch.bfloat16, torch.float32)
SCALE_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
CASTS = {aten._to_copy.default, prims.convert_element_type.default}
# Ops that move elements without computing: replayed on index tensors they give each element's source index.
INDEX_OPS = ORDER_KEEPING_VIEWS | {aten.permute.default, aten.t.default, aten.transpose.int, aten.expand.default,
                                   aten.slice.Tensor, aten.select.int, aten.alias.default, aten.detach.default,
                                   aten.clone.default, aten.repeat.default}
MAX_PROVEN_ELEMENTS = 1 << 28    # an index map is materialized (4-8 bytes an element) to be checked
MIN_K_GROUP = 16                 # tl.dot's least K: a K block of scales shorter than this leaves no tile inside it


@torch.library.custom_op("kernelbench::scaled_mm", mutates_args=())
def scaled_mm(a8: torch.Tensor, b8: torch.Tensor, scale_a: torch.Tensor | None, scale_b: torch.Tensor | None,
              a_map: list[int], b_map: list[int], scale_a_map: list[int], scale_b_map: list[int], m: int, n: int,
              k: int) -> torch.Tensor:
    """The product of the dequantized operands in float32 (the semantics the kernel implements)."""
    return (dequantized(a8, scale_a, a_map, scale_a_map, m, k) @ dequantized(b8, scale_b, b_map, scale_b_map, k, n))


@scaled_mm.register_fake
def _scaled_mm_shape(a8, b8, scale_a, scale_b, a_map, b_map, scale_a_map, scale_b_map, m, n, k):
    return a8.new_empty((m, n), dtype=torch.float32)


SCALED_MM = torch.ops.kernelbench.scaled_mm.default


def dequantized(data: torch.Tensor, scale: torch.Tensor | None, data_map: list[int], scale_map: list[int], rows: int,
                cols: int) -> torch.Tensor:
    """The operand [rows, cols] the maps describe, in float32 (scale None: the fp8 values themselves)."""
    r = torch.arange(rows, device=data.device)[:, None]
    c = torch.arange(cols, device=data.device)[None, :]
    offset, sr, sc = data_map
    values = data.contiguous().view(-1)[offset + r * sr + c * sc].to(torch.float32)
    if scale is None:
        return values
    offset, br, sr, bc, sc = scale_map
    return values * scale.contiguous().view(-1)[offset + (r // br) * sr + (c // bc) * sc].to(torch.float32)


def _chain(node: Any) -> tuple[torch.fx.Node, list[torch.fx.Node], list[torch.dtype]]:
    """(source, index ops from it in order, cast dtypes in order) of a value reached through index ops and casts; an
    fp8 value is a source (its computation, a quantization, is no part of the scaled product)."""
    ops, casts = [], []
    while isinstance(node, torch.fx.Node) and node.op == "call_function" and tensor_meta(node) is not None and \
            tensor_meta(node).dtype not in FP8 and (
            node.target in INDEX_OPS or (node.target in CASTS and set(node.kwargs) <= {"dtype", "layout", "device",
                                                                                      "memory_format"})):
        if node.target in CASTS:
            casts.append(tensor_meta(node).dtype)
        else:
            if any(isinstance(a, torch.fx.Node) for a in [*node.args[1:], *node.kwargs.values()]):
                raise Unsupported(f"{node.target} with a tensor-valued size")
            ops.append(node)
        node = node.args[0]
    if not isinstance(node, torch.fx.Node) or tensor_meta(node) is None:
        raise Unsupported("a scaled operand that is no tensor")
    return node, ops[::-1], casts[::-1]


def _index_map(source: torch.fx.Node, ops: list[torch.fx.Node]) -> torch.Tensor:
    """Each element's flat index into `source` (contiguous order) after the index ops: the graph's own ops
    replayed on a tensor of indices."""
    shape = tensor_meta(source).shape
    if math.prod(shape) >= 2 ** 31 or any(math.prod(tensor_meta(op).shape) > MAX_PROVEN_ELEMENTS for op in ops):
        raise Unsupported("an operand too large to prove its index map")
    index = torch.arange(math.prod(shape), dtype=torch.int32).reshape(shape)
    for op in ops:
        index = op.target(index, *op.args[1:], **op.kwargs)
    return index


def strided_map(index: torch.Tensor) -> list[int]:
    """[offset, row stride, column stride] when index[r, c] == offset + r * sr + c * sc everywhere; else raises."""
    rows, cols = index.shape
    offset = int(index[0, 0])
    sr = int(index[1, 0]) - offset if rows > 1 else 0
    sc = int(index[0, 1]) - offset if cols > 1 else 0
    r = torch.arange(rows, dtype=torch.int64)[:, None]
    c = torch.arange(cols, dtype=torch.int64)[None, :]
    if not torch.equal(index.to(torch.int64), offset + r * sr + c * sc):
        raise Unsupported("an fp8 operand that is no strided view of its tensor")
    return [offset, sr, sc]


def block_map(index: torch.Tensor) -> list[int]:
    """[offset, row block, row stride, column block, column stride] when index[r, c] == offset + (r // br) * sr +
    (c // bc) * sc everywhere (blocks aligned at 0; a block the whole dimension long has stride 0); else raises."""
    rows, cols = index.shape
    offset = int(index[0, 0])

    def block(line: torch.Tensor) -> tuple[int, int]:
        changed = torch.nonzero(line != line[0])
        if not len(changed):
            return len(line), 0
        first = int(changed[0, 0])
        return first, int(line[first]) - int(line[0])

    br, sr = block(index[:, 0])
    bc, sc = block(index[0, :])
    r = torch.arange(rows, dtype=torch.int64)[:, None]
    c = torch.arange(cols, dtype=torch.int64)[None, :]
    if not torch.equal(index.to(torch.int64), offset + (r // br) * sr + (c // bc) * sc):
        raise Unsupported("a scale that is not constant over aligned blocks of its operand")
    return [offset, br, sr, bc, sc]


def scaled_operand(node: torch.fx.Node) -> tuple[torch.fx.Node, torch.fx.Node | None, list[int], list[int]]:
    """(fp8 source, scale source, fp8 map, scale map) of a product operand (a 2-D node) that is
    (fp8 -> float32) * scale read through index ops, or fp8 -> float32 alone (scale None, its map one block: a
    reference that scales the product instead); raises Unsupported otherwise."""
    operand_ops = []
    while node.op == "call_function" and node.target in INDEX_OPS:
        operand_ops.append(node)
        node = node.args[0]
    if node.op == "call_function" and node.target in CASTS and tensor_meta(node).dtype == torch.float32:
        data = _chain(node)
        if tensor_meta(data[0]).dtype not in FP8 or not set(data[2]) <= set(WIDE):
            raise Unsupported("a float32 product operand that is no widened fp8 tensor")
        data_index = _index_map(data[0], data[1])
        for op in operand_ops[::-1]:
            data_index = op.target(data_index, *op.args[1:], **op.kwargs)
        if data_index.dim() != 2:
            raise Unsupported("a scaled operand that is no matrix")
        rows, cols = data_index.shape
        return data[0], None, strided_map(data_index), [0, rows, 0, cols, 0]
    if node.op != "call_function" or node.target is not aten.mul.Tensor or tensor_meta(node).dtype != torch.float32:
        raise Unsupported("a product operand that is no float32 (fp8 * scale)")
    sides = [_chain(a) if isinstance(a, torch.fx.Node) else None for a in node.args]
    if None in sides:
        raise Unsupported("an fp8 operand scaled by a number (no scale tensor)")
    data_side = [s for s in sides if tensor_meta(s[0]).dtype in FP8 and s[2] and set(s[2]) <= set(WIDE)]
    if len(data_side) != 1:
        raise Unsupported("a scaled operand without exactly one fp8 factor")
    data = data_side[0]
    scale = sides[1 - sides.index(data)]
    if tensor_meta(scale[0]).dtype not in SCALE_DTYPES or set(scale[2]) - {torch.float32}:
        raise Unsupported("a scale of another type than a float widened to float32")
    shape = tensor_meta(node).shape
    if list(tensor_meta(node.args[sides.index(data)]).shape) != list(shape):
        raise Unsupported("an fp8 factor broadcast by its scale")
    operand_ops = operand_ops[::-1]
    data_index = _index_map(data[0], data[1])
    scale_index = _index_map(scale[0], scale[1]).expand(shape).contiguous()   # as the mul broadcasts it
    for op in operand_ops:   # the views from the scaled tensor to the product's operand, on both maps
        data_index = op.target(data_index, *op.args[1:], **op.kwargs)
        scale_index = op.target(scale_index, *op.args[1:], **op.kwargs)
    if data_index.dim() != 2:
        raise Unsupported("a scaled operand that is no matrix")
    return data[0], scale[0], strided_map(data_index), block_map(scale_index)


def k_group(scale_a_map: list[int], scale_b_map: list[int], k: int) -> int:
    """The K blocks on which both scales are constant (0: neither changes along K), which a K tile must divide;
    Unsupported when shorter than tl.dot's least K or no multiple of it."""
    blocks = [b for b in (scale_a_map[3], scale_b_map[1]) if b < k]
    group = math.gcd(*blocks) if blocks else 0
    if group % MIN_K_GROUP:
        raise Unsupported(f"scales constant over K blocks of {group} (a multiple of {MIN_K_GROUP} is needed)")
    return group


def rewrite_scaled_products(capture: Capture) -> int:
    """Each float32 mm of two scaled fp8 operands becomes one scaled_mm node, in place; the number rewritten.
    A product whose operands are not both proven scaled fp8 is left as it is; Unsupported when none is."""
    graph = capture.module.graph
    rewritten = 0
    reasons = []
    for node in [n for n in graph.nodes if n.op == "call_function" and n.target is aten.mm.default]:
        m, n = tensor_meta(node).shape
        k = tensor_meta(node.args[0]).shape[1]
        try:
            a8, scale_a, a_map, scale_a_map = scaled_operand(node.args[0])
            b8, scale_b, b_map, scale_b_map = scaled_operand(node.args[1])
            k_group(scale_a_map, scale_b_map, k)
        except Unsupported as exc:
            reasons.append(str(exc))
            continue
        with graph.inserting_before(node):
            product = graph.call_function(SCALED_MM, (a8, b8, scale_a, scale_b, a_map, b_map, scale_a_map,
                                                      scale_b_map, m, n, k))
        product.meta.update(node.meta)
        node.replace_all_uses_with(product)
        graph.erase_node(node)
        rewritten += 1
    if not rewritten:
        raise Unsupported("no matrix product of scaled fp8 operands" + (f" ({reasons[0]})" if reasons else ""))
    graph.eliminate_dead_code()
    capture.module.recompile()
    return rewritten


TEMPLATE_CALLS[SCALED_MM] = "_scaled_mm"   # in the front end's programs: the fp8 kernel's launcher (scaled_gemm)
