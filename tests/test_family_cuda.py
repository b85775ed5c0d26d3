"""The `cuda` family: roles by shape, the RMSNorm variant verified against the reference, NVRTC-ready sources.

No GPU here: matching's CPU half (plan_of) runs on real references, every rendered kernel is compiled for
sm_90 with nvcc (skipped where nvcc is absent; NVRTC takes the same header-free source on the GPU), and the
rendered Python is checked for shape and audit. Running it is benchmarks/family_cuda.py's job on a GPU.
"""

from __future__ import annotations

import ast
import itertools
import json
import shutil
import subprocess

import pytest

from audit.static import scan_solution
from kernelbench.core.problem import load_problem
from kernelbench.generate.families.cuda import Cuda, plan_of, render_solution
from kernelbench.generate.family import Match
from templates import render

from conftest import SAMPLE_ROOT
from tiny_problems import write_rmsnorm_problem

NVCC = shutil.which("nvcc")

GEMMA_REFERENCE = '''
import torch

def run(x, weight, eps):
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps) * (1.0 + weight.float())).to(x.dtype)
'''
SCALE_REFERENCE = '''
import torch

def run(x, weight, eps):
    return x * weight + eps
'''


def test_the_sample_residual_rmsnorm_matches_with_the_add_and_the_weight_after_the_cast():
    directory = SAMPLE_ROOT / "L1" / "069_rms_norm"
    if not directory.is_dir():
        pytest.skip("the official sample problems are not here")
    plan, why = plan_of(load_problem(directory))
    assert why == "" and plan["add"] and plan["weight"] == "after_cast"
    assert plan["rows"] == ["hidden_states", "residual"] and plan["eps"] == "eps"


@pytest.mark.parametrize("reference, weight", [(None, "after_cast"), (GEMMA_REFERENCE, "offset_before_cast")])
def test_the_weight_placement_is_found_by_verification(tmp_path, reference, weight):
    kwargs = {"reference": reference} if reference else {}
    plan, why = plan_of(load_problem(write_rmsnorm_problem(tmp_path, **kwargs)))
    assert why == "" and plan["weight"] == weight and not plan["add"]


def test_a_problem_with_the_same_roles_that_is_not_a_norm_is_refused(tmp_path):
    plan, why = plan_of(load_problem(write_rmsnorm_problem(tmp_path, reference=SCALE_REFERENCE)))
    assert plan is None and "no RMSNorm variant agrees" in why


def test_without_a_gpu_the_family_declines_with_the_reason(tmp_path):
    family = Cuda()
    assert family.match(load_problem(write_rmsnorm_problem(tmp_path))) is None
    assert "CUDA GPU" in family.last_rejection


def plan_for(dtype: str, add: bool, weight: str) -> dict:
    rows = ["x", "r"] if add else ["x"]
    return {"order": [*rows, "w", "eps"], "rows": rows, "weight_input": "w", "eps": "eps", "output": "y",
            "dtype": dtype, "row_shape": ["n", "h"], "add": add, "weight": weight}


CASES = list(itertools.product(("bfloat16", "float16", "float32"), (True, False),
                               ("after_cast", "before_cast", "offset_before_cast")))


@pytest.mark.skipif(NVCC is None, reason="nvcc is not installed")
def test_every_rendered_kernel_compiles_for_sm90(tmp_path):
    # six sources cover every dtype, both row forms and every weight placement
    for index, (dtype, add, weight) in enumerate(CASES[::3]):
        source = render("cuda.cu.j2", summary="test", dtype=dtype, add=add, weight=weight, kernel="rmsnorm",
                        vector=16 // (4 if dtype == "float32" else 2))
        assert "#include" not in source   # NVRTC gets no include path
        path = tmp_path / f"k{index}.cu"
        path.write_text(source)
        done = subprocess.run([NVCC, "-arch=sm_90", "--ptx", str(path), "-o", str(tmp_path / f"k{index}.ptx")],
                              capture_output=True, text=True)
        assert done.returncode == 0, f"{dtype} add={add} {weight}:\n{done.stderr}"
        ptx = (tmp_path / f"k{index}.ptx").read_text()
        assert ".entry rmsnorm_v1" in ptx and f".entry rmsnorm_v{16 // (4 if dtype == 'float32' else 2)}" in ptx


@pytest.mark.parametrize("dtype, add, weight", CASES[::4])
def test_the_rendered_solution_is_python_with_the_definitions_signature_and_audit_clean(dtype, add, weight):
    plan = plan_for(dtype, add, weight)
    solution = render_solution("p", plan, {"threads": 256}, "test")
    (source,) = solution.sources
    tree = ast.parse(source.content)
    run = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "run")
    assert [a.arg for a in run.args.args] == plan["order"] + ["y"]
    assert "THREADS = 256" in source.content and solution.destination_passing_style
    assert scan_solution(solution) == []


def test_space_and_traffic_follow_the_row_length(tmp_path):
    family = Cuda()
    plan = plan_for("bfloat16", True, "after_cast")
    match = Match("cuda", "test", {"problem": "p", "plan": plan})
    assert family.space(match, {"n": 4, "h": 8192})[0] == {"threads": 1024}
    assert family.space(match, {"n": 4, "h": 128})[0] == {"threads": 32}
    traffic = family.traffic(match, {"n": 4, "h": 128})
    assert traffic.bytes_read == 2 * 4 * 128 * 2 + 128 * 2 and traffic.bytes_written == 4 * 128 * 2
    assert json.dumps(family.space(match, {"n": 1, "h": 64}))
