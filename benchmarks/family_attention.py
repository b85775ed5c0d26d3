"""The attention family's flash kernel on a GPU, beside SDPA (flash backend) and torch.compile, in bf16.

    PYTHONPATH=. python3 benchmarks/family_attention.py OUT_DIR [--configs 4] [--budget-s 300]
    PYTHONPATH=. python3 benchmarks/family_attention.py OUT_DIR --dry-run     # CPU interpreter, tiny shapes

Shapes (batch, q heads, kv heads, q_len, kv_len, head_dim, causal) of Llama-class models: decode (one query
against a long KV cache, GQA; memory-bound: the kernel splits the keys across programs), prefill (causal GQA,
2K-8K tokens), training-size forward (causal MHA, 4K tokens, batch 8) and sliding-window prefill (Mistral's 4096
window over 8K tokens, gpt-oss's 128 over 4K: the band a recognised position mask lowers to, beside the same
kernel reading the band as a stored boolean mask, which is what such a mask cost before), ALiBi prefill (BLOOM's
slopes, causal; beside the kernel reading the bias as a stored additive mask) and gpt-oss decode with sinks (GQA
heads packed per program; SDPA, which has no sinks, timed without them). For each: ours (the template rendered at
the first `--configs` tile configurations of the family's space, best kept), SDPA restricted to the flash backend
(the default backends where flash refuses, named in the row), and torch.compile of softmax(q k^T * scale + mask) v
(skipped once `--budget-s` has passed), each timed by triton.testing.do_bench and checked against SDPA. Reported:
TFLOP/s (4 * visible (query, key) pairs * head_dim per head), % of the H100 dense bf16 peak (989 TFLOP/s; the
H200's is the same) and % of the roofline bound max(FLOPs / peak, bytes / DRAM bandwidth) (roofline.DATASHEETS).
Writes OUT_DIR/family_attention.{md,json}.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
from pathlib import Path

if "--dry-run" in sys.argv:
    os.environ.setdefault("TRITON_INTERPRET", "1")   # before triton is imported

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from kernelbench.generate.families.attention import TILES, kernel_source
from report import Report, arguments, bench_ms, keep_fastest, number, ours_cell
from roofline import DATASHEETS

# (regime, batch, q heads, kv heads, q_len, kv_len, head_dim, causal: False, True or a window size (causal band))
SHAPES = [("decode", 16, 32, 8, 1, 4096, 128, False), ("decode", 4, 32, 8, 1, 32768, 128, False),
          ("decode", 64, 64, 8, 1, 2048, 128, False),
          ("prefill", 1, 32, 8, 2048, 2048, 128, True), ("prefill", 2, 32, 8, 4096, 4096, 128, True),
          ("prefill", 1, 64, 8, 8192, 8192, 128, True),
          ("training", 8, 32, 32, 4096, 4096, 128, True), ("training", 4, 16, 16, 4096, 4096, 64, True),
          ("window", 1, 32, 8, 8192, 8192, 128, 4096), ("window", 1, 64, 8, 4096, 4096, 64, 128),
          ("alibi", 2, 32, 32, 2048, 2048, 128, True), ("sinks", 16, 64, 8, 1, 8192, 64, False)]
DRY_SHAPES = [("decode", 2, 4, 2, 1, 40, 32, False), ("prefill", 1, 4, 2, 24, 24, 32, True),
              ("window", 1, 4, 2, 40, 40, 32, 8), ("alibi", 1, 4, 4, 24, 24, 32, True),
              ("sinks", 2, 8, 2, 1, 40, 32, False)]


def kernels(config: dict, directory: Path):
    """The template's kernels and launchers rendered for one tile configuration, as a module."""
    name = "attention_" + "_".join(str(v) for v in config.values())
    path = directory / f"{name}.py"
    path.write_text(kernel_source(config))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def visible_pairs(q_len: int, kv_len: int, causal: bool | int) -> int:
    """(query, key) pairs a causal (top-left, SDPA's is_causal), windowed (the last `causal` keys up to the
    diagonal) or full attention computes."""
    if causal is False:
        return q_len * kv_len
    reach = kv_len if causal is True else causal
    return sum(min(i + 1, kv_len, reach) for i in range(q_len))


def options(regime: str, heads: int, q_len: int, kv_len: int, causal: bool | int, device) -> tuple[dict, object]:
    """(the kernel's options, the mask SDPA gets: a window's band (True = visible), ALiBi's bias, or None)."""
    i = torch.arange(q_len, device=device).view(-1, 1)
    j = torch.arange(kv_len, device=device).view(1, -1)
    if regime == "alibi":
        slopes = torch.tensor([2.0 ** (-8.0 * (n + 1) / heads) for n in range(heads)], device=device)
        bias = (slopes.view(heads, 1, 1) * (j - i)).masked_fill(j > i, float("-inf"))
        return {"causal": "top", "alibi": slopes}, bias
    if regime == "sinks":
        return {"sinks": torch.randn(heads, 1, device=device)}, None
    if isinstance(causal, bool):
        return {}, None
    return {"causal": "top", "window": causal}, (j <= i) & (j > i - causal)


def ours(module, q, k, v, causal, extra: dict, mask=None):
    """The family's launcher: SDPA's entry for causal / full rows, the kernel's options (or the stored `mask`)
    for the others."""
    if mask is not None:
        return module._flash_attention(q, k, v, mask)
    if not extra:
        return module._attention(q, k, v, is_causal=causal, enable_gqa=True)
    return module._flash_attention(q, k, v, **extra)


def with_sinks(q, k, v, sinks):
    """softmax([q k^T * scale, sink]) without the sink's column, times v, in fp32."""
    group = q.shape[1] // k.shape[1]
    scores = q.float() @ k.float().repeat_interleave(group, 1).transpose(-1, -2) * q.shape[-1] ** -0.5
    scores = torch.cat((scores, sinks.float().view(1, -1, 1, 1).expand(*scores.shape[:-1], 1)), -1)
    return torch.softmax(scores, -1)[..., :-1] @ v.float().repeat_interleave(group, 1)


def sdpa(q, k, v, causal, mask=None):
    """SDPA on its flash backend (the default backends where flash refuses enable_gqa or a mask)."""
    causal = causal is True and mask is None
    if mask is not None and mask.is_floating_point():   # SDPA takes a float mask of the query's dtype only
        mask = mask.to(q.dtype)
    try:
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
            torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                                             enable_gqa=True)
        backend = [SDPBackend.FLASH_ATTENTION]
        name = "flash"
    except RuntimeError:
        backend, name = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION,
                         SDPBackend.MATH], "default"

    def call():
        with sdpa_kernel(backend):
            return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                                                    enable_gqa=True)
    return call, name


def math_attention(q, k, v, causal: bool, mask=None):
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)
    scores = (q @ k.transpose(-1, -2)).float() * q.shape[-1] ** -0.5
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    elif causal:
        rows, cols = scores.shape[-2:]
        scores = scores.masked_fill(torch.ones(rows, cols, dtype=torch.bool, device=q.device).triu(1), float("-inf"))
    return (torch.softmax(scores, -1).to(v.dtype) @ v)


def measure(args, directory: Path, report: Report) -> None:
    shapes = DRY_SHAPES if args.dry_run else SHAPES
    device = "cpu" if args.dry_run else "cuda"
    hardware = DATASHEETS["H200" if not args.dry_run and "H200" in torch.cuda.get_device_name() else "H100"]
    peak, bandwidth = hardware.tensor["bf16"], hardware.dram_bandwidth
    configs = [dict(zip(("block_m", "block_n", "num_warps", "num_stages", "split"), t)) for t in TILES]
    modules = [kernels(c, directory) for c in configs[:args.configs]]
    started = time.monotonic()
    for regime, batch, heads, kv_heads, q_len, kv_len, head_dim, causal in shapes:
        torch.manual_seed(0)
        q = torch.randn(batch, heads, q_len, head_dim, device=device, dtype=torch.bfloat16)
        k = torch.randn(batch, kv_heads, kv_len, head_dim, device=device, dtype=torch.bfloat16)
        v = torch.randn(batch, kv_heads, kv_len, head_dim, device=device, dtype=torch.bfloat16)
        extra, mask = options(regime, heads, q_len, kv_len, causal, device)
        if "sinks" in extra:
            expected = with_sinks(q, k, v, extra["sinks"])
        else:
            expected = torch.nn.functional.scaled_dot_product_attention(
                q.float(), k.float(), v.float(), attn_mask=mask, is_causal=causal is True and mask is None,
                enable_gqa=True)
        flops = 4.0 * batch * heads * visible_pairs(q_len, kv_len, causal) * head_dim
        moved = 2 * (q.numel() * 2 + k.numel() + v.numel())
        bound_ms = max(flops / peak, moved / bandwidth) * 1e3
        row = {"regime": regime, "shape": [batch, heads, kv_heads, q_len, kv_len, head_dim], "causal": causal,
               "ours": {}, "errors": {}, "bound_ms": bound_ms}
        for config, module in zip(configs, modules):
            name = json.dumps(config, sort_keys=True)
            try:
                out = ours(module, q, k, v, causal, extra)
            except Exception as exc:  # noqa: BLE001 - e.g. out of shared memory: recorded, the others go on
                row["errors"][name] = f"{type(exc).__name__}: {str(exc)[:120]}"
                continue
            error = (out.float() - expected).abs().max().item()
            if error > 2e-2:
                row["errors"][name] = f"max error {error:.3g}"
                continue
            row["ours"][name] = bench_ms(lambda m=module: ours(m, q, k, v, causal, extra), args.dry_run)
        if mask is not None and modules:   # the same kernel reading the band / bias as a stored mask
            stored = ours(modules[0], q, k, v, causal, extra, mask)
            row["stored_mask_error"] = (stored.float() - expected).abs().max().item()
            row["stored_mask_ms"] = bench_ms(lambda: ours(modules[0], q, k, v, causal, extra, mask), args.dry_run)
        if not args.dry_run:
            call, row["sdpa_backend"] = sdpa(q, k, v, causal, mask)
            row["sdpa_backend"] += ", no sinks" if "sinks" in extra else ""
            row["sdpa_ms"] = bench_ms(call, False)
            if not args.no_compile and time.monotonic() - started < args.budget_s:
                if "sinks" in extra:
                    compiled = torch.compile(with_sinks, dynamic=False)
                    arguments = (q, k, v, extra["sinks"])
                else:
                    compiled = torch.compile(math_attention, dynamic=False)
                    arguments = (q, k, v, causal, mask)
                compiled(*arguments)
                row["compile_ms"] = bench_ms(lambda: compiled(*arguments), False)
                torch._dynamo.reset()
        for key in ("sdpa_ms", "compile_ms"):
            if row.get(key):
                row[key.replace("_ms", "_tflops")] = flops / row[key] / 1e9
        ms = keep_fastest(row)
        if ms is not None:
            row.update(ours_tflops=flops / ms / 1e9, ours_peak=flops / peak / (ms / 1e3), ours_bound=bound_ms / ms)
        report.add(row)


def markdown(header: str, rows: list[dict]) -> str:
    lines = [header, "", "| regime | B, Hq, Hkv, Lq, Lkv, D | causal | ours (ms) | ours TFLOP/s | % of peak | "
             "% of roofline bound | SDPA TFLOP/s (backend) | compile TFLOP/s | ours / SDPA | stored mask (ms, first "
             "config) | best config |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = r["sdpa_ms"] / r["ours_ms"] if r.get("ours_ms") and r.get("sdpa_ms") else None
        ours = ours_cell(r)
        lines.append(f"| {r['regime']} | {r['shape']} | {r['causal']} | {ours} | {number(r.get('ours_tflops'), '.1f')} | "
                     f"{number(r.get('ours_peak'), '.1%')} | {number(r.get('ours_bound'), '.1%')} | "
                     f"{number(r.get('sdpa_tflops'), '.1f')} ({r.get('sdpa_backend', '-')}) | "
                     f"{number(r.get('compile_tflops'), '.1f')} | {number(ratio, '.2f')} | "
                     f"{number(r.get('stored_mask_ms'), '.4f')} | {r.get('best_config', '-')} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = arguments(__doc__, configs=4, budget_s=300.0)
    args = parser.parse_args()
    report = Report(args.out, "family_attention", "attention family", args.dry_run)
    scratch = args.out / "kernels"
    scratch.mkdir(exist_ok=True)
    measure(args, scratch, report)
    report.finish(markdown(report.heading, report.rows))
    failed = [r for r in report.rows if not r["ours"]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
