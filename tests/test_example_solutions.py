"""The example solutions under examples/: valid official specs, audit-clean, and their CUDA compiles for sm_90.

The nvcc checks skip where nvcc is absent; running them needs a GPU (benchmarks/family_cuda.py).
"""

from __future__ import annotations

import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest
import torch

from audit.static import scan_solution
from kernelbench.core.problem import load_problem
from kernelbench.core.solution import load_solution, materialize

from conftest import SAMPLE_ROOT

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "069_rms_norm_cuda_cpp"
NVCC = shutil.which("nvcc")
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc is not installed")


@pytest.fixture(scope="module")
def solution():
    return load_solution(EXAMPLE / "solution.json")


def test_the_example_is_an_official_cuda_cpp_solution_whose_files_match_its_json(solution):
    assert solution.languages == ("cuda_cpp",) and solution.is_native and solution.destination_passing_style
    assert solution.entry_point == "main.cpp::run"
    assert {s.path for s in solution.sources} == {"kernel.h", "kernel.cu", "main.cpp"}
    for source in solution.sources:
        assert source.content == (EXAMPLE / source.path).read_text(), f"{source.path} differs from solution.json"
    assert "PYBIND11_MODULE(TORCH_EXTENSION_NAME" in dict((s.path, s.content) for s in solution.sources)["main.cpp"]


def test_the_example_solves_the_sample_problem_and_is_audit_clean(solution):
    directory = SAMPLE_ROOT / "L1" / "069_rms_norm"
    if not directory.is_dir():
        pytest.skip("the official sample problems are not here")
    problem = load_problem(directory)
    assert solution.definition == problem.definition.name
    assert scan_solution(solution, problem) == []


@needs_nvcc
def test_the_kernel_compiles_for_sm90(solution, tmp_path):
    source_dir = materialize(solution, tmp_path / "src")
    done = subprocess.run([NVCC, "-arch=sm_90", "-O3", "--use_fast_math", "-c", str(source_dir / "kernel.cu"),
                           "-o", str(tmp_path / "kernel.o")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "kernel.o").stat().st_size > 0


@needs_nvcc
@pytest.mark.slow
def test_the_torch_binding_compiles_against_this_torch(solution, tmp_path):
    """main.cpp against torch's headers (CUDA ones included). A CPU-only torch lacks one generated CUDA
    header (build macros): a stand-in is supplied for this syntax check only."""
    source_dir = materialize(solution, tmp_path / "src")
    torch_root = Path(torch.__file__).parent / "include"
    stub = tmp_path / "stub"
    if not (torch_root / "c10" / "cuda" / "impl" / "cuda_cmake_macros.h").exists():
        (stub / "c10" / "cuda" / "impl").mkdir(parents=True)
        (stub / "c10" / "cuda" / "impl" / "cuda_cmake_macros.h").write_text("#pragma once\n")
    from torch.utils.cpp_extension import CUDA_HOME

    homes = [Path(h) / "include" for h in (CUDA_HOME, "/usr/local/cuda") if h]
    cuda_include = next((h for h in homes if (h / "cuda_runtime.h").exists()), None)
    if cuda_include is None:
        pytest.skip("no CUDA toolkit headers")
    done = subprocess.run(
        ["g++", "-std=c++20", "-fsyntax-only", "-DTORCH_EXTENSION_NAME=example", "-DTORCH_API_INCLUDE_EXTENSION_H",
         f"-I{stub}", f"-I{torch_root}", f"-I{torch_root / 'torch' / 'csrc' / 'api' / 'include'}",
         f"-I{cuda_include}", f"-I{sysconfig.get_paths()['include']}", str(source_dir / "main.cpp")],
        capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
