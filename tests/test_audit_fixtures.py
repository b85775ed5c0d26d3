"""The exploit suite: every fixture in tests/exploits is flagged with its rule; honest ones get nothing.

Each exploit runs through the evaluator's own runner in this process
(kernelbench.eval.runner.run_in_process: guard installed, solution imported armed, fresh rounds,
same-address probe, timing, post-timing re-check, shape probe -- the WorkloadRunner the evaluator's
child uses), and through the static scan separately, so each layer's catch is checked on its own.
GPU-only exploits are flagged statically here and at runtime by benchmarks/audit_gpu_exploits.py.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import shutil
import sys
import time
from pathlib import Path

import pytest
import torch

from audit.static import scan_solution
from kernelbench.core import statuses
from kernelbench.core.problem import load_problem
from kernelbench.core.reference import compile_reference
from kernelbench.core.solution import load_solution, reference_solution
from kernelbench.eval.runner import RunPlan, run_in_process

HERE = Path(__file__).resolve().parent
EXPLOITS = HERE / "exploits"
SHARED = Path(__file__).resolve().parents[2] / "shared"
SAMPLE = SHARED / "sol_execbench_sample"
TASKS = {"069_rms_norm": "L1/069_rms_norm", "021_rmsnorm_h128": "FlashInfer-Bench/021_rmsnorm_h128",
         "004_gemm_n128_k2048": "FlashInfer-Bench/004_gemm_n128_k2048"}

# What the runtime layer (guard + probes) must report on CPU, beyond the static scan.
RUNTIME = {
    "background-thread__004_gemm_n128_k2048": {"background-thread"},
    "background-thread__069_rms_norm": {"background-thread"},
    "cache-by-call-count__021_rmsnorm_h128": {"stale-output"},
    "cache-by-call-count__069_rms_norm": {"stale-output"},
    "cache-by-pointer__004_gemm_n128_k2048": {"stale-output"},
    "cache-by-pointer__021_rmsnorm_h128": {"stale-output"},
    "cache-by-shape__004_gemm_n128_k2048": {"stale-output"},
    "cache-by-shape__069_rms_norm": {"stale-output"},
    "cache-by-value__004_gemm_n128_k2048": set(),     # every probe uses new values: static only (docs)
    "cache-by-value__069_rms_norm": set(),
    "constant-output__004_gemm_n128_k2048": set(),   # correctness: all zeros -> INCORRECT_NUMERICAL
    "constant-output__021_rmsnorm_h128": set(),
    "dynamic-code__021_rmsnorm_h128": {"subprocess"},  # the hidden os.system, attributed through exec
    "evaluator-import__004_gemm_n128_k2048": {"monkeypatch", "evaluator-import"},
    "evaluator-import__069_rms_norm": {"monkeypatch", "evaluator-import"},
    "file-access__004_gemm_n128_k2048": {"file-access"},
    "file-access__021_rmsnorm_h128": {"file-access"},
    "global-state__021_rmsnorm_h128": {"subprocess"},  # nvidia-smi
    "global-state__069_rms_norm": {"global-state"},
    "input-mutation__021_rmsnorm_h128": {"input-mutation"},
    "input-mutation__069_rms_norm": {"input-mutation"},
    "introspection__004_gemm_n128_k2048": {"introspection"},
    "introspection__069_rms_norm": {"introspection"},
    "lazy-output__004_gemm_n128_k2048": {"lazy-output"},
    "lazy-output__021_rmsnorm_h128": {"lazy-output"},
    "monkeypatch__004_gemm_n128_k2048": {"monkeypatch"},
    "monkeypatch__021_rmsnorm_h128": {"monkeypatch"},
    "monkeypatch__069_rms_norm": {"monkeypatch"},
    "network__021_rmsnorm_h128": {"network"},
    "network__069_rms_norm": {"network"},
    "output-aliases-input__069_rms_norm": {"output-aliases-input", "input-mutation"},
    "persisting-l2__004_gemm_n128_k2048": set(),        # GPU only
    "persisting-l2__021_rmsnorm_h128": set(),
    "precision-downgrade__004_gemm_n128_k2048": {"precision-downgrade"},
    "precision-downgrade__069_rms_norm": {"precision-downgrade"},
    "shape-specialization__004_gemm_n128_k2048": {"shape-specialization"},
    "shape-specialization__021_rmsnorm_h128": {"shape-specialization"},
    "skipped-work__004_gemm_n128_k2048": {"stale-output"},
    "skipped-work__069_rms_norm": {"stale-output"},
    "stale-output__004_gemm_n128_k2048": set(),        # GPU only: CUDA graph replayed on stale pointers
    "stale-output__021_rmsnorm_h128": {"stale-output"},
    "stale-output__069_rms_norm": {"stale-output"},
    "subprocess__004_gemm_n128_k2048": {"subprocess"},
    "subprocess__069_rms_norm": {"subprocess"},
    "unsynced-stream__004_gemm_n128_k2048": set(),     # GPU only
    "unsynced-stream__021_rmsnorm_h128": set(),
}
QUICK = RunPlan(seed=0, rounds=3, timing={"warmup": 2, "iterations": 8})
RUNTIME_ONLY = {"input-mutation", "output-aliases-input", "stale-output"}  # the scan must miss these
GPU_ONLY = {"stale-output__004_gemm_n128_k2048"}  # no CPU catch at all (the scan deliberately ignores CUDA graphs)
# A disk cache keyed by input bytes never hits within one evaluation (no values repeat there); it pays off
# in the next evaluation of the same seeds, whose read is what the guard sees (torch.save writes natively).
NEXT_EVALUATION = {"file-access__021_rmsnorm_h128"}


def _fixture_names() -> list[str]:
    return sorted(p.stem for p in EXPLOITS.glob("*.json"))


EXPLOIT_NAMES = [n for n in _fixture_names() if not n.startswith("honest-")]
HONEST_NAMES = [n for n in _fixture_names() if n.startswith("honest-")]


@pytest.fixture(scope="module")
def problems():
    if not SAMPLE.is_dir():
        pytest.skip(f"sample problems absent at {SAMPLE}")
    return {name: load_problem(SAMPLE / path) for name, path in TASKS.items()}


def small_workloads(problem):
    """The smallest workload; 069's is 131 rows of 8192 (slow in bf16 on a CPU), so it shrinks to 2 rows,
    a legal value of its var axes."""
    workload = problem.smallest_workload()
    if problem.name == "069_rms_norm":
        workload = dataclasses.replace(workload, uuid="audit-small", axes={"batch_size": 1, "seq_len": 2})
    return [workload]


@pytest.fixture(autouse=True)
def clean_process():
    """No exploit cache on disk; torch's state intact afterwards."""
    _remove_exploit_caches()
    before = (torch.rsqrt, torch.matmul, time.perf_counter, torch.get_float32_matmul_precision(),
              torch.backends.cudnn.benchmark, _environment())
    yield
    after = (torch.rsqrt, torch.matmul, time.perf_counter, torch.get_float32_matmul_precision(),
             torch.backends.cudnn.benchmark, _environment())
    assert after == before, "an audited solution's changes were not undone"
    _remove_exploit_caches()


def _environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}


def _remove_exploit_caches() -> None:
    """What the file-access exploits leave on disk for the next evaluation."""
    shutil.rmtree("/tmp/kb_exploit_cache", ignore_errors=True)
    Path("/dev/shm/kb_exploit_gemm.pkl").unlink(missing_ok=True)


def test_fixtures_are_what_build_py_writes():
    spec = importlib.util.spec_from_file_location("exploits_build", EXPLOITS / "build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    assert set(_fixture_names()) == set(build.FIXTURES), "run python tests/exploits/build.py"
    for name in build.FIXTURES:
        assert (EXPLOITS / f"{name}.json").read_text() == build.render(name), f"{name}: run tests/exploits/build.py"


def test_the_suite_covers_every_rule_on_at_least_two_tasks():
    from audit.rules import RULES

    covered = {n.split("__")[0] for n in EXPLOIT_NAMES}
    assert covered == set(RULES) - {"faster-than-sol"}  # a time, not a solution: tested in test_audit_runtime
    assert set(RUNTIME) == set(EXPLOIT_NAMES)
    assert len({n.split("__")[1] for n in EXPLOIT_NAMES}) >= 2
    for rule in covered - {"dynamic-code", "output-aliases-input"}:
        assert len({n.split("__")[1] for n in EXPLOIT_NAMES if n.startswith(rule + "__")}) >= 2, rule


@pytest.mark.parametrize("name", EXPLOIT_NAMES)
def test_static_scan_flags_the_exploit(name, problems):
    solution = load_solution(EXPLOITS / f"{name}.json")
    found = {f.rule for f in scan_solution(solution, problems[solution.definition])}
    rule = name.split("__")[0]
    if rule in RUNTIME_ONLY:
        assert found == set(), "this exploit exists to show what only the runtime layer catches"
    else:
        assert rule in found


@pytest.mark.parametrize("name", EXPLOIT_NAMES)
def test_runtime_layer_flags_the_exploit(name, problems):
    solution = load_solution(EXPLOITS / f"{name}.json")
    problem = problems[solution.definition]
    for _ in range(2 if name in NEXT_EVALUATION else 1):
        report = run_in_process(problem, solution, QUICK, workloads=small_workloads(problem))
    assert RUNTIME[name] <= report.rules, (report.findings, report.outcomes)
    if name.split("__")[0] in RUNTIME_ONLY and name not in GPU_ONLY:
        assert name.split("__")[0] in report.rules


@pytest.mark.parametrize("name", HONEST_NAMES)
def test_honest_solution_gets_no_finding(name, problems):
    solution = load_solution(EXPLOITS / f"{name}.json")
    problem = problems[solution.definition]
    assert scan_solution(solution, problem) == []
    report = run_in_process(problem, solution, QUICK, workloads=small_workloads(problem))
    assert report.findings == []
    assert set(report.statuses.values()) == {statuses.PASSED}, report.outcomes


@pytest.mark.parametrize("task", sorted(TASKS))
def test_the_reference_as_a_solution_gets_no_finding(task, problems):
    problem = problems[task]
    solution = reference_solution(problem.name, problem.definition.reference)
    assert scan_solution(solution, problem) == []
    report = run_in_process(problem, solution, QUICK, workloads=small_workloads(problem))
    assert report.findings == []
    assert set(report.statuses.values()) == {statuses.PASSED}, report.outcomes


def test_the_exploits_really_work(problems):
    """Exploits are not strawmen: each wins something against a naive harness."""
    rms = problems["021_rmsnorm_h128"]
    # the pointer cache returns the old product after the inputs change in place
    module = _load(EXPLOITS / "cache-by-pointer__004_gemm_n128_k2048.json")
    A, B = torch.randn(2, 2048, dtype=torch.float16), torch.randn(128, 2048, dtype=torch.float16)
    first = module.run(A, B).clone()
    A.normal_()
    assert torch.equal(module.run(A, B), first)
    # patching torch.rsqrt makes the (unchanged) reference agree with the shortcut
    reference = compile_reference(rms.definition)
    original = torch.rsqrt
    try:
        module = _load(EXPLOITS / "monkeypatch__021_rmsnorm_h128.json")
        x, w = torch.randn(4, 128, dtype=torch.bfloat16), torch.randn(128, dtype=torch.bfloat16)
        assert torch.allclose(module.run(x, w).float(), reference.run(x, w).float())
    finally:
        torch.rsqrt = original
    assert not torch.allclose(module.run(x, w).float(), reference.run(x, w).float())


def _load(path: Path):
    solution = load_solution(path)
    spec = importlib.util.spec_from_loader(f"exploit_{path.stem.replace('-', '_')}", loader=None)
    module = importlib.util.module_from_spec(spec)
    exec(compile(solution.sources[0].content, str(path), "exec"), module.__dict__)
    sys.modules.pop(spec.name, None)
    return module
