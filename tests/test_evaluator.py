"""The evaluator on CPU: honest solutions pass, every failure mode becomes its status, nothing leaks."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest

from kernelbench.core import statuses
from kernelbench.eval.evaluator import EvalConfig, evaluate
from kernelbench.core.problem import load_problem
from kernelbench.core.solution import Solution, Source, reference_solution

from tiny_problems import RMSNORM_REFERENCE as REFERENCE, write_rmsnorm_problem

TRITON_RMSNORM = '''
import torch
import triton
import triton.language as tl

@triton.jit
def _rmsnorm(x_ptr, w_ptr, out_ptr, eps, N: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, N)
    x = tl.load(x_ptr + row * N + cols).to(tl.float32)
    inv_rms = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / N + eps)   # rsqrt(mean(x^2) + eps)
    w = tl.load(w_ptr + cols).to(tl.float32)
    y = (x * inv_rms).to(tl.bfloat16).to(tl.float32) * w        # round like the reference before scaling
    tl.store(out_ptr + row * N + cols, y.to(tl.bfloat16))

def run(x, weight, eps, out):
    rows = x.numel() // x.shape[-1]
    _rmsnorm[(rows,)](x, weight, out, eps, N=x.shape[-1])
'''

BROKEN = {
    "crash": ("import faulthandler\n\ndef run(x, weight, eps):\n    faulthandler._sigsegv()\n", statuses.RUNTIME_ERROR),
    "hang": ("def run(x, weight, eps):\n    while True:\n        pass\n", statuses.TIMEOUT),
    "raise": ("def run(x, weight, eps):\n    raise ValueError('boom')\n", statuses.RUNTIME_ERROR),
    "wrong_shape": ("def run(x, weight, eps):\n    return x[:, :-1].clone()\n", statuses.INCORRECT_SHAPE),
    "wrong_dtype": ("def run(x, weight, eps):\n    return x.float()\n", statuses.INCORRECT_DTYPE),
    # buggy rather than cheating: they read their inputs (constant outputs are the audit's business)
    "nan": ("def run(x, weight, eps):\n    return x * weight * float('nan')\n", statuses.INCORRECT_NUMERICAL),
    "zeros": ("def run(x, weight, eps):\n    return x * weight * 0\n", statuses.INCORRECT_NUMERICAL),
    "syntax": ("def run(x, weight, eps)\n    return x\n", statuses.COMPILE_ERROR),
}


@pytest.fixture
def problem_dir(tmp_path: Path) -> Path:
    return write_rmsnorm_problem(tmp_path)


def solution(source: str, *, dps: bool = False, language: str = "pytorch") -> Solution:
    return Solution(name="candidate", definition="001_tiny_rmsnorm", entry_point="main.py::run",
                    sources=(Source("main.py", source),), languages=(language,), destination_passing_style=dps)


def config(**overrides) -> EvalConfig:
    values = dict(device="cpu", rounds=2, timing={"warmup": 1, "iterations": 3}, workload_timeout_s=60,
                  build_timeout_s=60)
    return EvalConfig(**{**values, **overrides})


def statuses_of(traces) -> list[str]:
    """Statuses of traces (typed, or their official JSON)."""
    return [t["evaluation"]["status"] if isinstance(t, dict) else t.evaluation.status for t in traces]


def test_reference_as_solution_passes_with_cpu_timing(problem_dir):
    problem = load_problem(problem_dir)
    traces = [t.to_json() for t in evaluate(problem, reference_solution(problem.name, problem.definition.reference), config())]
    assert statuses_of(traces) == [statuses.PASSED, statuses.PASSED]
    performance = traces[0]["evaluation"]["performance"]
    assert performance["clock"] == "cpu" and performance["latency_ms"] > 0
    assert set(traces[0]) == {"definition", "solution", "workload", "evaluation"}
    assert traces[0]["workload"]["inputs"]["eps"] == {"type": "scalar", "value": 1e-6}


def test_triton_solution_passes_through_the_interpreter(problem_dir):
    traces = [t.to_json() for t in evaluate(load_problem(problem_dir), solution(TRITON_RMSNORM, dps=True, language="triton"), config())]
    assert statuses_of(traces) == [statuses.PASSED, statuses.PASSED], traces[0]["evaluation"]["log"]


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_each_failure_gets_its_status(problem_dir, kind):
    source, expected = BROKEN[kind]
    timeout = 8 if kind == "hang" else 60
    traces = [t.to_json() for t in evaluate(load_problem(problem_dir), solution(source), config(workload_timeout_s=timeout, max_workloads=1))]
    assert statuses_of(traces) == [expected], traces[0]["evaluation"]["log"]
    if kind == "crash":
        assert "SIGSEGV" in traces[0]["evaluation"]["log"]


def test_crash_on_one_workload_does_not_spoil_the_next(problem_dir):
    # segfaults only on the workload with batch == 3; the fresh child then passes batch == 8
    source = REFERENCE + "\nimport faulthandler\n_run = run\n\ndef run(x, weight, eps):\n" \
                         "    if x.size(0) < 4:\n        faulthandler._sigsegv()\n    return _run(x, weight, eps)\n"
    traces = [t.to_json() for t in evaluate(load_problem(problem_dir), solution(source), config())]
    assert statuses_of(traces) == [statuses.RUNTIME_ERROR, statuses.PASSED]


def test_unwritten_destination_output_is_caught(problem_dir):
    # destination-passing style: the evaluator poisons outputs, so a solution that writes nothing fails
    traces = evaluate(load_problem(problem_dir), solution("def run(x, weight, eps, out):\n    pass\n", dps=True),
                      config(max_workloads=1))
    assert statuses_of(traces) == [statuses.INCORRECT_NUMERICAL]


def test_reference_failure_is_invalid_reference(problem_dir):
    definition = json.loads((problem_dir / "definition.json").read_text())
    definition["reference"] = REFERENCE.replace("return", "raise RuntimeError('CUBLAS_STATUS_NOT_SUPPORTED')\n    return")
    (problem_dir / "definition.json").write_text(json.dumps(definition))
    problem = load_problem(problem_dir)
    traces = [t.to_json() for t in evaluate(problem, solution(REFERENCE), config(max_workloads=1))]
    assert statuses_of(traces) == [statuses.INVALID_REFERENCE]
    assert "CUBLAS_STATUS_NOT_SUPPORTED" in traces[0]["evaluation"]["log"]


def test_a_process_fatal_error_restarts_the_child_without_blaming_the_next_workload(tmp_path):
    # a CUDA fault poisons the process: the worker reports it and exits, the next workload gets a fresh child
    reference = REFERENCE.replace("    variance =", "    if x.size(0) < 4:\n"
                                  "        raise RuntimeError('CUDA error: CUBLAS_STATUS_NOT_SUPPORTED')\n    variance =")
    problem = load_problem(write_rmsnorm_problem(tmp_path, reference=reference))
    traces = [t.to_json() for t in evaluate(problem, solution(REFERENCE), config(shape_probe=False))]
    assert statuses_of(traces) == [statuses.INVALID_REFERENCE, statuses.PASSED]


def test_kept_inputs_stay_within_their_memory_budget():
    import torch

    from kernelbench.eval.runner import KeptInputs

    kept = KeptInputs(budget_bytes=3 * 4096)
    rounds = [[torch.zeros(1024), 1.0] for _ in range(5)]  # 4 KiB of tensor each
    for inputs in rounds:
        kept.append(inputs)
    assert kept.rounds == rounds[2:]  # the oldest went first
    small = KeptInputs(budget_bytes=1)
    small.append(rounds[0])
    assert small.rounds == []  # a round larger than the whole budget is not kept


def test_a_gpu_time_below_t_sol_is_flagged(problem_dir):
    from kernelbench.eval.evaluator import make_trace

    problem = load_problem(problem_dir)
    workload = problem.workloads[0]
    outcome = {"status": statuses.PASSED, "log": "", "timing": {"median_ms": 0.001}}
    trace = make_trace(problem, solution(REFERENCE), workload, dict(outcome), "cuda", None, 0.05, sol_ms=0.01).to_json()
    assert trace["evaluation"]["status"] == statuses.REWARD_HACK
    assert trace["evaluation"]["audit"][0]["rule"] == "faster-than-sol"
    honest = make_trace(problem, solution(REFERENCE), workload, dict(outcome, timing={"median_ms": 0.02}), "cuda",
                        None, 0.05, sol_ms=0.01).to_json()
    assert honest["evaluation"]["status"] == statuses.PASSED
    assert honest["evaluation"]["performance"]["speedup_factor"] == pytest.approx(2.5)


SCRATCH_REFERENCE = '''
import torch

@torch.no_grad()
def run(x, weight, eps):
    variance = x.float().pow(2).mean(-1, keepdim=True)
    out = (x.float() * torch.rsqrt(variance + eps)).to(x.dtype) * weight
    x.zero_()    # a careless reference that uses its input as scratch space
    return out
'''


@contextlib.contextmanager
def in_process_runner(problem_dir, source: str = REFERENCE, timing: dict | None = None, **plan):
    """The evaluator's WorkloadRunner in this process, its entry point beside it. (The guard is installed
    inside the test body: pytest sets PYTEST_CURRENT_TEST between phases, which the guard would notice.)"""
    import torch

    from audit.runtime import RuntimeGuard
    from kernelbench.core.reference import compile_reference
    from kernelbench.eval.runner import RunPlan, WorkloadRunner, built

    problem = load_problem(problem_dir)
    candidate = solution(source)
    guard = RuntimeGuard("cpu")
    guard.install()
    try:
        with built(candidate, guard) as entry:
            yield problem, WorkloadRunner(problem, compile_reference(problem.definition), candidate, entry,
                                          torch.device("cpu"), RunPlan(rounds=2, timing=timing, **plan), guard), entry
    finally:
        guard.restore()
        guard.uninstall()


def test_large_inputs_reach_the_reference_without_a_copy(problem_dir):
    with in_process_runner(problem_dir, reference_clone_bytes=0) as (problem, runner, _):
        result = runner.run(problem.workloads[0])
    assert result["status"] == statuses.PASSED, result["log"]
    assert runner.reference_writes == set()


def test_a_reference_writing_its_large_inputs_gets_clones_of_them_and_the_round_is_redone(tmp_path):
    # Without the redo the solution would get the zeroed x. The reference zeroes x, so the solution must too
    # (it may do what the reference does, and the inputs' final values are judged): SCRATCH_REFERENCE is the solution.
    problem_dir = write_rmsnorm_problem(tmp_path, reference=SCRATCH_REFERENCE)
    with in_process_runner(problem_dir, SCRATCH_REFERENCE, reference_clone_bytes=0) as (problem, runner, _):
        result = runner.run(problem.workloads[0])
    assert result["status"] == statuses.PASSED, result["log"]
    assert runner.reference_writes == {0}


VALUE_CACHE = """
import torch

hits = [0]
_outputs = {}

def run(x, weight, eps):
    key = (x.shape, float(x[0, 0]), float(x[-1, -1]))     # a fingerprint of a few values
    if key in _outputs:
        hits[0] += 1
        return _outputs[key]
    variance = x.float().pow(2).mean(-1, keepdim=True)
    _outputs[key] = (x.float() * torch.rsqrt(variance + eps)).to(x.dtype) * weight
    return _outputs[key]
"""


def test_a_cache_keyed_by_values_never_hits_while_timed(problem_dir):
    """The attack: fresh rounds and probes all use new values and pass, but a timer that copied
    the same values into every iteration would time a dictionary lookup. The timer draws new
    values for every call, so the cache never hits."""
    with in_process_runner(problem_dir, VALUE_CACHE, timing={"warmup": 2, "iterations": 5}) as (problem, runner, entry):
        result = runner.run(problem.workloads[0])
    assert result["status"] == statuses.PASSED, result["log"]
    assert result["timing"]["iterations"] == 5
    assert entry.__globals__["hits"] == [0]


TIMED_ONLY_CHEAT = """
import torch

calls = [0]

def run(x, weight, eps):
    calls[0] += 1
    if 4 < calls[0] <= 4 + 2 + 6:     # the timed calls: after 2 rounds + the same-address probe
        return torch.zeros_like(x)    # cheap and wrong, but nobody checks a timed call... or do they
    variance = x.float().pow(2).mean(-1, keepdim=True)
    return (x.float() * torch.rsqrt(variance + eps)).to(x.dtype) * weight
"""


def test_a_solution_that_cheats_only_while_timed_is_caught(problem_dir):
    """Honest in every correctness round, in the probes and in the round after timing: only the
    outputs of timed calls, picked at random and checked afterwards, show the cheat."""
    with in_process_runner(problem_dir, TIMED_ONLY_CHEAT, timing={"warmup": 2, "iterations": 6}) as (problem, runner, entry):
        result = runner.run(problem.workloads[0])
    assert entry.__globals__["calls"] == [4 + 2 + 6 + 1]          # the cheat ran as planned
    assert result["status"] == statuses.REWARD_HACK
    assert result["findings"][0]["rule"] == "stale-output" and "timed call" in result["log"]


# ------------------------------------------------------------------ one runner, in a child and in this process

TALLY_REFERENCE = '''
import torch

def run(x, totals):
    totals += x.sum(0)                       # a running total, updated in place
    return x > 0, (x > 0).sum(-1)
'''

TALLY = {
    "name": "tally",
    "description": "bool and int outputs, an input updated in place (test problem)",
    "axes": {"batch": {"type": "var"}, "hidden": {"type": "const", "value": 16}},
    "inputs": {"x": {"shape": ["batch", "hidden"], "dtype": "float32"},
               "totals": {"shape": ["hidden"], "dtype": "float32"}},
    "outputs": {"positive": {"shape": ["batch", "hidden"], "dtype": "bool"},
                "count": {"shape": ["batch"], "dtype": "int64"}},
    "reference": TALLY_REFERENCE,
}

TALLY_SOLUTIONS = {   # destination-passing: the evaluator allocates `positive` and `count`
    "honest": ("def run(x, totals, positive, count):\n    totals += x.sum(0)\n    positive.copy_(x > 0)\n"
               "    count.copy_((x > 0).sum(-1))\n", statuses.PASSED),
    # right only on zeroed buffers: the bool and int outputs are poisoned (True, INT64_MAX) before the call
    "assumes-zeroed-outputs": ("def run(x, totals, positive, count):\n    totals += x.sum(0)\n"
                               "    positive.masked_fill_(x > 0, True)\n    count.add_((x > 0).sum(-1))\n",
                               statuses.INCORRECT_NUMERICAL),
    # the outputs are right, but the running total the reference updates is not
    "skips-the-update": ("def run(x, totals, positive, count):\n    positive.copy_(x > 0)\n"
                         "    count.copy_((x > 0).sum(-1))\n", statuses.INCORRECT_NUMERICAL),
    # x reaches the reference uncloned (a "large" input): its version counter shows the reference leaves
    # it alone, so the solution may not write it
    "writes-x": ("def run(x, totals, positive, count):\n    totals += x.sum(0)\n    positive.copy_(x > 0)\n"
                 "    count.copy_((x > 0).sum(-1))\n    x.abs_()\n", statuses.REWARD_HACK),
}


def test_the_child_and_the_in_process_runner_agree_on_the_former_drift_cases(tmp_path, make_problem):
    """The same plan through the evaluator's child process (the worker `kb eval` runs) and through
    run_in_process (the exploit suite's way): int/bool outputs poisoned before the call, every input
    "large" (reference_clone_bytes=0) so the reference gets x uncloned, watched by its version counter,
    and clones of `totals` once it is seen writing it."""
    import dataclasses

    from kernelbench.eval.runner import RunPlan, run_in_process
    from kernelbench.eval.sandbox import run_items

    problem = load_problem(make_problem(tmp_path, TALLY, [{"uuid": "w", "axes": {"batch": 5},
                                                           "inputs": {"x": {"type": "random"},
                                                                      "totals": {"type": "random"}}}]))
    plan = RunPlan(rounds=2, timing={"warmup": 1, "iterations": 3}, reference_clone_bytes=0)
    for name, (source, expected) in TALLY_SOLUTIONS.items():
        candidate = Solution(name=name, definition="tally", entry_point="main.py::run",
                             sources=(Source("main.py", source),), destination_passing_style=True)
        child: dict = {}
        request = {"problem_dir": str(problem.directory), "solution": candidate.to_json(), "device": "cpu",
                   **dataclasses.asdict(plan)}
        run_items("kernelbench.eval.worker", request, ["w"], build_timeout_s=120, item_timeout_s=120,
                  on_result=lambda _, result: child.update(result))
        in_process = run_in_process(problem, candidate, plan, shape_probe=False).outcomes["w"]
        assert child["status"] == in_process["status"] == expected, (name, child["log"], in_process["log"])
        assert child.get("findings") == in_process.get("findings"), name


WRONG_FROM_THE_SECOND_CALL = '''
import torch

calls = []

def run(x, weight, eps):
    calls.append(1)
    variance = x.float().pow(2).mean(-1, keepdim=True)
    out = (x.float() * torch.rsqrt(variance + eps)).to(x.dtype) * weight
    return out if len(calls) == 1 else out * 3
'''


def test_a_failing_round_reports_its_own_figures_not_an_earlier_passing_rounds(problem_dir):
    problem = load_problem(problem_dir)
    traces = evaluate(problem, solution(WRONG_FROM_THE_SECOND_CALL),
                      EvalConfig(device="cpu", rounds=2, max_workloads=1, timing=None))
    evaluation = traces[0].evaluation
    assert evaluation.status == statuses.INCORRECT_NUMERICAL, evaluation.log
    assert evaluation.correctness.max_absolute_error > 0.1   # round 0 passed with an error near 0
