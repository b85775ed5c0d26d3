"""Position masks lowered to the flash kernel's causal / window band (kernelbench.generate.attention_masks): the
exact band fit, what must not fit (negative cases), and whole problems whose masks run as a band."""

from __future__ import annotations

import pytest
import torch

from kernelbench.generate.attention_masks import band_of
from kernelbench.generate.family import FAMILIES

from test_family_attention import AXES, OUT, QKV, assert_all_pass, attention_family
from test_family_fused import make


def positions(q_len, kv_len):
    return torch.arange(q_len).view(-1, 1), torch.arange(kv_len).view(1, -1)


@pytest.mark.parametrize("q_len,kv_len", [(7, 7), (5, 12), (12, 5)])
def test_bands_are_fitted_exactly(q_len, kv_len):
    i, j = positions(q_len, kv_len)
    shift = kv_len - q_len
    assert band_of(torch.ones(q_len, kv_len, dtype=torch.bool)) == (None, None)
    assert band_of(j <= i) == ("top", None)
    assert band_of(j <= i + shift) == (("top" if shift == 0 else "bottom"), None)
    for window in (1, 2, 4):
        assert band_of((j <= i) & (j > i - window)) == ("top", window)
        assert band_of((j <= i + shift) & (j > i + shift - window)) == (("top" if shift == 0 else "bottom"), window)


@pytest.mark.parametrize("build", [
    lambda i, j: j < i,                                  # the diagonal hidden too: a shift of -1
    lambda i, j: j >= i,                                 # anti-causal
    lambda i, j: (j - i).abs() < 2,                      # a two-sided window
    lambda i, j: (j <= i) & (j != 0),                    # causal with a hole
    lambda i, j: (j <= i) & ((i + j) % 3 != 1),          # causal, thinned
    lambda i, j: j <= i + 1,                             # causal shifted by one
    lambda i, j: (j <= i) & (j > i - 2) | (j == 0),      # a window plus a sink column
])
def test_other_masks_are_not_bands(build):
    i, j = positions(9, 9)
    assert band_of(build(i, j)) is None


KV = {"k": (["b", "g", "t", "d"], "bfloat16"), "v": (["b", "g", "t", "d"], "bfloat16")}
AXES_T = {**AXES, "t": {"type": "var"}}
SHAPES_T = [{"b": 1, "s": 5, "t": 9}, {"b": 2, "s": 19, "t": 23}]
SDPA = ("import torch\nimport torch.nn.functional as F\n\ndef run(q, k, v):\n"
        "    s, t = q.shape[2], k.shape[2]\n"
        "    i, j = torch.arange(s, device=q.device).view(s, 1), torch.arange(t, device=q.device).view(1, t)\n"
        "    mask = {mask}\n"
        "    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)\n")


@pytest.mark.parametrize("mask,band", [
    ("j <= i + (t - s)", "causal='bottom', window=None"),
    ("(j <= i + t - s) & (j > i + t - s - 3)", "causal='bottom', window=3"),
    ("torch.zeros(s, t, device=q.device).masked_fill(j > i, float('-inf'))", "causal='top', window=None"),
])
def test_sdpa_position_masks_run_as_a_band(tmp_path, mask, band):
    problem = make(tmp_path, "sdpa_band", SDPA.format(mask=mask), {"q": QKV["q"], **KV}, OUT, SHAPES_T, axes=AXES_T)
    family, match = attention_family(problem)
    lines = assert_all_pass(problem, family, match)
    assert band in lines and "arange" not in lines and "_attention(" not in lines


@pytest.mark.parametrize("mask", [
    "j < i + (t - s)",                                         # not a band the kernel has: stays a stored mask
    "(j <= i + t - s) & (q[..., :1] > -1.0)",                  # computed from an input
])
def test_other_sdpa_masks_stay_stored(tmp_path, mask):
    problem = make(tmp_path, "sdpa_mask", SDPA.format(mask=mask), {"q": QKV["q"], **KV}, OUT, SHAPES_T, axes=AXES_T)
    family, match = attention_family(problem)
    lines = assert_all_pass(problem, family, match)
    assert "causal=" not in lines and "_attention(" in lines


def test_a_handwritten_causal_mask_runs_as_a_band(tmp_path):
    reference = ("import torch\n\ndef run(q, k, v):\n"
                 "    g = q.shape[1] // k.shape[1]\n"
                 "    k, v = k.float().repeat_interleave(g, 1), v.float().repeat_interleave(g, 1)\n"
                 "    s = torch.matmul(q.float(), k.transpose(-1, -2)) * 0.25\n"
                 "    n = s.shape[-1]\n"
                 "    causal = torch.ones(n, n, dtype=torch.bool, device=q.device).triu(1)\n"
                 "    s = s.masked_fill(causal, float('-inf'))\n"
                 "    return torch.matmul(torch.softmax(s, dim=-1), v).to(q.dtype)\n")
    problem = make(tmp_path, "handwritten_causal", reference, QKV, OUT,
                   [{"b": 1, "s": 5}, {"b": 2, "s": 19}], axes=AXES)
    family, match = attention_family(problem)
    lines = assert_all_pass(problem, family, match)
    assert "_attention_node(" in lines and "causal='top'" in lines and "triu" not in lines


SINKS = ("import torch\n\ndef run(q, k, v, sinks):\n"
         "    g = q.shape[1] // k.shape[1]\n"
         "    k, v = k.float().repeat_interleave(g, 1), v.float().repeat_interleave(g, 1)\n"
         "    s = torch.matmul(q.float(), k.transpose(-1, -2)) * 0.25\n"
         "    n = s.shape[-1]\n"
         "    i, j = torch.arange(n, device=q.device).view(n, 1), torch.arange(n, device=q.device).view(1, n)\n"
         "    s = s.masked_fill((j > i) | (j <= i - 3), float('-inf'))\n"
         "    sink = {sink}\n"
         "    p = torch.softmax(torch.cat((s, sink), dim=-1), dim=-1){kept}\n"
         "    return torch.matmul(p, v).to(q.dtype)\n")
SINK_INPUTS = {**QKV, "sinks": (["h"], "bfloat16")}
PER_HEAD = "sinks.float().view(1, -1, 1, 1).expand(s.shape[0], -1, n, 1)"


def test_sinks_and_a_window_run_on_the_flash_kernel(tmp_path):
    reference = SINKS.format(sink=PER_HEAD, kept="[..., :-1]")
    problem = make(tmp_path, "sinks", reference, SINK_INPUTS, OUT, [{"b": 1, "s": 5}, {"b": 2, "s": 19}], axes=AXES)
    family, match = attention_family(problem)
    lines = assert_all_pass(problem, family, match)
    assert "_attention_node(" in lines and "sinks=" in lines and "causal='top', window=3" in lines
    assert "_softmax" not in lines and "cat" not in lines


@pytest.mark.parametrize("sink,kept", [
    (PER_HEAD, "[..., 1:]"),                                   # the first key's probability dropped, not the sink's
    ("s[..., :1]", "[..., :-1]"),                              # a "sink" computed from the scores
    (PER_HEAD, ""),                                            # the sink's probability kept: v has one row fewer
])
def test_what_is_not_a_sink_is_not_rewritten(tmp_path, sink, kept):
    if not kept:   # a product over n + 1 columns: pad v with a zero row so the reference runs
        reference = SINKS.format(sink=sink, kept="").replace(
            "torch.matmul(p, v)", "torch.matmul(p, torch.nn.functional.pad(v, (0, 0, 0, 1)))")
    else:
        reference = SINKS.format(sink=sink, kept=kept)
    problem = make(tmp_path, "not_sinks", reference, SINK_INPUTS, OUT, [{"b": 1, "s": 5}], axes=AXES)
    family = FAMILIES["attention"]
    match = family.match(problem)
    lines = "" if match is None else "\n".join(line for p in match.plan["programs"] for line in p["lines"])
    assert "_attention_node(" not in lines


ALIBI = ("import torch\n\ndef run(q, k, v):\n"
         "    h = q.shape[1]\n"
         "    slopes = torch.tensor([2.0 ** (-(n + 1)) for n in range(h)], device=q.device)\n"
         "    g = h // k.shape[1]\n"
         "    k, v = k.float().repeat_interleave(g, 1), v.float().repeat_interleave(g, 1)\n"
         "    s = torch.matmul(q.float(), k.transpose(-1, -2)) * 0.25\n"
         "    n = s.shape[-1]\n"
         "    i = torch.arange(n, device=q.device, dtype=torch.float32).view(n, 1)\n"
         "    j = torch.arange(n, device=q.device, dtype=torch.float32).view(1, n)\n"
         "    s = s + slopes.view(h, 1, 1) * {distance}\n"
         "    s = s.masked_fill(j > i, float('-inf'))\n"
         "    return torch.matmul(torch.softmax(s, dim=-1), v).to(q.dtype)\n")


@pytest.mark.parametrize("distance,fit", [
    ("(j - i)", "alibi_kind='linear'"),
    ("j", "alibi_kind='linear'"),                         # BLOOM's: a constant per row away from j - i
    ("-(j - i).abs()", "alibi_kind='symmetric', alibi_shift=0"),
])
def test_alibi_runs_as_slopes(tmp_path, distance, fit):
    problem = make(tmp_path, "alibi", ALIBI.format(distance=distance), QKV, OUT,
                   [{"b": 1, "s": 5}, {"b": 2, "s": 19}], axes=AXES)
    family, match = attention_family(problem)
    lines = assert_all_pass(problem, family, match)
    assert "alibi=" in lines and fit in lines and "causal='top'" in lines and "arange" not in lines


@pytest.mark.parametrize("distance", [
    "(j - i) * (j - i)",                                  # quadratic in the distance
    "(2 * j - i)",                                        # 2 (j - i) plus a row constant: not the unit distance
    "(j - i).abs()",                                      # +|j - i|: the sign matters once keys beyond i are seen
])
def test_other_position_biases_stay_stored(tmp_path, distance):
    reference = ALIBI.format(distance=distance).replace("    s = s.masked_fill(j > i, float('-inf'))\n", "")
    problem = make(tmp_path, "not_alibi", reference, QKV, OUT, [{"b": 1, "s": 5}, {"b": 2, "s": 19}], axes=AXES)
    family, match = attention_family(problem)
    lines = assert_all_pass(problem, family, match)
    assert "_attention_node(" in lines and "alibi=" not in lines


def test_a_row_constant_is_no_alibi_beside_a_sink(tmp_path):
    """slope * j is slope * (j - i) plus slope * i per row: the softmax ignores that, a sink logit does not."""
    reference = ALIBI.format(distance="j").replace(
        "    return torch.matmul(torch.softmax(s, dim=-1), v).to(q.dtype)\n",
        "    sink = torch.ones(s.shape[0], h, n, 1, device=q.device)\n"
        "    p = torch.softmax(torch.cat((s, sink), dim=-1), dim=-1)[..., :-1]\n"
        "    return torch.matmul(p, v).to(q.dtype)\n")
    problem = make(tmp_path, "alibi_sink", reference, QKV, OUT, [{"b": 1, "s": 5}, {"b": 2, "s": 19}], axes=AXES)
    family, match = attention_family(problem)
    lines = assert_all_pass(problem, family, match)
    assert "sinks=" in lines and "alibi=" not in lines
