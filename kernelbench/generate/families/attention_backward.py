"""Attention backward (the gradients of q, k, v and of per-head sinks), recognised by its signature and proven by
running the reference.

A backward reference is a closed form over saved tensors (FA2's `_flash_attn_backward`) or autograd through a
recomputed forward; either way it materializes the [S, S] probabilities, which no trace would turn into a flash
kernel. So this family reads the signature and lets the reference decide, as paged_attention does:

- roles: the query `q`, keys `k`, values `v` and the output's gradient `grad_output` ([B, S, H, D] "BSHD",
  [B, H, S, D] "BHSD", or packed [total, H, D] with `cu_seqlens` offsets B + 1: sequence b's rows between them),
  Hq a multiple of Hkv; optionally the forward's output (q's shape) and its LSE (q's shape without D, as [B, H, S],
  [B, S, H], [total, H] or [H, total]; natural log or base 2): given, the closed form uses them, else the forward is
  recomputed; optional float scalars (the softmax scale, else 1/sqrt(D); a soft cap), an integer sliding window, a
  per-head sink logit vector; outputs: the gradients of q, k and v (their shapes) and, with sinks, of the sinks.
- every reading the signature allows (roles, layout, LSE layout and base, causal or not, the window counting its own
  token or not) is run against the reference on small valid inputs made here, on the CPU, beside this module's own
  fp32 closed form; the first reading whose gradients agree is the match.

render: templates/attention_backward.py.j2: the tensors viewed as packed [total, H, D] rows; the forward's (out, LSE)
recomputed by the flash forward (`_paged_prefill` over ragged keys) unless given; then FA2's backward: delta =
rowsum(dO * O), one kernel for dK and dV (a program owns a key block and loops over its GQA group's query heads and
the query blocks that see it: no atomics) and one for dQ (a program owns a query block and loops over its keys).
space: the small and large block (dK/dV: small query steps over a large key block; dQ: the reverse), warps, stages.
"""

from __future__ import annotations

import itertools
import json
import math
import time

import torch

from kernelbench.core.dtypes import torch_dtype
from kernelbench.core.problem import Problem
from kernelbench.core.reference import compile_reference
from kernelbench.core.solution import Solution
from kernelbench.generate.family import MATCH_TIME_LIMIT_S, Config, Family, Match, Traffic, register_family
from templates import render as render_template

# (small block, large block, warps, stages): dK/dV steps BLOCK_M = small queries over BLOCK_N = large keys
TILES = [(32, 64, 4, 2), (32, 128, 8, 2), (16, 64, 4, 2), (64, 64, 8, 1)]
WIDE_TILES = [(16, 64, 8, 1), (16, 32, 4, 2), (32, 64, 8, 1)]   # head_dim > 128: the tiles' registers
FORWARD_TILES = {"block_m": 64, "block_n": 64, "num_warps": 4, "num_stages": 2, "split": 1}   # the recomputed forward
TOLERANCE = 2e-2
LN2 = math.log(2.0)
MAX_READINGS = 96   # a signature that fits but computes something else stops costing reference runs here
CHECK_LENGTHS = (3, 6)   # the check's sequences (packed: both; [B, S, ...]: S is the longest)
ROLE_WORDS = {"q": ("q", "query"), "k": ("k", "key"), "v": ("v", "value"),
              "grad_output": ("grad_out", "grad_output", "do", "dout", "d_out", "grad"), "out": ("out", "o", "output")}


@register_family
class AttentionBackward(Family):
    name = "attention_backward"
    version = "1"

    def match(self, problem: Problem, time_limit_s: float = MATCH_TIME_LIMIT_S) -> Match | None:
        plan, self.last_rejection = plan_of(problem, time_limit_s)
        if plan is None:
            return None
        details = [plan["layout"], "causal" if plan["causal"] else "not causal",
                   "from the saved output and LSE" if "out" in plan["roles"] else "forward recomputed"]
        details += [name for role, name in (("softcap", "soft cap"), ("window", "sliding window"), ("sinks", "sinks"))
                    if role in plan["roles"]]
        return Match(self.name, f"attention backward ({', '.join(details)})", plan)

    def space(self, match: Match, axes: dict[str, int]) -> list[Config]:
        wide = _dimensions(match.plan, axes)[3] > 128
        return [{"block_small": s, "block_large": n, "num_warps": w, "num_stages": st}
                for s, n, w, st in (WIDE_TILES if wide else TILES)]

    def shape_class(self, match: Match, axes: dict[str, int]) -> str:
        batch, tokens, _, _ = _dimensions(match.plan, axes)
        return f"tokens~4^{round(math.log(max(batch * tokens, 1), 4))}"

    def traffic(self, match: Match, axes: dict[str, int]) -> Traffic | None:
        """Every input read once, every gradient written once; FLOPs of the recomputed scores, dV, dP, dQ and dK
        (5 products of 2 D a visible (query, key, head), half the pairs when causal) and the forward's two when it
        is recomputed. Packed sequences are counted as one of the total length (an upper bound)."""
        plan = match.plan
        roles = plan["roles"]
        read = sum(_size(r["shape"], axes) * r["bytes"] for r in roles.values() if r["shape"] is not None)
        written = sum(_size(o["shape"], axes) * o["bytes"] for o in plan["outputs"].values())
        batch, tokens, heads, head_dim = _dimensions(plan, axes)
        pairs = batch * tokens * tokens * (0.5 if plan["causal"] else 1.0)
        products = 5 + (2 if "out" not in roles else 0)
        return Traffic(bytes_read=read, bytes_written=written, flops=2.0 * products * pairs * heads * head_dim)

    def render(self, match: Match, config: Config) -> Solution:
        plan = match.plan
        source = render_template("attention_backward.py.j2", family=self.name, version=self.version,
                                 problem=plan["problem"], summary=match.summary,
                                 config_text=json.dumps(config, sort_keys=True), config=config,
                                 attention_config=FORWARD_TILES,
                                 plan=plan, call=_call_arguments(plan))
        return self.kernel_solution(plan["problem"], match.summary, config, source)


def kernel_source(config: Config) -> str:
    """The template's kernels and launchers for one configuration without a problem's `run` (benchmarks): a module
    importing `lean_launch` from beside it."""
    return render_template("attention_backward.py.j2", family=AttentionBackward.name,
                           version=AttentionBackward.version, problem="(kernels only)", summary="",
                           config_text=json.dumps(config, sort_keys=True), config=config,
                           attention_config=FORWARD_TILES, plan=None)


# ----------------------------------------------------------------------------- the signature

def plan_of(problem: Problem, time_limit_s: float = MATCH_TIME_LIMIT_S) -> tuple[dict | None, str]:
    """The reading of the problem the reference agrees with, or (None, why not)."""
    definition = problem.definition
    order = [a.name for a in problem.arguments(problem.smallest_workload())]
    inputs, outputs = definition.inputs, definition.outputs
    if not all(name.isidentifier() for name in [*order, *outputs]):
        return None, f"{problem.name}: argument names that are not identifiers"
    floating = {n: torch_dtype(inputs[n].dtype).is_floating_point for n in order}
    tensors = [n for n in order if inputs[n].shape is not None]
    rank = max((len(inputs[n].shape) for n in tensors if floating[n]), default=0)
    main = [n for n in tensors if floating[n] and len(inputs[n].shape) == rank]
    lses = [n for n in tensors if floating[n] and len(inputs[n].shape) == rank - 1]
    per_head = [n for n in tensors if floating[n] and len(inputs[n].shape) == 1]
    integers = [n for n in tensors if not floating[n]]
    scalars = [n for n in order if inputs[n].shape is None and floating[n]]
    windows = [n for n in order if inputs[n].shape is None and not floating[n]]
    grads = [n for n in outputs if outputs[n].shape is not None and len(outputs[n].shape) == rank]
    sink_grads = [n for n in outputs if outputs[n].shape is not None and len(outputs[n].shape) == 1]
    packed = rank == 3
    shape_ok = (rank in (3, 4) and len(main) in (4, 5) and len(lses) == len(main) - 4 and len(per_head) <= 1
                and len(integers) == (1 if packed else 0) and all(len(inputs[n].shape) == 1 for n in integers)
                and len(scalars) <= 2 and len(windows) <= 1 and len(grads) == 3
                and len(sink_grads) == len(per_head) and len(outputs) == 3 + len(sink_grads))
    if not shape_ok:
        return None, (f"{problem.name}: not an attention backward signature (q, k, v and the output's gradient as "
                      "[B, S, H, D], [B, H, S, D] or packed [total, H, D] with cu_seqlens, optionally the output "
                      "and its LSE, at most a scale and a soft cap, a window and per-head sinks; the gradients of "
                      "q, k, v (and of the sinks) out)")
    consts = {n: a.value for n, a in definition.axes.items() if a.kind == "const"}
    module = compile_reference(definition)
    deadline = time.monotonic() + time_limit_s
    tried = []
    for reading in _readings(problem, main, lses, per_head, integers, scalars, windows, grads, sink_grads):
        if time.monotonic() > deadline or len(tried) >= MAX_READINGS:
            tried.append(f"gave up after {len(tried)} readings")
            break
        case = _check_case(problem, reading, consts)
        if case is None:
            tried.append(f"{reading['layout']}: sizes the definition's constants do not allow")
            continue
        agreed, why = _agrees(module, problem, order, reading, case)
        if agreed:
            return _plan(problem, order, reading), ""
        tried.append(f"{json.dumps(reading['roles'])} {reading['layout']}: {why}")
    return None, f"{problem.name}: no attention backward reading agrees with the reference ({'; '.join(tried[:4])})"


def _named(name: str, role: str) -> bool:
    words = ROLE_WORDS.get(role, (role,))
    lowered = name.lower()
    return lowered in words or any(lowered.startswith(w + "_") or lowered.endswith("_" + w) for w in words)


def _readings(problem, main, lses, per_head, integers, scalars, windows, grads, sink_grads):
    """Every reading in the order worth trying (names that say their role first): dicts of roles (input role ->
    name, and "grad_q" / "grad_k" / "grad_v" / "grad_sinks" -> output name), layout, lse_layout, lse_base (the
    stored LSE times lse_base is the natural one), causal, window_offset."""
    inputs, outputs = problem.definition.inputs, problem.definition.outputs
    shape = {n: [str(a) for a in (inputs[n].shape if n in inputs else outputs[n].shape)] for n in [*main, *grads]}
    rank = len(shape[main[0]])
    layouts = ("packed",) if rank == 3 else ("BSHD", "BHSD")
    assignments = []
    for chosen in itertools.permutations(main):
        roles = dict(zip(("q", "k", "v", "grad_output", "out"), chosen))
        if shape[roles["q"]] != shape[roles["grad_output"]] or shape[roles["k"]][:-1] != shape[roles["v"]][:-1] \
                or ("out" in roles and shape[roles["out"]][:-1] != shape[roles["q"]][:-1]):
            continue
        for grad_q, grad_k, grad_v in itertools.permutations(grads):
            if shape[grad_q] == shape[roles["q"]] and shape[grad_k] == shape[roles["k"]] \
                    and shape[grad_v] == shape[roles["v"]]:
                assignments.append({**roles, "grad_q": grad_q, "grad_k": grad_k, "grad_v": grad_v})
    hints = {**{r: r for r in ROLE_WORDS}, "grad_q": "q", "grad_k": "k", "grad_v": "v"}
    assignments.sort(key=lambda roles: -sum(_named(n.removeprefix("grad_").removeprefix("d"), hints[r])
                                            if r.startswith("grad_") else _named(n, r) for r, n in roles.items()))
    scalar_roles = [dict(zip(("scale", "softcap"), chosen)) for chosen in itertools.permutations(scalars)]
    scalar_roles.sort(key=lambda roles: "cap" not in roles.get("softcap", "cap"))
    extra = {**({"lse": lses[0]} if lses else {}), **({"sinks": per_head[0], "grad_sinks": sink_grads[0]}
                                                     if per_head else {}),
             **({"cu_seqlens": integers[0]} if integers else {}), **({"window": windows[0]} if windows else {})}
    lse_layouts = (("TH", "HT") if rank == 3 else ("BHS", "BSH")) if lses else ("",)
    for roles, named, layout, lse_layout, lse_base, causal, offset in itertools.product(
            assignments, scalar_roles, layouts, lse_layouts, (1.0, LN2) if lses else (1.0,), (True, False),
            (0, 1) if windows else (0,)):
        yield {"roles": {**roles, **named, **extra}, "layout": layout, "lse_layout": lse_layout,
               "lse_base": lse_base, "causal": causal, "window_offset": offset}


def _check_case(problem: Problem, reading: dict, consts: dict) -> dict | None:
    """Small valid inputs for this reading (by argument name), or None when the constants contradict it."""
    inputs = problem.definition.inputs
    roles = reading["roles"]

    def sized(name: str, position: int, default: int) -> int:
        axis = inputs[name].shape[position]
        return int(axis) if str(axis).isdigit() else consts.get(axis, default)

    layout = reading["layout"]
    head_axis, dim_axis = {"BSHD": (2, 3), "BHSD": (1, 3), "packed": (1, 2)}[layout]
    heads, head_dim = sized(roles["q"], head_axis, 4), sized(roles["q"], dim_axis, 16)
    kv_heads, value_dim = sized(roles["k"], head_axis, 2), sized(roles["v"], dim_axis, head_dim)
    if kv_heads < 1 or heads % kv_heads or sized(roles["k"], dim_axis, head_dim) != head_dim:
        return None
    lengths = list(CHECK_LENGTHS) if layout == "packed" else \
        [sized(roles["q"], 1 if layout == "BSHD" else 2, max(CHECK_LENGTHS))] * sized(roles["q"], 0, 2)
    generator = torch.Generator().manual_seed(11)
    total = sum(lengths)

    def packed(h, d):
        return torch.randn(total, h, d, generator=generator)
    q, k, v, do = packed(heads, head_dim), packed(kv_heads, head_dim), packed(kv_heads, value_dim), \
        packed(heads, value_dim)
    values = {"q": q, "k": k, "v": v, "grad_output": do,
              "scale": 0.37, "softcap": 1.5, "window": 2,
              "sinks": torch.rand(heads, generator=generator) * 2}
    case = {"lengths": lengths, "values": {role: values[role] for role in roles if role in values}}
    if "out" in roles or "lse" in roles:   # the forward's, consistent with q, k, v under this reading
        out, lse = forward_reference(reading, case)
        case["values"].update(out=out, lse=lse)
    return case


def _as_layout(x: torch.Tensor, reading: dict, lengths: list[int]) -> torch.Tensor:
    """A packed [total, H, D] tensor in the reading's layout."""
    if reading["layout"] == "packed":
        return x
    batched = x.unflatten(0, (len(lengths), lengths[0]))
    return batched if reading["layout"] == "BSHD" else batched.transpose(1, 2)


def _lse_as_layout(lse: torch.Tensor, reading: dict, lengths: list[int]) -> torch.Tensor:
    """A natural [total, H] LSE in the reading's layout and base."""
    lse = lse / reading["lse_base"]
    if reading["lse_layout"] == "TH":
        return lse
    if reading["lse_layout"] == "HT":
        return lse.t()
    batched = lse.unflatten(0, (len(lengths), lengths[0]))
    return batched if reading["lse_layout"] == "BSH" else batched.transpose(1, 2)


def _agrees(module, problem: Problem, order: list[str], reading: dict, case: dict) -> tuple[bool, str]:
    """Whether the reference's gradients on the case's inputs (in the reading's layout and the definition's dtypes)
    agree with backward_reference's on the same (rounded) inputs; else why not."""
    roles, lengths = reading["roles"], case["lengths"]
    specs, output_order = problem.definition.inputs, list(problem.definition.outputs)
    inputs = {}
    for role, name in roles.items():
        if role.startswith("grad_") and role != "grad_output":
            continue
        value = case["values"].get(role)
        if role == "cu_seqlens":
            value = torch.tensor([0, *itertools.accumulate(lengths)], dtype=torch.int32)
        elif role == "lse":
            value = _lse_as_layout(value, reading, lengths)
        elif isinstance(value, torch.Tensor) and value.dim() == 3:
            value = _as_layout(value, reading, lengths)
        inputs[name] = value
    definition_inputs = {name: inputs[name].to(torch_dtype(specs[name].dtype)) if isinstance(inputs[name], torch.Tensor)
                         else inputs[name] for name in order}
    try:
        returned = module.run(*[definition_inputs[n].clone() if isinstance(definition_inputs[n], torch.Tensor)
                                else definition_inputs[n] for n in order])
    except Exception as exc:   # this reading fed the reference something it rejects
        return False, f"the reference raised {type(exc).__name__}"
    returned = returned if isinstance(returned, (tuple, list)) else (returned,)
    if len(returned) != len(output_order):
        return False, "the reference returned another number of outputs"
    rounded = dict(case, values={r: (v.to(definition_inputs[roles[r]].dtype).float()
                                     if isinstance(v, torch.Tensor) and r in roles else v)
                                 for r, v in case["values"].items()})
    wanted = backward_reference(reading, rounded)
    got = dict(zip(output_order, returned))
    for role in ("grad_q", "grad_k", "grad_v", "grad_sinks"):
        if role not in roles:
            continue
        want = wanted[role] if role == "grad_sinks" else _as_layout(wanted[role], reading, lengths)
        have = got[roles[role]]
        if not isinstance(have, torch.Tensor) or tuple(have.shape) != tuple(want.shape) or \
                not torch.allclose(have.float(), want, atol=TOLERANCE, rtol=TOLERANCE):
            return False, f"{role} differs"
    return True, ""


def forward_reference(reading: dict, case: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(out, natural LSE) of the forward, packed [total, H, Dv] and [total, H], fp32."""
    return _attention(reading, case)[:2]


def _attention(reading: dict, case: dict):
    """Per sequence: scores, probabilities and the pieces the backward needs, fp32."""
    values, roles = case["values"], reading["roles"]
    q, k, v = values["q"].float(), values["k"].float(), values["v"].float()
    group = q.shape[1] // k.shape[1]
    scale = values["scale"] if "scale" in roles else q.shape[-1] ** -0.5
    outs, lses, pieces, start = [], [], [], 0
    for length in case["lengths"]:
        rows = slice(start, start + length)
        start += length
        keys = k[rows].repeat_interleave(group, 1)
        raw = torch.einsum("ihd,jhd->hij", q[rows], keys) * scale
        capped = values["softcap"] * torch.tanh(raw / values["softcap"]) if "softcap" in roles else raw
        i, j = torch.arange(length)[:, None], torch.arange(length)[None, :]
        visible = (j <= i) if reading["causal"] else torch.ones(length, length, dtype=torch.bool)
        if "window" in roles:
            visible = visible & (j > i - values["window"] - reading["window_offset"])
        scores = capped.masked_fill(~visible, float("-inf"))
        if "sinks" in roles:
            sink = values["sinks"].float().view(-1, 1, 1).expand(-1, length, 1)
            lse = torch.logsumexp(torch.cat([scores, sink], -1), -1)
        else:
            lse = torch.logsumexp(scores, -1)
        p = torch.exp(scores - lse[..., None])
        out = torch.einsum("hij,jhd->ihd", p, v[rows].repeat_interleave(group, 1))
        outs.append(out)
        lses.append(lse.t())
        pieces.append((rows, raw, capped, p, keys, visible))
    return torch.cat(outs), torch.cat(lses), pieces, scale, group


def backward_reference(reading: dict, case: dict) -> dict[str, torch.Tensor]:
    """FA2's closed form in fp32 (what the kernels compute): packed dq, dk, dv and the sinks' gradient. With a saved
    output and LSE, those (the check's, rounded as the reference's inputs) replace the recomputed ones."""
    values, roles = case["values"], reading["roles"]
    out, lse, pieces, scale, group = _attention(reading, case)
    if "out" in values:
        out, lse = values["out"].float(), values["lse"].float()
    do = values["grad_output"].float()
    q, v = values["q"].float(), values["v"].float()
    dq, dk, dv = torch.zeros_like(q), torch.zeros_like(values["k"].float()), torch.zeros_like(v)
    delta = (do * out).sum(-1)   # [total, H]
    grad_sinks = torch.zeros(q.shape[1])
    for rows, raw, capped, _, keys, visible in pieces:
        p = torch.exp(capped - lse[rows].t()[..., None]).masked_fill(~visible, 0.0)   # [H, i, j]
        values_rep = v[rows].repeat_interleave(group, 1)
        dv_rep = torch.einsum("hij,ihd->jhd", p, do[rows])
        dp = torch.einsum("ihd,jhd->hij", do[rows], values_rep)
        ds = p * (dp - delta[rows].t()[..., None])
        if "softcap" in roles:
            ds = ds * (1 - torch.tanh(raw / values["softcap"]) ** 2)
        dq[rows] = torch.einsum("hij,jhd->ihd", ds, keys) * scale
        dk_rep = torch.einsum("hij,ihd->jhd", ds, q[rows]) * scale
        dk[rows] = dk_rep.unflatten(1, (-1, group)).sum(2)
        dv[rows] = dv_rep.unflatten(1, (-1, group)).sum(2)
        if "sinks" in roles:
            grad_sinks -= (torch.exp(values["sinks"].float()[:, None] - lse[rows].t()) * delta[rows].t()).sum(1)
    return {"grad_q": dq, "grad_k": dk, "grad_v": dv, "grad_sinks": grad_sinks}


def _plan(problem: Problem, order: list[str], reading: dict) -> dict:
    definition = problem.definition

    def described(name):
        spec = definition.inputs.get(name) or definition.outputs[name]
        return {"name": name, "shape": None if spec.shape is None else list(spec.shape),
                "bytes": torch_dtype(spec.dtype).itemsize}
    return {"problem": problem.name, "layout": reading["layout"], "lse_layout": reading["lse_layout"],
            "lse_base": reading["lse_base"], "causal": reading["causal"], "window_offset": reading["window_offset"],
            "parameters": [*order, *definition.outputs],
            "roles": {role: described(name) for role, name in reading["roles"].items() if not role.startswith("grad_")
                      or role == "grad_output"},
            "outputs": {role: described(name) for role, name in reading["roles"].items()
                        if role.startswith("grad_") and role != "grad_output"}}


def _call_arguments(plan: dict) -> dict[str, str]:
    roles = plan["roles"]

    def name(role, default):
        return roles[role]["name"] if role in roles else default
    window = name("window", "None")
    return {"scale": name("scale", f"1.0 / math.sqrt({roles['q']['name']}.shape[-1])"),
            "softcap": name("softcap", "0.0"), "sinks": name("sinks", "None"),
            "window": f"{window} + 1" if plan["window_offset"] and "window" in roles else window,
            "out": name("out", "None"), "lse": name("lse", "None"), "cu_seqlens": name("cu_seqlens", "None"),
            "grad_sinks": plan["outputs"]["grad_sinks"]["name"] if "grad_sinks" in plan["outputs"] else "None"}


def _dimensions(plan: dict, axes: dict[str, int]) -> tuple[int, int, int, int]:
    """(batch, tokens a sequence, query heads, head_dim) of q at these axes; packed: one sequence of them all."""
    shape = plan["roles"]["q"]["shape"]
    named = dict(zip({"BSHD": "bshd", "BHSD": "bhsd", "packed": "shd"}[plan["layout"]], shape))
    return (_size([named["b"]], axes) if "b" in named else 1, _size([named["s"]], axes), _size([named["h"]], axes),
            _size([named["d"]], axes))


def _size(shape: list, axes: dict[str, int]) -> int:
    return math.prod(axes[a] if a in axes else int(a) for a in shape)
