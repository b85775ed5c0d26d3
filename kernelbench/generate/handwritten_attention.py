"""Hand-written attention in a captured graph (graph.capture_at) rewritten into one attention node, so the attention
family runs it on its flash kernel instead of two batched products around a materialized score matrix.

The pattern, on the decomposed aten graph, with exact checks at each step (anything else is left as it is):

    scores = view(bmm(view(expand(Q)), view(expand(permute(K)))))   Q [..., L, D], K [..., S, D], the last two
                                                                      dims of K swapped, batch dims equal or
                                                                      broadcast (size 1) in a trailing block (GQA)
    scores = scores * a / b ...                                       scalar factors: numbers or scalar inputs
    scores = c * tanh(scores)                                         optional soft cap (c a scalar)
    scores = where(mask, -inf, scores) | where(mask, scores, -inf) | scores + bias     at most one mask and one
                                                                      bias, in either order
    out    = bmm(view(expand([cast](softmax(scores, dim=-1)))), view(expand(V)))   V [..., S, Ev]
             or softmax(cat((scores, sink), -1))[..., :-1] in its place           sink [..., 1]: one logit a row

Q, K and V are read through fp32 casts of one half type as that type (a bf16 x bf16 product is exact in fp32, so
the scores differ from the reference's only by summation order); the output keeps the product's dtype. A row
that sees no key gives 0 on the kernel where the reference's softmax gives NaN. The node computes
`_attention_node(q, k, v, mask, factors, divisors, cap, dtype, sinks=, bias=)` of templates/attention.py.j2 on
[1, heads, L, D] views of the operands (the batch dims flattened into heads)."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.fx

from kernelbench.generate.frontend import ATTENTION, TEMPLATE_CALLS, sink_casts_below_views, tensor_meta
from kernelbench.generate.graph import Capture

aten = torch.ops.aten
prims = torch.ops.prims

CASTS = {aten._to_copy.default, prims.convert_element_type.default}
VIEWS = {aten.view.default, aten._unsafe_view.default, aten.reshape.default}
HALF = (torch.float16, torch.bfloat16)


def attention_node(q, k, v, mask, factors, divisors, cap, dtype, causal=None, window=None, sinks=None, bias=None,
                   alibi=None, alibi_kind=None, alibi_shift=0):
    """The node's meaning (eager, for reading; the solution runs the template's kernel): softmax over the keys of
    cap * tanh(q k^T * scale / cap) (no cap: q k^T * scale), masked, times v, in `dtype`. causal / window: the
    position band of templates/attention.py.j2's `_flash_attention` (kernelbench.generate.attention_masks); sinks
    [1, heads, Lq]: one more logit per row in the softmax, its probability dropped; bias: added to the scores;
    alibi [1, heads] slopes: slope * (j - i) ("linear") or -slope * |j - i - alibi_shift| ("symmetric") added."""
    scale = math.prod(float(f) for f in factors) / math.prod(float(d) for d in divisors)
    group = q.shape[1] // k.shape[1]
    scores = q.float() @ k.float().repeat_interleave(group, 1).transpose(-1, -2) * scale
    if cap is not None:
        scores = float(cap) * torch.tanh(scores / float(cap))
    i = torch.arange(scores.shape[-2], device=q.device).view(-1, 1)
    j = torch.arange(scores.shape[-1], device=q.device).view(1, -1)
    if bias is not None:
        scores = scores + bias.float()
    if alibi is not None:
        distance = (j - i).float() if alibi_kind == "linear" else -(j - i - alibi_shift).abs().float()
        scores = scores + alibi.float().view(1, -1, 1, 1) * distance
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask.float()
    if causal is not None:
        shift = scores.shape[-1] - scores.shape[-2] if causal == "bottom" else 0
        hidden = (j > i + shift) | ((j <= i + shift - window) if window is not None else False)
        scores = scores.masked_fill(hidden, float("-inf"))
    if sinks is not None:
        probabilities = torch.softmax(torch.cat((scores, sinks.float().unsqueeze(-1)), -1), -1)[..., :-1]
    else:
        probabilities = torch.softmax(scores, -1).nan_to_num(0.0)
    return (probabilities @ v.float().repeat_interleave(group, 1)).to(dtype)


TEMPLATE_CALLS[attention_node] = "_attention_node"


class NoMatch(Exception):
    pass


def _single(node: torch.fx.Node) -> torch.fx.Node:
    if len(node.users) != 1:
        raise NoMatch(f"{node.name} has {len(node.users)} users")
    return next(iter(node.users))


def _is_scalar(arg: Any) -> bool:
    if isinstance(arg, (int, float)) and not isinstance(arg, bool):
        return True
    meta = tensor_meta(arg)
    return meta is not None and meta.dim() == 0 and meta.dtype.is_floating_point


def _factors(arg: Any, scalar_inputs: set) -> tuple[list, list]:
    """A scalar as (factors, divisors): numbers and scalar inputs, through 0-d products and quotients."""
    if isinstance(arg, (int, float)):
        return [float(arg)], []
    if arg in scalar_inputs:
        return [arg], []
    if isinstance(arg, torch.fx.Node) and arg.op == "call_function" and not arg.kwargs and len(arg.args) == 2 \
            and arg.target in (aten.mul.Tensor, aten.div.Tensor, aten.mul.Scalar, aten.div.Scalar):
        (fa, da), (fb, db) = (_factors(a, scalar_inputs) for a in arg.args)
        return (fa + fb, da + db) if arg.target in (aten.mul.Tensor, aten.mul.Scalar) else (fa + db, da + fb)
    raise NoMatch(f"scalar {arg} is not a product of numbers and scalar inputs")


def _is_minus_inf(arg: Any) -> bool:
    if isinstance(arg, float):
        return arg == -math.inf
    return (isinstance(arg, torch.fx.Node) and arg.target is aten.scalar_tensor.default
            and arg.args[0] == -math.inf)


def _operand(node: torch.fx.Node, transposed: bool) -> tuple[torch.fx.Node, torch.dtype | None]:
    """The tensor [..., rows, cols] a bmm operand is flattened from: view(clone?(expand(x))) (K: expand of a permute
    that swaps the last two dims), with at most one cast anywhere in that chain, and the dtype of the cast's source
    (None: no cast)."""
    cast = None

    def uncast(node: torch.fx.Node) -> torch.fx.Node:
        nonlocal cast
        if node.target in CASTS and not set(node.kwargs) - {"dtype"} and cast is None:
            cast = tensor_meta(node.args[0]).dtype
            return node.args[0]
        return node

    node = uncast(node)
    if node.target not in VIEWS:
        raise NoMatch("a bmm operand that is not a view")
    node = uncast(node.args[0])
    if node.target is aten.clone.default:
        node = uncast(node.args[0])
    if node.target is not aten.expand.default:
        raise NoMatch("a bmm operand that is not an expand")
    node = uncast(node.args[0])
    if transposed:
        if node.target is not aten.permute.default:
            raise NoMatch("k^T is not a permute")
        rank = tensor_meta(node).dim()
        order = [d % rank for d in node.args[1]]
        if order != list(range(rank - 2)) + [rank - 1, rank - 2]:
            raise NoMatch("k^T swaps other dims")
        node = uncast(node.args[0])
    return node, cast


def _uncast(operands: list[tuple[torch.fx.Node, torch.dtype | None]], product: torch.fx.Node) -> list[torch.fx.Node]:
    """The operands read in one type: all fp32 casts of one half type (the dot then runs in that type: a product of
    two half values is exact in fp32), or all uncast."""
    casts = {cast for _, cast in operands}
    if casts == {None} or (len(casts) == 1 and casts <= set(HALF) and tensor_meta(product).dtype == torch.float32):
        return [node for node, _ in operands]
    raise NoMatch(f"operands cast from {casts}")


def _meta(shape, dtype) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype, device="meta")


def _unrepeated(node: torch.fx.Node) -> tuple[torch.fx.Node, int] | None:
    """(x, n) when `node` is x [..., heads, S, D] with each head repeated n times in place (repeat_interleave over
    the heads, or HF's repeat_kv: view(clone(expand(unsqueeze(x, -3))))): query head h then reads x's head h // n."""
    if node.target not in VIEWS or node.args[0].target is not aten.clone.default:
        return None
    expand = node.args[0].args[0]
    if expand.target is not aten.expand.default or expand.args[0].target is not aten.unsqueeze.default:
        return None
    source = expand.args[0].args[0]
    shape, rank = tuple(tensor_meta(source).shape), tensor_meta(source).dim()
    if rank < 3 or expand.args[0].args[1] % (rank + 1) != rank - 2:
        return None
    n = tensor_meta(expand).shape[rank - 2]
    if tuple(tensor_meta(expand).shape) != shape[:rank - 2] + (n,) + shape[rank - 2:] or \
            tuple(tensor_meta(node).shape) != shape[:rank - 3] + (shape[rank - 3] * n,) + shape[rank - 2:]:
        return None
    return source, n


def _sdpa_without_repeats(node: torch.fx.Node) -> bool:
    """An SDPA node whose key and value repeat their heads alike: they are read unrepeated, with enable_gqa."""
    names = ("query", "key", "value", "attn_mask", "is_causal", "scale", "enable_gqa")
    bound = {**dict(zip(names, node.args)), **node.kwargs}
    key, value = _unrepeated(bound["key"]), _unrepeated(bound["value"])
    if key is None or value is None or key[1] != value[1] or tensor_meta(bound["query"]).dim() != 4:
        return False
    bound.update(key=key[0], value=value[0], enable_gqa=True)
    node.args, node.kwargs = (), bound
    return True


def recognize_attention(capture: Capture) -> None:
    """Every hand-written attention of the graph rewritten into an attention node, and every attention node's
    repeated key and value heads read unrepeated (GQA), in place."""
    graph = capture.module.graph
    placeholders = capture.placeholders()
    scalar_inputs = {placeholders[n] for n in capture.scalar_inputs}
    sink_casts_below_views(graph)   # q.float().view(...): the cast then sits on the operand, where _uncast finds it
    changed = False
    for node in list(graph.nodes):
        if node.op == "call_function" and node.target is aten._softmax.default:
            try:
                _rewrite(graph, node, scalar_inputs)
                changed = True
            except NoMatch:
                continue
        elif node.op == "call_function" and node.target is ATTENTION:
            changed |= _sdpa_without_repeats(node)
    if changed:
        graph.eliminate_dead_code()


def _sink(softmax: torch.fx.Node) -> tuple[torch.fx.Node, torch.fx.Node | None, torch.fx.Node]:
    """(scores, sink, probabilities): softmax(cat((scores, sink), -1))[..., :-1] with sink [..., 1] not computed
    from the scores (one more logit per row, its probability dropped: gpt-oss's sinks), else (scores, None, softmax)."""
    cat = softmax.args[0]
    if cat.target is not aten.cat.default or len(cat.args[0]) != 2:
        return cat, None, softmax
    (scores, sink), rank = cat.args[0], tensor_meta(cat).dim()
    kept = _single(softmax)
    columns = tensor_meta(scores).shape[-1] if tensor_meta(scores) is not None else None
    if (cat.args[1] if len(cat.args) > 1 else 0) % rank != rank - 1 or tensor_meta(sink) is None or \
            tensor_meta(sink).dim() != rank or tensor_meta(sink).shape[-1] != 1 or _reaches_product(sink) or \
            kept.target is not aten.slice.Tensor or len(kept.args) < 4 or kept.args[1] % rank != rank - 1 or \
            tuple(kept.args[2:]) not in ((0, columns), (0, -1), (0, columns, 1), (0, -1, 1)) or len(cat.users) != 1:
        raise NoMatch("a softmax over scores and more than a sink column")
    return scores, sink, kept


def _rewrite(graph: torch.fx.Graph, softmax: torch.fx.Node, scalar_inputs: set) -> None:
    scores, sink, probabilities = _sink(softmax)
    scores_meta = tensor_meta(scores)
    rank = scores_meta.dim()
    if rank < 3 or softmax.args[1] % rank != rank - 1 or softmax.args[2] or not scores_meta.dtype.is_floating_point:
        raise NoMatch("not a softmax over the last dim of batched scores")
    # the consumer: bmm(view(expand(p)), view(expand(v))), casts anywhere between
    chain, product = [probabilities], _single(probabilities)
    while product.target in CASTS | VIEWS | {aten.expand.default}:
        chain.append(product)
        product = _single(product)
    if product.target is not aten.bmm.default or product.args[0] is not chain[-1] or chain[-1].target not in VIEWS:
        raise NoMatch("softmax is not the left operand of a bmm")
    value = _operand(product.args[1], transposed=False)
    # the scores' chain, from the softmax back to the first product
    mask, bias, bool_visible, cap, factors, divisors = None, None, True, None, [], []
    node = scores
    while True:
        if node.target is aten.mul.Tensor and cap is None and not factors and not divisors and \
                any(isinstance(a, torch.fx.Node) and a.target is aten.tanh.default for a in node.args):
            tanh = isinstance(node.args[0], torch.fx.Node) and node.args[0].target is aten.tanh.default
            inner, outer = (node.args[0], node.args[1]) if tanh else (node.args[1], node.args[0])
            if not _is_scalar(outer) or len(inner.users) != 1:
                raise NoMatch("tanh times a tensor")
            cap = outer if isinstance(outer, torch.fx.Node) else float(outer)
            if isinstance(cap, torch.fx.Node) and cap not in scalar_inputs:
                raise NoMatch("a soft cap that is not a number or a scalar input")
            node = inner.args[0]
        elif node.target is aten.where.self and mask is None and cap is None and not factors and not divisors:
            condition, when_true, when_false = node.args
            if _is_minus_inf(when_true):
                mask, bool_visible, node = condition, False, when_false
            elif _is_minus_inf(when_false):
                mask, node = condition, when_true
            else:
                raise NoMatch("a where that is not a -inf mask")
            if tensor_meta(mask) is None or tensor_meta(mask).dtype != torch.bool or _reaches_product(mask):
                raise NoMatch("a mask that is not boolean or depends on the scores")
        elif node.target is aten.add.Tensor and bias is None and cap is None and not factors and not divisors and \
                not node.kwargs and \
                all(tensor_meta(a) is not None and tensor_meta(a).dim() > 0 for a in node.args):
            chained = [a for a in node.args if _reaches_product(a)]
            if len(chained) != 1:
                raise NoMatch("an addition of two score tensors")
            bias = node.args[1] if chained[0] is node.args[0] else node.args[0]
            node = chained[0]
            if not tensor_meta(bias).dtype.is_floating_point:
                raise NoMatch("an integer bias")
        elif node.target in (aten.mul.Tensor, aten.div.Tensor) and not node.kwargs and \
                _is_scalar(node.args[1]) and tensor_meta(node.args[0]) is not None and tensor_meta(node.args[0]).dim():
            f, d = _factors(node.args[1], scalar_inputs)
            factors, divisors = (factors + f, divisors + d) if node.target is aten.mul.Tensor else \
                (factors + d, divisors + f)
            node = node.args[0]
        elif node.target is aten.mul.Tensor and not node.kwargs and _is_scalar(node.args[0]) and \
                tensor_meta(node.args[1]) is not None and tensor_meta(node.args[1]).dim() and \
                not (isinstance(node.args[1], torch.fx.Node) and node.args[1].target is aten.tanh.default):
            f, d = _factors(node.args[0], scalar_inputs)
            factors, divisors, node = factors + f, divisors + d, node.args[1]
        elif node.target in VIEWS and node.args[0].target is aten.bmm.default:
            break
        else:
            raise NoMatch(f"{node.name} ({node.target}) in the scores' chain")
        if len(node.users) != 1:
            raise NoMatch("a score value read twice")
    first = node.args[0]
    query = _operand(first.args[0], transposed=False)
    key = _operand(first.args[1], transposed=True)
    if cap is not None:   # cap * tanh(s * a): the kernel computes cap * tanh(s * scale / cap), so scale = a * cap
        factors = factors + [cap]
    q_meta, k_meta, v_meta = (tensor_meta(n) for n, _ in (query, key, value))
    batch = tuple(q_meta.shape[:-2])
    if len(batch) != rank - 2 or tuple(scores_meta.shape[:-2]) != batch or k_meta.dim() != rank or \
            v_meta.dim() != rank or k_meta.shape[-1] != q_meta.shape[-1] or k_meta.shape[-2] != v_meta.shape[-2]:
        raise NoMatch("operands of other ranks or sizes")
    if tuple(k_meta.shape[:-2]) != tuple(v_meta.shape[:-2]):
        raise NoMatch("k and v broadcast differently")
    # GQA: k's batch dims equal q's, then a trailing block of broadcast (size 1) dims the query heads share
    kv_batch = tuple(k_meta.shape[:-2])
    shared = len(batch)
    while shared > 0 and kv_batch[shared - 1] == 1 and batch[shared - 1] != 1:
        shared -= 1
    if kv_batch[:shared] != batch[:shared] or any(s != 1 for s in kv_batch[shared:]):
        raise NoMatch("k and v broadcast over q's batch dims other than a trailing block")
    heads, kv_heads = math.prod(batch), math.prod(kv_batch)
    q_len, kv_len, head_dim, value_dim = q_meta.shape[-2], k_meta.shape[-2], q_meta.shape[-1], v_meta.shape[-1]
    for m in (mask, bias):
        if m is None:
            continue
        m_meta = tensor_meta(m)
        try:
            torch.broadcast_shapes(tuple(m_meta.shape), tuple(scores_meta.shape))
        except RuntimeError:
            raise NoMatch("a mask that does not broadcast to the scores") from None
        if tuple(torch.broadcast_shapes(tuple(m_meta.shape), tuple(scores_meta.shape))) != tuple(scores_meta.shape):
            raise NoMatch("a mask that broadcasts the scores")
    query, key, value = _uncast([query, key, value], product)
    repeated = _unrepeated(key), _unrepeated(value)
    if None not in repeated and repeated[0][1] == repeated[1][1]:   # GQA written as repeated heads
        (key, group), (value, _) = repeated
        kv_heads //= group
    dtype = tensor_meta(product).dtype

    def view(source: torch.fx.Node, shape: tuple) -> torch.fx.Node:
        shaped = graph.call_function(aten.reshape.default, (source, list(shape)))
        shaped.meta["val"] = _meta(shape, tensor_meta(source).dtype)
        return shaped

    with graph.inserting_before(product):
        q4 = view(query, (1, heads, q_len, head_dim))
        k4 = view(key, (1, kv_heads, kv_len, head_dim))
        v4 = view(value, (1, kv_heads, kv_len, value_dim))
        def planes(mask: torch.fx.Node) -> torch.fx.Node:
            m_shape = (1,) * (rank - tensor_meta(mask).dim()) + tuple(tensor_meta(mask).shape)
            # all batch dims broadcast: one [L, S] plane; else the mask at every (batch, head)
            if all(s == 1 for s in m_shape[:-2]):
                return view(mask, (1, 1) + m_shape[-2:])
            full = graph.call_function(aten.expand.default, (mask, list(scores_meta.shape)))
            full.meta["val"] = _meta(tuple(scores_meta.shape), tensor_meta(mask).dtype)
            return view(full, (1, heads, q_len, kv_len))

        mask4 = None
        if mask is not None:
            if not bool_visible:
                visible = graph.call_function(aten.logical_not.default, (mask,))
                visible.meta["val"] = _meta(tuple(tensor_meta(mask).shape), torch.bool)
                mask = visible
            mask4 = planes(mask)
        extra = {}
        if bias is not None:
            extra["bias"] = planes(bias)
        if sink is not None:   # one logit per (head, query): [1, heads, Lq]
            rows = graph.call_function(aten.expand.default, (sink, list(scores_meta.shape[:-1]) + [1]))
            rows.meta["val"] = _meta(tuple(scores_meta.shape[:-1]) + (1,), tensor_meta(sink).dtype)
            extra["sinks"] = view(rows, (1, heads, q_len))
        call = graph.call_function(attention_node, (q4, k4, v4, mask4, factors, divisors, cap, dtype), extra)
        call.meta["val"] = _meta((1, heads, q_len, value_dim), dtype)
        result = view(call, tuple(tensor_meta(product).shape))
    product.replace_all_uses_with(result)


def _reaches_product(node: Any) -> bool:
    """Whether `node` is computed from a bmm through elementwise ops (the scores, not a bias)."""
    seen, stack = set(), [node]
    while stack:
        current = stack.pop()
        if not isinstance(current, torch.fx.Node) or current in seen or current.op != "call_function":
            continue
        if current.target is aten.bmm.default:
            return True
        seen.add(current)
        stack.extend(current.all_input_nodes)
    return False

