"""Small problem directories written on the fly for evaluator and job tests."""

from __future__ import annotations

import json
from pathlib import Path

RMSNORM_REFERENCE = '''
import torch

@torch.no_grad()
def run(x, weight, eps):
    variance = x.float().pow(2).mean(-1, keepdim=True)
    return (x.float() * torch.rsqrt(variance + eps)).to(x.dtype) * weight
'''


def write_rmsnorm_problem(root: Path, name: str = "001_tiny_rmsnorm", subset: str = "L1", hidden: int = 64,
                          batches=(3, 8), reference: str = RMSNORM_REFERENCE) -> Path:
    directory = root / subset / name
    directory.mkdir(parents=True)
    definition = {
        "name": name, "description": "RMSNorm for tests", "op_type": "rmsnorm",
        "axes": {"batch": {"type": "var"}, "hidden": {"type": "const", "value": hidden}},
        "inputs": {"x": {"shape": ["batch", "hidden"], "dtype": "bfloat16"},
                   "weight": {"shape": ["hidden"], "dtype": "bfloat16"},
                   "eps": {"shape": None, "dtype": "float32"}},
        "outputs": {"out": {"shape": ["batch", "hidden"], "dtype": "bfloat16"}},
        "reference": reference,
    }
    (directory / "definition.json").write_text(json.dumps(definition))
    lines = [{"uuid": f"{name}-w{b}", "axes": {"batch": b},
              "inputs": {"x": {"type": "random"}, "weight": {"type": "random"}, "eps": {"type": "scalar", "value": 1e-6}},
              "tolerance": {"max_atol": 1e-2, "max_rtol": 2e-2}} for b in batches]
    (directory / "workload.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return directory


GROUPED_INPUTS = '''
import torch


def get_inputs(axes_and_scalars: dict, device) -> dict:
    """Rows grouped by expert: a random routing, so groups are uneven and some experts get no rows."""
    rows, experts = axes_and_scalars["rows"], axes_and_scalars["experts"]
    k, n = axes_and_scalars["k"], axes_and_scalars["n"]
    dtype = DTYPE
    counts = torch.bincount(torch.randint(0, experts, (rows,), device=device), minlength=experts)
    offsets = torch.zeros(experts + 1, dtype=torch.int32, device=device)
    offsets[1:] = torch.cumsum(counts, 0).to(torch.int32)
    inputs = {"x": torch.randn(rows, k, dtype=dtype, device=device),
              "w": torch.randn(experts, n, k, dtype=dtype, device=device).mul_(k ** -0.5),
              "offsets": offsets, "scale": torch.rand(rows, dtype=torch.float32, device=device)}
    if "half" in axes_and_scalars:   # a down projection after a gate | up one
        half = axes_and_scalars["half"]
        inputs["w2"] = torch.randn(experts, k, half, dtype=dtype, device=device).mul_(half ** -0.5)
    return inputs
'''

GROUPED_GATE_UP = '''

@torch.no_grad()
def run(x, w, offsets, scale):
    out = x.new_empty(x.shape[0], w.shape[1])
    bounds = offsets.tolist()
    for e in range(w.shape[0]):
        start, end = bounds[e], bounds[e + 1]
        if end > start:
            out[start:end] = x[start:end] @ w[e].t()
    return out
'''


def write_grouped_problem(root: Path, name: str, run_source: str = GROUPED_GATE_UP, dtype: str = "bfloat16",
                          shapes=((13, 3), (5, 7)), k: int = 24, n: int = 20, down: bool = False) -> Path:
    """A grouped GEMM over routing offsets (MoE experts, rows already permuted by expert): x [rows, k], w
    [experts, n, k], offsets [experts + 1] (cumulative counts), a per-row fp32 scale, and with `down` a second
    weight w2 [experts, k, n / 2] (an expert MLP's down projection: the output is then [rows, k]); `run_source`
    defines run. One workload per (rows, experts)."""
    directory = root / name
    directory.mkdir(parents=True)
    definition = {
        "name": name, "description": "grouped GEMM for tests", "op_type": "grouped_gemm",
        "axes": {"rows": {"type": "var"}, "experts": {"type": "var"},
                 "offsets_len": {"type": "expr", "expression": "experts + 1"},
                 "k": {"type": "const", "value": k}, "n": {"type": "const", "value": n}},
        "custom_inputs_entrypoint": "get_inputs",
        "inputs": {"x": {"shape": ["rows", "k"], "dtype": dtype}, "w": {"shape": ["experts", "n", "k"], "dtype": dtype},
                   "offsets": {"shape": ["offsets_len"], "dtype": "int32"},
                   "scale": {"shape": ["rows"], "dtype": "float32"}},
        "outputs": {"out": {"shape": ["rows", "k" if down else "n"], "dtype": dtype}},
        "reference": GROUPED_INPUTS.replace("DTYPE", f"torch.{dtype}") + run_source,
    }
    if down:
        definition["axes"]["half"] = {"type": "const", "value": n // 2}
        definition["inputs"]["w2"] = {"shape": ["experts", "k", "half"], "dtype": dtype}
    (directory / "definition.json").write_text(json.dumps(definition))
    lines = [{"uuid": f"{name}-w{i}", "axes": {"rows": rows, "experts": experts},
              "inputs": {x: {"type": "custom"} for x in definition["inputs"]},
              "tolerance": {"max_atol": 1e-2, "max_rtol": 2e-2}} for i, (rows, experts) in enumerate(shapes)]
    (directory / "workload.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return directory
