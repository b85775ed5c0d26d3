"""The paged_attention family: decode attention over a paged KV cache, recognised by its signature and proven by
running the reference (kernelbench.generate.families.paged_attention), on references written several ways:
vectorized over a CSR page table (natural LSE), a FlashInfer-style loop over sequences and heads (base-2 LSE, page
size 1), a vLLM block table with a soft cap or with ALiBi slopes, a sliding window with sinks, a paged prefill of
ragged queries (causal or not), several queries a sequence (speculative verification), MLA's latent caches, ragged keys (varlen prefill); each
solution
matches eager through Triton's interpreter. What is not paged decode under the same signature is refused."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys

import pytest
import torch
from conftest import write_problem
from test_family_fused import check

import kernelbench.generate.families  # noqa: F401 - registers the families
from kernelbench.core.problem import load_problem
from kernelbench.core.statuses import PASSED
from kernelbench.generate.families.attention import kernel_source
from kernelbench.generate.families.paged_attention import Case, paged_decode_reference
from kernelbench.generate.family import FAMILIES

CSR_INPUTS = '''import math
import torch


def get_inputs(axes, device):
    b, ps, pool, used = axes["batch_size"], axes["page_size"], axes["num_pages"], axes["num_kv_indices"]
    pages = 1 + torch.bincount(torch.randint(0, b, (used - b,)), minlength=b)
    indptr = torch.zeros(b + 1, dtype=torch.int32)
    indptr[1:] = torch.cumsum(pages, 0)
    return {"q": torch.randn(b, 8, 32, dtype=torch.bfloat16),
            "k_cache": torch.randn(pool, ps, 2, 32, dtype=torch.bfloat16),
            "v_cache": torch.randn(pool, ps, 2, 32, dtype=torch.bfloat16),
            "kv_indptr": indptr, "kv_indices": torch.randperm(pool)[:int(indptr[-1])].to(torch.int32),
            "kv_last_page_len": torch.randint(1, ps + 1, (b,), dtype=torch.int32), "sm_scale": 0.2}
'''

VECTORIZED = CSR_INPUTS + '''

def run(q, k_cache, v_cache, kv_indptr, kv_indices, kv_last_page_len, sm_scale):
    b, hq, d = q.shape
    _, ps, hkv, _ = k_cache.shape
    pages = (kv_indptr[1:] - kv_indptr[:-1]).long()
    width = int(pages.max())
    j = torch.arange(width)
    slot = kv_indptr[:-1].long().unsqueeze(1) + j
    table = torch.where(j < pages.unsqueeze(1), kv_indices[slot.clamp(max=kv_indices.numel() - 1)].long(), 0)
    k = k_cache[table].reshape(b, width * ps, hkv, d).float()
    v = v_cache[table].reshape(b, width * ps, hkv, d).float()
    valid = torch.arange(width * ps) < ((pages - 1) * ps + kv_last_page_len.long()).unsqueeze(1)
    scores = torch.einsum("bhgd,bthd->bhgt", q.float().reshape(b, hkv, hq // hkv, d), k) * sm_scale
    scores = scores.masked_fill(~valid[:, None, None, :], float("-inf"))
    out = torch.einsum("bhgt,bthd->bhgd", torch.softmax(scores, -1), v)
    return out.reshape(b, hq, d).to(q.dtype), torch.logsumexp(scores, -1).reshape(b, hq)
'''

LOOPED = '''import math
import torch


def get_inputs(axes, device):
    b, pool = axes["batch_size"], axes["num_pages"]
    counts = torch.tensor([0, 5, 2, 7][:b])   # a sequence with no tokens too
    indptr = torch.zeros(b + 1, dtype=torch.int32)
    indptr[1:] = torch.cumsum(counts, 0)
    return {"q": torch.randn(b, 8, 32, dtype=torch.bfloat16),
            "k_cache": torch.randn(pool, 1, 4, 32, dtype=torch.bfloat16),
            "v_cache": torch.randn(pool, 1, 4, 32, dtype=torch.bfloat16),
            "kv_indptr": indptr, "kv_indices": torch.randperm(pool)[:int(indptr[-1])].to(torch.int32),
            "sm_scale": 1 / math.sqrt(32)}


@torch.no_grad()
def run(q, k_cache, v_cache, kv_indptr, kv_indices, sm_scale):
    batch, heads, _ = q.shape
    output = torch.zeros_like(q)
    lse = torch.full((batch, heads), -float("inf"))
    k_flat, v_flat = k_cache.squeeze(1).float(), v_cache.squeeze(1).float()
    for b in range(batch):
        start, end = int(kv_indptr[b].item()), int(kv_indptr[b + 1].item())
        if start >= end:
            continue
        tokens = kv_indices[start:end].long()
        for h in range(heads):
            logits = (q[b, h].float() @ k_flat[tokens, h // 2].T) * sm_scale
            lse[b, h] = torch.logsumexp(logits, -1) / math.log(2.0)
            output[b, h] = (torch.softmax(logits, -1) @ v_flat[tokens, h // 2]).to(torch.bfloat16)
    return output, lse
'''

BLOCK_TABLE = '''import torch


def get_inputs(axes, device):
    b, ps, pool, width = axes["batch_size"], axes["block_size"], axes["num_blocks"], axes["max_blocks"]
    lengths = torch.randint(1, width * ps + 1, (b,), dtype=torch.int32)
    tables = torch.stack([torch.randperm(pool)[:width] for _ in range(b)]).to(torch.int32)
    return {"q": torch.randn(b, 4, 32, dtype=torch.bfloat16),
            "key_cache": torch.randn(pool, ps, 4, 32, dtype=torch.bfloat16),
            "value_cache": torch.randn(pool, ps, 4, 32, dtype=torch.bfloat16),
            "block_tables": tables, "seq_lens": lengths, "sm_scale": 0.15, "logits_soft_cap": 4.0}


def run(q, key_cache, value_cache, block_tables, seq_lens, sm_scale, logits_soft_cap):
    b, h, d = q.shape
    ps = key_cache.shape[1]
    k = key_cache[block_tables.long()].reshape(b, -1, h, d).float()
    v = value_cache[block_tables.long()].reshape(b, -1, h, d).float()
    scores = torch.einsum("bhd,bthd->bht", q.float(), k) * sm_scale
    scores = logits_soft_cap * torch.tanh(scores / logits_soft_cap)
    scores = scores.masked_fill(torch.arange(k.shape[1]) >= seq_lens.long()[:, None, None], float("-inf"))
    return torch.einsum("bht,bthd->bhd", torch.softmax(scores, -1), v).to(q.dtype)
'''


def spec(shape, dtype):
    return {"shape": shape, "dtype": dtype}


def problem_of(tmp_path, name, reference, inputs, outputs, axes, workloads, allow_negative_inf=False):
    definition = {"name": name, "op_type": "attention", "axes": axes, "inputs": inputs, "outputs": outputs,
                  "reference": reference, "custom_inputs_entrypoint": "get_inputs"}
    lines = [{"uuid": f"{name}-{i}", "axes": w, "inputs": {n: {"type": "custom"} for n in inputs},
              "tolerance": {"max_atol": 1e-2, "max_rtol": 2e-2, "allow_negative_inf": allow_negative_inf}}
             for i, w in enumerate(workloads)]
    return dataclasses.replace(load_problem(write_problem(tmp_path, definition, lines, name=name)), directory=None)


CSR_AXES = {"batch_size": {"type": "var"}, "num_pages": {"type": "var"}, "num_kv_indices": {"type": "var"},
            "len_indptr": {"type": "expr", "expression": "batch_size + 1"}, "page_size": {"type": "const", "value": 4},
            "num_qo_heads": {"type": "const", "value": 8}, "num_kv_heads": {"type": "const", "value": 2},
            "head_dim": {"type": "const", "value": 32}}
CSR_INPUT_SPECS = {"q": spec(["batch_size", "num_qo_heads", "head_dim"], "bfloat16"),
                   "k_cache": spec(["num_pages", "page_size", "num_kv_heads", "head_dim"], "bfloat16"),
                   "v_cache": spec(["num_pages", "page_size", "num_kv_heads", "head_dim"], "bfloat16"),
                   "kv_indptr": spec(["len_indptr"], "int32"), "kv_indices": spec(["num_kv_indices"], "int32"),
                   "kv_last_page_len": spec(["batch_size"], "int32"), "sm_scale": spec(None, "float32")}
ATTENTION_OUT = {"output": spec(["batch_size", "num_qo_heads", "head_dim"], "bfloat16"),
                 "lse": spec(["batch_size", "num_qo_heads"], "float32")}


def csr_problem(tmp_path, reference=VECTORIZED, name="paged_csr"):
    return problem_of(tmp_path, name, reference, CSR_INPUT_SPECS, ATTENTION_OUT, CSR_AXES,
                      [{"batch_size": 3, "num_pages": 12, "num_kv_indices": 9}])


def assert_passes(problem, config_changes=None, family_name="paged_attention"):
    """(match, solution) of the family's first configuration at the first workload (with `config_changes`),
    passing against the reference at two input seeds."""
    family = FAMILIES[family_name]
    match = family.match(problem)
    assert match is not None, family.last_rejection
    workload = problem.workloads[0]
    config = {**family.space(match, problem.axes_for(workload))[0], **(config_changes or {})}
    solution = family.render(match, config)
    for seed in (1, 2):
        comparison = check(problem, solution, workload, seed=seed)
        assert comparison.status == PASSED, comparison.message
    return match, solution


def test_a_vectorized_csr_reference_runs_on_the_paged_kernel(tmp_path):
    match, solution = assert_passes(csr_problem(tmp_path))
    assert "CSR page table" in match.summary and "natural LSE" in match.summary
    call = " ".join(solution.sources[0].content.split())   # the launcher's call, whitespace aside
    assert "_paged_decode(q, k_cache, v_cache, kv_indices, kv_indptr, kv_last_page_len, sm_scale, output, lse, " \
        "softcap=0.0, window=None, sinks=None, alibi=None, lse_factor=0.6931471805599453" in call


def test_split_keys_merge_to_the_same_result(tmp_path):
    # three programs per sequence over the keys (the mean 12 tokens in 4-key tiles), merged by the second kernel
    assert_passes(csr_problem(tmp_path), {"split": 3, "block_n": 4})


def test_a_looped_reference_with_a_base_2_lse_and_an_empty_sequence(tmp_path):
    axes = {**CSR_AXES, "page_size": {"type": "const", "value": 1}, "num_kv_heads": {"type": "const", "value": 4}}
    inputs = {n: s for n, s in CSR_INPUT_SPECS.items() if n != "kv_last_page_len"}
    problem = problem_of(tmp_path, "paged_loop", LOOPED, inputs, ATTENTION_OUT, axes,
                         [{"batch_size": 4, "num_pages": 20, "num_kv_indices": 14}], allow_negative_inf=True)
    match, _ = assert_passes(problem)
    assert "base-2 LSE" in match.summary


TABLE_AXES = {"batch_size": {"type": "var"}, "num_blocks": {"type": "var"}, "max_blocks": {"type": "var"},
              "block_size": {"type": "const", "value": 8}, "num_heads": {"type": "const", "value": 4},
              "head_dim": {"type": "const", "value": 32}}
TABLE_INPUTS = {"q": spec(["batch_size", "num_heads", "head_dim"], "bfloat16"),
                "key_cache": spec(["num_blocks", "block_size", "num_heads", "head_dim"], "bfloat16"),
                "value_cache": spec(["num_blocks", "block_size", "num_heads", "head_dim"], "bfloat16"),
                "block_tables": spec(["batch_size", "max_blocks"], "int32"), "seq_lens": spec(["batch_size"], "int32")}
TABLE_OUT = {"out": spec(["batch_size", "num_heads", "head_dim"], "bfloat16")}
TABLE_WORKLOADS = [{"batch_size": 3, "num_blocks": 16, "max_blocks": 5}]


def test_a_block_table_with_a_soft_cap(tmp_path):
    inputs = {**TABLE_INPUTS, "sm_scale": spec(None, "float32"), "logits_soft_cap": spec(None, "float32")}
    problem = problem_of(tmp_path, "paged_table", BLOCK_TABLE, inputs, TABLE_OUT, TABLE_AXES, TABLE_WORKLOADS)
    match, _ = assert_passes(problem)
    assert "block table" in match.summary and "soft cap" in match.summary


WINDOWED = CSR_INPUTS.replace('"sm_scale": 0.2}', '"sm_scale": 0.2, "sinks": torch.randn(8, dtype=torch.bfloat16), '
                                                 '"window_size": 6}') + '''

def run(q, k_cache, v_cache, kv_indptr, kv_indices, kv_last_page_len, sm_scale, sinks, window_size):
    # the new token at position n - 1 sees keys j >= n - 1 - window_size (window_size + 1 of them) and a sink per head
    b, hq, d = q.shape
    _, ps, hkv, _ = k_cache.shape
    outs = []
    for i in range(b):
        pages = kv_indices[int(kv_indptr[i]):int(kv_indptr[i + 1])].long()
        n = (pages.numel() - 1) * ps + int(kv_last_page_len[i])
        k = k_cache[pages].reshape(-1, hkv, d)[:n].float().repeat_interleave(hq // hkv, 1)
        v = v_cache[pages].reshape(-1, hkv, d)[:n].float().repeat_interleave(hq // hkv, 1)
        keep = torch.arange(n) >= n - 1 - window_size
        scores = torch.einsum("hd,thd->ht", q[i].float(), k) * sm_scale
        scores = torch.cat([scores.masked_fill(~keep, float("-inf")), sinks.float()[:, None]], -1)
        outs.append(torch.einsum("ht,thd->hd", scores.softmax(-1)[:, :-1], v))
    return torch.stack(outs).to(q.dtype)
'''


def test_a_sliding_window_one_token_wider_than_its_number_and_sinks(tmp_path):
    inputs = {**CSR_INPUT_SPECS, "sinks": spec(["num_qo_heads"], "bfloat16"), "window_size": spec(None, "int32")}
    problem = problem_of(tmp_path, "paged_window", WINDOWED, inputs, {"output": ATTENTION_OUT["output"]}, CSR_AXES,
                         [{"batch_size": 3, "num_pages": 12, "num_kv_indices": 9}])
    match, solution = assert_passes(problem)
    assert "sliding window" in match.summary and "sinks" in match.summary
    assert "window=window_size + 1, sinks=sinks" in " ".join(solution.sources[0].content.split())


ALIBI = BLOCK_TABLE.replace('"logits_soft_cap": 4.0}', '"slopes": torch.rand(4) * 0.5}').replace(
    """def run(q, key_cache, value_cache, block_tables, seq_lens, sm_scale, logits_soft_cap):""",
    """def run(q, key_cache, value_cache, block_tables, seq_lens, slopes, sm_scale):""").replace(
    """    scores = logits_soft_cap * torch.tanh(scores / logits_soft_cap)""",
    """    scores = scores + slopes.view(1, h, 1) * (torch.arange(k.shape[1]) - seq_lens.long()[:, None, None] + 1)""").replace(
    """    return torch.einsum("bht,bthd->bhd", torch.softmax(scores, -1), v).to(q.dtype)""",
    """    return torch.einsum("bht,bthd->bhd", torch.softmax(scores, -1), v).to(q.dtype), torch.logsumexp(scores, -1)""")


def test_alibi_slopes_over_a_block_table(tmp_path):
    # a per-head vector is tried as sinks and as ALiBi slopes: the reference says which; the LSE pins the bias to
    # slope * (j - (n - 1)) exactly (the output alone is blind to a constant per row)
    inputs = {**TABLE_INPUTS, "slopes": spec(["num_heads"], "float32"), "sm_scale": spec(None, "float32")}
    problem = problem_of(tmp_path, "paged_alibi", ALIBI, inputs,
                         {**TABLE_OUT, "lse": spec(["batch_size", "num_heads"], "float32")}, TABLE_AXES, TABLE_WORKLOADS)
    match, _ = assert_passes(problem)
    assert "ALiBi" in match.summary


PREFILL = '''import math
import torch


def get_inputs(axes, device):
    b, ps, pool = axes["batch_size"], axes["page_size"], axes["num_pages"]
    q_lens, pages = torch.tensor([3, 1, 6][:b]), torch.tensor([2, 1, 3][:b])
    last = torch.randint(1, ps + 1, (b,), dtype=torch.int32)
    q_lens = torch.minimum(q_lens, (pages - 1) * ps + last)   # never more queries than tokens
    qo, kv = torch.zeros(b + 1, dtype=torch.int32), torch.zeros(b + 1, dtype=torch.int32)
    qo[1:], kv[1:] = torch.cumsum(q_lens, 0), torch.cumsum(pages, 0)
    return {"q": torch.randn(int(qo[-1]), 8, 32, dtype=torch.bfloat16),
            "k_cache": torch.randn(pool, ps, 2, 32, dtype=torch.bfloat16),
            "v_cache": torch.randn(pool, ps, 2, 32, dtype=torch.bfloat16), "qo_indptr": qo, "kv_indptr": kv,
            "kv_indices": torch.randperm(pool)[:int(kv[-1])].to(torch.int32), "kv_last_page_len": last,
            "sm_scale": 0.25}


@torch.no_grad()
def run(q, k_cache, v_cache, qo_indptr, kv_indptr, kv_indices, kv_last_page_len, sm_scale):
    ps = k_cache.shape[1]
    output = torch.zeros_like(q)
    lse = torch.full(q.shape[:2], -float("inf"))
    for b in range(qo_indptr.shape[0] - 1):
        qs, qe = int(qo_indptr[b]), int(qo_indptr[b + 1])
        pages = kv_indices[int(kv_indptr[b]):int(kv_indptr[b + 1])].long()
        n = (pages.numel() - 1) * ps + int(kv_last_page_len[b])
        k = k_cache[pages].reshape(-1, 2, 32)[:n].float().repeat_interleave(4, 1)
        v = v_cache[pages].reshape(-1, 2, 32)[:n].float().repeat_interleave(4, 1)
        logits = torch.einsum("qhd,thd->qht", q[qs:qe].float(), k) * sm_scale
        later = torch.arange(n)[None, :] > (n - (qe - qs) + torch.arange(qe - qs))[:, None]
        logits = logits.masked_fill(later[:, None, :], float("-inf"))
        lse[qs:qe] = torch.logsumexp(logits, -1) / math.log(2.0)
        output[qs:qe] = torch.einsum("qht,thd->qhd", torch.softmax(logits, -1), v).to(q.dtype)
    return output, lse
'''


@pytest.mark.parametrize("causal", [True, False])
def test_ragged_queries_of_a_paged_prefill(tmp_path, causal):
    reference = PREFILL if causal else PREFILL.replace("masked_fill(later[:, None, :]", "masked_fill(later[:, None, :] & False")
    axes = {**CSR_AXES, "total_q": {"type": "var"}}
    inputs = {"q": spec(["total_q", "num_qo_heads", "head_dim"], "bfloat16"),
              **{n: s for n, s in CSR_INPUT_SPECS.items() if n not in ("q", "sm_scale")},
              "qo_indptr": spec(["len_indptr"], "int32"), "sm_scale": spec(None, "float32")}
    inputs = {n: inputs[n] for n in ("q", "k_cache", "v_cache", "qo_indptr", "kv_indptr", "kv_indices",
                                     "kv_last_page_len", "sm_scale")}
    outputs = {"output": spec(["total_q", "num_qo_heads", "head_dim"], "bfloat16"),
               "lse": spec(["total_q", "num_qo_heads"], "float32")}
    problem = problem_of(tmp_path, "paged_prefill", reference, inputs, outputs, axes,
                         [{"batch_size": 3, "num_pages": 12, "num_kv_indices": 6, "total_q": 10}])
    match, solution = assert_passes(problem)
    assert "paged prefill" in match.summary and ("causal" if causal else "not causal") in match.summary
    assert "base-2 LSE" in match.summary and "_paged_prefill(" in solution.sources[0].content


VERIFY = '''import torch


def get_inputs(axes, device):
    b, pool, width = axes["batch_size"], axes["num_blocks"], axes["max_blocks"]
    lengths = torch.tensor([5, 11, 3, 16][:b], dtype=torch.int32)   # >= 3 tokens: the candidates are the last 3
    return {"query": torch.randn(b, 3, 8, 32, dtype=torch.bfloat16),
            "k_pages": torch.randn(pool, 2, 4, 32, dtype=torch.bfloat16),
            "v_pages": torch.randn(pool, 2, 4, 32, dtype=torch.bfloat16),
            "page_table": torch.stack([torch.randperm(pool)[:width] for _ in range(b)]).to(torch.int32),
            "lengths": lengths}


@torch.no_grad()
def run(query, k_pages, v_pages, page_table, lengths):
    # speculative verification: each sequence's last 3 tokens are candidates, candidate t at position n - 3 + t
    b, t, hq, d = query.shape
    out = torch.empty_like(query)
    lse = torch.empty(b, t, hq)
    for i in range(b):
        n = int(lengths[i])
        pages = page_table[i].long()
        k = k_pages[pages].transpose(1, 2).reshape(-1, 2, d)[:n].float().repeat_interleave(hq // 2, 1)
        v = v_pages[pages].transpose(1, 2).reshape(-1, 2, d)[:n].float().repeat_interleave(hq // 2, 1)
        scores = torch.einsum("thd,nhd->htn", query[i].float(), k) / d ** 0.5
        hidden = torch.arange(n)[None, :] > (n - t + torch.arange(t))[:, None]
        scores = scores.masked_fill(hidden & CAUSAL, float("-inf"))
        lse[i] = torch.logsumexp(scores, -1).transpose(0, 1)
        out[i] = torch.einsum("htn,nhd->thd", scores.softmax(-1), v).to(query.dtype)
    return out, lse
'''


@pytest.mark.parametrize("causal, split", [(True, 1), (True, 3), (False, 1)])
def test_several_queries_a_sequence_over_an_hnd_block_table(tmp_path, causal, split):
    # a [B, T, H, D] query (speculative verification): a GQA group's heads times the T tokens are one program's rows
    axes = {"batch_size": {"type": "var"}, "num_blocks": {"type": "var"}, "max_blocks": {"type": "var"},
            "tokens": {"type": "const", "value": 3}, "num_heads": {"type": "const", "value": 8},
            "num_kv_heads": {"type": "const", "value": 2}, "block_size": {"type": "const", "value": 4},
            "head_dim": {"type": "const", "value": 32}}
    inputs = {"query": spec(["batch_size", "tokens", "num_heads", "head_dim"], "bfloat16"),
              "k_pages": spec(["num_blocks", "num_kv_heads", "block_size", "head_dim"], "bfloat16"),
              "v_pages": spec(["num_blocks", "num_kv_heads", "block_size", "head_dim"], "bfloat16"),
              "page_table": spec(["batch_size", "max_blocks"], "int32"), "lengths": spec(["batch_size"], "int32")}
    outputs = {"out": spec(["batch_size", "tokens", "num_heads", "head_dim"], "bfloat16"),
               "lse": spec(["batch_size", "tokens", "num_heads"], "float32")}
    problem = problem_of(tmp_path, "paged_verify", VERIFY.replace("CAUSAL", str(causal)), inputs, outputs, axes,
                         [{"batch_size": 4, "num_blocks": 24, "max_blocks": 4}])
    match, solution = assert_passes(problem, {"split": split, "block_n": 8})
    assert "several queries a sequence" in match.summary and "HND cache" in match.summary
    assert ("not causal" not in match.summary) == causal
    assert f"causal={causal})" in solution.sources[0].content


MLA_LOOPED = '''import math
import torch


def get_inputs(axes, device):
    b, pool = axes["batch_size"], axes["num_pages"]
    counts = torch.tensor([4, 0, 20][:b])   # a sequence with no tokens too
    indptr = torch.zeros(b + 1, dtype=torch.int32)
    indptr[1:] = torch.cumsum(counts, 0)
    return {"q_nope": torch.randn(b, 16, 64, dtype=torch.bfloat16), "q_pe": torch.randn(b, 16, 16, dtype=torch.bfloat16),
            "ckv_cache": torch.randn(pool, 1, 64, dtype=torch.bfloat16),
            "kpe_cache": torch.randn(pool, 1, 16, dtype=torch.bfloat16),
            "kv_indptr": indptr, "kv_indices": torch.randperm(pool)[:int(indptr[-1])].to(torch.int32), "sm_scale": 0.1}


@torch.no_grad()
def run(q_nope, q_pe, ckv_cache, kpe_cache, kv_indptr, kv_indices, sm_scale):
    # FlashInfer-style MLA decode: the latent ckv is key and value, kpe the decoupled RoPE key; a base-2 LSE
    batch, heads, rank = q_nope.shape
    latent, rope = ckv_cache[:, 0].float(), kpe_cache[:, 0].float()
    output = torch.zeros(batch, heads, rank, dtype=torch.bfloat16)
    lse = torch.full((batch, heads), -float("inf"))
    for b in range(batch):
        first, last = int(kv_indptr[b].item()), int(kv_indptr[b + 1].item())
        if first >= last:
            continue
        tokens = kv_indices[first:last].long()
        logits = (q_nope[b].float() @ latent[tokens].T + q_pe[b].float() @ rope[tokens].T) * sm_scale
        lse[b] = torch.logsumexp(logits, -1) / math.log(2.0)
        output[b] = (torch.softmax(logits, -1) @ latent[tokens]).to(torch.bfloat16)
    return output, lse
'''
MLA_AXES = {"batch_size": {"type": "var"}, "num_pages": {"type": "var"}, "num_kv_indices": {"type": "var"},
            "len_indptr": {"type": "expr", "expression": "batch_size + 1"}, "num_qo_heads": {"type": "const", "value": 16},
            "head_dim_ckv": {"type": "const", "value": 64}, "head_dim_kpe": {"type": "const", "value": 16},
            "page_size": {"type": "const", "value": 1}}
MLA_INPUTS = {"q_nope": spec(["batch_size", "num_qo_heads", "head_dim_ckv"], "bfloat16"),
              "q_pe": spec(["batch_size", "num_qo_heads", "head_dim_kpe"], "bfloat16"),
              "ckv_cache": spec(["num_pages", "page_size", "head_dim_ckv"], "bfloat16"),
              "kpe_cache": spec(["num_pages", "page_size", "head_dim_kpe"], "bfloat16"),
              "kv_indptr": spec(["len_indptr"], "int32"), "kv_indices": spec(["num_kv_indices"], "int32"),
              "sm_scale": spec(None, "float32")}
MLA_OUT = {"output": spec(["batch_size", "num_qo_heads", "head_dim_ckv"], "bfloat16"),
           "lse": spec(["batch_size", "num_qo_heads"], "float32")}


@pytest.mark.parametrize("split", [1, 3])
def test_mla_decode_over_latent_caches(tmp_path, split):
    # DeepSeek's MLA with absorbed weights: one latent head shared by every query head, keys [ckv | kpe], values ckv
    problem = problem_of(tmp_path, "paged_mla", MLA_LOOPED, MLA_INPUTS, MLA_OUT, MLA_AXES,
                         [{"batch_size": 3, "num_pages": 30, "num_kv_indices": 24}], allow_negative_inf=True)
    match, solution = assert_passes(problem, {"split": split, "block_n": 2})   # 3 splits of the mean 8 tokens
    assert "MLA latent caches" in match.summary and "base-2 LSE" in match.summary
    assert "_mla_attention(q_nope, q_pe, ckv_cache, kpe_cache, kv_indices, kv_indptr, None, sm_scale, output, lse" \
        in " ".join(solution.sources[0].content.split())


MLA_PREFILL = '''import math
import torch


def get_inputs(axes, device):
    b, pool = axes["batch_size"], axes["num_pages"]
    q_lens, kv_lens = torch.tensor([3, 1, 5][:b]), torch.tensor([4, 6, 5][:b])
    qo, kv = torch.zeros(b + 1, dtype=torch.int32), torch.zeros(b + 1, dtype=torch.int32)
    qo[1:], kv[1:] = torch.cumsum(q_lens, 0), torch.cumsum(kv_lens, 0)
    total = int(qo[-1])
    return {"q_nope": torch.randn(total, 16, 64, dtype=torch.bfloat16),
            "q_pe": torch.randn(total, 16, 16, dtype=torch.bfloat16),
            "ckv_cache": torch.randn(pool, 1, 64, dtype=torch.bfloat16),
            "kpe_cache": torch.randn(pool, 1, 16, dtype=torch.bfloat16), "qo_indptr": qo, "kv_indptr": kv,
            "kv_indices": torch.randperm(pool)[:int(kv[-1])].to(torch.int32), "sm_scale": 0.1}


@torch.no_grad()
def run(q_nope, q_pe, ckv_cache, kpe_cache, qo_indptr, kv_indptr, kv_indices, sm_scale):
    # MLA prefill over one-token pages: query i of a sequence's q_len sees its first n - q_len + i + 1 tokens
    latent, rope = ckv_cache[:, 0].float(), kpe_cache[:, 0].float()
    output = torch.zeros(q_nope.shape, dtype=torch.bfloat16)
    lse = torch.full(q_nope.shape[:2], -float("inf"))
    for b in range(qo_indptr.shape[0] - 1):
        q0, q1 = int(qo_indptr[b]), int(qo_indptr[b + 1])
        tokens = kv_indices[int(kv_indptr[b]):int(kv_indptr[b + 1])].long()
        for i in range(q1 - q0):
            seen = tokens[:tokens.numel() - (q1 - q0) + i + 1]
            logits = (q_nope[q0 + i].float() @ latent[seen].T + q_pe[q0 + i].float() @ rope[seen].T) * sm_scale
            lse[q0 + i] = torch.logsumexp(logits, -1) / math.log(2.0)
            output[q0 + i] = (logits.softmax(-1) @ latent[seen]).to(torch.bfloat16)
    return output, lse
'''


def test_mla_prefill_of_ragged_queries(tmp_path):
    # MLA's queries ragged by their offsets, causal among a sequence's last tokens: (query, head) pairs are the rows
    axes = {**MLA_AXES, "total_q": {"type": "var"}}
    inputs = {"q_nope": spec(["total_q", "num_qo_heads", "head_dim_ckv"], "bfloat16"),
              "q_pe": spec(["total_q", "num_qo_heads", "head_dim_kpe"], "bfloat16"),
              **{n: MLA_INPUTS[n] for n in ("ckv_cache", "kpe_cache")}, "qo_indptr": spec(["len_indptr"], "int32"),
              **{n: MLA_INPUTS[n] for n in ("kv_indptr", "kv_indices", "sm_scale")}}
    outputs = {"output": spec(["total_q", "num_qo_heads", "head_dim_ckv"], "bfloat16"),
               "lse": spec(["total_q", "num_qo_heads"], "float32")}
    problem = problem_of(tmp_path, "mla_prefill", MLA_PREFILL, inputs, outputs, axes,
                         [{"batch_size": 3, "num_pages": 24, "num_kv_indices": 15, "total_q": 9}])
    match, solution = assert_passes(problem, {"block_m": 32, "block_n": 2})
    assert "MLA latent caches" in match.summary and "ragged queries, causal" in match.summary
    assert "qo_offsets=qo_indptr, causal=True)" in solution.sources[0].content


def test_mla_without_its_rope_part_is_refused(tmp_path):
    # the same signature, the decoupled RoPE key ignored: no MLA reading agrees
    reference = MLA_LOOPED.replace(" + q_pe[b].float() @ rope[tokens].T", "")
    family = FAMILIES["paged_attention"]
    assert family.match(problem_of(tmp_path, "not_mla", reference, MLA_INPUTS, MLA_OUT, MLA_AXES,
                                   [{"batch_size": 3, "num_pages": 30, "num_kv_indices": 24}])) is None
    assert "the attention outputs differ" in family.last_rejection


RAGGED_KEYS = '''import math
import torch


def get_inputs(axes, device):
    b = axes["batch_size"]
    q_lens, kv_lens = torch.tensor([2, 1, 4][:b]), torch.tensor([6, 1, 9][:b])
    qo, kv = torch.zeros(b + 1, dtype=torch.int32), torch.zeros(b + 1, dtype=torch.int32)
    qo[1:], kv[1:] = torch.cumsum(q_lens, 0), torch.cumsum(kv_lens, 0)
    return {"q": torch.randn(int(qo[-1]), 8, 32, dtype=torch.bfloat16),
            "k": torch.randn(int(kv[-1]), 2, 32, dtype=torch.bfloat16),
            "v": torch.randn(int(kv[-1]), 2, 32, dtype=torch.bfloat16), "qo_indptr": qo, "kv_indptr": kv,
            "sm_scale": 0.2}


@torch.no_grad()
def run(q, k, v, qo_indptr, kv_indptr, sm_scale):
    # FlashInfer-style ragged prefill: sequence b's queries and keys are row ranges, its queries its last tokens
    output = torch.zeros_like(q)
    lse = torch.full(q.shape[:2], -float("inf"))
    for b in range(qo_indptr.shape[0] - 1):
        q0, q1, k0, k1 = (int(x) for x in (qo_indptr[b], qo_indptr[b + 1], kv_indptr[b], kv_indptr[b + 1]))
        keys = k[k0:k1].float().repeat_interleave(4, 1)
        logits = torch.einsum("qhd,khd->qhk", q[q0:q1].float(), keys) * sm_scale
        later = torch.arange(k1 - k0)[None, :] > (k1 - k0 - (q1 - q0) + torch.arange(q1 - q0))[:, None]
        logits = logits.masked_fill(later[:, None, :], float("-inf"))
        lse[q0:q1] = torch.logsumexp(logits, -1) / math.log(2.0)
        output[q0:q1] = torch.einsum("qhk,khd->qhd", logits.softmax(-1), v[k0:k1].float().repeat_interleave(4, 1)).to(q.dtype)
    return output, lse
'''
PACKED = '''import torch


def get_inputs(axes, device):
    lens = torch.tensor([3, 1, 6])
    cu = torch.zeros(4, dtype=torch.int32)
    cu[1:] = torch.cumsum(lens, 0)
    return {"q": torch.randn(10, 8, 32, dtype=torch.bfloat16), "k": torch.randn(10, 2, 32, dtype=torch.bfloat16),
            "v": torch.randn(10, 2, 32, dtype=torch.bfloat16), "cu_seqlens": cu}


def run(q, k, v, cu_seqlens):
    # packed sequences, causal self-attention within each (a block-diagonal causal mask), 1/sqrt(D) scale
    rows = torch.arange(q.shape[0])
    sequence = torch.searchsorted(cu_seqlens[1:].long(), rows, right=True)
    visible = (sequence[:, None] == sequence[None, :]) & (rows[None, :] <= rows[:, None])
    scores = torch.einsum("qhd,khd->hqk", q.float(), k.float().repeat_interleave(4, 1)) / 32 ** 0.5
    probabilities = scores.masked_fill(~visible, float("-inf")).softmax(-1)
    return torch.einsum("hqk,khd->qhd", probabilities, v.float().repeat_interleave(4, 1)).to(q.dtype)
'''


@pytest.mark.parametrize("reference", ["flashinfer", "packed"])
def test_ragged_keys_of_a_varlen_prefill(tmp_path, reference):
    # keys and values not paged: [total_kv, Hkv, D] row ranges by their offsets (or the queries' own cu_seqlens)
    axes = {"batch_size": {"type": "var"}, "total_q": {"type": "var"}, "total_kv": {"type": "var"},
            "len_indptr": {"type": "expr", "expression": "batch_size + 1"}, "num_qo_heads": {"type": "const", "value": 8},
            "num_kv_heads": {"type": "const", "value": 2}, "head_dim": {"type": "const", "value": 32}}
    kv = "total_kv" if reference == "flashinfer" else "total_q"
    inputs = {"q": spec(["total_q", "num_qo_heads", "head_dim"], "bfloat16"),
              "k": spec([kv, "num_kv_heads", "head_dim"], "bfloat16"), "v": spec([kv, "num_kv_heads", "head_dim"], "bfloat16")}
    outputs = {"output": spec(["total_q", "num_qo_heads", "head_dim"], "bfloat16")}
    if reference == "flashinfer":
        inputs.update(qo_indptr=spec(["len_indptr"], "int32"), kv_indptr=spec(["len_indptr"], "int32"),
                      sm_scale=spec(None, "float32"))
        outputs["lse"] = spec(["total_q", "num_qo_heads"], "float32")
    else:
        inputs["cu_seqlens"] = spec(["len_indptr"], "int32")
    problem = problem_of(tmp_path, "ragged_" + reference, RAGGED_KEYS if reference == "flashinfer" else PACKED, inputs,
                         outputs, axes, [{"batch_size": 3, "total_q": 7 if reference == "flashinfer" else 10,
                                          "total_kv": 16}])
    match, solution = assert_passes(problem, {"block_m": 16, "block_n": 4})
    assert "ragged keys" in match.summary and "causal" in match.summary and "not causal" not in match.summary
    assert 'layout="ragged"' in solution.sources[0].content


CASCADE = '''import torch


def get_inputs(axes, device):
    b, pool, prefix = axes["batch_size"], axes["num_pages"], axes["prefix_len"]
    pages = torch.tensor([3, 1, 2][:b])
    indptr = torch.zeros(b + 1, dtype=torch.int32)
    indptr[1:] = torch.cumsum(pages, 0)
    return {"q": torch.randn(b, 8, 32, dtype=torch.bfloat16),
            "shared_k": torch.randn(prefix, 2, 32, dtype=torch.bfloat16),
            "shared_v": torch.randn(prefix, 2, 32, dtype=torch.bfloat16),
            "paged_k": torch.randn(pool, 2, 4, 32, dtype=torch.bfloat16),
            "paged_v": torch.randn(pool, 2, 4, 32, dtype=torch.bfloat16),
            "kv_indptr": indptr, "kv_indices": torch.randperm(pool)[:int(indptr[-1])].to(torch.int32),
            "kv_last_page_len": torch.tensor([2, 4, 1][:b], dtype=torch.int32), "sm_scale": 0.25}


@torch.no_grad()
def run(q, shared_k, shared_v, paged_k, paged_v, kv_indptr, kv_indices, kv_last_page_len, sm_scale):
    # a prefix all requests share, then each request's own pages (HND: [pages, heads, page_size, dim])
    out, lse = torch.empty_like(q), torch.empty(q.shape[:2])
    for b in range(q.shape[0]):
        pages = kv_indices[int(kv_indptr[b]):int(kv_indptr[b + 1])].long()
        n = (len(pages) - 1) * paged_k.shape[2] + int(kv_last_page_len[b])
        own_k = paged_k[pages].transpose(1, 2).reshape(-1, 2, 32)[:n]
        own_v = paged_v[pages].transpose(1, 2).reshape(-1, 2, 32)[:n]
        k = torch.cat([shared_k, own_k]).float().repeat_interleave(4, 1)
        v = torch.cat([shared_v, own_v]).float().repeat_interleave(4, 1)
        scores = torch.einsum("hd,thd->ht", q[b].float(), k) * sm_scale
        lse[b] = torch.logsumexp(scores, -1)
        out[b] = torch.einsum("ht,thd->hd", scores.softmax(-1), v).to(q.dtype)
    return out, lse
'''


@pytest.mark.parametrize("split", [1, 2])
def test_cascade_decode_over_a_shared_prefix_then_each_sequences_pages(tmp_path, split):
    # split 2: both levels split their keys and merge before the levels merge
    axes = {"batch_size": {"type": "var"}, "num_pages": {"type": "var"}, "num_kv_indices": {"type": "var"},
            "prefix_len": {"type": "var"}, "len_indptr": {"type": "expr", "expression": "batch_size + 1"},
            "page_size": {"type": "const", "value": 4}, "num_qo_heads": {"type": "const", "value": 8},
            "num_kv_heads": {"type": "const", "value": 2}, "head_dim": {"type": "const", "value": 32}}
    prefix = spec(["prefix_len", "num_kv_heads", "head_dim"], "bfloat16")
    paged = spec(["num_pages", "num_kv_heads", "page_size", "head_dim"], "bfloat16")
    inputs = {"q": CSR_INPUT_SPECS["q"], "shared_k": prefix, "shared_v": prefix, "paged_k": paged, "paged_v": paged,
              **{n: CSR_INPUT_SPECS[n] for n in ("kv_indptr", "kv_indices", "kv_last_page_len", "sm_scale")}}
    problem = problem_of(tmp_path, "cascade", CASCADE, inputs, ATTENTION_OUT, axes,
                         [{"batch_size": 3, "num_pages": 9, "num_kv_indices": 6, "prefix_len": 10}])
    match, solution = assert_passes(problem, {"block_n": 4, "split": split})
    assert "a shared prefix first (cascade)" in match.summary and "HND cache" in match.summary
    assert "_cascade_decode(q, shared_k, shared_v, paged_k, paged_v, kv_indices, kv_indptr" in \
        " ".join(solution.sources[0].content.split())


def test_a_prefix_the_reference_ignores_is_no_cascade(tmp_path):
    # the same signature, but the reference attends to the pages alone: every cascade reading disagrees
    wrong = CASCADE.replace("torch.cat([shared_k, own_k])", "own_k").replace("torch.cat([shared_v, own_v])", "own_v")
    prefix = spec(["prefix_len", "num_kv_heads", "head_dim"], "bfloat16")
    paged = spec(["num_pages", "num_kv_heads", "page_size", "head_dim"], "bfloat16")
    inputs = {"q": CSR_INPUT_SPECS["q"], "shared_k": prefix, "shared_v": prefix, "paged_k": paged, "paged_v": paged,
              **{n: CSR_INPUT_SPECS[n] for n in ("kv_indptr", "kv_indices", "kv_last_page_len", "sm_scale")}}
    axes = {**CSR_AXES, "prefix_len": {"type": "var"}}
    problem = problem_of(tmp_path, "not_cascade", wrong, inputs, ATTENTION_OUT, axes,
                         [{"batch_size": 3, "num_pages": 9, "num_kv_indices": 6, "prefix_len": 10}])
    family = FAMILIES["paged_attention"]
    assert family.match(problem) is None
    assert "the attention outputs differ" in family.last_rejection


@pytest.mark.parametrize("change, why", [
    ("scores = scores.masked_fill(~valid[:, None, None, :], float(\"-inf\"))", "the attention outputs differ"),
    ("torch.logsumexp(scores, -1)", "the LSE is neither natural nor base 2"),
])
def test_the_same_signature_computing_something_else_is_refused(tmp_path, change, why):
    # no length mask (padding tokens attend) / an LSE of other scores: the reference disagrees with every reading
    wrong = VECTORIZED.replace(change, "pass" if "masked_fill" in change else "torch.logsumexp(scores * 2, -1)")
    family = FAMILIES["paged_attention"]
    assert family.match(csr_problem(tmp_path, wrong, name="not_paged")) is None
    assert why in family.last_rejection


def paged_kernels(tmp_path, config):
    path = tmp_path / "paged_kernels.py"
    path.write_text(kernel_source(config))
    spec_ = importlib.util.spec_from_file_location("paged_kernels", path)
    module = importlib.util.module_from_spec(spec_)
    sys.modules["paged_kernels"] = module
    spec_.loader.exec_module(module)
    return module


@pytest.mark.parametrize("extras", [{"window": 3, "sinks": True}, {"alibi": True, "softcap": 2.0}])
def test_ragged_prefill_with_a_window_sinks_alibi_and_a_soft_cap(tmp_path, extras):
    # the prefill launcher packs a GQA group's heads into a program's rows: each head's own sink and slope must follow
    module = paged_kernels(tmp_path, {"block_m": 16, "block_n": 4, "num_warps": 4, "num_stages": 2, "split": 1})
    torch.manual_seed(3)
    k, v = torch.randn(9, 4, 2, 32), torch.randn(9, 4, 2, 32)
    queries, per_head = torch.tensor([0, 3, 4, 9], dtype=torch.int32), torch.rand(8) * 0.5
    values = {"q": torch.randn(9, 8, 32), "k": k, "v": v, "qo": queries, "offsets": torch.tensor([0, 2, 3, 6]),
              "table": torch.tensor([5, 1, 7, 0, 2, 8], dtype=torch.int32), "last": torch.tensor([3, 2, 4]),
              "scale": 0.3, "window": extras.get("window"), "sinks": per_head, "alibi": per_head,
              "softcap": extras.get("softcap")}
    roles = {"q": "q", "k_cache": "k", "v_cache": "v", "qo_offsets": "qo", "offsets": "offsets", "table": "table",
             "seq_lens": "last", "scale": "scale", **{role: role for role in ("window", "sinks", "alibi", "softcap")
                                                      if extras.get(role)}}
    want_out, want_lse = paged_decode_reference(Case(roles, "NHD", 0, True, values))
    out, lse = torch.empty(9, 8, 32), torch.empty(9, 8)
    module._paged_prefill(values["q"], k, v, queries, values["table"], values["offsets"].int(), values["last"].int(), 0.3,
                          out, lse, window=extras.get("window"), sinks=per_head if "sinks" in extras else None,
                          alibi=per_head if "alibi" in extras else None, softcap=extras.get("softcap", 0.0))
    assert torch.allclose(out, want_out, atol=1e-4) and torch.allclose(lse, want_lse, atol=1e-4)


def test_a_sequence_without_tokens_gives_zeros_and_minus_infinity(tmp_path):
    module = paged_kernels(tmp_path, {"block_m": 16, "block_n": 16, "num_warps": 4, "num_stages": 2, "split": 2})
    q = torch.randn(2, 4, 32)
    k, v = torch.randn(6, 4, 2, 32), torch.randn(6, 4, 2, 32)
    out, lse = torch.full_like(q, float("nan")), torch.full((2, 4), float("nan"))
    module._paged_decode(q, k, v, torch.tensor([3, 1, 4], dtype=torch.int32), torch.tensor([0, 0, 3], dtype=torch.int32),
                         torch.tensor([1, 2], dtype=torch.int32), 0.25, out, lse)
    assert torch.equal(out[0], torch.zeros(4, 32)) and torch.isinf(lse[0]).all() and (lse[0] < 0).all()
    tokens = torch.cat([k[3], k[1], k[4, :2]]).repeat_interleave(2, 1)        # 2 full pages and 2 of the last
    values = torch.cat([v[3], v[1], v[4, :2]]).repeat_interleave(2, 1)
    scores = torch.einsum("hd,thd->ht", q[1], tokens) * 0.25
    assert torch.allclose(out[1], torch.einsum("ht,thd->hd", scores.softmax(-1), values), atol=1e-4)
    assert torch.allclose(lse[1], torch.logsumexp(scores, -1), atol=1e-4)
