"""Shared fixtures: the official sample problems and a factory for small problem directories."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest

# CPU only: Triton kernels run through its interpreter. Set before anything imports triton, which
# reads the setting once; a test that set it later would depend on which test imported triton first.
os.environ["TRITON_INTERPRET"] = "1"

SAMPLE_ROOT = Path(__file__).resolve().parents[2] / "shared" / "sol_execbench_sample"

# The ten official sample problems (subset/name), as the sample README lists them.
SAMPLE_PROBLEMS = (
    "FlashInfer-Bench/004_gemm_n128_k2048",
    "FlashInfer-Bench/012_gqa_paged_decode_h32_kv4_d128_ps1",
    "FlashInfer-Bench/021_rmsnorm_h128",
    "L1/001_attention_softmax_dropout_value_matmul_backward",
    "L1/058_moe_expert_token_radix_sort_with_prefix_sum",
    "L1/069_rms_norm",
    "L1/085_geglu_activation",
    "L2/004_fused_residual_rms_mlp",
    "Quant/001_fp8_attention_output_projection",
    "Quant/020_nvfp4_linear_layer",
)

# A tiny RMSNorm: var axis `batch`, const `hidden` 64, expr `half` and nested expr `quarter`,
# a norm weight, a Python-scalar eps and one output. Tests corrupt one field at a time.
TINY_REFERENCE = '''import torch

def run(x, norm_weight, eps):
    variance = x.float().pow(2).mean(dim=-1, keepdim=True)
    return (x.float() * torch.rsqrt(variance + eps) * norm_weight.float()).to(x.dtype)
'''

TINY_DEFINITION = {
    "name": "tiny_rmsnorm",
    "description": "RMSNorm over hidden=64 (test problem).",
    "op_type": "rmsnorm",
    "hf_id": "test/tiny",
    "axes": {
        "batch": {"type": "var", "description": "rows"},
        "hidden": {"type": "const", "value": 64},
        "half": {"type": "expr", "expression": "hidden // 2"},
        "quarter": {"type": "expr", "expression": "half // 2"},
    },
    "inputs": {
        "x": {"shape": ["batch", "hidden"], "dtype": "float32"},
        "norm_weight": {"shape": ["hidden"], "dtype": "float32"},
        "eps": {"shape": None, "dtype": "float32"},
    },
    "outputs": {
        "y": {"shape": ["batch", "hidden"], "dtype": "float32"},
    },
    "reference": TINY_REFERENCE,
}

TINY_WORKLOADS = [
    {"uuid": "w-small", "axes": {"batch": 2},
     "inputs": {"x": {"type": "random"}, "norm_weight": {"type": "random"},
                "eps": {"type": "scalar", "value": 1e-5}}},
    {"uuid": "w-large", "axes": {"batch": 8},
     "inputs": {"x": {"type": "random"}, "norm_weight": {"type": "random"},
                "eps": {"type": "scalar", "value": 1e-6}},
     "tolerance": {"max_atol": 1e-3, "max_rtol": 2e-3, "required_matched_ratio": 0.95}},
    {"uuid": "w-one", "axes": {"batch": 1},
     "inputs": {"x": {"type": "random"}, "norm_weight": {"type": "random"},
                "eps": {"type": "scalar", "value": 1e-5}}},
]


@pytest.fixture
def sample_root() -> Path:
    if not SAMPLE_ROOT.is_dir():
        pytest.skip(f"official sample problems not present at {SAMPLE_ROOT}")
    return SAMPLE_ROOT


@pytest.fixture
def tiny_definition() -> dict:
    """A fresh, mutable copy of the tiny valid definition."""
    return copy.deepcopy(TINY_DEFINITION)


@pytest.fixture
def tiny_workloads() -> list[dict]:
    """A fresh, mutable copy of the tiny valid workloads."""
    return copy.deepcopy(TINY_WORKLOADS)


def write_problem(root: Path, definition=None, workloads=None, *, name: str | None = None) -> Path:
    """Write root/<name>/{definition.json, workload.jsonl} and return the directory.

    `definition` is a dict (dumped) or a str (written verbatim); `workloads` is a list whose
    items are dicts (one JSON line each) or strings (written verbatim as a line).
    """
    definition = copy.deepcopy(TINY_DEFINITION) if definition is None else definition
    workloads = copy.deepcopy(TINY_WORKLOADS) if workloads is None else workloads
    if name is None:
        name = definition["name"] if isinstance(definition, dict) and isinstance(definition.get("name"), str) \
            else "problem"
    directory = Path(root) / name
    directory.mkdir(parents=True, exist_ok=True)
    text = definition if isinstance(definition, str) else json.dumps(definition, indent=2)
    (directory / "definition.json").write_text(text)
    lines = [w if isinstance(w, str) else json.dumps(w) for w in workloads]
    (directory / "workload.jsonl").write_text("".join(line + "\n" for line in lines))
    return directory


@pytest.fixture
def make_problem():
    """Factory: make_problem(tmp_path, definition=..., workloads=[...], name=...) -> problem dir."""
    return write_problem
