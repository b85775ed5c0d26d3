"""C++ solutions (cuda_cpp and the other torch-binding languages): the official spec, the build, its failures.

The CPU torch here builds C++ extensions but not CUDA ones: a .cpp solution runs end to end (slow: a
torch extension takes minutes to compile on a small machine), a .cu one is a clear COMPILE_ERROR.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from kernelbench.core import statuses
from kernelbench.core.cpp_build import build, extension_name
from kernelbench.core.errors import SolutionError
from kernelbench.core.problem import load_problem
from kernelbench.core.solution import parse_solution
from kernelbench.eval.evaluator import EvalConfig, evaluate

from tiny_problems import write_rmsnorm_problem

CPP_RMSNORM = r'''
#include <torch/extension.h>

// Destination-passing: inputs, then the output written in place.
void run(torch::Tensor x, torch::Tensor weight, double eps, torch::Tensor out) {
    auto xf = x.to(torch::kFloat);
    auto inv_rms = torch::rsqrt(xf.pow(2).mean(-1, true) + eps);
    out.copy_((xf * inv_rms).to(x.scalar_type()) * weight);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) { m.def("run", &run); }
'''


def cpp_solution(files: dict[str, str], entry: str = "main.cpp::run", **spec) -> object:
    return parse_solution({
        "name": "cpp", "definition": "001_tiny_rmsnorm", "author": "test",
        "spec": {"languages": ["cuda_cpp"], "target_hardware": ["LOCAL"], "entry_point": entry,
                 "destination_passing_style": True, **spec},
        "sources": [{"path": path, "content": content} for path, content in files.items()]})


def config(tmp_path: Path) -> EvalConfig:
    return EvalConfig(device="cpu", rounds=2, timing={"warmup": 1, "iterations": 2}, workload_timeout_s=120,
                      build_timeout_s=900, build_dir=str(tmp_path / "build"), shape_probe=False)


def test_the_official_spec_fields_round_trip_and_change_the_content_hash():
    plain = cpp_solution({"main.cpp": CPP_RMSNORM})
    flagged = cpp_solution({"main.cpp": CPP_RMSNORM}, binding="torch",
                           compile_options={"cuda_cflags": ["-O3", "-lineinfo"], "ld_flags": []})
    assert plain.build_options.cuda_cflags == ("-O3", "--use_fast_math")   # the official defaults
    assert plain.build_options.ld_flags == ("-lcuda",)
    assert flagged.build_options.cuda_cflags == ("-O3", "-lineinfo") and flagged.build_options.ld_flags == ()
    assert parse_solution(flagged.to_json()) == flagged
    assert flagged.content_hash != plain.content_hash
    assert extension_name(flagged) != extension_name(plain)


@pytest.mark.parametrize("spec, message", [
    ({"languages": ["cuda_cpp", "triton"]}, "cannot be mixed"),
    ({"entry_point": "main.py::run"}, r"C\+\+/CUDA entry file"),
    ({"binding": "nanobind"}, "unknown binding"),
    ({"compile_options": {"cflags": "-O3"}}, "list of strings"),
])
def test_invalid_cpp_specs_are_refused_with_the_field(spec, message):
    files = {"main.cpp": CPP_RMSNORM, "main.py": "def run(x):\n    return x\n"}
    with pytest.raises(SolutionError, match=message):
        cpp_solution(files, **spec)


def test_cuda_sources_on_a_cpu_only_torch_are_a_compile_error_naming_why(tmp_path):
    if torch.version.cuda is not None:
        pytest.skip("this torch builds CUDA extensions")
    problem = load_problem(write_rmsnorm_problem(tmp_path, batches=(3, 8)))
    traces = evaluate(problem, cpp_solution({"kernel.cu": CPP_RMSNORM}, entry="kernel.cu::run"), config(tmp_path))
    assert [t.evaluation.status for t in traces] == [statuses.COMPILE_ERROR] * 2
    assert "CPU-only" in traces[0].evaluation.log


def test_a_compiler_error_is_a_compile_error_with_the_compilers_message(tmp_path):
    problem = load_problem(write_rmsnorm_problem(tmp_path, batches=(3,)))
    broken = cpp_solution({"main.cpp": "#error this kernel does not build\n" + CPP_RMSNORM})
    (trace,) = evaluate(problem, broken, config(tmp_path))
    assert trace.evaluation.status == statuses.COMPILE_ERROR
    assert "this kernel does not build" in trace.evaluation.log
    assert "Traceback" not in trace.evaluation.log   # the compiler's words, not the harness's stack
    assert not list((tmp_path / "build").glob("*/*.so"))   # nothing half-built is kept


@pytest.mark.slow
def test_a_cpp_solution_builds_once_passes_and_is_timed(tmp_path):
    problem = load_problem(write_rmsnorm_problem(tmp_path, batches=(3, 8)))
    solution = cpp_solution({"main.cpp": CPP_RMSNORM, "extra.h": "#pragma once\n"})
    traces = evaluate(problem, solution, config(tmp_path))
    assert [t.evaluation.status for t in traces] == [statuses.PASSED] * 2, traces[0].evaluation.log
    assert all(t.evaluation.performance.latency_ms > 0 for t in traces)
    (library,) = (tmp_path / "build").glob("*/*.so")
    built_at = library.stat().st_mtime_ns
    assert build(solution, tmp_path / "build") == library and library.stat().st_mtime_ns == built_at
    again = evaluate(problem, solution, config(tmp_path))   # found, not rebuilt
    assert [t.evaluation.status for t in again] == [statuses.PASSED] * 2
    assert library.stat().st_mtime_ns == built_at and len(os.listdir(tmp_path / "build")) == 1
    wrong = cpp_solution({"main.cpp": CPP_RMSNORM.replace("* weight", "* weight * 2")})
    assert {t.evaluation.status for t in evaluate(problem, wrong, config(tmp_path))} == {statuses.INCORRECT_NUMERICAL}
