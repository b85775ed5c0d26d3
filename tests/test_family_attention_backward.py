"""The attention_backward family: the gradients of attention, recognised by their signature and proven by running
the reference (kernelbench.generate.families.attention_backward), on references written several ways: autograd
through a recomputed forward ([B, H, S, D], not causal), FA2's closed form over a saved output and a base-2 LSE
([B, S, H, D], causal GQA), packed sequences with a soft cap, a sliding window and sinks (and their gradient); each
solution matches eager through Triton's interpreter. A reference computing something else is refused."""

from __future__ import annotations

import pytest
from test_family_paged_attention import assert_passes as assert_passes_as
from test_family_paged_attention import problem_of, spec

import kernelbench.generate.families  # noqa: F401 - registers the families
from kernelbench.generate.family import FAMILIES

AUTOGRAD_BHSD = '''import torch


def get_inputs(axes, device):
    b, s = axes["batch_size"], axes["seq_len"]
    return {name: torch.randn(b, heads, s, 16) for name, heads in
            (("query", 4), ("key", 4), ("value", 4), ("dout", 4))}


def run(query, key, value, dout):
    # non-causal multi-head attention, [B, H, S, D], scale 1/sqrt(D): autograd through the fp32 forward
    with torch.enable_grad():
        q, k, v = (x.detach().requires_grad_() for x in (query, key, value))
        out = torch.softmax(q @ k.transpose(-1, -2) / 4.0, -1) @ v
        return torch.autograd.grad(out, (q, k, v), dout)
'''

CLOSED_FORM = '''import math
import torch


def get_inputs(axes, device):
    b, s = axes["batch_size"], axes["seq_len"]
    q, k, v = torch.randn(b, s, 4, 16), torch.randn(b, s, 2, 16), torch.randn(b, s, 2, 16)
    scores = torch.einsum("bihd,bjhd->bhij", q, k.repeat_interleave(2, 2)) * 0.3
    scores = scores.masked_fill(torch.ones(s, s, dtype=torch.bool).triu(1), float("-inf"))
    out = torch.einsum("bhij,bjhd->bihd", scores.softmax(-1), v.repeat_interleave(2, 2))
    return {"q": q.bfloat16(), "k": k.bfloat16(), "v": v.bfloat16(), "o": out.bfloat16(),
            "softmax_lse": (torch.logsumexp(scores, -1) / math.log(2)).transpose(1, 2).contiguous(),
            "do": torch.randn(b, s, 4, 16).bfloat16(), "softmax_scale": 0.3}


def run(q, k, v, o, softmax_lse, do, softmax_scale):
    # FA2's closed form, causal GQA (4 query heads on 2 key heads), [B, S, H, D], a base-2 LSE saved as [B, S, H]
    s = q.shape[1]
    kf, vf = k.float().repeat_interleave(2, 2), v.float().repeat_interleave(2, 2)
    scores = torch.einsum("bihd,bjhd->bhij", q.float(), kf) * softmax_scale
    p = torch.exp(scores - softmax_lse.transpose(1, 2)[..., None] * math.log(2))
    p = p.masked_fill(torch.ones(s, s, dtype=torch.bool).triu(1), 0.0)
    dv = torch.einsum("bhij,bihd->bjhd", p, do.float())
    dp = torch.einsum("bihd,bjhd->bhij", do.float(), vf)
    ds = p * (dp - (do.float() * o.float()).sum(-1).transpose(1, 2)[..., None])
    dq = torch.einsum("bhij,bjhd->bihd", ds, kf) * softmax_scale
    dk = torch.einsum("bhij,bihd->bjhd", ds, q.float()) * softmax_scale
    fold = lambda x: x.unflatten(2, (2, 2)).sum(3)
    return dq.bfloat16(), fold(dk).bfloat16(), fold(dv).bfloat16()
'''

PACKED = '''import torch


def get_inputs(axes, device):
    lengths = torch.tensor([5, 9, 2])
    cu = torch.zeros(4, dtype=torch.int32)
    cu[1:] = torch.cumsum(lengths, 0)
    t = int(cu[-1])
    return {"q": torch.randn(t, 4, 16), "k": torch.randn(t, 2, 16), "v": torch.randn(t, 2, 16),
            "sinks": torch.rand(4), "grad_out": torch.randn(t, 4, 16), "cu_seqlens": cu, "sm_scale": 0.35,
            "logit_cap": 2.0, "window": 3}


def run(q, k, v, sinks, grad_out, cu_seqlens, sm_scale, logit_cap, window):
    # packed causal GQA with a soft cap, keys j > i - window, a sink logit per head; autograd per sequence
    with torch.enable_grad():
        leaves = [x.detach().requires_grad_() for x in (q, k, v, sinks)]
        qf, kf, vf, sf = leaves
        outs = []
        for b in range(cu_seqlens.numel() - 1):
            lo, hi = int(cu_seqlens[b]), int(cu_seqlens[b + 1])
            n = hi - lo
            scores = torch.einsum("ihd,jhd->hij", qf[lo:hi], kf[lo:hi].repeat_interleave(2, 1)) * sm_scale
            scores = logit_cap * torch.tanh(scores / logit_cap)
            i, j = torch.arange(n)[:, None], torch.arange(n)[None, :]
            scores = scores.masked_fill(~((j <= i) & (j > i - window)), float("-inf"))
            full = torch.cat([scores, sf.view(-1, 1, 1).expand(-1, n, 1)], -1).softmax(-1)[..., :-1]
            outs.append(torch.einsum("hij,jhd->ihd", full, vf[lo:hi].repeat_interleave(2, 1)))
        return torch.autograd.grad(torch.cat(outs), leaves, grad_out)
'''


def assert_passes(problem, config_changes=None):
    return assert_passes_as(problem, config_changes, "attention_backward")


BATCHED_AXES = {"batch_size": {"type": "var"}, "seq_len": {"type": "var"}}


def test_autograd_through_a_recomputed_forward_over_bhsd(tmp_path):
    tensor = spec(["batch_size", 4, "seq_len", 16], "float32")
    problem = problem_of(tmp_path, "bhsd", AUTOGRAD_BHSD, {n: tensor for n in ("query", "key", "value", "dout")},
                         {n: tensor for n in ("dq", "dk", "dv")}, BATCHED_AXES, [{"batch_size": 2, "seq_len": 19}])
    match, solution = assert_passes(problem, {"block_small": 16, "block_large": 16})
    assert match.summary == "attention backward (BHSD, not causal, forward recomputed)"
    assert "_paged_prefill(" in solution.sources[0].content   # the forward's (out, LSE) recomputed


def test_the_closed_form_over_a_saved_output_and_base_2_lse(tmp_path):
    q, kv = spec(["batch_size", "seq_len", 4, 16], "bfloat16"), spec(["batch_size", "seq_len", 2, 16], "bfloat16")
    inputs = {"q": q, "k": kv, "v": kv, "o": q, "softmax_lse": spec(["batch_size", "seq_len", 4], "float32"),
              "do": q, "softmax_scale": spec(None, "float32")}
    problem = problem_of(tmp_path, "closed", CLOSED_FORM, inputs, {"dq": q, "dk": kv, "dv": kv}, BATCHED_AXES,
                         [{"batch_size": 2, "seq_len": 21}])
    match, solution = assert_passes(problem, {"block_small": 16, "block_large": 32})
    assert match.plan["lse_layout"] == "BSH" and match.plan["lse_base"] != 1.0 and match.plan["causal"]
    assert "_paged_prefill(" not in solution.sources[0].content.split("def run(")[1]


@pytest.mark.parametrize("blocks", [(16, 16), (16, 32)])
def test_packed_sequences_with_a_soft_cap_a_window_and_sinks(tmp_path, blocks):
    axes = {"total": {"type": "var"}, "len_cu": {"type": "var"}}
    q, kv = spec(["total", 4, 16], "float32"), spec(["total", 2, 16], "float32")
    inputs = {"q": q, "k": kv, "v": kv, "sinks": spec([4], "float32"), "grad_out": q, "cu_seqlens": spec(["len_cu"], "int32"),
              "sm_scale": spec(None, "float32"), "logit_cap": spec(None, "float32"), "window": spec(None, "int32")}
    outputs = {"grad_q": q, "grad_k": kv, "grad_v": kv, "grad_sinks": spec([4], "float32")}
    problem = problem_of(tmp_path, "packed", PACKED, inputs, outputs, axes, [{"total": 16, "len_cu": 4}])
    match, _ = assert_passes(problem, dict(zip(("block_small", "block_large"), blocks)))
    assert "packed" in match.summary and "soft cap" in match.summary and "sinks" in match.summary
    assert match.plan["window_offset"] == 0


def test_a_reference_computing_something_else_is_refused(tmp_path):
    # dV doubled: the same signature, but no reading's gradients agree
    wrong = AUTOGRAD_BHSD.replace("return torch.autograd.grad(out, (q, k, v), dout)",
                                  "dq, dk, dv = torch.autograd.grad(out, (q, k, v), dout)\n        return dq, dk, 2 * dv")
    tensor = spec(["batch_size", 4, "seq_len", 16], "float32")
    problem = problem_of(tmp_path, "wrong", wrong, {n: tensor for n in ("query", "key", "value", "dout")},
                         {n: tensor for n in ("dq", "dk", "dv")}, BATCHED_AXES, [{"batch_size": 2, "seq_len": 7}])
    family = FAMILIES["attention_backward"]
    assert family.match(problem) is None and "grad_v differs" in family.last_rejection
