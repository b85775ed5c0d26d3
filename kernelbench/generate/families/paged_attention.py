"""Attention over a paged KV cache (decode, and prefill of ragged queries), recognised by its signature and proven
by running the reference.

A paged decode reference reaches its cache through a page table: a host sync for the longest sequence, or a Python
loop over the sequences (FlashInfer's references). No trace follows that, so this family reads the problem's
signature instead and lets the reference decide:

- roles: a query `q` [B, Hq, D] (float), or [B, T, Hq, D]: each sequence's last T tokens (speculative verification,
  multi-token prediction), or ragged [total_q, Hq, D]: sequence b's the rows between its query offsets, the
  sequence's last tokens (paged prefill); a key and a value cache [pages, page_size, Hkv, D] ("NHD") or
  [pages, Hkv, page_size, D] ("HND"), Hq a multiple of Hkv, or unpaged ragged keys and values [total_kv, Hkv, D]
  (varlen attention), the caches optionally after a prefix every sequence shares, its keys and values
  [P, Hkv, D] stored once (cascade decode); or MLA's queries `q` [B, H, C] and `q_pe` [B, H, R] (or ragged, [total_q, H, *]) against
  latent caches [pages, page_size, C] (keys and values) and [pages, page_size, R]; a page table: CSR (offsets B + 1, page ids, and optionally each
  sequence's tokens in its last page) or a block table [B, pages] with each sequence's length (ragged keys: their
  offsets alone); optional float scalars (the softmax scale, else 1/sqrt(D); a soft cap), an integer sliding
  window, and a per-head vector (gpt-oss's sinks or BLOOM's ALiBi slopes); outputs: the attention output shaped as
  q (Dv last) and optionally the LSE (q's shape without D).
- every reading the signature allows (which input plays which role, the layout, the window counting its own token
  or not, causal or not for several queries a sequence, the LSE's base: natural or 2) is run against the reference
  on small valid inputs made here, on the CPU; the first reading whose outputs agree is the match, and none
  agreeing is no match (with what was tried).

render: templates/paged_attention.py.j2, `_paged_decode` / `_paged_prefill` / `_mla_attention` of
templates/attention.py.j2: flash kernels that read each sequence's tokens through the page table (no gathered
copy). Decode: no host sync, a GQA group's query heads (times the T tokens) as one program's rows, the keys split
across programs when the batch alone leaves the GPU idle. Prefill: a group's heads times 64 / group queries of a
sequence a program; one host sync sizes the grid. MLA: up to 64 (query, head) rows a program against one latent
tile at a time. Cascade: the B queries over the prefix as one sequence's B tokens, then decode over the pages, the two
levels' (output, LSE) merged.
space: key tile, warps, pipeline stages, split (0: chosen at run time from the SM count).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import time
from dataclasses import dataclass

import torch

from kernelbench.core.dtypes import torch_dtype
from kernelbench.core.problem import Problem
from kernelbench.core.reference import compile_reference
from kernelbench.core.solution import Solution
from kernelbench.generate.family import (
    MATCH_TIME_LIMIT_S,
    Config,
    Family,
    Match,
    Traffic,
    register_family,
)
from templates import render as render_template

# (block_n, num_warps, num_stages, split): 64-key tiles split over the GPU first; no split last (large batches).
TILES = [(64, 4, 3, 0), (128, 4, 2, 0), (32, 4, 4, 0), (64, 8, 3, 0), (64, 4, 3, 1)]
# MLA: a key tile is [BLOCK_N, C + R] (C 512: 32 KB of bf16 at 32 keys a stage), the accumulator [heads, C] in fp32
MLA_TILES = [(32, 8, 2, 0), (32, 4, 2, 0), (64, 8, 2, 0), (16, 4, 3, 0), (32, 8, 2, 1)]
TOLERANCE = 2e-2   # bf16 inputs, fp32 math on both sides: readings that disagree are off by O(1)
LN2 = math.log(2.0)
# The small valid case each reading is checked on: pages per sequence (a batch of 3 unless the definition fixes it),
# taken from a shuffled pool of at least CHECK_POOL pages; with ragged queries, the queries per sequence (never more
# than the sequence's tokens: 2 pages hold at least 2, 1 page 1, 3 pages 3).
CHECK_PAGES_PER_SEQUENCE, CHECK_POOL = (2, 1, 3), 11
CHECK_QUERIES_PER_SEQUENCE = (2, 1, 3)
CHECK_TOKENS = 3   # queries a sequence of a [B, T, H, D] query whose T the definition leaves free
CHECK_TOKENS_PER_SEQUENCE = (5, 1, 7)   # ragged keys (no pages)
CHECK_PREFIX = 6   # a cascade's shared prefix, unless the definition fixes its length


@register_family
class PagedAttention(Family):
    name = "paged_attention"
    version = "3"   # 2: GQA-packed prefill rows, several queries a sequence, MLA, ragged keys; 3: cascade

    def match(self, problem: Problem, time_limit_s: float = MATCH_TIME_LIMIT_S) -> Match | None:
        plan, self.last_rejection = plan_of(problem, time_limit_s)
        if plan is None:
            return None
        roles = plan["roles"]
        details = ["MLA latent caches" if plan["mla"] else "ragged keys, no pages" if plan["layout"] == "ragged"
                   else f"{plan['layout']} cache"]
        details += ["a shared prefix first (cascade)"] if plan["cascade"] else []
        details += ["block table" if "offsets" not in roles
                   else "CSR page table" if "table" in roles else "key offsets"]
        details += [name for role, name in (("softcap", "soft cap"), ("window", "sliding window"), ("sinks", "sinks"),
                                            ("alibi", "ALiBi")) if role in roles]
        details += [f"{'base-2' if plan['lse_factor'] == 1.0 else 'natural'} LSE"] if plan["lse"] else []
        if plan["ragged"] or plan["tokens"]:
            queries = "ragged queries" if plan["ragged"] else "several queries a sequence"
            details.insert(0, f"{queries}, {'causal' if plan['causal'] else 'not causal'}")
        summary = f"paged {'prefill' if plan['ragged'] else 'decode'} attention ({', '.join(details)})"
        return Match(self.name, summary, plan)

    def space(self, match: Match, axes: dict[str, int]) -> list[Config]:
        plan = match.plan
        rows = _group(plan, axes) * (_size(plan["roles"]["q"]["shape"][1:2], axes) if plan["tokens"] else 1)
        launcher = "mla" if plan["mla"] else "prefill" if plan["ragged"] else "cascade" if plan["cascade"] else "decode"
        block_m = rows_a_program(launcher, rows)
        return [{"block_m": block_m, "block_n": n, "num_warps": w, "num_stages": s, "split": split}
                for n, w, s, split in (MLA_TILES if plan["mla"] else TILES)]

    def shape_class(self, match: Match, axes: dict[str, int]) -> str:
        tokens = _referenced_pages(match.plan, axes) * _page_size(match.plan, axes)
        batch = _size(match.plan["roles"]["q"]["shape"][:1], axes)
        return f"batch~4^{round(math.log(max(batch, 1), 4))},tokens~4^{round(math.log(max(tokens, 1), 4))}"

    def traffic(self, match: Match, axes: dict[str, int]) -> Traffic | None:
        """The queries, the referenced pages of the caches (every token of every referenced page, the upper bound
        of what is read), a cascade's shared prefix (once), the page table and the outputs; per key token 2 D FLOPs a
        query head for the scores and 2 Dv for the values (a cascade: every sequence's query against the prefix
        too)."""
        plan = match.plan
        roles = plan["roles"]
        pages = _referenced_pages(plan, axes)
        read = sum(_size(roles[r]["shape"][1:] if r.endswith("cache") else roles[r]["shape"], axes) * roles[r]["bytes"]
                   * (pages if r.endswith("cache") else 1)
                   for r in ("q", "q_pe", "k_cache", "v_cache", "kpe_cache", "prefix_k", "prefix_v", "offsets",
                             "table", "seq_lens", "qo_offsets")
                   if r in roles and (r != "qo_offsets" or roles[r]["name"] != roles.get("offsets", {}).get("name")))
        written = sum(_size(o["shape"], axes) * o["bytes"] for o in plan["outputs"].values())
        out = _size(plan["outputs"][plan["out"]]["shape"][1:], axes)   # each sequence's (T x) Hq x Dv outputs
        scores = sum(_size(roles[r]["shape"][1:], axes) for r in ("q", "q_pe") if r in roles)   # (T x) Hq x D
        tokens = pages * _page_size(plan, axes)
        if plan["ragged"]:   # the mean queries a sequence, each against (at most) the sequence's tokens
            tokens *= _size(roles["q"]["shape"][:1], axes) / max(1, _size(roles["qo_offsets"]["shape"], axes) - 1)
        if plan["cascade"]:
            tokens += _size(roles["q"]["shape"][:1], axes) * _size(roles["prefix_k"]["shape"][:1], axes)
        return Traffic(bytes_read=read, bytes_written=written, flops=2.0 * (scores + out) * tokens)

    def render(self, match: Match, config: Config) -> Solution:
        plan = match.plan
        source = render_template("paged_attention.py.j2", family=self.name, version=self.version, problem=plan["problem"],
                                 summary=match.summary, config_text=json.dumps(config, sort_keys=True),
                                 attention_config=config, plan=plan, call=_call_arguments(plan))
        return self.kernel_solution(plan["problem"], match.summary, config, source)


def rows_a_program(launcher: str, rows: int) -> int:
    """block_m of a launcher whose query rows a sequence (a GQA group's heads times the tokens) are `rows`. Decode: a
    whole group a program where it fits; prefill, and a cascade's prefix that all B queries read: 64 (query, head) rows
    a program; MLA: at most 64 heads, whose [heads, C] fp32 accumulator stays in registers."""
    if launcher in ("prefill", "cascade"):
        return 64
    return min(64 if launcher == "mla" else 128, max(16, 1 << (rows - 1).bit_length()))


# ----------------------------------------------------------------------------- the signature

def plan_of(problem: Problem, time_limit_s: float = MATCH_TIME_LIMIT_S) -> tuple[dict | None, str]:
    """The reading of the problem the reference agrees with, or (None, why not); readings stop being tried after
    `time_limit_s`."""
    definition = problem.definition
    order = [a.name for a in problem.arguments(problem.smallest_workload())]
    inputs, outputs = definition.inputs, definition.outputs
    if not all(name.isidentifier() for name in [*order, *outputs]):
        return None, f"{problem.name}: argument names that are not identifiers"
    floats = [n for n in order if inputs[n].shape is not None and torch_dtype(inputs[n].dtype).is_floating_point]
    integers = [n for n in order if inputs[n].shape is not None and not torch_dtype(inputs[n].dtype).is_floating_point]
    scalars = [n for n in order if inputs[n].shape is None and torch_dtype(inputs[n].dtype).is_floating_point]
    windows = [n for n in order if inputs[n].shape is None and not torch_dtype(inputs[n].dtype).is_floating_point]
    per_head = [n for n in floats if len(inputs[n].shape) == 1]   # sinks or ALiBi slopes
    kind, tensors = _tensor_roles([n for n in floats if n not in per_head], inputs)
    tables = _ragged_tables(integers, inputs) if kind == "ragged" else _tables(integers, inputs)
    # MLA: a scale at most; a cascade: a scale and a soft cap (no window, sinks or ALiBi across its two levels)
    extras_allowed = (kind != "mla" or not (per_head or windows or len(scalars) > 1)) \
        and (kind != "cascade" or not (per_head or windows))
    if not tensors or len(per_head) > 1 or not tables or len(scalars) > 2 or len(windows) > 1 or not extras_allowed:
        return None, (f"{problem.name}: not a paged decode signature (a [B, (T,) H, D] query and two 4-d caches (and "
                      "a shared prefix's [P, Hkv, D] keys and values), or MLA's [B, H, C] and [B, H, R] queries and "
                      "3-d latent caches; a CSR page table or a block table with lengths; at most a float scale and "
                      "soft cap, an integer window, per-head sinks or ALiBi slopes)")
    rank = len(inputs[tensors[0]["q"]].shape)
    out_names = [n for n in outputs if outputs[n].shape is not None and len(outputs[n].shape) == rank]
    lse_names = [n for n in outputs if outputs[n].shape is not None and len(outputs[n].shape) == rank - 1]
    if len(out_names) != 1 or len(lse_names) > 1 or len(outputs) != len(out_names) + len(lse_names):
        return None, f"{problem.name}: outputs other than an attention output shaped as the query and an LSE"
    consts = {n: a.value for n, a in definition.axes.items() if a.kind == "const"}
    module = compile_reference(definition)
    deadline = time.monotonic() + time_limit_s
    tried = []
    window = {"window": windows[0]} if windows else {}
    extras = [{**window, role: per_head[0]} for role in ("sinks", "alibi")] if per_head else [window]
    for roles, layout, window_offset, causal in _readings(kind, tensors, tables, scalars, extras):
        if time.monotonic() > deadline:
            tried.append(f"out of time after {len(tried)} readings")
            break
        case = _check_case(problem, roles, layout, window_offset, causal, consts)
        if case is None:
            tried.append(f"{layout}: sizes the definition's constants do not allow")
            continue
        agreed, why = _agrees(module, order, case, list(outputs), out_names[0], lse_names[0] if lse_names else None)
        if agreed is not None:
            return _plan(problem, order, case, out_names[0], lse_names, agreed), ""
        tried.append(f"{json.dumps(roles)} {layout}: {why}")
    return None, f"{problem.name}: no paged decode reading agrees with the reference ({'; '.join(tried[:4])})"


def _tensor_roles(floats: list[str], inputs: dict) -> tuple[str, list[dict]]:
    """(kind, the roles the float tensors can play, names that say their role first). "decode": a 3-d query `q`
    beside two 4-d caches (`k_cache`, `v_cache`); "tokens": three 4-d tensors, one a [B, T, H, D] query; "ragged":
    three 3-d tensors, keys and values not paged but ragged [total_kv, Hkv, D] (varlen attention); "mla": four
    3-d tensors, MLA's queries `q` [B, H, C] and `q_pe` [B, H, R] and latent caches `k_cache` [pages, page_size, C]
    (keys and values) and `kpe_cache` [pages, page_size, R], paired by their axes."""
    three = [n for n in floats if len(inputs[n].shape) == 3]
    four = [n for n in floats if len(inputs[n].shape) == 4]
    if len(three) == 1 and len(four) == 2:
        kind, choices = "decode", [(three[0], four)]
    elif not three and len(four) == 3:
        kind, choices = "tokens", [(q, [n for n in four if n != q]) for q in four]
    elif len(three) == 3 and not four:   # no pages: keys and values [total_kv, Hkv, D], a sequence's rows in order
        kind, choices = "ragged", [(q, [n for n in three if n != q]) for q in three]
    elif len(three) == 3 and len(four) == 2:   # cascade: a prefix [P, Hkv, D] every sequence shares, then its pages
        shape = {n: [str(a) for a in inputs[n].shape] for n in three}
        found = [{"q": q, "prefix_k": pk, "prefix_v": pv, "k_cache": k, "v_cache": v}
                 for q, pk, pv in itertools.permutations(three) for k, v in itertools.permutations(four)
                 if shape[pk][0] == shape[pv][0] != shape[q][0]]
        return "cascade", sorted(found, key=lambda roles: (not roles["q"].lower().startswith("q"),
                                                           "k" not in roles["prefix_k"].lower(),
                                                           not roles["k_cache"].lower().startswith("k")))
    elif len(three) == 4 and not four:
        shape = {n: [str(a) for a in inputs[n].shape] for n in three}
        found = [{"q": qn, "q_pe": qp, "k_cache": ckv, "kpe_cache": kpe}
                 for qn, qp, ckv, kpe in itertools.permutations(three)
                 if shape[qn][:2] == shape[qp][:2] and shape[ckv][:2] == shape[kpe][:2]
                 and shape[qn][2] == shape[ckv][2] and shape[qp][2] == shape[kpe][2] and shape[qn][0] != shape[ckv][0]]
        words = {"q": "nope", "q_pe": "pe", "k_cache": "kv", "kpe_cache": "pe"}
        return "mla", sorted(found, key=lambda roles: -sum(words[r] in n.lower() for r, n in roles.items()))
    else:
        return "", []
    found = [{"q": q, "k_cache": k, "v_cache": v} for q, caches in choices for k, v in itertools.permutations(caches)]
    return kind, sorted(found, key=lambda roles: (not roles["q"].lower().startswith("q"),
                                                  not roles["k_cache"].lower().startswith("k")))


def _tables(integers: list[str], inputs: dict) -> list[dict]:
    """The ways the integer inputs can be a page table: CSR (offsets, page ids, optional last-page lengths: three
    vectors) or a block table [B, pages] with each sequence's length; with one more vector, the ragged queries'
    offsets (paged prefill)."""
    vectors = [n for n in integers if len(inputs[n].shape) == 1]
    matrices = [n for n in integers if len(inputs[n].shape) == 2]
    if len(matrices) > 1 or len(matrices) + len(vectors) != len(integers):
        return []
    found = []
    for queries in [None, *vectors]:
        rest = [n for n in vectors if n != queries]
        ragged = {"qo_offsets": queries} if queries else {}
        if matrices and len(rest) == 1:
            found.append({"table": matrices[0], "seq_lens": rest[0], **ragged})
        elif not matrices and len(rest) in (2, 3):
            found += [{**dict(zip(("offsets", "table", "seq_lens"), chosen)), **ragged}
                      for chosen in itertools.permutations(rest)]
    words = {"offsets": ("kv_indptr", "indptr", "offset", "ptr"), "table": ("indices", "index", "ids", "table"),
             "seq_lens": ("last", "len"), "qo_offsets": ("qo", "cu_seqlens_q", "q_indptr")}
    return sorted(found, key=lambda roles: -sum(any(w in name.lower() for w in words[role])
                                                for role, name in roles.items()))


def _ragged_tables(integers: list[str], inputs: dict) -> list[dict]:
    """Ragged keys' offsets (B + 1): alone (one query a sequence), with the queries' offsets, or one vector that is
    both (self-attention over packed sequences: cu_seqlens)."""
    vectors = [n for n in integers if len(inputs[n].shape) == 1]
    if len(vectors) != len(integers) or len(vectors) not in (1, 2):
        return []
    if len(vectors) == 1:
        return [{"offsets": vectors[0], "qo_offsets": vectors[0]}, {"offsets": vectors[0]}]
    found = [{"offsets": kv, "qo_offsets": qo} for kv, qo in itertools.permutations(vectors)]
    return sorted(found, key=lambda roles: not any(w in roles["qo_offsets"].lower() for w in ("qo", "_q", "q_")))


def _readings(kind: str, tensors: list[dict], tables: list[dict], scalars: list[str], extras: list[dict]):
    """(roles, layout, window offset, causal) in the order worth trying: names that say their role first. `kind` and
    `tensors` as _tensor_roles gives them; `extras`: the roles the window and a per-head vector may play. The window
    offset: a window input w shows the last w + offset tokens (j > n - 1 - w, or j >= n - 1 - w). causal: several
    queries a sequence (ragged, or [B, T, H, D]) see only keys up to their own position (decode's one query sees
    every key either way). MLA's latent caches have no head axis, ragged keys no pages: one layout each."""
    scalar_roles = [dict(zip(("scale", "softcap"), chosen)) for chosen in itertools.permutations(scalars)]
    scalar_roles.sort(key=lambda roles: "cap" not in roles.get("softcap", "cap"))
    extras = sorted(extras, key=lambda roles: not any(role in name.lower() for role, name in roles.items()))
    offsets = (0, 1) if "window" in extras[0] else (0,)
    layouts = {"mla": ("NHD",), "ragged": ("ragged",)}.get(kind, ("NHD", "HND"))
    for tensor, table, extra, named, layout, offset in itertools.product(tensors, tables, extras, scalar_roles,
                                                                         layouts, offsets):
        if "qo_offsets" in table and kind in ("tokens", "cascade"):   # one query a sequence (or T), no offsets
            continue
        for causal in ((True, False) if "qo_offsets" in table or kind == "tokens" else (True,)):
            yield {**tensor, **table, **named, **extra}, layout, offset, causal


@dataclass
class Case:
    """A reading of the signature and the inputs it is checked on (by argument name)."""
    roles: dict
    layout: str
    window_offset: int
    causal: bool
    values: dict

    def value(self, role: str):
        return self.values[self.roles[role]] if role in self.roles else None


def _check_case(problem: Problem, roles: dict, layout: str, window_offset: int, causal: bool,
                consts: dict) -> Case | None:
    """Small valid inputs for this reading: the definition's constants where its shapes name them, else small sizes;
    None when the constants contradict the reading (a batch fixed to another size, a group that does not divide)."""
    inputs = problem.definition.inputs

    def sized(name: str, position: int, default: int) -> int:
        axis = inputs[name].shape[position]
        return int(axis) if str(axis).isdigit() else consts.get(axis, default)

    ragged = "qo_offsets" in roles
    multi = len(inputs[roles["q"]].shape) == 4   # [B, T, H, D]: T queries a sequence
    batch, heads, head_dim = (sized(roles["q"], i + (i > 0 and multi), d)
                              for i, d in enumerate((len(CHECK_PAGES_PER_SEQUENCE), 8, 32)))
    tokens = sized(roles["q"], 1, CHECK_TOKENS) if multi else 1
    if ragged:   # q's first axis counts queries: the batch is the check's own
        batch = len(CHECK_PAGES_PER_SEQUENCE)
    mla = "kpe_cache" in roles   # one latent head: keys [C | R] from both caches, values the C part
    unpaged = layout == "ragged"   # [total_kv, Hkv, D]: each token its own page, in order
    page_dim, head_dim_kv = {"NHD": (1, 2), "HND": (2, 1), "ragged": (None, 1)}[layout]
    page_size = 1 if unpaged else sized(roles["k_cache"], page_dim, 4)
    kv_heads = 1 if mla else sized(roles["k_cache"], head_dim_kv, 2)
    value_dim = head_dim if mla else sized(roles["v_cache"], len(inputs[roles["v_cache"]].shape) - 1, head_dim)
    rope_dim = sized(roles["q_pe"], 2, 16) if mla else 0
    if batch < 1 or tokens < 1 or kv_heads < 1 or heads % kv_heads \
            or sized(roles["k_cache"], len(inputs[roles["k_cache"]].shape) - 1, head_dim) != head_dim:
        return None
    generator = torch.Generator().manual_seed(7)
    # a fixed batch too; every sequence holds at least its T queries
    per_sequence = CHECK_TOKENS_PER_SEQUENCE if unpaged else CHECK_PAGES_PER_SEQUENCE
    counts = [max(per_sequence[b % len(per_sequence)], -(-tokens // page_size)) for b in range(batch)]
    pages_per_sequence = torch.tensor(counts)
    total = int(pages_per_sequence.sum())
    pool = total if unpaged else max(CHECK_POOL, total)
    shape = (pool, page_size) if mla else {"NHD": (pool, page_size, kv_heads), "HND": (pool, kv_heads, page_size),
                                           "ragged": (pool, kv_heads)}[layout]
    pages = torch.randperm(pool, generator=generator)[:total]
    last = torch.randint(1, page_size + 1, (batch,), generator=generator)
    last = torch.maximum(last, tokens - (pages_per_sequence - 1) * page_size)

    def typed(role, values):
        return values.to(torch_dtype(inputs[roles[role]].dtype))

    queries = [CHECK_QUERIES_PER_SEQUENCE[b % len(CHECK_QUERIES_PER_SEQUENCE)] for b in range(batch)] if ragged \
        else [tokens] * batch
    if ragged and roles["qo_offsets"] == roles.get("offsets"):   # one offsets vector for both: self-attention
        queries = counts
    q_shape = (batch, tokens) if multi else (sum(queries),)
    values = {roles["q"]: typed("q", torch.randn(*q_shape, heads, head_dim, generator=generator)),
              roles["k_cache"]: typed("k_cache", torch.randn(*shape, head_dim, generator=generator))}
    if mla:
        values[roles["q_pe"]] = typed("q_pe", torch.randn(*q_shape, heads, rope_dim, generator=generator))
        values[roles["kpe_cache"]] = typed("kpe_cache", torch.randn(*shape, rope_dim, generator=generator))
    else:
        values[roles["v_cache"]] = typed("v_cache", torch.randn(*shape, value_dim, generator=generator))
    if "prefix_k" in roles:
        prefix = (sized(roles["prefix_k"], 0, CHECK_PREFIX), kv_heads)
        values[roles["prefix_k"]] = typed("prefix_k", torch.randn(*prefix, head_dim, generator=generator))
        values[roles["prefix_v"]] = typed("prefix_v", torch.randn(*prefix, value_dim, generator=generator))
    if "offsets" in roles:
        offsets = torch.zeros(batch + 1, dtype=torch.int64)
        offsets[1:] = torch.cumsum(pages_per_sequence, 0)
        values[roles["offsets"]] = typed("offsets", offsets)
        if "table" in roles:
            values[roles["table"]] = typed("table", pages)
        if "seq_lens" in roles:
            values[roles["seq_lens"]] = typed("seq_lens", last)
    else:   # a block table as wide as the longest sequence's pages, unused entries 0
        table = torch.zeros(batch, max(counts), dtype=torch.int64)
        for b, (start, count) in enumerate(zip(torch.cumsum(pages_per_sequence, 0) - pages_per_sequence, counts)):
            table[b, :count] = pages[start:start + count]
        values[roles["table"]] = typed("table", table)
        values[roles["seq_lens"]] = typed("seq_lens", (pages_per_sequence - 1) * page_size + last)
    if ragged:
        values[roles["qo_offsets"]] = typed("qo_offsets", torch.tensor([0, *queries]).cumsum(0))
    if "scale" in roles:
        values[roles["scale"]] = 0.37   # not 1/sqrt(D): a reading that ignores the scale disagrees
    if "softcap" in roles:
        values[roles["softcap"]] = 1.5   # low enough to change the scores
    if "window" in roles:   # a whole page: shorter than the longest sequence, and a page-granular reference covers it
        values[roles["window"]] = page_size
    for role in ("sinks", "alibi"):
        if role in roles:
            values[roles[role]] = typed(role, torch.rand(heads, generator=generator) * (0.5 if role == "alibi" else 2))
    return Case(roles, layout, window_offset, causal, values)


def _agrees(module, order: list[str], case: Case, output_order: list[str], out_name: str,
            lse_name: str | None) -> tuple[float | None, str]:
    """(the LSE factor: ln 2 for a natural-log LSE, 1 for base 2; 1 when there is none) if the reference's outputs
    (in `output_order`) agree with this reading's, else (None, why not)."""
    values = case.values
    try:
        returned = module.run(*[values[n].clone() if isinstance(values[n], torch.Tensor) else values[n] for n in order])
    except Exception as exc:   # this reading fed the reference something it rejects
        return None, f"the reference raised {type(exc).__name__}"
    returned = returned if isinstance(returned, (tuple, list)) else (returned,)
    if len(returned) != len(output_order):
        return None, "the reference returned another number of outputs"
    out, lse = paged_decode_reference(case)
    positions = {n: i for i, n in enumerate(output_order)}
    if not _close(returned[positions[out_name]], out):
        return None, "the attention outputs differ"
    if lse_name is None:
        return 1.0, ""
    for factor in (LN2, 1.0):   # lse_natural * factor / LN2 is the LSE in the base the factor stands for
        if _close(returned[positions[lse_name]], lse * (factor / LN2)):
            return factor, ""
    return None, "the LSE is neither natural nor base 2"


def _close(got, want: torch.Tensor) -> bool:
    if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(want.shape):
        return False
    return bool(torch.allclose(got.float(), want.float(), atol=TOLERANCE, rtol=TOLERANCE))


def paged_decode_reference(case: Case) -> tuple[torch.Tensor, torch.Tensor]:
    """What the kernel computes for this reading, in fp32 torch: (output in q's dtype, natural-log LSE in fp32), one
    row per query (decode: one per sequence)."""
    if "kpe_cache" in case.roles:   # MLA: one key / value head, keys [ckv | kpe] against queries [q | q_pe], values ckv
        ckv = case.value("k_cache").unsqueeze(2)
        joined = {"_q": torch.cat([case.value("q"), case.value("q_pe")], -1),
                  "_k": torch.cat([ckv, case.value("kpe_cache").unsqueeze(2)], -1), "_v": ckv}
        roles = {r: n for r, n in case.roles.items() if r not in ("q_pe", "kpe_cache")}
        scale = {} if "scale" in roles else {"scale": "_scale"}   # 1 / sqrt(D) of the nope part alone, as the kernel
        return paged_decode_reference(dataclasses.replace(
            case, roles={**roles, "q": "_q", "k_cache": "_k", "v_cache": "_v", **scale},
            values={**case.values, **joined, "_scale": case.value("q").shape[-1] ** -0.5}))
    if case.layout == "ragged":   # as a CSR cache of one-token pages in order
        k, v = case.value("k_cache"), case.value("v_cache")
        paged = {"_k": k.unsqueeze(1), "_v": v.unsqueeze(1), "_t": torch.arange(k.shape[0])}
        return paged_decode_reference(dataclasses.replace(
            case, layout="NHD", roles={**case.roles, "k_cache": "_k", "v_cache": "_v", "table": "_t"},
            values={**case.values, **paged}))
    q, k_cache, v_cache = case.value("q"), case.value("k_cache"), case.value("v_cache")
    if q.dim() == 4:   # [B, T, H, D]: T queries a sequence, computed as ragged rows and shaped back
        batch, tokens = q.shape[:2]
        offsets = torch.arange(batch + 1) * tokens
        flat = dataclasses.replace(case, roles={**case.roles, "q": "_q", "qo_offsets": "_qo"},
                                   values={**case.values, "_q": q.flatten(0, 1), "_qo": offsets})
        out, lse = paged_decode_reference(flat)
        return out.unflatten(0, (batch, tokens)), lse.unflatten(0, (batch, tokens))
    rows, heads, head_dim = q.shape
    if case.layout == "HND":
        k_cache, v_cache = k_cache.transpose(1, 2), v_cache.transpose(1, 2)
    page_size, kv_heads, value_dim = k_cache.shape[1], k_cache.shape[2], v_cache.shape[3]
    scale = case.value("scale") if "scale" in case.roles else head_dim ** -0.5
    table, lengths = case.value("table").long(), case.value("seq_lens")
    query_offsets = case.value("qo_offsets").long() if "qo_offsets" in case.roles else torch.arange(rows + 1)
    out = torch.zeros(rows, heads, value_dim, dtype=q.dtype)
    lse = torch.full((rows, heads), float("-inf"))
    group = heads // kv_heads   # query head h reads key / value head h // group
    for b in range(query_offsets.numel() - 1):
        if "offsets" in case.roles:
            offsets = case.value("offsets")
            pages = table[int(offsets[b]):int(offsets[b + 1])]
            length = (pages.numel() - 1) * page_size + (int(lengths[b]) if lengths is not None else page_size)
        else:
            length = int(lengths[b])
            pages = table[b, :-(-length // page_size)]
        first_row, last_row = int(query_offsets[b]), int(query_offsets[b + 1])
        length = max(length, 0)
        k = k_cache[pages].reshape(-1, kv_heads, head_dim)[:length].float()
        v = v_cache[pages].reshape(-1, kv_heads, value_dim)[:length].float()
        if "prefix_k" in case.roles:   # cascade: the shared prefix's tokens come before the sequence's own
            k, v = torch.cat([case.value("prefix_k").float(), k]), torch.cat([case.value("prefix_v").float(), v])
            length = k.shape[0]
        if length == 0 or last_row == first_row:
            continue
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        positions = length - (last_row - first_row) + torch.arange(last_row - first_row)   # the new tokens are last
        keys = torch.arange(length)
        visible = keys[None, :] <= positions[:, None] if case.causal else torch.ones(len(positions), length, dtype=torch.bool)
        if "window" in case.roles:
            visible &= keys[None, :] > positions[:, None] - case.value("window") - case.window_offset
        scores = torch.einsum("qhd,thd->qht", q[first_row:last_row].float(), k) * scale
        if "softcap" in case.roles:
            scores = case.value("softcap") * torch.tanh(scores / case.value("softcap"))
        if "alibi" in case.roles:   # slope * (j - i) at key position j for the query at position i
            scores = scores + case.value("alibi").float().view(1, heads, 1) * (keys[None, :] - positions[:, None])[:, None, :]
        scores = scores.masked_fill(~visible[:, None, :], float("-inf"))
        if "sinks" in case.roles:   # one more logit per head in the denominator, its probability dropped
            sink = case.value("sinks").float().view(1, heads, 1).expand(len(positions), heads, 1)
            scores = torch.cat([scores, sink], -1)
        lse[first_row:last_row] = torch.logsumexp(scores, -1)
        weights = scores.softmax(-1)[..., :-1] if "sinks" in case.roles else scores.softmax(-1)
        out[first_row:last_row] = torch.einsum("qht,thd->qhd", weights, v).to(q.dtype)
    return out, lse


def _plan(problem: Problem, order: list[str], case: Case, out_name: str, lse_names: list[str],
          lse_factor: float) -> dict:
    definition = problem.definition

    def described(name):
        spec = definition.inputs.get(name) or definition.outputs[name]
        return {"name": name, "shape": None if spec.shape is None else list(spec.shape),
                "bytes": torch_dtype(spec.dtype).itemsize}
    return {"problem": problem.name, "layout": case.layout, "window_offset": case.window_offset,
            "ragged": "qo_offsets" in case.roles, "tokens": len(definition.inputs[case.roles["q"]].shape) == 4,
            "mla": "kpe_cache" in case.roles, "cascade": "prefix_k" in case.roles,
            "causal": case.causal,
            "lse_factor": lse_factor, "lse": bool(lse_names),
            "parameters": [*order, *definition.outputs], "out": out_name, "lse_name": lse_names[0] if lse_names else None,
            "roles": {role: described(name) for role, name in case.roles.items()},
            "outputs": {n: described(n) for n in definition.outputs}}


def _call_arguments(plan: dict) -> dict[str, str]:
    """The text of each launcher argument that depends on the reading (an absent role: its default)."""
    roles = plan["roles"]

    def name(role, default):
        return roles[role]["name"] if role in roles else default
    window = name("window", "None")
    return {"qo_offsets": name("qo_offsets", "None"), "offsets": name("offsets", "None"), "table": name("table", "None"),
            "seq_lens": name("seq_lens", "None"), "softcap": name("softcap", "0.0"),
            "scale": name("scale", f"1.0 / math.sqrt({roles['q']['name']}.shape[-1])"), "sinks": name("sinks", "None"),
            "alibi": name("alibi", "None"),
            "window": f"{window} + 1" if plan["window_offset"] and "window" in roles else window}


def _size(shape: list, axes: dict[str, int]) -> int:
    """Elements of a shape of axis names and literals at these axes."""
    return math.prod(axes[a] if a in axes else int(a) for a in shape)


def _page_size(plan: dict, axes: dict[str, int]) -> int:
    shape = plan["roles"]["k_cache"]["shape"]
    return 1 if plan["layout"] == "ragged" else _size([shape[1 if plan["layout"] == "NHD" else 2]], axes)


def _referenced_pages(plan: dict, axes: dict[str, int]) -> int:
    """CSR: the referenced pages; block table: its entries; ragged keys: every token."""
    roles = plan["roles"]
    return _size(roles["table"]["shape"] if "table" in roles else roles["k_cache"]["shape"][:1], axes)


def _group(plan: dict, axes: dict[str, int]) -> int:
    shape = plan["roles"]["k_cache"]["shape"]
    kv_heads = 1 if plan["mla"] else _size([shape[2 if plan["layout"] == "NHD" else 1]], axes)   # HND, ragged: 1
    return max(1, _size([plan["roles"]["q"]["shape"][1]], axes) // max(kv_heads, 1))
