"""Which elements of each external input the reference actually uses.

Every tensor derived from an input only by data movement (views, slices, casts, index /
gather on known index values) carries an `Origin`: for each of its dims either nothing (a
broadcast or new dim) or the input dim it runs along together with the input indices it
picks (`None` = all of that input dim, in order). Input dims that no tensor dim runs along
sit in `fixed` with the set of indices the tensor covers there. So the input elements a
tensor holds are always the product  X_d S_d  of one index set per input dim, except after
a gather, whose set is listed element by element (`elements`).

When a tensor with an origin is consumed (any op that computes on it, or a returned output)
its element set is recorded as touched. `touched_count` takes the union of what the live
consumers touched. DRAM bytes read from the input = that count x the element width.

Anything the index maps cannot follow (a reshape that merges an indexed dim, as_strided...)
freezes the origin: the element set is kept exactly, but later slices no longer shrink it.

Writes follow the same maps (`replaced`): an in-place op on a view of an input writes a part of
that input (index_copy_ and index_put_ the indexed rows, a slice assignment its slice), and an
op that overwrites (copy_, index_copy_, scatter_ ...) needs none of the old values there; an
out-of-place op that returns `self` with some positions replaced (index_put, scatter,
slice_scatter ...) does not need those positions of `self` either. `remaining_count` takes the
touched elements outside such overwritten ones, `storage_elements` the storage a strided
(expanded, sliced) output view covers.
"""

from __future__ import annotations

import math

import numpy as np

EXACT_LIMIT = 1 << 24   # largest index grid / element list built explicitly for a union
_ONE = [np.asarray([i], np.int64) for i in range(64)]   # shared one-element index sets


def unique(a: np.ndarray) -> np.ndarray:
    """Sorted distinct values (np.unique's hash path is slow on large integer arrays)."""
    a = np.sort(np.asarray(a).reshape(-1))
    if a.size < 2:
        return a
    keep = np.empty(a.size, dtype=bool)
    keep[0] = True
    np.not_equal(a[1:], a[:-1], out=keep[1:])
    return a[keep]


def _norm(d: int, n: int) -> int:
    return d + n if d < 0 else d


class Origin:
    __slots__ = ("input", "in_shape", "dims", "fixed", "elements", "_product")

    def __init__(self, input: int, in_shape: tuple, dims: tuple, fixed: dict | None = None, elements=None):
        self.input = input          # position of the input in the definition
        self.in_shape = in_shape    # the input's shape
        self.dims = dims            # per tensor dim: None | (input_dim, index array or None)
        self.fixed = fixed or {}    # input_dim -> index array (or None = all) for unmapped dims
        self.elements = elements    # flat input indices (after gather); then dims/fixed unused
        self._product = None

    @classmethod
    def of_input(cls, input: int, shape: tuple) -> "Origin":
        return cls(input, tuple(shape), tuple((d, None) for d in range(len(shape))))

    # -------------------------------------------------------------- the element set
    def touched(self):
        """The element set: an array of flat indices, or a product (one index set per input dim)."""
        if self.elements is not None:
            return self.elements
        if self._product is None:
            self._product = self.product()
        return self._product

    def product(self) -> tuple:
        """Per input dim: an index array (may repeat; touched_count dedupes) or None for all of it."""
        sets: list = [None] * len(self.in_shape)
        seen = set()
        for entry in self.dims:
            if entry is not None:
                sets[entry[0]] = entry[1]
                seen.add(entry[0])
        for d, idx in self.fixed.items():
            if d not in seen:
                sets[d] = idx
        return tuple(sets)

    def frozen(self, ndim: int) -> "Origin":
        """Same element set, no per-dim maps: later views keep the set as it is."""
        if self.elements is not None:
            return Origin(self.input, self.in_shape, (None,) * ndim, elements=self.elements)
        fixed = dict(self.fixed)
        for entry in self.dims:
            if entry is not None:
                fixed[entry[0]] = entry[1]
        return Origin(self.input, self.in_shape, (None,) * ndim, fixed)

    def _with(self, dims, fixed=None) -> "Origin":
        if self.elements is not None:
            return Origin(self.input, self.in_shape, tuple(dims), elements=self.elements)
        return Origin(self.input, self.in_shape, tuple(dims), fixed if fixed is not None else self.fixed)

    def _drop(self, i: int, keep_index) -> tuple[list, dict]:
        """Remove tensor dim i; its input dim (if any) moves to fixed with `keep_index` picked."""
        dims = list(self.dims)
        entry = dims.pop(i)
        if entry is None or self.elements is not None:
            return dims, self.fixed
        fixed = dict(self.fixed)
        fixed[entry[0]] = keep_index(entry[1])
        return dims, fixed

    # -------------------------------------------------------------- views
    def permute(self, order) -> "Origin":
        return self._with([self.dims[p] for p in order])

    def transpose(self, a: int, b: int) -> "Origin":
        dims = list(self.dims)
        dims[a], dims[b] = dims[b], dims[a]
        return self._with(dims)

    def unsqueeze(self, i: int) -> "Origin":
        dims = list(self.dims)
        dims.insert(i, None)
        return self._with(dims)

    def squeeze(self, positions, shape) -> "Origin":
        out = self
        for i in sorted(positions, reverse=True):
            if shape[i] == 1:
                dims, fixed = out._drop(i, lambda idx: idx if idx is not None else np.zeros(1, np.int64))
                out = out._with(dims, fixed)
        return out

    def select(self, i: int, index: int, size: int) -> "Origin":
        index = index + size if index < 0 else index
        dims, fixed = self._drop(i, lambda idx: _ONE[index] if idx is None and index < 64 else
                                 np.asarray([index if idx is None else idx[index]], np.int64))
        return self._with(dims, fixed)

    def slice(self, i: int, start, end, step: int, size: int) -> "Origin":
        start, end, step = slice(start, end, step).indices(size)
        entry = self.dims[i]
        if entry is None or (start == 0 and end >= size and step == 1):
            return self
        d, idx = entry
        base = np.arange(size, dtype=np.int64) if idx is None else idx
        dims = list(self.dims)
        dims[i] = (d, base[start:end:step])
        return self._with(dims)

    def expand(self, old_shape, new_shape) -> "Origin":
        lead = len(new_shape) - len(old_shape)
        dims, fixed = [None] * lead, dict(self.fixed)
        for entry, old, new in zip(self.dims, old_shape, new_shape[lead:]):
            if entry is not None and old != new and self.elements is None:  # a size-1 dim broadcast
                fixed[entry[0]] = entry[1] if entry[1] is not None else np.zeros(1, np.int64)
                entry = None
            dims.append(entry)
        return self._with(dims, fixed)

    def reshape(self, old_shape, new_shape) -> "Origin":
        """Dims kept 1:1 keep their maps; dims merged or split freeze into `fixed`."""
        if self.elements is not None:
            return Origin(self.input, self.in_shape, (None,) * len(new_shape), elements=self.elements)
        groups = _reshape_groups(tuple(old_shape), tuple(new_shape))
        if groups is None:
            return self.frozen(len(new_shape))
        dims, fixed = [None] * len(new_shape), dict(self.fixed)
        for olds, news in groups:
            big_old = [i for i in olds if old_shape[i] != 1]
            big_new = [j for j in news if new_shape[j] != 1]
            if len(big_old) == 1 and len(big_new) == 1:
                dims[big_new[0]] = self.dims[big_old[0]]
                carried = big_old
            else:
                carried = []
            for i in olds:
                if i not in carried and self.dims[i] is not None:
                    d, idx = self.dims[i]
                    fixed[d] = idx if idx is not None or old_shape[i] != 1 else np.zeros(1, np.int64)
        return Origin(self.input, self.in_shape, tuple(dims), fixed)

    # -------------------------------------------------------------- indexing on known values
    def index(self, i: int, values: np.ndarray, size: int, index_ndim: int) -> "Origin":
        """Advanced indexing of tensor dim i by an integer array of `index_ndim` dims."""
        values = np.asarray(values, dtype=np.int64).reshape(-1) % max(size, 1)
        entry = self.dims[i]
        dims = list(self.dims[:i])
        if entry is None or self.elements is not None:
            new, fixed = [None] * index_ndim, self.fixed
        else:
            d, idx = entry
            picked = values if idx is None else idx[values]
            fixed = dict(self.fixed)
            if index_ndim == 1:
                new = [(d, picked)]
            else:
                new = [None] * index_ndim
                fixed[d] = picked
        return self._with(dims + new + list(self.dims[i + 1:]), fixed)

    def gather(self, i: int, values: np.ndarray, self_shape) -> "Origin":
        """torch.gather along tensor dim i: the exact element list when every dim is a plain map."""
        values = np.asarray(values, dtype=np.int64) % max(self_shape[i], 1)
        if self.elements is not None or values.size > EXACT_LIMIT or any(
                e is None for e in self.dims) or self.fixed and any(
                v is None or np.size(v) != 1 for v in self.fixed.values()):
            return self.index(i, values, self_shape[i], values.ndim).frozen(values.ndim)
        in_shape = self.in_shape
        coords = [None] * len(in_shape)
        for d, v in self.fixed.items():
            coords[d] = np.full(values.shape, int(np.asarray(v).reshape(-1)[0]), np.int64)
        grid = np.indices(values.shape, dtype=np.int64)
        for t, (d, idx) in enumerate(self.dims):
            pos = values if t == i else grid[t]
            coords[d] = pos if idx is None else idx[pos]
        flat = np.ravel_multi_index(tuple(coords), tuple(in_shape))
        return Origin(self.input, in_shape, (None,) * values.ndim, elements=unique(flat))

    def points(self, coords) -> np.ndarray | None:
        """Flat input indices of the tensor positions listed per tensor dim (equal-length arrays), or
        None where the maps cannot say exactly (element lists, a fixed dim holding several indices)."""
        if self.elements is not None or any(v is None or np.size(v) != 1 for v in self.fixed.values()):
            return None
        n = len(coords[0]) if len(coords) else 1
        in_coords: list = [None] * len(self.in_shape)
        for d, v in self.fixed.items():
            in_coords[d] = np.full(n, int(np.asarray(v).reshape(-1)[0]), np.int64)
        for entry, c in zip(self.dims, coords):
            if entry is not None:           # a broadcast or new dim: every position there is the same element
                d, idx = entry
                in_coords[d] = np.asarray(c, np.int64) if idx is None else idx[c]
        if any(c is None for c in in_coords):
            return None
        return unique(np.ravel_multi_index(tuple(in_coords), self.in_shape))


def _reshape_groups(old: tuple, new: tuple):
    """Pair runs of old dims with runs of new dims of equal product; None if sizes disagree."""
    if math.prod(old) != math.prod(new):
        return None
    groups, i, j = [], 0, 0
    while i < len(old) or j < len(new):
        olds, news = [], []
        po = pn = 1
        if i < len(old):
            olds.append(i); po *= old[i]; i += 1
        if j < len(new):
            news.append(j); pn *= new[j]; j += 1
        while po != pn:
            if po < pn and i < len(old):
                olds.append(i); po *= old[i]; i += 1
            elif pn < po and j < len(new):
                news.append(j); pn *= new[j]; j += 1
            else:
                return None
        # absorb trailing size-1 dims into this group
        while i < len(old) and old[i] == 1 and (j >= len(new) or new[j] != 1):
            olds.append(i); i += 1
        while j < len(new) and new[j] == 1 and (i >= len(old) or old[i] != 1):
            news.append(j); j += 1
        groups.append((olds, news))
    return groups


# ------------------------------------------------------------------------------ unions

def touched_count(shape: tuple, touches: list) -> tuple[int, bool]:
    """Elements of an input of `shape` in the union of `touches` (products or element lists).

    Returns (count, exact). When the union is too large to build, the largest single
    touch is returned (a lower bound: a bound built on it stays sound), with exact=False.
    """
    numel = math.prod(shape)
    if not touches:
        return 0, True
    uniques: dict[int, np.ndarray] = {}

    def distinct_values(a):
        if id(a) not in uniques:
            uniques[id(a)] = unique(a)
        return uniques[id(a)]
    distinct = {}
    for t in touches:        # the same arrays recur (one origin consumed by many ops): dedupe by identity
        key = id(t) if isinstance(t, np.ndarray) else tuple(id(s) for s in t)
        distinct.setdefault(key, t)
    products, lists = [], []
    for t in distinct.values():
        if isinstance(t, np.ndarray):
            lists.append(distinct_values(t))
        elif all(s is None for s in t):
            return numel, True
        else:
            products.append(tuple(None if s is None else distinct_values(s) for s in t))

    def size(p):
        return math.prod(shape[d] if s is None else len(s) for d, s in enumerate(p))

    products = list({tuple(None if s is None else s.tobytes() for s in p): p for p in products}.values())
    if not lists and len(products) == 1:
        return size(products[0]), True
    if not lists:
        free = [d for d in range(len(shape)) if any(p[d] is not None for p in products)]
        axes = [unique(np.concatenate([p[d] if p[d] is not None else np.arange(shape[d]) for p in products]))
                for d in free]
        grid = math.prod(len(a) for a in axes)
        if grid <= EXACT_LIMIT:
            mask = np.zeros([len(a) for a in axes], dtype=bool)
            for p in products:
                picks = [np.searchsorted(a, p[d] if p[d] is not None else np.arange(shape[d]))
                         for a, d in zip(axes, free)]
                mask[np.ix_(*picks)] = True
            rest = math.prod(shape[d] for d in range(len(shape)) if d not in free)
            return int(mask.sum()) * rest, True
        return max(size(p) for p in products), False
    if sum(size(p) for p in products) + sum(len(e) for e in lists) <= EXACT_LIMIT:
        flats = list(lists)
        for p in products:
            axes = [np.arange(n) if s is None else s for n, s in zip(shape, p)]
            flats.append(np.ravel_multi_index(np.ix_(*axes), shape).reshape(-1))
        return int(unique(np.concatenate(flats)).size), True
    return max([size(p) for p in products] + [len(e) for e in lists]), False


def part_size(shape: tuple, part) -> int:
    """Elements of one touch (a product, possibly with repeated indices, or an element list): an upper bound."""
    if isinstance(part, np.ndarray):
        return int(part.size)
    return math.prod(n if s is None else min(n, len(s)) for n, s in zip(shape, part))


def flat_elements(shape: tuple, parts: list) -> np.ndarray | None:
    """The union of `parts` as sorted flat indices, or None when it would list more than EXACT_LIMIT."""
    flats, total = [], 0
    for part in parts:
        total += part_size(shape, part)
        if total > EXACT_LIMIT:
            return None
        if isinstance(part, np.ndarray):
            flats.append(part.reshape(-1))
        else:
            axes = [np.arange(n) if s is None else np.asarray(s, np.int64) for n, s in zip(shape, part)]
            flats.append(np.ravel_multi_index(np.ix_(*axes), shape).reshape(-1))
    return unique(np.concatenate(flats)) if flats else np.zeros(0, np.int64)


def remaining_count(shape: tuple, touches: list, discounts: list) -> tuple[int, bool]:
    """Elements in the union of `touches` outside the union of `discounts`: (a lower bound, exact).

    The difference is computed exactly when both sets can be listed; else |T| - |D| with |T| a lower
    bound and |D| an upper bound (the sum of its parts), which is again a lower bound."""
    count, exact = touched_count(shape, touches)
    if not discounts or count == 0:
        return count, exact
    t, d = flat_elements(shape, touches), flat_elements(shape, discounts)
    if t is not None and d is not None:
        return int(t.size - np.isin(t, d, assume_unique=True).sum()), True
    d_count, d_exact = touched_count(shape, discounts)
    if not d_exact:
        d_count = min(math.prod(shape), sum(part_size(shape, p) for p in discounts))
    return max(0, count - d_count), False


def common_count(shape: tuple, a: list, b: list) -> int:
    """A lower bound on |A ∩ B| for two unions of parts: exact when both can be listed, else
    |A| + |B| - |whole| (inclusion-exclusion with lower bounds of |A| and |B|)."""
    fa, fb = flat_elements(shape, a), flat_elements(shape, b)
    if fa is not None and fb is not None:
        return int(np.isin(fa, fb, assume_unique=True).sum())
    return max(0, touched_count(shape, a)[0] + touched_count(shape, b)[0] - math.prod(shape))


# ------------------------------------------------------------------------------ output storage

def storage_elements(views: list[tuple[tuple, tuple, int]]) -> int:
    """Distinct storage elements covered by strided views (size, stride, storage offset) of one storage.

    A view costs its storage, not its logical size: an expanded dim (stride 0) adds nothing. The
    union of the views' offsets is listed when small; otherwise, per view, the product of its
    non-broadcast sizes when its strides cannot overlap, and the largest of them when they can
    (a lower bound either way), and the largest view for the union."""
    counts, total = [], 0
    for size, stride, _ in views:
        if any(n == 0 for n in size):
            counts.append(0)
            continue
        dims = sorted((abs(st), n) for n, st in zip(size, stride) if st != 0 and n > 1)
        product = math.prod(n for _, n in dims)
        disjoint = all(dims[k][0] >= dims[k - 1][0] * dims[k - 1][1] for k in range(1, len(dims)))
        counts.append(product if disjoint else max((n for _, n in dims), default=1))
        total += product
    if len(views) == 1 and (counts[0] == 0 or total == counts[0]):
        return counts[0]
    if total > EXACT_LIMIT:
        return max(counts)
    offsets = []
    for size, stride, offset in views:
        if any(n == 0 for n in size):
            continue
        at = np.asarray([offset], np.int64)
        for n, st in zip(size, stride):
            if st != 0 and n > 1:
                at = (at[:, None] + np.arange(n, dtype=np.int64) * st).reshape(-1)
        offsets.append(at)
    return int(unique(np.concatenate(offsets)).size) if offsets else 0


# ------------------------------------------------------------------------------ writes

# In-place ops that replace the target's values without reading them.
OVERWRITING = {"copy", "fill", "zero", "index_copy", "index_fill", "masked_fill", "masked_scatter", "normal",
               "uniform", "random", "bernoulli", "exponential", "geometric", "log_normal", "cauchy"}
# Out-of-place ops whose result is `self` with some positions replaced: those positions of self are unused.
REPLACING = {"index_copy", "index_fill", "index_put", "_index_put_impl", "scatter", "scatter_reduce",
             "index_reduce", "slice_scatter", "select_scatter", "masked_fill", "masked_scatter"}


def _flag(args, kwargs, position: int, name: str, default):
    if name in kwargs:
        return kwargs[name]
    return args[position] if len(args) > position else default


def replaced(name: str, args, kwargs, o: Origin, values, mask_values=lambda t: None):
    """What op `name` writes into its first argument, a tensor of origin `o`, in input elements:
    (the exact set or None when unknown, a superset of it, whether the old values there go unused).

    In place this is the part of the input the op writes; for the REPLACING ops out of place, the
    positions of `self` the result takes from elsewhere. `values(t)` gives an integer tensor's
    values (flat), `mask_values(t)` a bool tensor's as an array (or None).
    """
    shape, n = tuple(args[0].shape), args[0].dim()
    whole = o.touched()
    if name in ("index_copy", "index_add", "index_fill", "index_reduce"):
        dim = _norm(args[1], n)
        part = o.index(dim, values(args[2]), shape[dim], 1).touched()
        include_self = kwargs.get("include_self", True)
        return part, part, name in ("index_copy", "index_fill") or (name == "index_reduce" and not include_self)
    if name in ("index_put", "_index_put_impl"):
        overwrite = not _flag(args, kwargs, 3, "accumulate", False)
        picks = [(p, i) for p, i in enumerate(args[1]) if i is not None]
        arrays = [np.asarray(values(i)).reshape(tuple(i.shape)) for _, i in picks]
        if len(picks) == 1:
            part = o.index(picks[0][0], arrays[0], shape[picks[0][0]], picks[0][1].dim()).touched()
            return part, part, overwrite
        superset = o
        for (p, _), a in zip(picks, arrays):
            superset = superset.index(p, a, shape[p], 1)
        return _indexed_points(o, shape, [p for p, _ in picks], arrays), superset.touched(), overwrite
    if name in ("scatter", "scatter_add", "scatter_reduce"):
        dim = _norm(args[1], n)
        index = args[2]
        spread = o.gather(dim, np.asarray(values(index)).reshape(tuple(index.shape)), shape)
        overwrite = (name == "scatter" and kwargs.get("reduce") is None) or (
            name == "scatter_reduce" and not kwargs.get("include_self", True))
        return spread.elements, spread.touched(), overwrite
    if name == "slice_scatter":
        dim = _norm(_flag(args, kwargs, 2, "dim", 0), n)
        part = o.slice(dim, _flag(args, kwargs, 3, "start", None), _flag(args, kwargs, 4, "end", None),
                       _flag(args, kwargs, 5, "step", 1) or 1, shape[dim]).touched()
        return part, part, True
    if name == "select_scatter":
        dim = _norm(args[2], n)
        part = o.select(dim, args[3], shape[dim]).touched()
        return part, part, True
    if name in ("masked_fill", "masked_scatter"):
        mask = mask_values(args[1])
        exact = None
        if mask is not None:
            positions = np.nonzero(np.broadcast_to(mask, shape))
            if positions[0].size <= EXACT_LIMIT:
                exact = o.points(positions)
        return exact, whole, True
    return whole, whole, name in OVERWRITING


def _indexed_points(o: Origin, shape: tuple, picked: list[int], arrays: list[np.ndarray]):
    """Exact input elements of t[..., i0, ..., i1, ...] (index arrays broadcast together), or None."""
    flat = [a.reshape(-1) for a in np.broadcast_arrays(*arrays)]
    others = [d for d in range(len(shape)) if d not in picked]
    grid_shape = (flat[0].size,) + tuple(shape[d] for d in others)
    if math.prod(grid_shape) > EXACT_LIMIT:
        return None
    grid = np.indices(grid_shape, dtype=np.int64).reshape(len(grid_shape), -1)
    coords: list = [None] * len(shape)
    for k, d in enumerate(picked):
        coords[d] = flat[k][grid[0]] % max(shape[d], 1)
    for k, d in enumerate(others):
        coords[d] = grid[k + 1]
    return o.points(coords)


# ------------------------------------------------------------------------------ aten movement ops

def move(name: str, args, o: Origin, out, outs, values, note=lambda text: None):
    """The origin(s) of the output(s) of aten movement op `name` applied to a tensor of origin `o`.

    `values(index_tensor)` returns the integer values of an index argument (or raises).
    """
    shape, n = tuple(args[0].shape), args[0].dim()
    if name in ("_to_copy", "to", "clone", "contiguous", "lift_fresh", "lift_fresh_copy", "detach", "alias"):
        return o
    if name in ("view", "_unsafe_view", "reshape", "_reshape_alias", "view_copy"):
        if out.dtype.itemsize != args[0].dtype.itemsize:
            return o.frozen(out.dim())
        return o.reshape(shape, tuple(out.shape))
    if name in ("expand", "expand_copy"):
        return o.expand(shape, tuple(out.shape))
    if name in ("permute", "permute_copy"):
        return o.permute([_norm(d, n) for d in args[1]])
    if name in ("transpose", "transpose_copy"):
        return o.transpose(_norm(args[1], n), _norm(args[2], n))
    if name in ("t", "t_copy"):
        return o.transpose(0, 1) if n == 2 else o
    if name in ("squeeze", "squeeze_copy"):
        dims = range(n) if len(args) < 2 else ([args[1]] if isinstance(args[1], int) else args[1])
        return o.squeeze([_norm(d, n) for d in dims], shape)
    if name in ("unsqueeze", "unsqueeze_copy"):
        return o.unsqueeze(_norm(args[1], n + 1))
    if name in ("slice", "slice_copy"):
        dim = _norm(args[1] if len(args) > 1 else 0, n)
        start = args[2] if len(args) > 2 else None
        end = args[3] if len(args) > 3 else None
        step = args[4] if len(args) > 4 else 1
        return o.slice(dim, start, end, step, shape[dim])
    if name in ("select", "select_copy"):
        dim = _norm(args[1], n)
        return o.select(dim, args[2], shape[dim])
    if name == "narrow":
        dim = _norm(args[1], n)
        return o.slice(dim, args[2], args[2] + args[3], 1, shape[dim])
    if name == "unbind":
        dim = _norm(args[1] if len(args) > 1 else 0, n)
        return [o.select(dim, i, shape[dim]) for i in range(len(outs))]
    if name in ("split", "split_with_sizes"):
        dim = _norm(args[2] if len(args) > 2 else 0, n)
        result, start = [], 0
        for x in outs:
            size = x.shape[dim]
            result.append(o.slice(dim, start, start + size, 1, shape[dim]))
            start += size
        return result
    if name in ("index", "_unsafe_index"):
        picks = [(p, i) for p, i in enumerate(args[1]) if i is not None]
        values = [values(i) for _, i in picks]
        if len(picks) == 1:
            (p, index), = picks
            return o.index(p, values[0], shape[p], index.dim())
        frozen = o
        for (p, index), v in zip(picks, values):
            frozen = frozen.index(p, v, shape[p], 1)
        note("advanced indexing by several index tensors: their product of indices counted")
        return frozen.frozen(out.dim())
    if name == "index_select":
        dim = _norm(args[1], n)
        return o.index(dim, values(args[2]), shape[dim], 1)
    if name == "embedding":
        return o.index(0, values(args[1]), shape[0], args[1].dim())
    if name == "gather":
        dim = _norm(args[1], n)
        return o.gather(dim, np.asarray(values(args[2])).reshape(tuple(args[2].shape)), shape)
    return o.frozen(out.dim())



def basic_index(o: Origin, shape, index) -> Origin | None:
    """The origin after t[index] for basic indexing (ints, slices, None, ...); None if not basic."""
    items = index if type(index) is tuple else (index,)
    for x in items:
        kind = type(x)
        if kind is slice:
            if not all(v is None or type(v) is int for v in (x.start, x.stop, x.step)):
                return None
        elif kind is not int and x is not Ellipsis and x is not None:
            return None
    shape = list(shape)
    d = 0
    for pos, x in enumerate(items):
        if type(x) is int:
            o = o.select(d, x, shape[d])
            del shape[d]
        elif type(x) is slice:
            size = shape[d]
            if x.start is None and x.stop is None and x.step is None:
                d += 1
                continue
            o = o.slice(d, x.start, x.stop, x.step or 1, size)
            shape[d] = len(range(*x.indices(size)))
            d += 1
        elif x is None:
            o = o.unsqueeze(d)
            shape.insert(d, 1)
            d += 1
        else:  # Ellipsis spans the dims the items after it do not consume
            after = sum(1 for y in items[pos + 1:] if y is not None and y is not Ellipsis)
            d = len(shape) - after
    return o
