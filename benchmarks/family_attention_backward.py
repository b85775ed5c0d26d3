"""The attention_backward family's FA2 backward on a GPU, beside SDPA's backward and the closed form a reference
computes (eager and torch.compile), in bf16.

    PYTHONPATH=. python3 benchmarks/family_attention_backward.py OUT_DIR [--configs 3] [--budget-s 200]
    PYTHONPATH=. python3 benchmarks/family_attention_backward.py OUT_DIR --dry-run     # CPU interpreter, tiny shapes

Shapes ([B, S, H, D] bf16) of training steps: Llama-3-8B (causal GQA 32 / 8 heads, D 128) at 4K tokens and at
2K x 4, an MHA model (16 heads, D 64, not causal, 4K x 2), Gemma-2-9B (16 / 8 heads, D 256, soft cap 50, causal)
and gpt-oss-20b (64 / 8 heads, D 64, a 128-token window and sinks, 2K x 2). Ours: `_attention_backward`
(templates/attention_backward.py.j2) over the saved output and LSE at the first `--configs` configurations of the
family's space, best kept, and the same with the forward recomputed first (`_paged_prefill`), as a problem without
saved tensors runs. SDPA (plain causal or full attention only): the autograd backward of
F.scaled_dot_product_attention (enable_gqa), timed as forward + backward minus its forward. The closed form: FA2's
formulas in fp32 over [B, H, S, S] probabilities (what tasks235's references compute), eager and torch.compile
(skipped once `--budget-s` has passed). Every result is checked against fp32 autograd of the forward. Reported:
TFLOP/s of the backward (5 products of 2 D FLOPs per visible (query, key) pair and query head; recomputed: 7),
% of the dense bf16 peak (roofline.DATASHEETS), and ours against each baseline. Writes
OUT_DIR/family_attention_backward.{md,json}.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

if "--dry-run" in sys.argv:
    os.environ.setdefault("TRITON_INTERPRET", "1")   # before triton is imported

import torch
from family_attention import visible_pairs
from report import Report, bench_ms, keep_fastest, number, ours_cell, shapes_main, times

from kernelbench.generate.families.attention_backward import TILES, WIDE_TILES, kernel_source
from roofline import DATASHEETS
from templates import LEAN_LAUNCH_FILE, lean_launch_source

# (label, batch, q heads, kv heads, seq, head_dim, causal, soft cap, window, sinks)
SHAPES = [("llama3-8b, 4K tokens", 1, 32, 8, 4096, 128, True, 0.0, 0, False),
          ("llama3-8b, 2K x 4", 4, 32, 8, 2048, 128, True, 0.0, 0, False),
          ("MHA D 64, not causal, 4K x 2", 2, 16, 16, 4096, 64, False, 0.0, 0, False),
          ("gemma-2-9b, soft cap 50, 2K x 2", 2, 16, 8, 2048, 256, True, 50.0, 0, False),
          ("gpt-oss-20b, window 128 + sinks, 2K x 2", 2, 64, 8, 2048, 64, True, 0.0, 128, True)]
DRY_SHAPES = [("causal GQA", 2, 4, 2, 24, 32, True, 0.0, 0, False),
              ("cap, window, sinks", 1, 4, 2, 24, 32, True, 20.0, 5, True)]


def kernels(config: dict, directory: Path):
    """The template's kernels and launchers for one configuration, as a module (lean_launch beside it)."""
    name = "attention_backward_" + "_".join(str(v) for v in config.values())
    (directory / LEAN_LAUNCH_FILE).write_text(lean_launch_source())
    path = directory / f"{name}.py"
    path.write_text(kernel_source(config))
    sys.path.insert(0, str(directory))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def visibility(seq: int, causal: bool, window: int, device) -> torch.Tensor:
    i, j = torch.arange(seq, device=device).view(-1, 1), torch.arange(seq, device=device).view(1, -1)
    visible = (j <= i) if causal else torch.ones(seq, seq, dtype=torch.bool, device=device)
    return visible & (j > i - window) if window else visible


def scores_of(q, k, scale, softcap):
    """[B, H, S, S] fp32 scores, capped (GQA: the key heads repeated)."""
    group = q.shape[2] // k.shape[2]
    s = torch.einsum("bihd,bjhd->bhij", q.float(), k.float().repeat_interleave(group, 2)) * scale
    return softcap * torch.tanh(s / softcap) if softcap else s


def forward(q, k, v, scale, softcap, visible, sinks):
    """fp32 (out [B, S, H, D], natural LSE [B, H, S]), differentiable."""
    s = scores_of(q, k, scale, softcap).masked_fill(~visible, float("-inf"))
    if sinks is not None:
        sink = sinks.float().view(1, -1, 1, 1).expand(s.shape[0], -1, s.shape[2], 1)
        lse = torch.logsumexp(torch.cat([s, sink], -1), -1)
    else:
        lse = torch.logsumexp(s, -1)
    group = q.shape[2] // k.shape[2]
    out = torch.einsum("bhij,bjhd->bihd", torch.exp(s - lse[..., None]), v.float().repeat_interleave(group, 2))
    return out, lse


def closed_form(q, k, v, out, lse, do, scale, softcap, visible):
    """FA2's backward in fp32 over the [B, H, S, S] probabilities (a reference's way)."""
    group = q.shape[2] // k.shape[2]
    raw = scores_of(q, k, scale, 0.0)
    capped = softcap * torch.tanh(raw / softcap) if softcap else raw
    p = torch.exp(capped - lse[..., None]).masked_fill(~visible, 0.0)
    dof = do.float()
    dv = torch.einsum("bhij,bihd->bjhd", p, dof)
    ds = p * (torch.einsum("bihd,bjhd->bhij", dof, v.float().repeat_interleave(group, 2))
              - (dof * out.float()).sum(-1).transpose(1, 2)[..., None])
    if softcap:
        ds = ds * (1 - torch.tanh(raw / softcap) ** 2)
    dq = torch.einsum("bhij,bjhd->bihd", ds, k.float().repeat_interleave(group, 2)) * scale
    dk = torch.einsum("bhij,bihd->bjhd", ds, q.float()) * scale

    def fold(x):
        return x.unflatten(2, (-1, group)).sum(3)
    return dq, fold(dk), fold(dv)


def measure(args, report: Report) -> None:
    shapes = [s for s in (DRY_SHAPES if args.dry_run else SHAPES) if not args.only or any(o in s[0] for o in args.only)]
    device = "cpu" if args.dry_run else "cuda"
    peak = DATASHEETS["H200" if not args.dry_run and "H200" in torch.cuda.get_device_name() else "H100"].tensor["bf16"]
    started = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix="attention_backward_"))   # not under OUT: only the report comes back
    for label, batch, heads, kv_heads, seq, head_dim, causal, softcap, window, with_sinks in shapes:
        torch.manual_seed(0)
        q, do = (torch.randn(batch, seq, heads, head_dim, device=device, dtype=torch.bfloat16) for _ in range(2))
        k, v = (torch.randn(batch, seq, kv_heads, head_dim, device=device, dtype=torch.bfloat16) for _ in range(2))
        sinks = torch.rand(heads, device=device) * 2 if with_sinks else None
        scale, visible = head_dim ** -0.5, visibility(seq, causal, window, device)
        leaves = [x.float().requires_grad_() for x in (q, k, v)]
        out, lse = forward(*leaves, scale, softcap, visible, sinks)
        expected = torch.autograd.grad(out, leaves, do.float())
        out, lse = out.detach(), lse.detach()
        pairs = batch * heads * visible_pairs(seq, seq, window if window else causal)
        flops = 2.0 * 5 * pairs * head_dim
        row = {"shape": label, "dims": [batch, heads, kv_heads, seq, head_dim, causal, softcap, window, with_sinks],
               "ours": {}, "recomputed": {}, "errors": {}, "flops": flops}
        rows = (batch * seq, heads)
        packed = [x.reshape(batch * seq, *x.shape[2:]) for x in (q, k, v, do)]
        saved_out = out.to(torch.bfloat16).reshape(batch * seq, heads, head_dim)
        saved_lse = lse.transpose(1, 2).reshape(rows).contiguous()
        grads = [torch.empty_like(x) for x in packed[:3]]
        for s, n, w, st in (WIDE_TILES if head_dim > 128 else TILES)[:args.configs]:
            config = {"block_small": s, "block_large": n, "num_warps": w, "num_stages": st}
            name = json.dumps(config, sort_keys=True)
            module = kernels(config, scratch)
            offsets, longest = module._offsets(None, q, "BSHD")
            window_arg = window or None

            def ours(m=module, o=saved_out, lse_=saved_lse, ratio=math.log2(math.e)):
                m._attention_backward(*packed, o, lse_, ratio, offsets, longest, scale, *grads, causal=causal,
                                      softcap=softcap, window=window_arg, sinks=sinks,
                                      dsinks=torch.empty(heads, device=device) if sinks is not None else None)

            def recomputed(m=module):
                o = torch.empty(rows + (head_dim,), dtype=torch.float32, device=device)
                lse_ = torch.empty(rows, dtype=torch.float32, device=device)
                m._paged_prefill(packed[0], packed[1], packed[2], offsets, None, offsets, None, scale, o, lse_,
                                 causal=causal, softcap=softcap, window=window_arg, sinks=sinks,
                                 lse_factor=m._LN2, layout="ragged")
                ours(m, o, lse_)
            try:
                for fn, kind in ((ours, "ours"), (recomputed, "recomputed")):
                    fn()
                    error = max((g.float().view_as(e) - e).abs().max().item() / (e.abs().max().item() + 1e-6)
                                for g, e in zip(grads, expected))
                    if error > 2e-2:
                        raise ValueError(f"{kind}: max relative error {error:.3g}")
                    row[kind][name] = bench_ms(fn, args.dry_run)
            except Exception as exc:  # noqa: BLE001 - one configuration's failure is recorded, the others go on
                row["errors"][name] = f"{type(exc).__name__}: {str(exc)[:160]}"
        if not args.dry_run:
            if not softcap and not window and sinks is None:
                qkv = [x.transpose(1, 2).detach().requires_grad_() for x in (q, k, v)]
                grad = do.transpose(1, 2)

                def sdpa_forward():
                    return torch.nn.functional.scaled_dot_product_attention(*qkv, is_causal=causal, enable_gqa=True)
                forward_ms = bench_ms(sdpa_forward, False)
                both_ms = bench_ms(lambda: torch.autograd.grad(sdpa_forward(), qkv, grad), False)
                row["sdpa_backward_ms"] = max(both_ms - forward_ms, 1e-6)
            row["closed_form_ms"] = bench_ms(lambda: closed_form(q, k, v, out, lse, do, scale, softcap, visible), False)
            if not args.no_compile and time.monotonic() - started < args.budget_s:
                compiled = torch.compile(closed_form)
                compiled(q, k, v, out, lse, do, scale, softcap, visible)
                row["compile_ms"] = bench_ms(lambda: compiled(q, k, v, out, lse, do, scale, softcap, visible), False)
                torch._dynamo.reset()
        recomputed_ms = min((t for t in row["recomputed"].values() if t), default=None)
        ms = keep_fastest(row)
        if ms is not None:
            row.update(ours_tflops=flops / ms / 1e9, ours_peak=flops / peak / (ms / 1e3))
        if recomputed_ms is not None:
            row.update(recomputed_ms=recomputed_ms, recomputed_tflops=flops * 7 / 5 / recomputed_ms / 1e9)
        for key in ("sdpa_backward_ms", "closed_form_ms", "compile_ms"):
            if row.get(key) and row.get("ours_ms"):
                row[key.replace("_ms", "_speedup")] = row[key] / row["ours_ms"]
        report.add(row)


def markdown(header: str, rows: list[dict]) -> str:
    lines = [header, "", "| shape | B, Hq, Hkv, S, D, causal, cap, window, sinks | ours (ms) | ours TFLOP/s | % of bf16 "
             "peak | forward recomputed + backward (ms) | SDPA backward (ms) | closed form, eager (ms) | closed form, "
             "compile (ms) | ours vs SDPA | ours vs eager | ours vs compile | best config |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['shape']} | {r['dims']} | {ours_cell(r)} | {number(r.get('ours_tflops'), '.1f')} | "
                     f"{number(r.get('ours_peak'), '.1%')} | {number(r.get('recomputed_ms'), '.4f')} | "
                     f"{number(r.get('sdpa_backward_ms'), '.4f')} | {number(r.get('closed_form_ms'), '.4f')} | "
                     f"{number(r.get('compile_ms'), '.4f')} | {times(r.get('sdpa_backward_speedup'))} | "
                     f"{times(r.get('closed_form_speedup'))} | {times(r.get('compile_speedup'))} | "
                     f"{r.get('best_config', '-')} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    return shapes_main(__doc__, "family_attention_backward", "attention_backward family", measure, markdown)


if __name__ == "__main__":
    sys.exit(main())
