"""Trace model: every trace the evaluator writes, and official ones, read and write back unchanged."""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import TINY_DEFINITION, TINY_REFERENCE, TINY_WORKLOADS, write_problem
from kernelbench.core import statuses
from kernelbench.core.problem import load_problem
from kernelbench.core.solution import reference_solution
from kernelbench.core.statuses import Status
from kernelbench.core.trace import Trace, TracedWorkload, TraceError
from kernelbench.eval.evaluator import EvalConfig, evaluate, make_trace

from tiny_problems import write_rmsnorm_problem


@pytest.fixture(scope="module")
def every_source_problem(tmp_path_factory):
    """The tiny RMSNorm with inputs of all four kinds: random, scalar, safetensors, custom."""
    definition = copy.deepcopy(TINY_DEFINITION)
    definition["inputs"]["bias"] = {"shape": ["hidden"], "dtype": "float32"}
    definition["inputs"]["table"] = {"shape": ["hidden"], "dtype": "float32"}
    definition["reference"] = TINY_REFERENCE.replace("def run(x, norm_weight, eps)", "def run(x, norm_weight, eps, bias, table)") \
        + "\ndef make_inputs(axes, device):\n    return {}\n"
    definition["custom_inputs_entrypoint"] = "make_inputs"
    workloads = copy.deepcopy(TINY_WORKLOADS)
    for w in workloads:
        w["inputs"]["bias"] = {"type": "safetensors", "path": "blobs/bias.safetensors", "tensor_key": "bias"}
        w["inputs"]["table"] = {"type": "custom"}
    return load_problem(write_problem(tmp_path_factory.mktemp("trace"), definition, workloads))


TIMING = {"clock": "cuda_event", "device": "cuda:0", "samples_ms": [0.5, 0.25, 0.75], "warmup": 1, "l2_flushed": True,
          "gpu_state": {"before": {"sm_clock_mhz": 1980, "throttle": []}, "after": {"sm_clock_mhz": 1755}},
          "details": {"pool": 2}, "median_ms": 0.5, "mean_ms": 0.5, "min_ms": 0.25, "max_ms": 0.75,
          "stdev_ms": 0.25, "iterations": 3}
CORRECTNESS = {"max_absolute_error": 0.001, "max_relative_error": 0.02, "has_nan": False, "has_inf": False}
ENVIRONMENT = {"hardware": "NVIDIA H100 80GB HBM3", "device": "cuda",
               "libs": {"torch": "2.11.0", "triton": "3.6.0", "cuda": "12.8"}, "roofline_profile": "H100/datasheet"}
FINDING = {"rule": "monkeypatch", "evidence": "kernel.py:3: assigns torch.matmul"}

outcomes = st.fixed_dictionaries(
    {"status": st.sampled_from(list(Status)),
     "log": st.text(max_size=20)},
    optional={"correctness": st.none() | st.just(CORRECTNESS),
              "timing": st.none() | st.just(TIMING),
              "findings": st.lists(st.just(FINDING), max_size=2)})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(outcome=outcomes, device=st.sampled_from(["cpu", "cuda", "cuda:1"]),
       environment=st.none() | st.just(ENVIRONMENT), baseline_ms=st.none() | st.floats(0.01, 10),
       sol_ms=st.none() | st.floats(0.01, 10), which=st.integers(0, 2))
def test_every_make_trace_dict_round_trips(every_source_problem, outcome, device, environment, baseline_ms,
                                           sol_ms, which):
    problem = every_source_problem
    solution = reference_solution(problem.name, problem.definition.reference)
    trace = make_trace(problem, solution, problem.workloads[which], copy.deepcopy(outcome), device, environment,
                       baseline_ms, sol_ms).to_json()
    assert Trace.from_json(trace).to_json() == trace
    on_disk = json.loads(json.dumps(trace))
    assert Trace.from_json(on_disk).to_json() == on_disk


def test_round_trip_covers_below_sol_and_every_input_kind(every_source_problem):
    """The cases the property test must reach: a PASSED time under T_SOL turns into REWARD_HACK with
    a finding, and the workload echoes all four source kinds."""
    problem = every_source_problem
    solution = reference_solution(problem.name, problem.definition.reference)
    outcome = {"status": statuses.PASSED, "log": "", "correctness": CORRECTNESS, "timing": TIMING}
    trace = make_trace(problem, solution, problem.workloads[0], outcome, "cuda", ENVIRONMENT, 2.0, 1.0).to_json()
    assert trace["evaluation"]["status"] == "REWARD_HACK"
    assert trace["evaluation"]["audit"][0]["rule"] == "faster-than-sol"
    assert {s["type"] for s in trace["workload"]["inputs"].values()} == {"random", "scalar", "safetensors", "custom"}
    model = Trace.from_json(trace)
    assert model.evaluation.status is Status.REWARD_HACK
    assert model.evaluation.performance.sol_latency_ms == 1.0 and model.evaluation.performance.clock == "cuda"
    assert model.evaluation.performance.timing.median_ms == 0.5
    assert model.to_json() == trace


def test_traces_of_a_real_evaluation_round_trip(tmp_path):
    problem = load_problem(write_rmsnorm_problem(tmp_path))
    config = EvalConfig(device="cpu", rounds=1, timing={"warmup": 1, "iterations": 3}, max_workloads=1)
    traces = [t.to_json() for t in evaluate(problem, reference_solution(problem.name, problem.definition.reference),
                                            config)]
    assert traces and traces[0]["evaluation"]["status"] == statuses.PASSED
    for trace in traces:
        assert Trace.from_json(trace).to_json() == trace
        line = json.loads(json.dumps(trace))
        assert Trace.from_json(line).to_json() == line


OFFICIAL = {  # the official models' dump (sol_execbench.core.data.trace), tolerance included
    "definition": "rmsnorm_h128", "solution": "rmsnorm_triton_v1",
    "workload": {"axes": {"batch_size": 7}, "inputs": {"hidden_states": {"type": "random"},
                                                       "eps": {"type": "scalar", "value": 1e-6}},
                 "uuid": "0f3c", "tolerance": {"max_atol": 0.01, "max_rtol": 0.01, "required_matched_ratio": 0.99,
                                               "max_error_cap": None, "allow_negative_inf": False}},
    "evaluation": {"status": "PASSED", "environment": {"hardware": "B200", "libs": {"torch": "2.9.0"}},
                   "timestamp": "2026-03-01T12:00:00", "log": "",
                   "correctness": {"max_relative_error": 0.0, "max_absolute_error": 0.0, "has_nan": False,
                                   "has_inf": False, "extra": None},
                   "performance": {"latency_ms": 0.01, "reference_latency_ms": 0.02, "speedup_factor": 2.0}},
}


def test_official_trace_round_trips_without_our_fields():
    assert Trace.from_json(copy.deepcopy(OFFICIAL)).to_json() == OFFICIAL


def test_workload_trace_without_solution_or_evaluation():
    data = {"definition": "d", "workload": {"uuid": "u", "axes": {}, "inputs": {}}}
    trace = Trace.from_json(data)
    assert trace.solution is None and trace.evaluation is None
    assert trace.to_json() == {**data, "solution": None, "evaluation": None}


def test_unknown_keys_survive():
    data = copy.deepcopy(OFFICIAL)
    data["evaluation"]["performance"]["cupti_kernels"] = 3
    data["evaluation"]["future_field"] = {"a": [1]}
    assert Trace.from_json(data).to_json() == data


def test_traced_workload_of_a_loaded_workload(every_source_problem):
    workload = every_source_problem.workloads[1]
    echoed = TracedWorkload.of(workload).model_dump(mode="json")
    assert echoed == {"uuid": "w-large", "axes": {"batch": 8},
                      "inputs": {"x": {"type": "random"}, "norm_weight": {"type": "random"},
                                 "eps": {"type": "scalar", "value": 1e-6},
                                 "bias": {"type": "safetensors", "path": "blobs/bias.safetensors", "tensor_key": "bias"},
                                 "table": {"type": "custom"}}}


@pytest.mark.parametrize("mutate, field", [
    (lambda t: t["evaluation"].update(status="FINE"), "evaluation.status"),
    (lambda t: t["evaluation"].pop("timestamp"), "evaluation.timestamp"),
    (lambda t: t["evaluation"].update(timestamp=""), "evaluation.timestamp"),
    (lambda t: t.pop("definition"), "definition"),
    (lambda t: t["workload"]["inputs"].update(eps={"type": "scalar"}), "workload.inputs.eps.value"),
    (lambda t: t["workload"]["inputs"].update(x={"type": "zeros"}), "workload.inputs.x.type"),
    (lambda t: t["evaluation"]["performance"].update(latency_ms="fast"), "evaluation.performance.latency_ms"),
], ids=["status", "no-timestamp", "empty-timestamp", "no-definition", "scalar-without-value", "bad-input-type",
        "latency-not-a-number"])
def test_malformed_trace_names_the_field(mutate, field):
    data = copy.deepcopy(OFFICIAL)
    mutate(data)
    with pytest.raises(TraceError) as info:
        Trace.from_json(data)
    assert str(info.value).startswith(f"trace: {field}: ")


def test_status_is_the_plain_name_everywhere():
    assert statuses.PASSED is Status.PASSED and statuses.PASSED == "PASSED"
    assert json.dumps({"status": statuses.REWARD_HACK}) == '{"status": "REWARD_HACK"}'
    assert f"{statuses.TIMEOUT}" == str(statuses.TIMEOUT) == "TIMEOUT"
    assert {"PASSED": 1}[statuses.PASSED] == 1
    assert statuses.ALL == tuple(Status) and len(statuses.ALL) == 9
    assert [s.value for s in statuses.ALL] == ["PASSED", "INCORRECT_SHAPE", "INCORRECT_DTYPE", "INCORRECT_NUMERICAL",
                                               "RUNTIME_ERROR", "COMPILE_ERROR", "TIMEOUT", "REWARD_HACK",
                                               "INVALID_REFERENCE"]
