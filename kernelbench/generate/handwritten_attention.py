"""Hand-written attention in a captured graph (graph.capture_at) rewritten into one attention node, so the attention
family runs it on its flash kernel instead of two batched products around a materialized score matrix.

The pattern, on the decomposed aten graph, with exact checks at each step (anything else is left as it is):

    scores = layout(bmm(layout(Q), layout(K)))                        layout: views, permutes, unsqueezes, squeezes,
                                                                      expands, copies, full slices, selects of size-1
                                                                      dims (einsum's too); the products' dims read
                                                                      as Q's, K's and V's own (K [b, t, h, d] or
                                                                      [..., S, D]); the scores [*heads, L, S] with
                                                                      heads K and V broadcast over (expands,
                                                                      repeated heads, q-only dims of an einsum such
                                                                      as a [b, hkv, group, d] view of q) trailing
    scores = scores * a / b ...                                       scalar factors: numbers or scalar inputs
    scores = c * tanh(scores)                                         optional soft cap (c a scalar)
    scores = where(mask, -inf, scores) | where(mask, scores, -inf) | scores + bias     at most one mask and one
                                                                      bias, in either order
    out    = layout(bmm(layout([cast](softmax(scores, dim=-1))), layout(V)))     V's dims: heads, S, Ev
             or softmax(cat((scores, sink), -1))[..., :-1] in its place           sink [..., 1]: one logit a row
    lse    = logsumexp(scores, -1) as traced (amax, where(|max| == inf, 0, max), log(sum(exp(scores - max))) + max)
                                                                      optional second output (no sink)

Q, K and V are read through fp32 casts of one half type as that type (a bf16 x bf16 product is exact in fp32, so
the scores differ from the reference's only by summation order): a gathered K / V then stays half precision; the
output keeps the product's dtype. A row that sees no key gives 0 on the kernel where the reference's softmax gives
NaN (its lse: -inf, as the reference's). The node computes `_attention_node(q, k, v, mask, factors, divisors, cap,
dtype, sinks=, bias=, lse=)` of templates/attention.py.j2 on [1, heads, L, D] layouts of the operands (the heads
flattened in the scores' order; a permute that no view allows is a copy), and its output is laid out as the
product's."""

from __future__ import annotations

import math
import operator
import sys
from typing import Any

import torch
import torch.fx
from torch.fx.experimental.symbolic_shapes import statically_known_true

from kernelbench.generate.frontend import ATTENTION, TEMPLATE_CALLS, sink_casts_below_views, tensor_meta
from kernelbench.generate.graph import Capture

aten = torch.ops.aten
prims = torch.ops.prims

CASTS = {aten._to_copy.default, prims.convert_element_type.default}
VIEWS = {aten.view.default, aten._unsafe_view.default, aten.reshape.default}
HALF = (torch.float16, torch.bfloat16)


def attention_node(q, k, v, mask, factors, divisors, cap, dtype, causal=None, window=None, sinks=None, bias=None,
                   alibi=None, alibi_kind=None, alibi_shift=0, lse=False):
    """The node's meaning (eager, for reading; the solution runs the template's kernel): softmax over the keys of
    cap * tanh(q k^T * scale / cap) (no cap: q k^T * scale), masked, times v, in `dtype`. causal / window: the
    position band of templates/attention.py.j2's `_flash_attention` (kernelbench.generate.attention_masks); sinks
    [1, heads, Lq]: one more logit per row in the softmax, its probability dropped; bias: added to the scores;
    alibi [1, heads] slopes: slope * (j - i) ("linear") or -slope * |j - i - alibi_shift| ("symmetric") added;
    lse: also the scores' natural-log sum of exponentials [1, heads, Lq] in fp32 (-inf for a row that sees no key)."""
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
    out = (probabilities @ v.float().repeat_interleave(group, 1)).to(dtype)
    return (out, torch.logsumexp(scores, -1)) if lse else out


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


LAYOUT = VIEWS | {aten.slice.Tensor, aten.select.int, aten.permute.default, aten.unsqueeze.default, aten.squeeze.dim, aten.squeeze.dims,
                  aten.expand.default, aten.clone.default, aten.alias.default}


def _known_equal(a: Any, b: Any) -> bool:
    return statically_known_true(a == b)


class _Atoms:
    """Every dim of a tensor reached through layout ops (views, permutes, unsqueezes, expands, copies) as the list of
    atoms it runs over, outermost first: an atom is one source dim, or a part of it where a view splits it, or a
    dim an expand broadcasts (no source). A size-1 dim runs over none. Products then read as index maps: which
    source dims an operand's batch, row and column dims are (einsum's permutes and views around bmm included)."""

    def __init__(self) -> None:
        self.size: dict[int, Any] = {}
        self.origin: dict[int, tuple | None] = {}   # (source, dim), None: broadcast
        self.parts: dict[tuple, list[int]] = {}      # (source, dim) -> its atoms, outermost first
        self.pairs: dict[int, set[int]] = {}
        self.replaced: dict[int, tuple[int, int]] = {}

    def new(self, size: Any, origin: tuple | None) -> int:
        atom = len(self.size)
        self.size[atom], self.origin[atom] = size, origin
        return atom

    def source(self, node: torch.fx.Node) -> list[list[int]]:
        labels = []
        for dim, size in enumerate(tensor_meta(node).shape):
            if _known_equal(size, 1):
                labels.append([])
                continue
            if (node, dim) not in self.parts:
                self.parts[(node, dim)] = [self.new(size, (node, dim))]
            labels.append(list(self.parts[(node, dim)]))
        return labels

    def split(self, atom: int, outer: Any) -> tuple[int, int]:
        size = self.size[atom]
        if atom in self.pairs or not isinstance(size, int) or not isinstance(outer, int) or size % outer:
            raise NoMatch("a view splits a dim it cannot")
        first, second = self.new(outer, self.origin[atom]), self.new(size // outer, self.origin[atom])
        self.replaced[atom] = first, second
        if self.origin[atom] is not None:
            parts = self.parts[self.origin[atom]]
            parts[parts.index(atom):parts.index(atom) + 1] = [first, second]
        return first, second

    def now(self, group: list[int]) -> list[int]:
        """`group` with the atoms split since in their parts."""
        return [b for a in group for b in (self.now(list(self.replaced[a])) if a in self.replaced else [a])]

    def regroup(self, flat: list[int], shape: list) -> list[list[int]]:
        """The atoms `flat` (in memory order) grouped into dims of `shape`, split where a dim ends inside one."""
        flat, labels = list(flat), []
        for target in shape:
            group, product = [], 1
            while not _known_equal(product, target):
                if not flat:
                    raise NoMatch("a view that regroups dims unevenly")
                atom = flat.pop(0)
                whole = product * self.size[atom]
                if isinstance(whole, int) and isinstance(target, int) and whole > target and target % product == 0:
                    atom, rest = self.split(atom, target // product)
                    flat.insert(0, rest)
                group.append(atom)
                product = product * self.size[atom]
            labels.append(group)
        if flat:
            raise NoMatch("a view that drops dims")
        return labels

    def follow(self, node: torch.fx.Node, labels: list[list[int]]) -> list[list[int]]:
        """The labels of `node`'s value from those of its first argument's."""
        target, rank = node.target, len(labels)
        if target in VIEWS:
            return self.regroup([a for group in labels for a in group], list(tensor_meta(node).shape))
        if target is aten.permute.default:
            return [labels[d % rank] for d in node.args[1]]
        if target is aten.unsqueeze.default:
            dim = node.args[1] % (rank + 1)
            return labels[:dim] + [[]] + labels[dim:]
        if target is aten.select.int and not labels[node.args[1] % rank]:   # of a size-1 dim: a squeeze
            return labels[:node.args[1] % rank] + labels[node.args[1] % rank + 1:]
        if target in (aten.squeeze.dim, aten.squeeze.dims):
            dims = {d % rank for d in ([node.args[1]] if target is aten.squeeze.dim else node.args[1])}
            return [group for d, group in enumerate(labels) if d not in dims or group]
        if target is aten.expand.default:
            shape = list(tensor_meta(node).shape)
            labels = [[]] * (len(shape) - rank) + labels
            return [[self.new(size, None)] if not group and not _known_equal(size, 1) else group
                    for group, size in zip(labels, shape)]
        if target is aten.select.int:
            raise NoMatch("a select of a dim larger than 1")
        if target is aten.slice.Tensor and tuple(node.args[2:]) not in ((0, sys.maxsize), (0, sys.maxsize, 1)):
            raise NoMatch("a slice of part of a dim")
        return labels   # clone, alias, cast: the same elements

    def walk(self, node: torch.fx.Node, stop: torch.fx.Node | None = None, base: list | None = None
             ) -> tuple[torch.fx.Node, torch.dtype | None, list[list[int]]]:
        """(source, dtype cast from or None, labels) of `node`: back through layout ops and at most one cast to
        `stop` (labelled `base`) or else the first other node (labelled as a source)."""
        chain, cast = [], None
        while node is not stop:
            if node.target in CASTS and not set(node.kwargs) - {"dtype"} and cast is None:
                cast = tensor_meta(node.args[0]).dtype
            elif node.target not in LAYOUT:
                break
            chain.append(node)
            node = node.args[0]
        labels = [self.now(group) for group in base] if node is stop else self.source(node)
        for step in reversed(chain):
            labels = self.follow(step, labels)
        return node, cast, labels

    def pair(self, xs: list[int], ys: list[int]) -> list[tuple[int, int]]:
        """The atoms of two equally sized dims matched one to one (the larger of two split to the smaller)."""
        xs, ys, pairs = self.now(xs), self.now(ys), []
        while xs and ys:
            x, y = xs.pop(0), ys.pop(0)
            if not _known_equal(self.size[x], self.size[y]):
                if isinstance(self.size[x], int) and isinstance(self.size[y], int) and self.size[x] > self.size[y]:
                    x, rest = self.split(x, self.size[y])
                    xs.insert(0, rest)
                else:
                    y, rest = self.split(y, self.size[x])
                    ys.insert(0, rest)
            pairs.append((x, y))
        if xs or ys:
            raise NoMatch("product operands of other sizes")
        for x, y in pairs:
            self.pairs.setdefault(x, set()).add(y)
            self.pairs.setdefault(y, set()).add(x)
        return pairs

    def layout(self, graph: torch.fx.Graph, source: torch.fx.Node, order: list[int], shape: list
               ) -> torch.fx.Node:
        """`source` with its atoms in `order` (every one once) as `shape`: a split view, a permute, a view (each
        where needed; the last copies where the strides do not allow a view)."""
        dims = [d for d in range(tensor_meta(source).dim()) if (source, d) in self.parts]
        fine = [a for d in dims for a in self.parts[(source, d)]]
        if sorted(fine) != sorted(order):
            raise NoMatch("an operand with dims the attention does not read")
        node = source
        if [self.size[a] for a in fine] != list(tensor_meta(source).shape):
            node = _call(graph, aten.reshape.default, node, [self.size[a] for a in fine])
        if order != fine:
            node = _call(graph, aten.permute.default, node, [fine.index(a) for a in order])
        return _call(graph, aten.reshape.default, node, shape)


def _call(graph: torch.fx.Graph, target: Any, source: torch.fx.Node, shape: list) -> torch.fx.Node:
    """target(source, shape) with its meta value; a size known only symbolically is written -1 (one at most)."""
    shape = [s if isinstance(s, int) else -1 for s in shape]
    if shape.count(-1) > 1:
        raise NoMatch("more than one symbolic size in a view")
    node = graph.call_function(target, (source, shape))
    node.meta["val"] = target(tensor_meta(source), shape)
    return node


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
    # the consumer: bmm(layout(p), layout(v)), casts anywhere between
    chain, product = [probabilities], _single(probabilities)
    while product.target in CASTS | LAYOUT:
        chain.append(product)
        product = _single(product)
    if product.target is not aten.bmm.default or product.args[0] is not chain[-1]:
        raise NoMatch("softmax is not the left operand of a bmm")
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
        elif node.target in LAYOUT and _layout_of_product(node) is not None:
            break
        else:
            raise NoMatch(f"{node.name} ({node.target}) in the scores' chain")
        if len(node.users) != 1:
            raise NoMatch("a score value read twice")
    if cap is not None:   # cap * tanh(s * a): the kernel computes cap * tanh(s * scale / cap), so scale = a * cap
        factors = factors + [cap]
    # the products' dims as the operands' (einsum's layouts, GQA through broadcast or repeated heads)
    atoms, first = _Atoms(), _layout_of_product(node)
    query, q_cast, q_labels = atoms.walk(first.args[0])
    key, k_cast, k_labels = atoms.walk(first.args[1])
    heads_pairs = atoms.pair(q_labels[0], k_labels[0])
    depth_pairs = atoms.pair(q_labels[2], k_labels[1])
    _, _, s_labels = atoms.walk(node, first, [q_labels[0], q_labels[1], k_labels[2]])
    _, _, p_labels = atoms.walk(product.args[0], probabilities, s_labels)
    value, v_cast, v_labels = atoms.walk(product.args[1])
    value_heads = dict(atoms.pair(p_labels[0], v_labels[0]))
    value_keys = dict(atoms.pair(p_labels[2], v_labels[1]))
    q_labels, k_labels, s_labels, p_labels, v_labels = ([atoms.now(group) for group in labels]
                                                         for labels in (q_labels, k_labels, s_labels, p_labels, v_labels))
    head_order = [a for group in s_labels[:-2] for a in group]
    rows, keys = s_labels[-2], s_labels[-1]
    # query dims that are heads on the scores but rows of a product (einsum's "bhgqt"): heads k or v broadcast over
    both = sorted(head_order + rows)
    if len(s_labels) < 3 or both != sorted(q_labels[0] + q_labels[1]) or not set(rows) <= set(q_labels[1]) or \
            sorted(keys) != sorted(k_labels[2]) or both != sorted(p_labels[0] + p_labels[1]) or \
            not set(rows) <= set(p_labels[1]) or sorted(p_labels[2]) != sorted(keys):
        raise NoMatch("products over other dims than attention's")
    if any(atoms.origin[a] is None for a in q_labels[0] + q_labels[1] + q_labels[2] + keys):
        raise NoMatch("a broadcast query or key dim")
    # GQA: the key / value heads of query heads broadcast over a trailing block of them
    key_heads, depth = dict(heads_pairs), dict(depth_pairs)
    kv_order = [key_heads.get(a) for a in head_order]
    broadcast = [a is None or atoms.origin[a] is None for a in kv_order]
    value_order = [value_heads.get(a) for a in head_order]
    if broadcast != sorted(broadcast) or broadcast != [a is None or atoms.origin[a] is None for a in value_order]:
        raise NoMatch("k and v broadcast over q's heads other than a trailing block")
    kv_real = [a for a, b in zip(kv_order, broadcast) if not b]
    query, key, value = _uncast([(query, q_cast), (key, k_cast), (value, v_cast)], product)
    dtype = tensor_meta(product).dtype
    size = lambda group: math.prod(atoms.size[a] for a in group)   # noqa: E731
    heads, kv_heads, q_len, kv_len = size(head_order), size(kv_real), size(rows), size(keys)
    dims, value_dims = [x for x, _ in depth_pairs], v_labels[2]
    for m in (mask, bias):
        if m is None:
            continue
        m_meta = tensor_meta(m)
        try:
            broadcast_shape = torch.broadcast_shapes(tuple(m_meta.shape), tuple(scores_meta.shape))
        except RuntimeError:
            raise NoMatch("a mask that does not broadcast to the scores") from None
        if tuple(broadcast_shape) != tuple(scores_meta.shape):
            raise NoMatch("a mask that broadcasts the scores")

    def view(source: torch.fx.Node, shape: tuple) -> torch.fx.Node:
        return _call(graph, aten.reshape.default, source, list(shape))

    with graph.inserting_before(product):
        q4 = atoms.layout(graph, query, head_order + rows + dims, [1, heads, q_len, size(dims)])
        k4 = atoms.layout(graph, key, kv_real + keys + [depth[a] for a in dims], [1, kv_heads, kv_len, size(dims)])
        v4 = atoms.layout(graph, value, [a for a, b in zip(value_order, broadcast) if not b] +
                          [value_keys[a] for a in keys] + value_dims, [1, kv_heads, kv_len, size(value_dims)])

        def planes(mask: torch.fx.Node) -> torch.fx.Node:
            m_shape = (1,) * (rank - tensor_meta(mask).dim()) + tuple(tensor_meta(mask).shape)
            # all batch dims broadcast: one [L, S] plane; else the mask at every (batch, head)
            if all(_known_equal(s, 1) for s in m_shape[:-2]):
                return view(mask, (1, 1) + m_shape[-2:])
            full = _call(graph, aten.expand.default, mask, list(scores_meta.shape))
            return view(full, (1, heads, q_len, kv_len))

        mask4 = None
        if mask is not None:
            if not bool_visible:
                visible = graph.call_function(aten.logical_not.default, (mask,))
                visible.meta["val"] = aten.logical_not.default(tensor_meta(mask))
                mask = visible
            mask4 = planes(mask)
        extra = {}
        if bias is not None:
            extra["bias"] = planes(bias)
        if sink is not None:   # one logit per (head, query): [1, heads, Lq]
            rows_of = _call(graph, aten.expand.default, sink, list(scores_meta.shape[:-1]) + [1])
            extra["sinks"] = view(rows_of, (1, heads, q_len))
        lse = _logsumexp(scores) if sink is None else None
        if lse is not None:
            extra["lse"] = True
        call = graph.call_function(attention_node, (q4, k4, v4, mask4, factors, divisors, cap, dtype), extra)
        out_meta = _meta((1, heads, q_len, size(value_dims)), dtype)
        call.meta["val"] = (out_meta, _meta((1, heads, q_len), torch.float32)) if lse is not None else out_meta
        out = call
        if lse is not None:
            out = graph.call_function(operator.getitem, (call, 0))
            out.meta["val"] = out_meta
            logs = graph.call_function(operator.getitem, (call, 1))
            logs.meta["val"] = call.meta["val"][1]
            lse.replace_all_uses_with(view(logs, tuple(tensor_meta(lse).shape)))
        # the node's [heads, rows, value dims] in the product's order of them
        atoms.parts[(out, 0)] = head_order + rows + value_dims
        result = atoms.layout(graph, out, p_labels[0] + p_labels[1] + value_dims,
                              list(tensor_meta(product).shape))
    product.replace_all_uses_with(result)


def _layout_of_product(node: torch.fx.Node) -> torch.fx.Node | None:
    """The bmm `node` is a layout of (views, permutes, unsqueezes), or None."""
    while node.target in LAYOUT - {aten.expand.default, aten.clone.default}:
        node = node.args[0]
        if node.target is aten.bmm.default:
            return node
    return None


def _logsumexp(scores: torch.fx.Node) -> torch.fx.Node | None:
    """The node computing logsumexp(scores, -1) as traced (amax, its infinities replaced by 0, log of the sum of
    exp of the difference, plus the max) from `scores`, or None."""
    users = {u.target: u for u in scores.users}
    amax, sub = users.get(aten.amax.default), users.get(aten.sub.Tensor)
    rank = tensor_meta(scores).dim()
    if len(scores.users) != 3 or amax is None or sub is None or amax.args[1:] not in (([-1], True), ([rank - 1], True)):
        return None
    finite = next((u for u in amax.users if u.target is aten.where.self), None)
    if finite is None or sub.args != (scores, finite) or len(finite.users) != 2:
        return None
    squeezed = next((u for u in finite.users if u is not sub), None)
    exp = _only_user(sub, aten.exp.default)
    total = exp and _only_user(exp, aten.sum.dim_IntList)
    log = total and _only_user(total, aten.log.default)
    lse = log and _only_user(log, aten.add.Tensor)
    if lse is None or squeezed.target is not aten.squeeze.dims or lse.args != (log, squeezed) or \
            total.args[1] not in ([-1], [rank - 1]) or len(total.args) > 2:
        return None
    return lse


def _only_user(node: torch.fx.Node, target: Any) -> torch.fx.Node | None:
    user = next(iter(node.users)) if len(node.users) == 1 else None
    return user if user is not None and user.target is target else None


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

