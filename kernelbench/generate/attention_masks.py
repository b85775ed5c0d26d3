"""Position masks of attention lowered to the flash kernel's causal / sliding-window band, which skips the key
blocks no query of a tile sees instead of reading a stored [Lq, Lk] mask in every tile.

A mask qualifies when it is computed from no input at all (aranges, ones, triu/tril, comparisons of positions: a
function of the query and key positions alone at the captured shapes) by deterministic ops. The graph is captured
at one workload's concrete shapes (kernelbench.generate.graph.capture_at), so the mask is evaluated there, every
batch and head slice of it, and compared exactly with the candidate band

    key j visible to query i  <=>  j <= i + shift  [and  j > i + shift - window]

for shift 0 (causal aligned top-left, SDPA's is_causal) and Lk - Lq (bottom-right). A boolean mask (True =
visible) or an additive one of 0 and -inf only; anything else (a bias, a padding mask that differs per batch, a
mask of another band) stays a stored mask. Rewritten: the attention nodes of kernelbench.generate.
handwritten_attention (their mask argument dropped for `causal=` / `window=` keywords) and SDPA calls (the traced
kernelbench::attention node) with an attn_mask, which become such a node."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.fx

from kernelbench.generate.frontend import ATTENTION, tensor_meta
from kernelbench.generate.graph import Capture
from kernelbench.generate.handwritten_attention import VIEWS, attention_node

# evaluating a mask of more elements than this on the host costs more than the match may take (8192 x 8192 fits)
MAX_MASK_ELEMENTS = 1 << 27
SDPA_ARGS = ("query", "key", "value", "attn_mask", "is_causal", "scale", "enable_gqa")
FLASH_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def band_of(visible: torch.Tensor) -> tuple[str | None, int | None] | None:
    """(causal, window) of the flash kernel that sees exactly `visible` [Lq, Lk] (bool), (None, None) when every
    key is visible, None when no band does."""
    q_len, kv_len = visible.shape
    if bool(visible.all()):
        return None, None
    i = torch.arange(q_len).view(q_len, 1)
    j = torch.arange(kv_len).view(1, kv_len)
    for causal, shift in (("top", 0), ("bottom", kv_len - q_len)):
        band = j <= i + shift
        if torch.equal(visible, band):
            return causal, None
        rows = visible.any(1)
        if bool((visible & ~band).any()) or not bool(rows.any()):
            continue
        # the window is the widest row's reach back from its diagonal; the comparison below decides
        first = visible.to(torch.int8).argmax(1)
        window = int((i.view(-1) + shift - first + 1)[rows].max())
        if window >= 1 and torch.equal(visible, band & (j > i + shift - window)):
            return causal, window
    return None


def _ancestors(node: torch.fx.Node) -> list[torch.fx.Node] | None:
    """The nodes `node` is computed from, in graph order; None when one is an input or not deterministic."""
    seen, stack = set(), [node]
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        if current.op == "placeholder":
            return None
        if current.op == "call_function":
            target = current.target
            name = getattr(target, "__name__", str(target))
            if not isinstance(target, torch._ops.OpOverload) or name.startswith(("empty", "new_empty")) or \
                    torch.Tag.nondeterministic_seeded in target.tags:
                return None
        elif current.op != "get_attr":
            return None
        seen.add(current)
        stack.extend(current.all_input_nodes)
    order = {n: i for i, n in enumerate(node.graph.nodes)}
    return sorted(seen, key=order.__getitem__)


def _evaluate(module: torch.fx.GraphModule, node: torch.fx.Node) -> torch.Tensor | None:
    """The value of an input-free node, computed on the host."""
    nodes = _ancestors(node)
    meta = tensor_meta(node)
    if nodes is None or meta is None or meta.numel() > MAX_MASK_ELEMENTS:
        return None
    graph = torch.fx.Graph()
    copies: dict[torch.fx.Node, torch.fx.Node] = {}
    for n in nodes:
        copies[n] = graph.node_copy(n, copies.__getitem__)
    graph.output(copies[node])
    try:
        value = torch.fx.GraphModule(module, graph)()
    except Exception:  # noqa: BLE001 - a mask the host cannot compute (fake constants): it stays stored
        return None
    return value if isinstance(value, torch.Tensor) and not value.is_meta else None


def position_band(module: torch.fx.GraphModule, mask: torch.fx.Node, q_len: int, kv_len: int
                  ) -> tuple[str | None, int | None] | None:
    """(causal, window) when `mask` (boolean True = visible, or additive) is the same band at every batch and
    head, else None."""
    value = _evaluate(module, mask)
    if value is None:
        return None
    if value.dtype != torch.bool:
        if not value.dtype.is_floating_point or not bool(((value == 0) | (value == -math.inf)).all()):
            return None
        value = value == 0
    while value.dim() > 2:   # one plane, equal at every leading index
        if not bool((value == value[:1]).all()):
            return None
        value = value[0]
    value = value.reshape((1,) * (2 - value.dim()) + tuple(value.shape))
    try:
        value = value.expand(q_len, kv_len)
    except RuntimeError:
        return None
    return band_of(value.contiguous())


def lower_position_masks(capture: Capture) -> None:
    """Every attention node whose mask is a position band rewritten to the kernel's causal / window band, in place."""
    module = capture.module
    graph = module.graph
    scalar_inputs = {capture.placeholders()[n] for n in capture.scalar_inputs}
    changed = False
    for node in list(graph.nodes):
        if node.op != "call_function":
            continue
        if node.target is attention_node and "causal" not in node.kwargs and "alibi" not in node.kwargs:
            changed |= _node_band(graph, module, node)
        elif node.target is ATTENTION:
            changed |= _sdpa_band(graph, module, node, scalar_inputs)
    if changed:
        graph.eliminate_dead_code()


def _node_band(graph: torch.fx.Graph, module: torch.fx.GraphModule, node: torch.fx.Node) -> bool:
    """An attention node's boolean mask, or its bias of 0 and -inf, as a band; its bias as ALiBi slopes."""
    q, k = tensor_meta(node.args[0]), tensor_meta(node.args[1])
    kwargs, changed = dict(node.kwargs), False
    for mask in (node.args[3], kwargs.get("bias")):
        band = None if mask is None or "causal" in kwargs else position_band(module, mask, q.shape[2], k.shape[2])
        if band is not None:
            if mask is node.args[3]:
                node.args = node.args[:3] + (None,) + node.args[4:]
            else:
                del kwargs["bias"]
            kwargs.update(causal=band[0], window=band[1])
            changed = True
    if kwargs.get("bias") is not None:
        alibi = _alibi(graph, module, kwargs["bias"], node, q.shape[2], k.shape[2])
        if alibi is not None:
            del kwargs["bias"]
            kwargs.update(alibi)
            changed = True
    node.kwargs = kwargs
    return changed


def alibi_of(distance: torch.Tensor, exact: bool = False) -> tuple[str, int] | None:
    """("linear", 0) when `distance` [Lq, Lk] is j - i plus a constant per row (the softmax ignores it: BLOOM's
    slope * j), ("symmetric", c) when it is -|j - i - c| (c 0 or Lk - Lq) plus one; else None. exact: no row
    constant (a sink logit, which does not get it, is in the softmax)."""
    q_len, kv_len = distance.shape
    if not bool(torch.isfinite(distance).all()):
        return None
    i = torch.arange(q_len).view(q_len, 1)
    j = torch.arange(kv_len).view(1, kv_len)
    for kind, shift, fitted in (("linear", 0, j - i), ("symmetric", 0, -(j - i).abs()),
                                ("symmetric", kv_len - q_len, -(j - i - (kv_len - q_len)).abs())):
        rest = distance.double() - fitted.double()
        if torch.equal(rest, torch.zeros_like(rest) if exact else rest[:, :1].expand_as(rest)):
            return kind, shift
    return None


def _alibi(graph: torch.fx.Graph, module: torch.fx.GraphModule, bias: torch.fx.Node, node: torch.fx.Node,
           q_len: int, kv_len: int) -> dict | None:
    """{"alibi": slopes [1, heads], "alibi_kind", "alibi_shift"} when the node's bias (its [1, heads | 1, Lq, Lk]
    view, handwritten_attention's planes) is slope * distance: slopes broadcast over the positions times an
    input-free distance plane that alibi_of fits."""
    inner, full = bias.args[0] if bias.target in VIEWS else None, None
    if inner is not None and inner.target is torch.ops.aten.expand.default:
        inner, full = inner.args[0], list(inner.args[1])
    if inner is None or inner.target is not torch.ops.aten.mul.Tensor or inner.kwargs or \
            not all(isinstance(a, torch.fx.Node) and tensor_meta(a) is not None for a in inner.args):
        return None
    for slopes, plane in (inner.args, inner.args[::-1]):
        s_shape, p_shape = tuple(tensor_meta(slopes).shape), tuple(tensor_meta(plane).shape)
        if any(d != 1 for d in s_shape[-2:]) or any(d != 1 for d in p_shape[:-2]) or \
                (full is None and math.prod(s_shape) != 1):
            continue
        value = _evaluate(module, plane)
        if value is None or not value.dtype.is_floating_point:
            continue
        value = value.reshape((1,) * (2 - value.dim()) + tuple(value.shape)[-2:])
        try:
            fit = alibi_of(value.expand(q_len, kv_len).contiguous(), exact="sinks" in node.kwargs)
        except RuntimeError:
            continue
        if fit is None:
            continue
        dtype = tensor_meta(slopes).dtype
        with graph.inserting_before(node):
            if full is not None:
                slopes = graph.call_function(torch.ops.aten.expand.default, (slopes, full[:-2] + [1, 1]))
                slopes.meta["val"] = torch.empty(full[:-2] + [1, 1], dtype=dtype, device="meta")
            heads = math.prod(full[:-2]) if full is not None else 1
            flat = graph.call_function(torch.ops.aten.reshape.default, (slopes, [1, heads]))
            flat.meta["val"] = torch.empty((1, heads), dtype=dtype, device="meta")
        return {"alibi": flat, "alibi_kind": fit[0], "alibi_shift": fit[1]}
    return None


def _sdpa_band(graph: torch.fx.Graph, module: torch.fx.GraphModule, node: torch.fx.Node, scalar_inputs: set) -> bool:
    """An SDPA call with a position-band attn_mask replaced by an attention node with that band; False when the
    call is not one (or is a form the flash kernel does not take)."""
    bound: dict[str, Any] = {"attn_mask": None, "is_causal": False, "scale": None, "enable_gqa": False,
                             **dict(zip(SDPA_ARGS, node.args)), **node.kwargs}
    mask = bound["attn_mask"]
    if not isinstance(mask, torch.fx.Node) or bound["is_causal"] or set(bound) - set(SDPA_ARGS):
        return False
    q, k, v = (tensor_meta(bound[n]) for n in ("query", "key", "value"))
    if None in (q, k, v) or not q.dim() == k.dim() == v.dim() == 4 or not q.dtype == k.dtype == v.dtype or \
            q.dtype not in FLASH_DTYPES or not q.shape[0] == k.shape[0] == v.shape[0] or \
            k.shape[:3] != v.shape[:3] or q.shape[3] != k.shape[3] or 0 in (q.shape[2], k.shape[2]) or \
            k.shape[1] == 0 or q.shape[1] % k.shape[1] or (q.shape[1] != k.shape[1] and not bound["enable_gqa"]):
        return False
    scale = bound["scale"]
    if scale is None:
        factors = [q.shape[3] ** -0.5]
    elif isinstance(scale, (int, float)) or scale in scalar_inputs:
        factors = [scale]
    else:
        return False
    band = position_band(module, mask, q.shape[2], k.shape[2])
    if band is None:
        return False
    with graph.inserting_before(node):
        call = graph.call_function(attention_node, (bound["query"], bound["key"], bound["value"], None, factors, [],
                                                    None, q.dtype), {"causal": band[0], "window": band[1]})
    call.meta["val"] = torch.empty((q.shape[0], q.shape[1], q.shape[2], v.shape[3]), dtype=q.dtype, device="meta")
    node.replace_all_uses_with(call)
    graph.erase_node(node)
    return True
