"""The aten-level recorder: a TorchDispatchMode that runs each op on meta and books it.

For every aten op it (1) executes it on the meta device (outputs of ops seen before with the
same argument metadata are rebuilt from a memo: Python meta kernels are slow), (2) computes
real values beside it for small integer/bool/constant tensors ("shadows"), (3) books the op:
what it read and wrote (for liveness), which input elements it consumed (touch.py), its work
(ops.py) in the class of its operands' precision, and -inf mask fractions.

Each tensor carries an `Info` (attribute `_kb`): the storage key it lives in (views share
their base's key), the narrowest precision rank its value was ever held in, its input
origin, its shadow, and mask state. intercept.py books common calls above aten with the same
helpers; this mode is entered only for the calls it does not handle.

Lazy values (the "values" tier, for references whose shapes or indices depend on float data):
tensors up to 2^26 elements get values at once (LIMITS["values"]), and every tensor also
remembers how it was made (`recipe`: the call and its arguments, or for an
input a function drawing its values), and its real values are computed on CPU only when a
count needs them (an index, a mask, a data-dependent shape, `.item()`), from the values of
just the tensors it was made from. A router's top-k over a large hidden state then costs the
router's GEMM on CPU, and the experts' weights are never made. A tensor above LAZY_ELEMENTS,
a product above LAZY_FLOPS, more than LAZY_BYTES in all, or a tensor changed in place since
cannot be made so (NeedsValues).
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes

from . import ops
from .touch import REPLACING, Origin, move, replaced

MASK_VALUE = -1e4                # a fill value at or below this masks an entry
# Real values kept beside the meta run ("shadows"), by mode:          float results  int/bool  product FLOPs
LIMITS = {"meta": (4096, 1 << 24, 1e8),        # the normal pass: index data and small constants
          "values": (1 << 26, 1 << 26, 5e9)}   # the retry for data-dependent references (router top-k ...)
RANDOM_OPS = {"rand", "randn", "randint", "randperm", "normal", "uniform", "bernoulli", "rand_like",
              "randn_like", "randint_like", "native_dropout", "exponential", "multinomial", "random",
              "cauchy", "geometric", "log_normal", "poisson"}
SHAPE_CHANGING_INPLACE = {"resize_", "resize_as_", "squeeze_", "unsqueeze_", "transpose_", "t_",
                          "as_strided_", "swapdims_", "swapaxes_", "set_", "detach_"}
KEEP_FLOWS = {"mul", "div", "add", "sub", "_to_copy", "clone", "_softmax", "_safe_softmax", "softmax",
              "exp", "exp2", "native_dropout", "masked_fill", "where", "neg", "_log_softmax"}
MM_FLOWS = {"mul", "div", "_to_copy", "clone", "neg"}
EMBEDDING_BAG = {"_embedding_bag", "_embedding_bag_forward_only", "embedding_bag"}
LAZY_ELEMENTS = 1 << 28          # largest tensor whose values the lazy tier computes
LAZY_FLOPS = 1e11                # largest matrix product it computes
LAZY_BYTES = 4 << 30             # all lazily computed values of one count together


class NeedsValues(Exception):
    """The reference needs tensor values that the meta run does not have."""


class Info:
    """What the counter knows of one tensor object (stored on it as `_kb`)."""
    __slots__ = ("key", "prec", "origin", "shadow", "mm", "keep", "op", "recipe")

    def __init__(self, key, prec, origin=None, shadow=None, mm=None, keep=None, op="", recipe=None):
        self.key, self.prec, self.origin, self.shadow = key, prec, origin, shadow
        self.mm, self.keep, self.op = mm, keep, op
        self.recipe = recipe        # lazy tier: (call, args, kwargs, output index), or a function for an input


class Rec:
    """One booked op: its work, the writes it read (liveness), the input elements it consumed
    (`touches`), wrote in place (`writes`) and made unnecessary to read (`discounts`: overwritten,
    or replaced in an out-of-place copy), each as (input position, element set)."""
    __slots__ = ("tensor", "cuda", "sfu", "deps", "touches", "writes", "discounts")

    def __init__(self, deps):
        self.tensor, self.cuda, self.sfu, self.deps, self.touches = {}, {}, 0.0, deps, []
        self.writes, self.discounts = [], []


_META_MEMO: dict = {}   # (op, argument signature) -> output metadata


class _Spec:
    __slots__ = ("shape", "stride", "dtype")

    def __init__(self, t):
        self.shape, self.stride, self.dtype = tuple(t.shape), t.stride(), t.dtype

    def make(self):
        return torch.empty_strided(self.shape, self.stride, dtype=self.dtype, device="meta")


def signature(x):
    """Hashable metadata of an argument (TypeError if it has none)."""
    if isinstance(x, torch.Tensor):
        return (tuple(x.shape), x.stride(), x.dtype, x.device.type)
    if isinstance(x, (list, tuple)):
        return tuple(signature(y) for y in x)
    if x is None or isinstance(x, (bool, int, float, str, torch.dtype, torch.device, torch.layout,
                                   torch.memory_format)):
        return (type(x), x)
    raise TypeError


def tensors_in(args, kwargs=None) -> list:
    found = []
    for a in list(args) + list((kwargs or {}).values()):
        if isinstance(a, torch.Tensor):
            found.append(a)
        elif isinstance(a, (list, tuple)):
            found.extend(x for x in a if isinstance(x, torch.Tensor))
    return found


def flat_out(out) -> list:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (list, tuple)):
        return [o for o in out if isinstance(o, torch.Tensor)]
    return []


class Tracer(TorchDispatchMode):
    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False     # never traced by dynamo: skip its wrapper (and a 3 s import of torch._dynamo)

    def __init__(self, real: bool, values: bool = False):
        super().__init__()
        self.real = real                          # CPU with real values (the fallback) or meta
        self.float_limit, self.int_limit, self.flops_limit = LIMITS["values" if values else "meta"]
        self.device = torch.device("cpu" if real else "meta")
        self.recs: list[Rec] = []
        self.writers: dict[int, list[int]] = {}   # storage key -> indices of the recs that wrote it
        self.poisoned: set[int] = set()           # storage keys whose shadows went stale
        self.next_key = 0
        self.recording = False
        self.silent = 0
        self.notes: list[str] = []
        self.n_ops = 0
        self.roots: list[int] = []                # records always live (host reads steer control flow)
        self.input_keys: dict[int, int] = {}      # storage key of an input -> its position
        self.lazy = values                        # remember recipes; compute values on demand
        self.lazy_bytes = 0

    # -------------------------------------------------------------- tensor knowledge
    def info(self, t: torch.Tensor) -> Info:
        inf = getattr(t, "_kb", None)
        if inf is None:
            inf = Info(self.new_key(), ops.rank_of(t.dtype))
            t._kb = inf
        return inf

    def new_key(self) -> int:
        self.next_key += 1
        return self.next_key

    def shadow(self, t: torch.Tensor, demand: bool = False):
        """Real values of t (itself off meta), or None. `demand`: the count needs them, so the lazy
        tier computes them from the recipe (NeedsValues if it cannot)."""
        if t.device.type != "meta":
            return t
        inf = getattr(t, "_kb", None)
        if inf is None or inf.key in self.poisoned:
            return None
        if inf.shadow is None and demand and self.lazy and inf.recipe is not None:
            self.materialize(t)
        return inf.shadow

    # -------------------------------------------------------------- lazy values
    def materialize(self, root: torch.Tensor) -> None:
        """Compute root's values and those of every tensor it was made from that lacks them."""
        order, stack, seen = [], [(root, False)], set()
        while stack:
            t, expanded = stack.pop()
            inf = t._kb
            if expanded:
                order.append(t)
                continue
            if inf.shadow is not None or id(t) in seen:
                continue
            seen.add(id(t))
            if inf.key in self.poisoned or inf.recipe is None:
                raise NeedsValues(f"values of a tensor changed in place or made outside the count ({inf.op})")
            if t.numel() > LAZY_ELEMENTS:
                raise NeedsValues(f"values of a {t.numel():,}-element tensor ({inf.op})")
            stack.append((t, True))
            if callable(inf.recipe):
                continue
            _, args, kwargs, _ = inf.recipe
            for a in tensors_in(args, kwargs):
                if a.device.type == "meta":
                    if getattr(a, "_kb", None) is None:
                        raise NeedsValues(f"values of an untracked argument of {inf.op}")
                    stack.append((a, False))
        for t in order:
            inf = t._kb
            if inf.shadow is None:
                inf.shadow = self._evaluate(t, inf.recipe)

    def _evaluate(self, t: torch.Tensor, recipe) -> torch.Tensor:
        self.lazy_bytes += t.numel() * t.element_size()
        if self.lazy_bytes > LAZY_BYTES:
            raise NeedsValues(f"more than {LAZY_BYTES >> 30} GiB of values to compute")
        with torch._C.DisableTorchFunction(), _disable_current_modes():
            if callable(recipe):
                return recipe()
            func, args, kwargs, index = recipe
            name = getattr(func, "__name__", "")
            operands = tensors_in(args, kwargs)
            if any(k in name for k in ("mm", "matmul", "linear", "einsum", "conv", "attention")) and operands:
                flops = 2 * t.numel() * max(operands[0].shape[-1] if operands[0].dim() else 1, 1)
                if flops > LAZY_FLOPS:
                    raise NeedsValues(f"values of a {flops:.3g}-FLOP product ({name})")
            shadows = self.shadow_args(args, kwargs)
            if shadows is None:
                raise NeedsValues(f"values of an argument of {name}")
            return flat_out(func(*shadows[0], **shadows[1]))[index]

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    @contextlib.contextmanager
    def muted(self):
        """Execute without booking (the inside of ops booked whole, e.g. SDPA)."""
        self.silent += 1
        try:
            yield
        finally:
            self.silent -= 1

    def record(self, reads: list[Info], consumed: list[Info], written: list[int], work=None, outs=(),
               root: bool = False, effects=((), (), ())) -> int:
        """Book one op; returns its record index. A root is live whatever the outputs need.
        `effects`: (touches, writes, discounts) beyond the whole consumed tensors (see Rec)."""
        rec = Rec([(i.key, len(self.writers.get(i.key, ()))) for i in reads])
        index = len(self.recs)
        self.recs.append(rec)
        if root:
            self.roots.append(index)
        for inf in consumed:
            if inf.origin is not None:
                rec.touches.append((inf.origin.input, inf.origin.touched()))
        rec.touches.extend(effects[0])
        rec.writes.extend(effects[1])
        rec.discounts.extend(effects[2])
        for key in written:
            self.writers.setdefault(key, []).append(index)
        if work is not None:
            self.charge(rec, work, outs)
            if work.tensor:
                for o in outs:
                    o._kb.mm = index
        return index

    def charge(self, rec: Rec, work: ops.Work, outs) -> None:
        """Add an op's work to its record: matrix FLOPs in the class of the wider operand."""
        if work.tensor:
            flops = work.tensor["?"]
            rank = max(self.info(t).prec for t in work.operands)
            for t in work.operands:
                if self.info(t).keep is not None:
                    flops *= self.info(t).keep
            if rank >= ops.NEUTRAL:                  # integer matrix products: CUDA cores
                rec.cuda["fp32"] = rec.cuda.get("fp32", 0) + flops
            else:
                rec.tensor[ops.TENSOR_CLASS[rank]] = flops
        keep = next((o._kb.keep for o in outs if getattr(o, "_kb", None) and o._kb.keep is not None), 1.0)
        for cls, n in work.cuda.items():
            rec.cuda[cls] = rec.cuda.get(cls, 0) + n * keep
        rec.sfu += work.sfu * keep

    # -------------------------------------------------------------- the dispatch hook
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.silent:
            return self._execute(func, args, kwargs, func.__name__.split(".")[0])
        name = func.__name__.split(".")[0]
        if name == "_local_scalar_dense":
            return self.item(args[0])
        if not self.real:
            args, kwargs = self._to_meta(args, kwargs)
        if name in ("index", "_unsafe_index"):
            args = self._bool_indices(args, demand=True)
        elif name in ("index_put", "index_put_", "_index_put_impl", "_index_put_impl_"):
            args = self._bool_indices(args, demand=False)     # a masked write needs no values to run
        out = self._execute(func, args, kwargs, name)
        self.post(func, name, args, kwargs, out)
        return out

    def item(self, t):
        try:
            value = self.shadow(t, demand=True)
        except NeedsValues:
            if not t.dtype.is_floating_point and t.dtype != torch.bool:
                raise
            value = None
        if value is not None:
            if self.recording:                      # a host read of real values steers the run: live
                inf = self.info(t)
                self.record([inf], [inf], [], root=True)
            return value.item()
        op = getattr(getattr(t, "_kb", None), "op", "")
        if t.dtype.is_floating_point:
            self.note("a .item() of float data was guessed as 1.0 (no values on meta)")
            return 1.0
        if t.dtype == torch.bool:
            guess = op in ("all", "isfinite", "ne")
            self.note(f"a bool .item() of float data was guessed ({op} -> {guess})")
            return guess
        raise NeedsValues(f".item() of integer data computed from float data ({op})")

    def _to_meta(self, args, kwargs):
        """CPU tensors (constants the reference made) meet meta tensors as meta twins with values."""
        flat = tensors_in(args, kwargs)
        if "device" in kwargs and kwargs["device"] is not None and torch.device(kwargs["device"]).type == "cuda":
            kwargs = {**kwargs, "device": self.device}
        if not any(t.device.type == "meta" for t in flat) or not any(
                t.device.type == "cpu" and t.dim() > 0 for t in flat):
            return args, kwargs

        def twin(x):
            if isinstance(x, torch.Tensor) and x.device.type == "cpu" and x.dim() > 0:
                m = _Spec(x).make()
                inf = self.info(x)
                m._kb = Info(self.new_key(), inf.prec, inf.origin, x)
                return m
            if isinstance(x, (list, tuple)):
                return type(x)(twin(y) for y in x)
            return x
        return twin(args), {k: twin(v) for k, v in kwargs.items()}

    def _bool_indices(self, args, demand: bool):
        """Boolean masks in advanced indexing become the integer indices of their True entries
        (`demand`: the op's result shape needs them; else a mask without values stays a mask)."""
        indices = args[1]
        if not any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices):
            return args
        converted = []
        for index in indices:
            if isinstance(index, torch.Tensor) and index.dtype == torch.bool:
                values = self.shadow(index, demand=demand)
                if values is None and not demand:
                    return args
                if values is None:
                    raise NeedsValues("boolean-mask indexing by a mask computed from float data")
                for part in values.nonzero(as_tuple=True):
                    converted.append(part if index.device.type != "meta" else self.meta_with(part))
            else:
                converted.append(index)
        return (args[0], converted) + tuple(args[2:])

    def meta_with(self, values: torch.Tensor) -> torch.Tensor:
        """A meta tensor holding `values` as its shadow."""
        m = _Spec(values).make()
        m._kb = Info(self.new_key(), ops.NEUTRAL if not values.is_floating_point() else ops.rank_of(values.dtype),
                     shadow=values)
        return m

    # -------------------------------------------------------------- execution on meta
    def _execute(self, func, args, kwargs, name):
        if self.real:
            return func(*args, **kwargs)
        schema = func._schema
        flat = tensors_in(args, kwargs)
        if schema.is_mutable and not func.is_view and name.endswith("_") and name not in SHAPE_CHANGING_INPLACE \
                and flat and flat[0] is args[0] and args[0].device.type == "meta" \
                and schema.arguments[0].alias_info is not None:
            return args[0]                          # in-place on meta: nothing to do
        if func.is_view or schema.is_mutable or any(t.device.type != "meta" for t in flat):
            return self._meta_call(func, args, kwargs, name)
        try:
            key = (func, signature(args), signature(tuple(sorted(kwargs.items()))))
        except TypeError:
            return self._meta_call(func, args, kwargs, name)
        spec = _META_MEMO.get(key)
        if spec is None:
            out = self._meta_call(func, args, kwargs, name)
            outs = flat_out(out)
            # Outputs computed from shadow values (nonzero, masked_select...) have data-dependent
            # shapes: the next call with the same shapes may hold other values, so never memoize them.
            if not outs or any(o.device.type != "meta" or hasattr(o, "_kb") for o in outs):
                spec = False
            elif isinstance(out, torch.Tensor):
                spec = _Spec(out)
            elif isinstance(out, (tuple, list)) and all(isinstance(o, torch.Tensor) or o is None for o in out):
                spec = tuple(_Spec(o) if isinstance(o, torch.Tensor) else o for o in out)
            else:
                spec = False
            if len(_META_MEMO) > 200_000:
                _META_MEMO.clear()
            _META_MEMO[key] = spec
            return out
        if spec is False:
            return self._meta_call(func, args, kwargs, name)
        if isinstance(spec, _Spec):
            return spec.make()
        return tuple(s.make() if isinstance(s, _Spec) else s for s in spec)

    def _meta_call(self, func, args, kwargs, name):
        try:
            return func(*args, **kwargs)
        except Exception as exc:  # data-dependent output shapes, ops without meta kernels
            shadows = self.shadow_args(args, kwargs, demand=True)
            if shadows is None:
                if name in ("index_put", "_index_put_impl"):
                    return torch.ops.aten.empty_like.default(args[0])
                raise NeedsValues(f"{name} on meta: {str(exc).splitlines()[0][:120] if str(exc) else ''}") from None
            result = func(*shadows[0], **shadows[1])
            if isinstance(result, torch.Tensor):
                return self.meta_with(result)
            return type(result)(self.meta_with(r) if isinstance(r, torch.Tensor) else r for r in result)

    def shadow_args(self, args, kwargs, demand: bool = False):
        """args/kwargs with every tensor replaced by its shadow; None if one has none."""
        missing = False

        def sub(x):
            nonlocal missing
            if isinstance(x, torch.Tensor):
                s = self.shadow(x, demand)
                if s is None:
                    missing = True
                return s
            if isinstance(x, (list, tuple)):
                return type(x)(sub(y) for y in x)
            if isinstance(x, torch.device):
                return torch.device("cpu")
            return x
        new_args = sub(args)
        new_kwargs = {k: sub(v) for k, v in kwargs.items() if k != "generator"}
        if new_kwargs.get("device") is not None:
            new_kwargs["device"] = torch.device("cpu")
        return None if missing else (new_args, new_kwargs)

    # -------------------------------------------------------------- booking one aten op
    def post(self, func, name, args, kwargs, out, work=None):
        outs = flat_out(out)
        ins = tensors_in(args, kwargs)
        infos = [self.info(t) for t in ins]
        prec = min((i.prec for i in infos), default=ops.NEUTRAL)
        base = name[:-1] if name.endswith("_") and not name.endswith("__") else name
        view = func is not None and func.is_view
        inplace = bool(outs) and bool(ins) and outs[0] is ins[0] and not view
        if func is not None and outs and any(o.device.type == "meta" for o in outs):
            self._shadow_outputs(func, base, args, kwargs, outs, ins, inplace, view)
        first = infos[0] if infos else None
        for position, o in enumerate(outs):
            if inplace and o is ins[0]:
                first.prec = min(first.prec, prec)
                continue
            old = getattr(o, "_kb", None)
            key = first.key if (view and first is not None) else self.new_key()
            o._kb = Info(key, min(prec, ops.rank_of(o.dtype)), shadow=old.shadow if old else None, op=base)
            if self.lazy and func is not None and o._kb.shadow is None:
                o._kb.recipe = (func, args, kwargs, position)
        if not self.recording:
            return
        self.n_ops += 1
        propagated = False
        if first is not None and first.origin is not None and base in ops.MOVEMENT and ins[0] is args[0]:
            propagated = self._origins(base, args, outs)
        self.masks(base, args, outs, infos, view)
        if view:
            return                                  # a view: no work, no write; its consumers touch
        partial, effects = self.effects(base, args, kwargs, inplace)
        consumed = [inf for t, inf in zip(ins, infos) if not (propagated and t is ins[0])
                    and not (partial and t is args[0])]
        written = [first.key] if inplace else [o._kb.key for o in outs]
        self.record(infos, consumed, written, work or ops.work_of(base, args, kwargs, outs), outs, effects=effects)

    def effects(self, name, args, kwargs, inplace: bool):
        """(whether the first argument is read only in part, (touches, writes, discounts)) of one op.

        In place, the target is read only where an accumulating op (index_add_, add_ ...) reads it
        and not at all where the op overwrites (copy_, index_copy_, index_put_ ...); the written
        part is a write into the input when the target is a view of one, and overwritten positions
        need no read (discounts). An embedding bag reads only the table rows its indices name. An
        out-of-place op that replaces positions of `self` (index_put, scatter, slice_scatter ...)
        does not read those."""
        target = args[0] if args and isinstance(args[0], torch.Tensor) else None
        inf = getattr(target, "_kb", None)
        origin = inf.origin if inf is not None else None
        touches, writes, discounts = [], [], []
        if name in EMBEDDING_BAG and origin is not None:
            touches.append((origin.input, self._bag_rows(args, kwargs, origin)))
            return True, (touches, writes, discounts)
        if not inplace and (name not in REPLACING or origin is None):
            return False, (touches, writes, discounts)
        if origin is None:                          # in place on an intermediate: nothing of an input
            return inplace, (touches, writes, discounts)
        exact, superset, overwrite = replaced(name, args, kwargs, origin, self.index_values, self._mask_values)
        if not inplace:                             # out of place: self is read, except what is replaced
            if overwrite:
                discounts.append((origin.input, superset))
            return False, (touches, writes, discounts)
        if overwrite:
            discounts.append((origin.input, superset))
        elif exact is not None:
            touches.append((origin.input, exact))
        if inf.key in self.input_keys:
            if exact is not None:
                writes.append((origin.input, exact))
            else:
                self.note(f"{name}_ into an input: the part written is unknown; its writes not counted")
        return True, (touches, writes, discounts)

    def _bag_rows(self, args, kwargs, origin):
        """The table rows an embedding bag reads: its indices between the first and last offset,
        padding_idx skipped."""
        indices = self.index_values(args[1])
        offsets = self.index_values(args[2]) if len(args) > 2 and isinstance(args[2], torch.Tensor) else None
        include_last = bool(args[7]) if len(args) > 7 else bool(kwargs.get("include_last_offset", False))
        padding = args[8] if len(args) > 8 else kwargs.get("padding_idx", -1)
        if offsets is not None and offsets.size:
            indices = indices[offsets[0]:offsets[-1]] if include_last else indices[offsets[0]:]
        if padding is not None and padding >= 0:
            indices = indices[indices != padding]
        return origin.index(0, indices, args[0].shape[0], 1).touched()

    def _mask_values(self, mask: torch.Tensor):
        values = self.shadow(mask)
        return None if values is None else values.detach().to(torch.bool).numpy()

    def _shadow_outputs(self, func, base, args, kwargs, outs, ins, inplace, view):
        if inplace:
            target = ins[0]
            if self.shadow(target) is None:
                if self.lazy:                        # its recipe no longer gives its values
                    self.poisoned.add(self.info(target).key)
                return
            shadows = self.shadow_args(args, kwargs)
            try:
                if shadows is None:
                    raise ValueError
                func(*shadows[0], **shadows[1])
            except Exception:
                self.poisoned.add(target._kb.key)
            return
        if any(getattr(o, "_kb", None) is not None and o._kb.shadow is not None for o in outs):
            return                                   # made from shadows already
        if not view and any(o.numel() > (self.float_limit if o.dtype.is_floating_point else self.int_limit)
                            for o in outs):
            return
        if base in ops.MATMULS and outs[0].numel() * (ins[0].shape[-1] if ins and ins[0].dim() else 1) \
                > self.flops_limit / 2:
            return                                   # a large product's values are (almost) never index data
        shadows = self.shadow_args(args, kwargs)
        if shadows is None:
            return
        try:
            result = func(*shadows[0], **shadows[1])
        except Exception:
            return
        for o, r in zip(outs, flat_out(result)):
            o._kb = Info(0, ops.rank_of(o.dtype), shadow=r)

    def _origins(self, name, args, outs) -> bool:
        """Give the outputs of a data-movement op the origin of its source; True if it did."""
        o = args[0]._kb.origin
        try:
            new = move(name, args, o, outs[0], outs, self.index_values, self.note)
        except NeedsValues:
            raise
        except Exception:   # an argument form not followed: keep the exact set, stop refining
            new = [o.frozen(x.dim()) for x in outs]
        if new is None:
            return False
        for x, origin in zip(outs, new if isinstance(new, list) else [new]):
            x._kb.origin = origin
        return True

    def index_values(self, index: torch.Tensor) -> np.ndarray:
        values = self.shadow(index, demand=True)
        if values is None:
            raise NeedsValues("indexing an input with indices computed from float data")
        return values.detach().reshape(-1).to(torch.int64).numpy()

    # -------------------------------------------------------------- -inf masks
    def masks(self, name, args, outs, infos, view) -> None:
        if not outs or not infos:
            return
        src = infos[0]
        moves = view or name in ops.MOVEMENT
        if (moves or name in KEEP_FLOWS) and src.keep is not None:
            for o in outs:
                o._kb.keep = src.keep
        if (moves or name in MM_FLOWS) and src.mm is not None and isinstance(args[0], torch.Tensor):
            for o in outs:
                o._kb.mm = src.mm
        kept = self._mask_fraction(name, args)
        if kept is None:
            return
        target = args[0] if name != "where" else next(a for a in args[1:] if isinstance(a, torch.Tensor)
                                                     and a.dim() > 0)
        tinf = self.info(target)
        keep = kept * (tinf.keep if tinf.keep is not None else 1.0)
        outs[0]._kb.keep = keep
        if tinf.mm is not None:                     # the product that made the scores skips masked tiles
            rec = self.recs[tinf.mm]
            for cls in rec.tensor:
                rec.tensor[cls] *= keep / (tinf.keep or 1.0)

    def _mask_fraction(self, name, args):
        """Fraction of entries a -inf mask keeps, or None if this op is no such mask."""
        def scalar(v):
            if isinstance(v, torch.Tensor) and v.dim() == 0:
                s = self.shadow(v)
                return s.item() if s is not None else None
            return v

        def masking(v):
            return isinstance(v, (int, float)) and v <= MASK_VALUE
        if name == "masked_fill" and len(args) > 2 and masking(scalar(args[2])):
            mask = self.shadow(args[1])
            if mask is None:
                self.note("a -inf mask of unknown density: the masked product counted dense")
                return None
            return 1.0 - mask.float().mean().item()
        if name == "where" and len(args) == 3:
            for pos, keep_when in ((2, True), (1, False)):
                data = args[3 - pos]
                if masking(scalar(args[pos])) and isinstance(data, torch.Tensor) and data.dim() > 0:
                    cond = self.shadow(args[0]) if isinstance(args[0], torch.Tensor) else None
                    if cond is None:
                        self.note("a -inf mask of unknown density: the masked product counted dense")
                        return None
                    frac = cond.float().mean().item()
                    return frac if keep_when else 1.0 - frac
        if name == "add" and len(args) > 1 and isinstance(args[1], torch.Tensor) and args[1].is_floating_point():
            mask = self.shadow(args[1])
            if mask is not None and mask.numel() > 1 and bool((mask <= MASK_VALUE).any()):
                return (mask > MASK_VALUE).float().mean().item()
        return None

    # -------------------------------------------------------------- inputs
    def begin(self, values: list) -> list:
        """Mark the run's inputs: each tensor gets a fresh key and an origin covering all of it."""
        fresh = []
        for i, v in enumerate(values):
            if isinstance(v, torch.Tensor):
                shadow = self.shadow(v)
                recipe = v._kb.recipe if getattr(v, "_kb", None) is not None else None
                v._kb = Info(self.new_key(), ops.rank_of(v.dtype), Origin.of_input(i, tuple(v.shape)), shadow,
                             recipe=recipe)
                self.input_keys[v._kb.key] = i
            fresh.append(v)
        self.recording = True
        return fresh
