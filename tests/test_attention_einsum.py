"""Attention written with einsum over a paged KV cache (tasks235's paged decodes): the gathered keys laid out
[b, t, h, d], GQA through a [b, hkv, group, d] view of q, a per-(batch, key) length mask and a logsumexp of the
same scores as a second output, recognised as one attention node and run on the flash kernel."""

from __future__ import annotations

from test_family_attention import assert_all_pass, attention_family
from test_family_fused import make

PAGED_DECODE = '''import torch

def run(q, k_cache, v_cache, page_table, kv_count, sm_scale):
    b, hq, d = q.shape
    _, ps, hkv, _ = k_cache.shape
    group, pages = hq // hkv, page_table.shape[1]
    table = page_table % k_cache.shape[0]
    k = k_cache[table].reshape(b, pages * ps, hkv, d).to(torch.float32)
    v = v_cache[table].reshape(b, pages * ps, hkv, d).to(torch.float32)
    valid_tok = torch.arange(pages * ps, device=q.device) < (kv_count % (pages * ps) + 1).unsqueeze(1)
    qf = q.to(torch.float32).reshape(b, hkv, group, d)
    scores = torch.einsum("bhgd,bthd->bhgt", qf, k) * sm_scale
    scores = scores.masked_fill(~valid_tok[:, None, None, :], float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)
    out = torch.einsum("bhgt,bthd->bhgd", torch.softmax(scores, dim=-1), v)
    return out.reshape(b, hq, d).to(q.dtype), lse.reshape(b, hq)
'''
INPUTS = {"q": (["b", "hq", "d"], "bfloat16"), "k_cache": (["p", "ps", "hkv", "d"], "bfloat16"),
          "v_cache": (["p", "ps", "hkv", "d"], "bfloat16"), "page_table": (["b", "np"], "int64"),
          "kv_count": (["b"], "int64"), "sm_scale": (None, "float32")}
OUTPUTS = {"output": (["b", "hq", "d"], "bfloat16"), "lse": (["b", "hq"], "float32")}
AXES = {"b": {"type": "var"}, "p": {"type": "var"}, "hq": {"type": "const", "value": 4},
        "hkv": {"type": "const", "value": 2}, "d": {"type": "const", "value": 16},
        "ps": {"type": "const", "value": 4}, "np": {"type": "const", "value": 6}}
SHAPES = [{"b": 1, "p": 8, "scalars": {"sm_scale": 0.25}}, {"b": 2, "p": 13, "scalars": {"sm_scale": 0.25}}]


def test_an_einsum_paged_gqa_decode_with_lse_runs_on_the_flash_kernel(tmp_path):
    problem = make(tmp_path, "paged_decode", PAGED_DECODE, INPUTS, OUTPUTS, SHAPES, axes=AXES)
    family, match = attention_family(problem)
    lines = assert_all_pass(problem, family, match)
    # one node returns both outputs; nothing of the scores is left: no bmm, softmax or logsumexp's pieces
    assert "lse=True" in lines and "bmm" not in lines and "_softmax" not in lines and "amax" not in lines
    # the fp32 casts of the gathered keys and values are read by the node: the gathers write bf16
    assert "dtype=torch.float32" not in lines
