"""The paged_attention family's kernels on a GPU, beside gathering the pages then SDPA, and torch.compile of that.

    PYTHONPATH=. python3 benchmarks/family_paged_attention.py OUT_DIR [--configs 3] [--budget-s 200]
    PYTHONPATH=. python3 benchmarks/family_paged_attention.py OUT_DIR --dry-run     # CPU interpreter, tiny shapes

Decode (one query token per sequence), speculative verification (each sequence's last 4 tokens, causal, a
[B, 4, H, D] query) and prefill (the last 512 tokens of each sequence, causal, ragged) against a paged bf16 KV cache
(NHD), sequence lengths spread +-50% around the mean, pages shuffled in the pool: Llama-3-8B-like GQA (32 / 8 heads,
page size 16) at batch 1, 16 and 64, Falcon-7B's MQA (71 / 1 heads, head_dim 64, page size 1), a vLLM block table
(40 / 8 heads, page size 64), Llama-3-70B's verification (64 / 8 heads, page size 32), a chunked prefill over pages
and over ragged keys (varlen), MLA
decode (DeepSeek-V3's 128 heads over a 512 + 64 latent cache, page size 64; FlashInfer's 16-head page size 1), and
cascade decode (Qwen2-7B's 28 / 4 heads: a 4096-token prefix every sequence shares, stored once, then each sequence's
own pages). Ours: the kernel (`_paged_decode` / `_paged_prefill` / `_mla_attention` / `_cascade_decode`,
templates/attention.py.j2) at the first `--configs` configurations of the family's space, best kept, reading the page
table in the kernel. The PyTorch way: gather each sequence's pages into a padded
[B, T, Hkv, D] copy, then SDPA with a length (and causal) mask (enable_gqa); and torch.compile of that (skipped
once `--budget-s` has passed). Each timed by triton.testing.do_bench, checked against fp32 math. Reported: GB/s of
the bytes attention must move (the queries, every valid key and value token, the outputs), % of the DRAM bandwidth
(roofline.DATASHEETS), TFLOP/s (4 * head_dim per visible (query, key) pair and head), and ours against each
baseline. Writes OUT_DIR/family_paged_attention.{md,json}.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

if "--dry-run" in sys.argv:
    os.environ.setdefault("TRITON_INTERPRET", "1")   # before triton is imported

import torch
from family_attention import kernels
from report import Report, bench_ms, keep_fastest, number, ours_cell, shapes_main, times

from kernelbench.generate.families.paged_attention import MLA_TILES, TILES, rows_a_program
from roofline import DATASHEETS

# (label, batch, q heads, kv heads, head_dim, page size, mean tokens per sequence, page table: "csr" or "table",
#  new tokens per sequence: the sequence's last ones, a [B, T, H, D] query to _paged_decode ("decode") or ragged rows
#  to _paged_prefill ("prefill"; "ragged": its keys unpaged [total_kv, Hkv, D], page size 1 here); "mla": head_dim is
#  the latent C plus MLA_ROPE, one latent head, values the C part; "cascade": CASCADE_PREFIX shared tokens first)
SHAPES = [("llama3-8b decode, batch 1", 1, 32, 8, 128, 16, 4096, "csr", 1, "decode"),
          ("llama3-8b decode, batch 16", 16, 32, 8, 128, 16, 4096, "csr", 1, "decode"),
          ("llama3-8b decode, batch 64", 64, 32, 8, 128, 16, 2048, "csr", 1, "decode"),
          ("falcon-7b MQA, page size 1", 32, 71, 1, 64, 1, 2048, "csr", 1, "decode"),
          ("qwen2-14b block table, page size 64", 32, 40, 8, 128, 64, 4096, "table", 1, "decode"),
          ("llama3-70b speculative verify, 4 tokens, batch 8", 8, 64, 8, 128, 32, 4096, "csr", 4, "decode"),
          ("llama3-70b speculative verify, 4 tokens, batch 64", 64, 64, 8, 128, 32, 2048, "csr", 4, "decode"),
          ("llama3-8b chunked prefill, 512 new tokens", 4, 32, 8, 128, 16, 4096, "csr", 512, "prefill"),
          ("llama3-8b varlen prefill (ragged keys), 512 new tokens", 4, 32, 8, 128, 1, 4096, "csr", 512, "ragged"),
          ("deepseek-v3 MLA decode, batch 32", 32, 128, 1, 576, 64, 2048, "table", 1, "mla"),
          ("MLA decode, 16 heads, page size 1, batch 64", 64, 16, 1, 576, 1, 2048, "csr", 1, "mla"),
          ("qwen2-7b cascade decode, shared prefix, batch 64", 64, 28, 4, 128, 16, 512, "csr", 1, "cascade")]
MLA_ROPE = 64
CASCADE_PREFIX = {False: 4096, True: 8}   # by --dry-run
DRY_SHAPES = [("csr", 2, 8, 2, 32, 4, 24, "csr", 1, "decode"), ("table", 3, 4, 4, 32, 8, 20, "table", 1, "decode"),
              ("verify", 2, 8, 2, 32, 4, 24, "csr", 3, "decode"), ("prefill", 2, 8, 2, 32, 4, 24, "csr", 5, "prefill"),
              ("ragged", 2, 8, 2, 32, 1, 24, "csr", 5, "ragged"), ("mla", 2, 16, 1, 32 + MLA_ROPE, 4, 24, "csr", 1, "mla"),
              ("cascade", 3, 8, 2, 32, 4, 12, "csr", 1, "cascade")]


def paged_inputs(batch, heads, kv_heads, head_dim, page_size, mean_tokens, new, device):
    """q ([batch * new, heads, head_dim]), the caches, per-sequence lengths and page lists (a shuffled pool)."""
    lengths = (mean_tokens * (0.5 + torch.rand(batch))).long().clamp(min=new)
    pages = [-(-int(n) // page_size) for n in lengths]
    pool = torch.randperm(sum(pages) + 8)
    q = torch.randn(batch * new, heads, head_dim, device=device, dtype=torch.bfloat16)
    k_cache = torch.randn(len(pool), page_size, kv_heads, head_dim, device=device, dtype=torch.bfloat16)
    v_cache = torch.randn_like(k_cache)
    starts = torch.tensor([0] + pages).cumsum(0)
    lists = [pool[int(starts[b]):int(starts[b + 1])] for b in range(batch)]
    return q, k_cache, v_cache, lengths.to(device), lists


def gathered(q, k_cache, v_cache, table, lengths):
    """The PyTorch way: each sequence's pages gathered into a padded copy, then SDPA with a mask of each sequence's
    length and, for its T new tokens (its last ones), causality."""
    batch, kv_heads, head_dim = table.shape[0], k_cache.shape[2], k_cache.shape[3]
    new = q.shape[0] // batch
    k = k_cache[table].reshape(batch, -1, kv_heads, head_dim).transpose(1, 2)
    v = v_cache[table].reshape(batch, -1, kv_heads, v_cache.shape[3]).transpose(1, 2)
    keys = torch.arange(k.shape[2], device=q.device).view(1, 1, -1)
    positions = lengths.view(-1, 1, 1) - new + torch.arange(new, device=q.device).view(1, -1, 1)
    mask = (keys < lengths.view(-1, 1, 1)) & (keys <= positions)
    queries = q.view(batch, new, q.shape[1], head_dim).transpose(1, 2)
    out = torch.nn.functional.scaled_dot_product_attention(queries, k, v, attn_mask=mask.unsqueeze(1), enable_gqa=True)
    return out.transpose(1, 2).reshape(q.shape[0], q.shape[1], -1)


def measure(args, report: Report) -> None:
    shapes = [s for s in (DRY_SHAPES if args.dry_run else SHAPES) if not args.only or any(o in s[0] for o in args.only)]
    device = "cpu" if args.dry_run else "cuda"
    bandwidth = DATASHEETS["H200" if not args.dry_run and "H200" in torch.cuda.get_device_name() else "H100"].dram_bandwidth
    started = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix="paged_kernels_"))   # not under OUT: only the report comes back
    for label, batch, heads, kv_heads, head_dim, page_size, mean_tokens, kind, new, launcher in shapes:
        torch.manual_seed(0)
        q, k_cache, v_cache, lengths, lists = paged_inputs(batch, heads, kv_heads, head_dim, page_size, mean_tokens,
                                                           new, device)
        own_lengths, seen = lengths, lists   # a cascade's own tokens; the pages each query sees (the prefix's first)
        if launcher == "cascade":   # the prefix as whole pages at the pool's end, shared by every sequence
            prefix_ids = torch.arange(k_cache.shape[0], k_cache.shape[0] + CASCADE_PREFIX[args.dry_run] // page_size)
            k_cache, v_cache = (torch.cat([c, torch.randn(len(prefix_ids), *c.shape[1:], device=device,
                                                          dtype=c.dtype)]) for c in (k_cache, v_cache))
            prefix_k, prefix_v = (c[prefix_ids.to(device)].flatten(0, 1) for c in (k_cache, v_cache))
            seen, lengths = [torch.cat([prefix_ids, p]) for p in lists], lengths + CASCADE_PREFIX[args.dry_run]
        width = max(len(p) for p in seen)
        padded = torch.zeros(batch, width, dtype=torch.int32)
        for b, p in enumerate(seen):
            padded[b, :len(p)] = p
        padded = padded.to(device)
        if kind == "csr":
            table = torch.cat(lists).to(torch.int32).to(device)
            offsets = torch.tensor([0] + [len(p) for p in lists]).cumsum(0).to(torch.int32).to(device)
            last = (own_lengths - (torch.tensor([len(p) for p in lists], device=device) - 1) * page_size).to(torch.int32)
            paging = (table, offsets, last)
        else:
            paging = (padded, None, own_lengths.to(torch.int32))
        if launcher == "ragged":
            ragged_k, ragged_v = k_cache[paging[0].long()].squeeze(1), v_cache[paging[0].long()].squeeze(1)
        value_dim = head_dim - MLA_ROPE if launcher == "mla" else head_dim
        if launcher == "mla":   # the latent cache [ckv | kpe]: keys all of it, values its ckv part
            v_cache = k_cache[..., :value_dim]
        expected = gathered(q.float(), k_cache.float(), v_cache.float(), padded.long(), lengths)
        stored = int(own_lengths.sum()) + (CASCADE_PREFIX[args.dry_run] if launcher == "cascade" else 0)
        moved = (q.numel() * 2 + q.shape[0] * heads * value_dim * 2
                 + stored * kv_heads * (head_dim + (value_dim if launcher != "mla" else 0)) * 2)
        pairs = sum(int(n) * new - new * (new - 1) // 2 for n in lengths)   # causal: query i sees n - new + i + 1
        row = {"shape": label, "dims": [batch, heads, kv_heads, head_dim, page_size, mean_tokens, kind, new, launcher],
               "ours": {}, "errors": {}, "bytes": moved, "flops": 2.0 * heads * (head_dim + value_dim) * pairs}
        out = torch.empty(q.shape[0], heads, value_dim, device=device, dtype=q.dtype)
        lse = torch.empty(q.shape[0], heads, device=device)
        scale = head_dim ** -0.5
        query_offsets = (torch.arange(batch + 1) * new).to(torch.int32).to(device)
        for tiles in (MLA_TILES if launcher == "mla" else TILES)[:args.configs]:
            rows = rows_a_program("prefill" if launcher == "ragged" else launcher, new * heads // kv_heads)
            config = {"block_m": rows, **dict(zip(("block_n", "num_warps", "num_stages", "split"), tiles))}
            name = json.dumps(config, sort_keys=True)
            module = kernels(config, scratch)

            def ours(m=module):
                if launcher == "prefill":
                    m._paged_prefill(q, k_cache, v_cache, query_offsets, *paging, scale, out, lse)
                elif launcher == "ragged":   # the pages (of one token) copied into sequence order: varlen keys
                    m._paged_prefill(q, ragged_k, ragged_v, query_offsets, None, paging[1], None, scale, out, lse,
                                     layout="ragged")
                elif launcher == "cascade":
                    m._cascade_decode(q, prefix_k, prefix_v, k_cache, v_cache, *paging, scale, out, lse)
                elif launcher == "mla":
                    m._mla_attention(q[..., :value_dim], q[..., value_dim:], k_cache[:, :, 0, :value_dim],
                                     k_cache[:, :, 0, value_dim:], *paging, scale, out, lse)
                else:   # [B, T, H, D]: T queries a sequence (T = 1: [B, H, D])
                    shape = (batch, new) if new > 1 else (batch,)
                    m._paged_decode(q.view(*shape, heads, head_dim), k_cache, v_cache, *paging, scale,
                                    out.view(*shape, heads, -1), lse.view(*shape, heads))
            try:
                ours()
            except Exception as exc:  # noqa: BLE001 - one configuration's failure is recorded, the others go on
                row["errors"][name] = f"{type(exc).__name__}: {str(exc)[:120]}"
                continue
            error = (out.float() - expected).abs().max().item()
            if error > 2e-2:
                row["errors"][name] = f"max error {error:.3g}"
                continue
            row["ours"][name] = bench_ms(ours, args.dry_run)
        if not args.dry_run:
            row["gather_sdpa_ms"] = bench_ms(lambda: gathered(q, k_cache, v_cache, padded, lengths), False)
            if not args.no_compile and time.monotonic() - started < args.budget_s:
                compiled = torch.compile(gathered, dynamic=False)
                compiled(q, k_cache, v_cache, padded, lengths)
                row["compile_ms"] = bench_ms(lambda: compiled(q, k_cache, v_cache, padded, lengths), False)
                torch._dynamo.reset()
        ms = keep_fastest(row)
        if ms is not None:
            row.update(ours_gbs=moved / ms / 1e6, ours_bandwidth=moved / bandwidth / (ms / 1e3),
                       ours_tflops=row["flops"] / ms / 1e9)
        for key in ("gather_sdpa_ms", "compile_ms"):
            if row.get(key) and row.get("ours_ms"):
                row[key.replace("_ms", "_speedup")] = row[key] / row["ours_ms"]
        report.add(row)


def markdown(header: str, rows: list[dict]) -> str:
    lines = [header, "", "| shape | B, Hq, Hkv, D, page size, mean tokens, table, new tokens, launcher | ours (ms) | ours GB/s | "
             "% of DRAM bandwidth | ours TFLOP/s | gather + SDPA (ms) | compile (ms) | ours vs gather + SDPA | "
             "ours vs compile | best config |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['shape']} | {r['dims']} | {ours_cell(r)} | {number(r.get('ours_gbs'), '.0f')} | "
                     f"{number(r.get('ours_bandwidth'), '.1%')} | {number(r.get('ours_tflops'), '.1f')} | "
                     f"{number(r.get('gather_sdpa_ms'), '.4f')} | "
                     f"{number(r.get('compile_ms'), '.4f')} | {times(r.get('gather_sdpa_speedup'))} | "
                     f"{times(r.get('compile_speedup'))} | {r.get('best_config', '-')} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    return shapes_main(__doc__, "family_paged_attention", "paged_attention family", measure, markdown)


if __name__ == "__main__":
    sys.exit(main())
