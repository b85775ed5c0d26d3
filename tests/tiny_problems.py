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
