"""The function-level fast lane in front of the aten recorder (tracer.py).

A TorchDispatchMode costs tens of microseconds per aten op, which makes references that
loop in Python over sequences and heads (FlashInfer's paged-decode references) take minutes.
This TorchFunctionMode sees each torch call first and books the common ones itself, with the
tracer's helpers and the same rules:

* metadata queries (shape, size, dim ...) pass straight through;
* views (basic indexing, transpose, permute, view/reshape, squeeze, split ...) run natively on
  meta (C++, ~1 us) and get the origin touch.py derives, the base's storage key and shadow;
* `t[index] = value` with a basic index is booked as a copy into t's storage;
* casts (.to(dtype), .float(), .contiguous(), .clone()) are booked as data movement;
* pure computations (matmul, arithmetic, softmax, reductions ...) are booked once through
  the aten recorder and replayed from a memo keyed by the arguments' metadata, precision
  and provenance flags (not values, which on meta do not exist);
* SDPA and _scaled_mm are booked whole (causal fraction; FP4 operands on CPU);
* device="cuda" requests stay on the counting device.
Everything else goes through the aten recorder.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from . import ops
from .touch import basic_index, move
from .tracer import MASK_VALUE, Info, NeedsValues, Tracer, _Spec, flat_out

TB = torch._C.TensorBase


def _m(*names) -> set:
    """The callables a Tensor method may arrive as (C TensorBase slot and Python Tensor override)."""
    found = set()
    for n in names:
        for owner in (TB, torch.Tensor):
            f = owner.__dict__.get(n)
            if f is not None and not isinstance(f, (property, type(TB.__dict__["T"]))):
                found.add(f)
    return found


def _views(pairs: dict) -> dict:
    table = {}
    for names, aten in pairs.items():
        for f in _m(*names.split()):
            table[f] = aten
    return table


_PROPS = {TB.__dict__[n]: n for n in ("T", "mT", "shape", "dtype", "device", "ndim", "is_cuda", "is_meta",
                                      "is_cpu", "layout", "requires_grad", "is_leaf", "grad_fn", "names",
                                      "itemsize", "nbytes") if n in TB.__dict__}
META_FUNCS = _m("size", "dim", "ndimension", "numel", "nelement", "stride", "is_contiguous", "is_floating_point",
                "is_complex", "element_size", "storage_offset", "data_ptr", "__len__", "get_device", "is_signed")
META_FUNCS |= {torch.numel, torch.is_tensor, torch.is_floating_point}
# callable -> aten-style name of the view it makes (move() in touch.py maps its origin)
VIEWS = _views({"t": "t", "transpose swapaxes swapdims": "transpose", "permute": "permute",
                "unsqueeze": "unsqueeze", "squeeze": "squeeze", "view reshape flatten unflatten view_as reshape_as": "view",
                "expand expand_as": "expand", "narrow": "narrow", "select": "select", "chunk split": "split",
                "unbind": "unbind", "detach": "alias"})
VIEWS.update({torch.t: "t", torch.transpose: "transpose", torch.permute: "permute", torch.unsqueeze: "unsqueeze",
              torch.squeeze: "squeeze", torch.reshape: "view", torch.flatten: "view", torch.narrow: "narrow",
              torch.select: "select", torch.chunk: "split", torch.split: "split", torch.unbind: "unbind",
              torch.detach: "alias"})
GETITEM, SETITEM = _m("__getitem__"), _m("__setitem__")
CASTS = _m("to", "float", "double", "half", "bfloat16", "int", "long", "short", "bool", "byte", "char", "type",
           "contiguous", "clone") | {torch.clone}
TYPE = _m("type")
HOST = _m("tolist", "numpy", "cpu", "__array__")        # host copies: answered from shadows
COMPUTE = _m("matmul", "__matmul__", "__rmatmul__", "mm", "bmm", "mul", "__mul__", "__rmul__", "div",
             "__truediv__", "__rtruediv__", "__div__", "__rdiv__", "add", "__add__", "__radd__", "sub", "__sub__",
             "__rsub__", "__neg__", "neg", "__pow__", "pow", "exp", "log", "sigmoid", "tanh", "rsqrt", "sqrt",
             "softmax", "log_softmax", "logsumexp", "relu", "sum", "mean", "amax", "clamp", "abs", "square",
             "__gt__", "__lt__", "__ge__", "__le__", "float_power", "erf")
COMPUTE |= {torch.matmul, torch.mm, torch.bmm, F.linear, torch.mul, torch.div, torch.add, torch.sub, torch.neg,
            torch.pow, torch.exp, torch.log, torch.sigmoid, torch.tanh, torch.rsqrt, torch.sqrt, torch.softmax,
            F.softmax, torch.log_softmax, F.log_softmax, torch.logsumexp, F.silu, F.gelu, F.relu, torch.relu,
            torch.sum, torch.mean, torch.amax, torch.maximum, torch.minimum, torch.clamp, torch.abs, torch.square,
            torch.einsum, torch.erf}
_COMPUTE_MEMO: dict = {}
_NOT_MEMOIZABLE = object()


class Intercept(TorchFunctionMode):
    def __init__(self, tracer: Tracer):
        super().__init__()
        self.t = tracer

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        t = self.t
        if func in META_FUNCS:
            return func(*args, **kwargs)
        if getattr(func, "__name__", "") == "__get__":
            prop = _PROPS.get(getattr(func, "__self__", None))
            if prop in ("T", "mT") and t.recording and not t.silent:
                return self._view(func, args, kwargs, prop)
            if prop is not None:
                return func(*args, **kwargs)
        if t.silent:
            return self._slow(func, args, kwargs)
        if not t.recording:                                   # the custom-inputs entry point
            return self._slow(func, args, kwargs)
        if func in VIEWS:
            return self._view(func, args, kwargs, VIEWS[func])
        if func in GETITEM:
            return self._view(func, args, kwargs, "getitem")
        if func in SETITEM:
            return self._setitem(func, args, kwargs)
        if func in CASTS:
            return self._cast(func, args, kwargs)
        if func in COMPUTE:
            return self._compute(func, args, kwargs)
        if func is F.scaled_dot_product_attention:
            return self._sdpa(func, args, kwargs)
        if func in HOST:
            return self._host(func, args, kwargs)
        name = getattr(func, "__name__", "")
        if name == "_scaled_mm":
            return self._scaled_mm(func, args, kwargs)
        if name == "cuda" and args and isinstance(args[0], torch.Tensor):
            return args[0]
        return self._slow(func, args, kwargs)

    # -------------------------------------------------------------- the aten path
    def _slow(self, func, args, kwargs):
        device = kwargs.get("device")
        if device is not None and torch.device(device).type == "cuda":
            kwargs = {**kwargs, "device": self.t.device}
        if getattr(func, "__name__", "") == "to":
            args = tuple(self.t.device if isinstance(a, (str, torch.device)) and torch.device(a).type == "cuda"
                         else a for a in args)
        with self.t:
            return func(*args, **kwargs)

    # -------------------------------------------------------------- views
    def _view(self, func, args, kwargs, name):
        src = args[0]
        if not isinstance(src, torch.Tensor) or (kwargs and name not in ("split", "permute", "transpose")):
            return self._slow(func, args, kwargs)
        t = self.t
        inf = t.info(src)
        picked = None
        if name == "getitem":
            if inf.origin is not None:
                picked = basic_index(inf.origin, src.shape, args[1])
                if picked is None:
                    return self._slow(func, args, kwargs)       # advanced indexing: the aten path
            elif isinstance(args[1], (torch.Tensor, list)) or (
                    type(args[1]) is tuple and any(isinstance(x, (torch.Tensor, list)) for x in args[1])):
                return self._slow(func, args, kwargs)
        out = func(*args, **kwargs)
        outs = flat_out(out)
        aliased = all(o._is_view() and (o._base is src or (src._base is not None and o._base is src._base))
                      for o in outs)
        shadow = t.shadow(src)
        shadows = None
        if shadow is not None and src.device.type == "meta":
            try:
                shadows = flat_out(func(shadow, *args[1:], **kwargs))
            except Exception:
                shadows = None
        origins = [picked] if picked is not None else None
        if inf.origin is not None and picked is None:
            origins = self._view_origins(name, args, kwargs, inf, src, out, outs)
        key = inf.key
        for i, o in enumerate(outs):
            o._kb = Info(key if aliased else t.new_key(), min(inf.prec, ops.rank_of(o.dtype)),
                         origins[i] if origins else None, shadows[i] if shadows else None,
                         inf.mm, inf.keep, "view", (func, args, kwargs, i) if t.lazy and not shadows else None)
        if not aliased and t.recording:                          # reshape had to copy
            t.n_ops += 1
            t.record([inf], [], [o._kb.key for o in outs])
        return out

    def _view_origins(self, name, args, kwargs, inf, src, out, outs):
        o = inf.origin
        try:
            if name == "T":
                name, args = ("transpose", (src, 0, 1)) if src.dim() == 2 else ("permute", (src, list(range(src.dim()))[::-1]))
            elif name == "mT":
                name, args = "transpose", (src, -2, -1)
            elif name == "permute":
                dims = args[1] if len(args) == 2 and isinstance(args[1], (list, tuple)) else list(args[1:])
                args = (src, kwargs.get("dims", dims))
            elif name == "transpose":
                args = (src, kwargs.get("dim0", args[1] if len(args) > 1 else None),
                        kwargs.get("dim1", args[2] if len(args) > 2 else None))
            elif name == "split":
                dim = kwargs.get("dim", args[2] if len(args) > 2 else 0)
                args = (src, None, dim)
            new = move(name, args, o, out if isinstance(out, torch.Tensor) else outs[0], outs, self.t.index_values,
                       self.t.note)
        except NeedsValues:
            raise
        except Exception:
            return [o.frozen(x.dim()) for x in outs]
        return new if isinstance(new, list) else [new]

    # -------------------------------------------------------------- host copies
    def _host(self, func, args, kwargs):
        """tolist() / numpy() / cpu() of meta data: the shadow's values, or a CPU recount."""
        src = args[0]
        if not isinstance(src, torch.Tensor) or src.device.type != "meta":
            return self._slow(func, args, kwargs)
        values = self.t.shadow(src, demand=True)
        if values is None:
            raise NeedsValues(f"{getattr(func, '__name__', 'host copy')}() of data computed from float values")
        t = self.t
        inf = t.info(src)
        t.n_ops += 1
        t.record([inf], [inf], [], root=True)      # a host read steers the run: always live
        if getattr(func, "__name__", "") == "cpu":
            out = values.clone()
            out._kb = Info(t.new_key(), inf.prec, inf.origin, None, op="cpu")
            return out
        return func(values, *args[1:], **kwargs)

    # -------------------------------------------------------------- t[index] = value
    def _setitem(self, func, args, kwargs):
        target, index, value = args
        t = self.t
        inf = t.info(target)
        if not isinstance(index, (int, slice, tuple)) or (
                isinstance(index, tuple) and any(isinstance(x, (torch.Tensor, list, bool)) for x in index)):
            return self._slow(func, args, kwargs)
        is_tensor = isinstance(value, torch.Tensor)
        if torch.is_grad_enabled() and (target.requires_grad or (is_tensor and value.requires_grad)):
            return self._slow(func, args, kwargs)
        if target.device.type != "meta" or (is_tensor and value.device.type != target.device.type):
            if target.device.type == "meta" or (is_tensor and value.device.type == "meta"):
                return self._slow(func, args, kwargs)
            func(*args, **kwargs)                                # real tensors: do it
        vinf = t.info(value) if is_tensor else None
        if target.device.type == "meta" and t.shadow(target) is not None:   # keep the values right
            vshadow = t.shadow(value) if is_tensor else value
            if vshadow is None:
                t.poisoned.add(inf.key)
            else:
                try:
                    func(t.shadow(target), index, vshadow)
                except Exception:
                    t.poisoned.add(inf.key)
        elif t.lazy:                                # its recipe no longer gives its values
            t.poisoned.add(inf.key)
        if vinf is not None:
            inf.prec = min(inf.prec, vinf.prec)
        t.n_ops += 1
        writes, discounts = [], []
        part = basic_index(inf.origin, target.shape, index) if inf.origin is not None else None
        if part is not None:                        # an assignment overwrites: the old values there go unread
            discounts.append((part.input, part.touched()))
            if inf.key in t.input_keys:
                writes.append((part.input, part.touched()))
        t.record([inf] + ([vinf] if vinf else []), [vinf] if vinf else [], [inf.key],
                 effects=((), writes, discounts))
        return None

    # -------------------------------------------------------------- casts
    def _cast(self, func, args, kwargs):
        src = args[0]
        t = self.t
        if not isinstance(src, torch.Tensor) or (func in TYPE and len(args) == 1 and not kwargs) or any(
                isinstance(a, torch.Tensor) or (isinstance(a, (str, torch.device))) for a in args[1:]) \
                or "device" in kwargs or (src.device.type == "meta" and t.shadow(src) is not None):
            return self._slow(func, args, kwargs)
        out = func(*args, **kwargs)
        if out is src:
            return out
        inf = t.info(src)
        out._kb = Info(t.new_key(), min(inf.prec, ops.rank_of(out.dtype)), inf.origin, None, inf.mm, inf.keep, "cast",
                       (func, args, kwargs, 0) if t.lazy else None)
        t.n_ops += 1
        t.record([inf], [], [out._kb.key])
        return out

    # -------------------------------------------------------------- memoized computations
    def _compute(self, func, args, kwargs):
        t = self.t
        if t.real:
            return self._slow(func, args, kwargs)
        flat = []
        try:
            key = (func, _describe(args, t, flat), _describe(tuple(sorted(kwargs.items())), t, flat) if kwargs else ())
        except TypeError:
            return self._slow(func, args, kwargs)
        grad = torch.is_grad_enabled()
        for x in flat:
            inf = x._kb
            if x.device.type != "meta" or inf.keep is not None or (inf.shadow is not None and inf.key not in t.poisoned) \
                    or (grad and x.requires_grad):          # a replayed output would have no autograd history
                return self._slow(func, args, kwargs)
        entry = _COMPUTE_MEMO.get(key)
        if entry is _NOT_MEMOIZABLE:
            return self._slow(func, args, kwargs)
        if entry is None:
            return self._learn(key, func, args, kwargs, flat)
        outs = [s.make() for s in entry["specs"]]
        infos = [x._kb for x in flat]
        for i, (o, prec) in enumerate(zip(outs, entry["precs"])):
            o._kb = Info(t.new_key(), prec, op="compute", recipe=(func, args, kwargs, i) if t.lazy else None)
        index = t.record(infos, infos, [o._kb.key for o in outs])
        rec = t.recs[index]
        rec.tensor, rec.cuda, rec.sfu = dict(entry["tensor"]), dict(entry["cuda"]), entry["sfu"]
        mm = entry["mm"]
        for o in outs:
            o._kb.mm = index if mm == "new" else (infos[mm].mm if isinstance(mm, int) else None)
        t.n_ops += entry["ops"]
        return outs[0] if entry["single"] else tuple(outs)

    def _learn(self, key, func, args, kwargs, flat):
        """Run through the aten recorder; memoize the call's net effect if it is a pure computation."""
        t = self.t
        start, ops_before = len(t.recs), t.n_ops
        infos = [t.info(x) for x in flat]
        writes_before = [len(t.writers.get(i.key, ())) for i in infos]
        out = self._slow(func, args, kwargs)
        outs = flat_out(out)
        new = t.recs[start:]
        touches_ok = {(i.origin.input, _canon(i.origin.touched())) for i in infos if i.origin is not None}
        ok = (outs and len(outs) == len(out if isinstance(out, (tuple, list)) else [out])
              and all(o.device.type == "meta" and o._kb.origin is None and t.shadow(o) is None
                      and o._kb.keep is None for o in outs)
              and [len(t.writers.get(i.key, ())) for i in infos] == writes_before
              and all((i, _canon(s)) in touches_ok for r in new for i, s in r.touches)
              and not any(r.writes or r.discounts for r in new))
        if not ok:
            _COMPUTE_MEMO[key] = _NOT_MEMOIZABLE
            return out
        tensor, cuda, sfu = {}, {}, 0.0
        for r in new:
            for c, n in r.tensor.items():
                tensor[c] = tensor.get(c, 0) + n
            for c, n in r.cuda.items():
                cuda[c] = cuda.get(c, 0) + n
            sfu += r.sfu
        mm = None
        if outs[0]._kb.mm is not None:
            mm = "new" if outs[0]._kb.mm >= start else next(
                (i for i, inf in enumerate(infos) if inf.mm == outs[0]._kb.mm), None)
        _COMPUTE_MEMO[key] = {"specs": [_Spec(o) for o in outs], "precs": [o._kb.prec for o in outs],
                              "tensor": tensor, "cuda": cuda, "sfu": sfu, "mm": mm, "ops": t.n_ops - ops_before,
                              "single": isinstance(out, torch.Tensor)}
        return out

    # -------------------------------------------------------------- ops booked whole
    def _sdpa(self, func, args, kwargs):
        names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")
        call = dict(zip(names, args), **kwargs)
        q, k, v, mask = call["query"], call["key"], call["value"], call.get("attn_mask")
        with self.t.muted():
            out = self._slow(func, args, kwargs)
        L, E, S, Ev = q.shape[-2], q.shape[-1], k.shape[-2], v.shape[-1]
        pairs = math.prod(q.shape[:-2]) * L * S
        kept = 1.0
        if call.get("is_causal"):
            kept = sum(min(i + 1, S) for i in range(L)) / max(L * S, 1)   # torch's top-left tril mask
        if mask is not None:
            values = self.t.shadow(mask)
            if values is None:
                self.t.note("SDPA attn_mask of unknown density: counted dense")
            else:
                keep = values if values.dtype == torch.bool else values > MASK_VALUE
                kept *= keep.float().mean().item()
        # QK^T and PV: 2*L*S*(E + Ev) per (batch, head); softmax: one exp and ~3 FLOPs per kept score.
        work = ops.Work(tensor={"?": 2 * pairs * (E + Ev) * kept}, cuda={"fp32": 3 * pairs * kept},
                        sfu=pairs * kept, operands=(q, k, v))
        self.t.post(None, "scaled_dot_product_attention", tuple(x for x in (q, k, v, mask) if x is not None),
                    {}, out, work)
        return out

    def _scaled_mm(self, func, args, kwargs):
        a, b = args[0], args[1]
        with self.t.muted():
            if self.t.real and a.dtype == torch.float4_e2m1fn_x2:
                from kernelbench.core.emulation import scaled_mm_fp4
                with self.t:
                    out = scaled_mm_fp4(*args, **kwargs)
            else:
                out = self._slow(func, args, kwargs)
        flops, _, epilogue = ops.matmul_flops("_scaled_mm", args, out)
        work = ops.Work(tensor={"?": flops}, cuda={"fp32": epilogue}, operands=(a, b))
        self.t.post(None, "_scaled_mm", tuple(x for x in args if isinstance(x, torch.Tensor)), {}, out, work)
        return out


def _describe(x, t: Tracer, flat: list):
    """Memo key part: metadata, precision and provenance flags of tensors; values of the rest.
    Collects the tensors met into `flat`."""
    if isinstance(x, torch.Tensor):
        inf = t.info(x)
        flat.append(x)
        return (x.shape, x.stride(), x.dtype, inf.prec, inf.origin is not None, inf.mm is not None)
    if type(x) in (list, tuple):
        return tuple(_describe(y, t, flat) for y in x)
    if x is None or isinstance(x, (bool, int, float, str, torch.dtype, torch.device, torch.memory_format)):
        return (type(x), x)
    raise TypeError


def _canon(selection):
    if isinstance(selection, tuple):
        return tuple(None if s is None else s.tobytes() for s in selection)
    return selection.tobytes()
