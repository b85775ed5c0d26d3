"""The attention family: the flash kernel against a plain softmax(q k^T) v at tiny shapes (Triton through the
interpreter; bf16 dots run in fp32 there, see templates/attention.py.j2's IEEE flag), SDPA's semantics behind the
traced attention node, and hand-written attention recognised in the graph (and what must not be)."""

from __future__ import annotations

import importlib.util
import sys

import pytest
import torch

from kernelbench.core.statuses import PASSED
from kernelbench.generate.families.attention import kernel_source
from kernelbench.generate.family import FAMILIES

from test_family_fused import check, make

F = torch.nn.functional


@pytest.fixture(scope="module")
def kernels(tmp_path_factory):
    """The template's kernels as a module; split=3 sends every call through the split-KV merge too."""
    modules = {}
    for split in (1, 3):
        path = tmp_path_factory.mktemp("attention") / f"attention_split{split}.py"
        path.write_text(kernel_source({"block_m": 16, "block_n": 16, "num_warps": 4, "num_stages": 2,
                                       "split": split}))
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        spec.loader.exec_module(module)
        modules[split] = module
    return modules


def expected(q, k, v, mask=None, causal=None, scale=None, softcap=0.0, window=None, sinks=None, alibi=None,
             alibi_kind="linear", alibi_shift=0):
    """softmax(q k^T) v in fp32 with every option spelled out; a row that sees no key gives 0; sinks: one more
    logit per row in the softmax, its probability dropped."""
    group = q.shape[1] // k.shape[1]
    k, v = k.float().repeat_interleave(group, 1), v.float().repeat_interleave(group, 1)
    scores = q.float() @ k.transpose(-1, -2) * (q.shape[-1] ** -0.5 if scale is None else scale)
    if softcap:
        scores = softcap * torch.tanh(scores / softcap)
    rows, cols = scores.shape[-2:]
    i, j = torch.arange(rows)[:, None], torch.arange(cols)[None, :]
    shift = cols - rows if causal == "bottom" else 0
    visible = torch.ones(rows, cols, dtype=torch.bool)
    if alibi is not None:
        distance = (j - i).float() if alibi_kind == "linear" else -(j - i - alibi_shift).abs().float()
        scores = scores + alibi.float().expand(q.shape[0], q.shape[1])[:, :, None, None] * distance
    if causal:
        visible &= j <= i + shift
    if window:
        visible &= j > i + shift - window
    if mask is not None and mask.dtype == torch.bool:
        visible = visible & mask
    elif mask is not None:
        scores = scores + mask.float()
    scores = scores.masked_fill(~visible, float("-inf"))
    if sinks is not None:
        scores = torch.cat((scores, sinks.float().expand(*scores.shape[:-1]).unsqueeze(-1)), -1)
        return (torch.softmax(scores, -1)[..., :-1] @ v), torch.logsumexp(scores, -1)
    return (torch.softmax(scores, -1).nan_to_num(0.0) @ v), torch.logsumexp(scores, -1)


CASES = [  # (batch, heads, kv heads, q_len, kv_len, head dim, value dim), options
    ((2, 4, 2, 5, 9, 24, 16), {"causal": "top"}),                       # q_len < kv_len, GQA, dims not powers of 2
    ((1, 2, 1, 33, 20, 16, 32), {"causal": "bottom"}),                  # q_len > kv_len: the first rows see nothing
    ((1, 2, 1, 33, 20, 16, 32), {"causal": "top"}),
    ((1, 4, 1, 1, 40, 8, 8), {}),                                       # MQA decode
    ((2, 2, 2, 17, 17, 16, 16), {"causal": "bottom", "window": 3}),
    ((1, 2, 2, 6, 19, 16, 16), {"softcap": 5.0, "scale": 0.3}),
    ((1, 2, 1, 7, 19, 16, 16), {"mask": "bool"}),                       # [Lq, Lk], broadcast over batch and heads
    ((2, 2, 1, 7, 19, 16, 16), {"mask": "additive"}),                   # [1, H, Lq, Lk]
    ((2, 4, 2, 9, 19, 16, 16), {"sinks": "heads", "causal": "bottom", "window": 4}),   # gpt-oss: per-head sinks
    ((1, 4, 1, 1, 40, 8, 8), {"sinks": "rows"}),                        # decode, a sink per (batch, head, row)
    ((2, 8, 2, 1, 37, 16, 16), {"sinks": "heads", "causal": "bottom"}),   # GQA decode: a group's heads in one tile
    ((2, 8, 2, 1, 37, 16, 16), {"causal": "bottom", "window": 5}),      # a window: not packed
    ((2, 4, 2, 9, 19, 16, 16), {"alibi": "heads", "causal": "bottom"}),   # ALiBi slope * (j - i)
    ((1, 2, 2, 1, 37, 16, 16), {"alibi": "batch", "alibi_kind": "symmetric", "alibi_shift": 36}),   # -slope |j - i - s|
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("split", [1, 3])
def test_flash_kernel_matches_softmax_attention(kernels, dtype, split):
    torch.manual_seed(0)
    for (b, h, hk, lq, lk, d, dv), options in CASES:
        q, k, v = torch.randn(b, h, lq, d).to(dtype), torch.randn(b, hk, lk, d).to(dtype), \
            torch.randn(b, hk, lk, dv).to(dtype)
        options = dict(options)
        if options.get("mask") == "bool":
            options["mask"] = torch.rand(lq, lk) > 0.3
        elif options.get("mask") == "additive":
            options["mask"] = torch.randn(1, h, lq, lk).to(dtype)
        if options.get("alibi") == "heads":
            options["alibi"] = torch.rand(h) * 0.5
        elif options.get("alibi") == "batch":
            options["alibi"] = torch.rand(b, h)
        if options.get("sinks") == "heads":
            options["sinks"] = torch.randn(h, 1).to(dtype) + 1.0
        elif options.get("sinks") == "rows":
            options["sinks"] = torch.randn(b, h, lq) * 3.0
        out, lse = kernels[split]._flash_attention(q, k, v, lse=True, **options)
        want, want_lse = expected(q, k, v, **options)
        assert out.dtype == dtype and out.shape == (b, h, lq, dv)
        tolerance = 1e-4 if dtype == torch.float32 else 2e-2
        assert (out.float() - want).abs().max() < tolerance, (b, h, hk, lq, lk, options)
        seen = torch.isfinite(want_lse)
        assert torch.equal(torch.isinf(lse), ~seen)            # rows that see no key: LSE -inf, output 0
        assert (lse[seen] - want_lse[seen]).abs().max() < 1e-3
        assert not out[~seen].any()


def test_sdpa_semantics_behind_the_attention_node(kernels):
    torch.manual_seed(1)
    q, k, v = torch.randn(2, 4, 7, 16), torch.randn(2, 2, 11, 16), torch.randn(2, 2, 11, 16)
    mask = torch.rand(7, 11) > 0.5
    for options in ({"is_causal": True, "enable_gqa": True},        # top-left aligned when q_len != kv_len
                    {"enable_gqa": True, "scale": 0.2},
                    {"attn_mask": mask, "enable_gqa": True},
                    {"attn_mask": torch.randn(2, 1, 7, 11), "enable_gqa": True}):
        got = kernels[3]._attention(q, k, v, **options)
        assert (got - F.scaled_dot_product_attention(q, k, v, **options)).abs().max() < 1e-5, options


# ---------------------------------------------------------------------------------------------- the family

QKV = {"q": (["b", "h", "s", "d"], "bfloat16"), "k": (["b", "g", "s", "d"], "bfloat16"),
       "v": (["b", "g", "s", "d"], "bfloat16")}
OUT = {"o": (["b", "h", "s", "d"], "bfloat16")}
AXES = {"b": {"type": "var"}, "s": {"type": "var"}, "h": {"type": "const", "value": 4},
        "g": {"type": "const", "value": 2}, "d": {"type": "const", "value": 16}}
SHAPES = [{"b": 1, "s": 5}, {"b": 2, "s": 19}]


def attention_family(problem):
    family = FAMILIES["attention"]
    match = family.match(problem)
    assert match is not None, family.last_rejection
    return family, match


def assert_all_pass(problem, family, match):
    lines = "\n".join(line for p in match.plan["programs"] for line in p["lines"])
    for config in family.space(match, problem.axes_for(problem.smallest_workload()))[:2]:
        solution = family.render(match, config)
        assert "_lean(_attn_fwd)[" in solution.sources[0].content
        for workload in problem.workloads:
            comparison = check(problem, solution, workload)
            assert comparison.status == PASSED, (config, workload.axes, comparison.message)
    return lines


def test_a_bare_sdpa_call_is_a_program(tmp_path):
    reference = ("import torch\nimport torch.nn.functional as F\n\ndef run(q, k, v):\n"
                 "    return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)\n")
    problem = make(tmp_path, "bare_sdpa", reference, QKV, OUT, SHAPES, axes=AXES)
    family, match = attention_family(problem)
    assert "_attention(" in assert_all_pass(problem, family, match)
    assert FAMILIES["fused"].match(problem) is None   # nothing else to fuse: only this family takes it


def test_a_boolean_padding_mask_and_a_tanh_gated_residual(tmp_path):
    # a cross-attention block's shape (Mllama): per-head RMS-normalized queries (a row region beside the attention
    # node, whose arguments are all keywords: the row grouping once failed on it), keys masked per sequence by a
    # bool [b, s] mask, the output gated by tanh of a 1-element gate and added to the query
    reference = ("import torch\nimport torch.nn.functional as F\n\ndef run(q, k, v, keep, gate):\n"
                 "    n = q.shape[1] // k.shape[1]\n"
                 "    q = (q.float() * torch.rsqrt(q.float().pow(2).mean(-1, keepdim=True) + 1e-6)).to(q.dtype)\n"
                 "    o = F.scaled_dot_product_attention(q, k.repeat_interleave(n, 1), v.repeat_interleave(n, 1),\n"
                 "                                       attn_mask=keep[:, None, None, :])\n"
                 "    return q + gate.tanh() * o\n")
    problem = make(tmp_path, "masked_gated", reference, {**QKV, "keep": (["b", "s"], "bool"), "gate": (["1"], "bfloat16")},
                   OUT, SHAPES, axes=AXES)
    family, match = attention_family(problem)
    assert_all_pass(problem, family, match)


def test_repeated_kv_heads_are_read_unrepeated(tmp_path):
    reference = ("import torch\nimport torch.nn.functional as F\n\ndef run(q, k, v):\n"
                 "    n = q.shape[1] // k.shape[1]\n"
                 "    return F.scaled_dot_product_attention(q, k.repeat_interleave(n, 1), v.repeat_interleave(n, 1))\n")
    problem = make(tmp_path, "repeated_sdpa", reference, QKV, OUT, SHAPES, axes=AXES)
    family, match = attention_family(problem)
    lines = assert_all_pass(problem, family, match)
    assert "enable_gqa=True" in lines and "clone" not in lines and not match.plan["programs"][0]["kernels"]


HANDWRITTEN = ("import torch\n\ndef run(q, k, v, scale, cap):\n"
               "    g = q.shape[1] // k.shape[1]\n"
               "    k, v = k.float().repeat_interleave(g, 1), v.float().repeat_interleave(g, 1)\n"
               "    s = torch.matmul(q.float(), k.transpose(-1, -2)) {score}\n"
               "    n = s.shape[-1]\n"
               "    causal = torch.ones(n, n, dtype=torch.bool, device=q.device).triu(1)\n"
               "    s = {masked}\n"
               "    return torch.matmul(torch.softmax(s, dim={dim}), v).to(q.dtype)\n")
SCALARS = {"scale": (None, "float32"), "cap": (None, "float32")}
SCALAR_SHAPES = [{**s, "scalars": {"scale": 0.25, "cap": 3.0}} for s in SHAPES]


@pytest.mark.parametrize("score,masked", [
    ("* scale", "s.masked_fill(causal, float('-inf'))"),
    ("/ cap", "(cap * torch.tanh(s * scale)).masked_fill(causal, float('-inf'))"),
    ("* scale", "s + torch.where(causal, -1e4, 0.0)"),
])
def test_handwritten_attention_runs_on_the_flash_kernel(tmp_path, score, masked):
    reference = HANDWRITTEN.format(score=score, masked=masked, dim=-1)
    problem = make(tmp_path, "handwritten", reference, {**QKV, **SCALARS}, OUT, SCALAR_SHAPES, axes=AXES)
    family, match = attention_family(problem)
    lines = assert_all_pass(problem, family, match)
    assert "_attention_node(" in lines and "bmm" not in lines and "_softmax" not in lines


@pytest.mark.parametrize("score,masked,dim", [
    ("* scale", "s.masked_fill(causal, float('-inf'))", -2),           # a softmax over the queries
    ("* scale", "s.masked_fill(causal, -1e9)", -1),                    # a finite fill: rows that see nothing differ
    ("", "(s + torch.where(causal, -1e4, 0.0)) * scale", -1),          # scaled after the bias: not q k^T * scale + bias
    ("", "torch.tanh(s.masked_fill(causal, float('-inf')))", -1),      # masked before the tanh
])
def test_what_is_not_attention_stays_as_written(tmp_path, score, masked, dim):
    reference = HANDWRITTEN.format(score=score, masked=masked, dim=dim)
    problem = make(tmp_path, "not_attention", reference, {**QKV, **SCALARS}, OUT, SCALAR_SHAPES, axes=AXES)
    family = FAMILIES["attention"]
    assert family.match(problem) is None, "rewritten: " + str(family.last_rejection)


def test_gqa_decode_packs_a_groups_heads_into_one_program(kernels, monkeypatch):
    """One query per head, 4 heads a key/value head: 2 x 2 programs (batch x kv heads), not 2 x 8, on strided q."""
    module, grids = kernels[1], []
    kernel = module._attn_fwd

    class Recorder:
        def __getitem__(self, grid):
            grids.append(grid)
            return kernel[grid]
    monkeypatch.setattr(module, "_attn_fwd", Recorder())
    torch.manual_seed(2)
    q = torch.randn(2, 1, 8, 16).transpose(1, 2)           # [2, 8, 1, 16], heads not outermost in memory
    k, v = torch.randn(2, 2, 21, 16), torch.randn(2, 2, 21, 16)
    sinks = torch.randn(8, 1)
    out, lse = module._flash_attention(q, k, v, lse=True, sinks=sinks)
    want, want_lse = expected(q, k, v, sinks=sinks)
    assert grids == [(1, 4, 1)]
    assert (out - want).abs().max() < 1e-4 and (lse - want_lse).abs().max() < 1e-3
