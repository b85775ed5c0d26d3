"""A solution may do what the reference does, no more (audit.effects, through the evaluator's runner).

Two small problems: a KV-cache write whose reference updates `cache` in place and returns it, and
a transpose-and-broadcast whose reference returns a fresh transpose and `bias.expand(...)`. Each
rule comes with its legal case and its exploit, value-returning and destination-passing.
"""

from __future__ import annotations

import pytest
import torch

from audit.effects import observe_reference
from audit.static import scan_solution
from kernelbench.core import statuses
from kernelbench.core.problem import Tolerance, load_problem
from kernelbench.core.solution import Solution, Source
from kernelbench.eval.evaluator import EvalConfig, evaluate
from kernelbench.eval.runner import RunPlan, run_in_process

KV_REFERENCE = '''
import torch

def make_inputs(axes, device):
    return {"slots": torch.randperm(axes["num_slots"], device=device)[: axes["batch"]]}

def run(cache, new, slots):
    cache.index_copy_(0, slots, new)      # the KV-cache write, in place
    return cache
'''

KV_CACHE = {
    "name": "kv_cache_update",
    "description": "write new rows into a cache in place and return it (test problem)",
    "axes": {"batch": {"type": "var"}, "num_slots": {"type": "const", "value": 16},
             "dim": {"type": "const", "value": 8}},
    "constraints": ["batch <= num_slots"],
    "inputs": {"cache": {"shape": ["num_slots", "dim"], "dtype": "float32"},
               "new": {"shape": ["batch", "dim"], "dtype": "float32"},
               "slots": {"shape": ["batch"], "dtype": "int64"}},
    "outputs": {"updated": {"shape": ["num_slots", "dim"], "dtype": "float32"}},
    "custom_inputs_entrypoint": "make_inputs",
    "reference": KV_REFERENCE,
}
KV_WORKLOADS = [{"uuid": "kv", "axes": {"batch": 3},
                 "inputs": {"cache": {"type": "random"}, "new": {"type": "random"}, "slots": {"type": "custom"}}}]

BROADCAST_REFERENCE = '''
def run(x, bias):
    return x.t().contiguous(), bias.expand(x.shape[0], -1)
'''

BROADCAST = {
    "name": "transpose_broadcast",
    "description": "a fresh transpose and a broadcast view of an input (test problem)",
    "axes": {"rows": {"type": "var"}, "cols": {"type": "const", "value": 8}},
    "inputs": {"x": {"shape": ["rows", "cols"], "dtype": "float32"},
               "bias": {"shape": ["cols"], "dtype": "float32"}},
    "outputs": {"xt": {"shape": ["cols", "rows"], "dtype": "float32"},
                "bias_rows": {"shape": ["rows", "cols"], "dtype": "float32"}},
    "reference": BROADCAST_REFERENCE,
}
BROADCAST_WORKLOADS = [{"uuid": "bc", "axes": {"rows": 5}, "inputs": {"x": {"type": "random"}, "bias": {"type": "random"}}}]

SPARE = "    spare = torch.ones(cache.shape[0], dtype=torch.bool)\n    spare[slots] = False\n"

# name -> (problem, destination-passing, body after the signature, status, rule flagged or None)
CASES = {
    # an input the reference updates in place, returned (legal), or its output buffer filled from it
    "kv-update-returned": ("kv", False, "    cache[slots] = new\n    return cache\n", statuses.PASSED, None),
    "kv-update-dps": ("kv", True, "    cache[slots] = new\n    updated.copy_(cache)\n", statuses.PASSED, None),
    # updated wrongly: the cache's final values are judged like an output
    "kv-wrong-values": ("kv", False, "    cache[slots] = 2 * new\n    return cache\n", statuses.INCORRECT_NUMERICAL, None),
    "kv-wrong-values-dps": ("kv", True, "    cache[slots] = 2 * new\n    updated.copy_(cache)\n",
                            statuses.INCORRECT_NUMERICAL, None),
    # the right output, but the cache itself is not updated
    "kv-copy-not-in-place": ("kv", False, "    out = cache.clone()\n    out[slots] = new\n    return out\n",
                             statuses.INCORRECT_NUMERICAL, None),
    "kv-copy-not-in-place-dps": ("kv", True, "    updated.copy_(cache)\n    updated[slots] = new\n",
                                 statuses.INCORRECT_NUMERICAL, None),
    # an input the reference leaves alone, changed
    "kv-mutates-new": ("kv", False, "    cache[slots] = new\n    new.zero_()\n    return cache\n",
                       statuses.REWARD_HACK, "input-mutation"),
    "kv-mutates-new-dps": ("kv", True, "    cache[slots] = new\n    updated.copy_(cache)\n    new.zero_()\n",
                           statuses.REWARD_HACK, "input-mutation"),
    # the updated input written outside the reference's slice (scratch space in the spare slots)
    "kv-writes-spare-slots": ("kv", False, SPARE + "    cache[spare] = 0\n    cache[slots] = new\n    return cache\n",
                              statuses.REWARD_HACK, "input-mutation"),
    "kv-writes-spare-slots-dps": ("kv", True, SPARE + "    cache[slots] = new\n    updated.copy_(cache)\n"
                                  "    cache[spare] = 0\n", statuses.REWARD_HACK, "input-mutation"),
    # a view of an input where the reference returns one (expand), fresh memory where it does
    "broadcast-view": ("broadcast", False, "    return x.t().contiguous(), bias.expand(x.shape[0], -1)\n",
                       statuses.PASSED, None),
    "broadcast-dps": ("broadcast", True, "    xt.copy_(x.t())\n    bias_rows.copy_(bias.expand(x.shape[0], -1))\n",
                      statuses.PASSED, None),
    # a view of an input where the reference returns fresh memory: the copy was skipped
    "transpose-aliases-x": ("broadcast", False, "    return x.t(), bias.expand(x.shape[0], -1)\n",
                            statuses.REWARD_HACK, "output-aliases-input"),
    # destination-passing has no such exploit: the evaluator's (poisoned) buffers are judged, not what is returned
    "transpose-aliases-x-dps": ("broadcast", True, "    return x.t(), bias.expand(x.shape[0], -1)\n",
                                statuses.INCORRECT_NUMERICAL, None),
}
SIGNATURES = {("kv", False): "cache, new, slots", ("kv", True): "cache, new, slots, updated",
              ("broadcast", False): "x, bias", ("broadcast", True): "x, bias, xt, bias_rows"}
QUICK = RunPlan(rounds=2, timing={"warmup": 1, "iterations": 3})


@pytest.fixture(scope="module")
def problems(tmp_path_factory):
    from conftest import write_problem

    root = tmp_path_factory.mktemp("effects")
    return {"kv": load_problem(write_problem(root, KV_CACHE, KV_WORKLOADS)),
            "broadcast": load_problem(write_problem(root, BROADCAST, BROADCAST_WORKLOADS))}


def candidate(name: str) -> Solution:
    problem, dps, body, _, _ = CASES[name]
    source = f"import torch\n\n\ndef run({SIGNATURES[problem, dps]}):\n{body}"
    return Solution(name=name, definition=problem, entry_point="main.py::run", sources=(Source("main.py", source),),
                    destination_passing_style=dps)


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_solution_may_do_what_the_reference_does_and_no_more(name, problems):
    problem_key, _, _, expected, rule = CASES[name]
    problem = problems[problem_key]
    report = run_in_process(problem, candidate(name), QUICK)
    outcome = report.outcomes[problem.workloads[0].uuid]
    assert outcome["status"] == expected, outcome["log"]
    if rule:
        assert rule in report.rules, report.findings
    else:
        assert report.findings == [], report.findings
    if expected == statuses.PASSED:
        assert scan_solution(candidate(name), problem) == []


def test_a_wrong_update_names_the_input(problems):
    report = run_in_process(problems["kv"], candidate("kv-copy-not-in-place"), QUICK)
    assert "cache (updated in place, as the reference does)" in report.outcomes["kv"]["log"]


def test_the_evaluator_child_allows_a_returned_cache_update_and_flags_a_write_elsewhere(problems):
    config = EvalConfig(device="cpu", rounds=2, timing={"warmup": 1, "iterations": 3}, build_timeout_s=120,
                        workload_timeout_s=120)
    legal = evaluate(problems["kv"], candidate("kv-update-returned"), config)[0].to_json()["evaluation"]
    assert legal["status"] == statuses.PASSED and legal["audit"] == [], legal["log"]
    hack = evaluate(problems["kv"], candidate("kv-mutates-new"), config)[0].to_json()["evaluation"]
    assert hack["status"] == statuses.REWARD_HACK and "input-mutation: input 1 was modified" in hack["log"]


# ------------------------------------------------------------------ audit.effects directly


def test_effects_of_an_in_place_slice_update_and_an_expand():
    cache, new, slots = torch.randn(6, 4), torch.randn(2, 4), torch.tensor([4, 1])
    given = [cache.clone(), new, slots]
    given[0].index_copy_(0, slots, new)
    outputs = [given[0], new.expand(3, 2, 4), torch.zeros(1)]
    effects = observe_reference([cache, new, slots], given, {0}, outputs)
    assert list(effects.updated) == [0]
    assert effects.updated[0].changed.any(dim=1).tolist() == [False, True, False, False, True, False]
    assert effects.aliases == {0: frozenset({0}), 1: frozenset({1})}


def test_stray_writes_outside_the_reference_slice_beyond_the_tolerance():
    pristine = torch.randn(6, 4)
    final = pristine.clone()
    final[2] = torch.randn(4)
    effects = observe_reference([pristine], [final], {0}, [])
    tolerance = Tolerance(max_atol=1e-3, max_rtol=1e-3)
    solution = final.clone()
    solution[0] = solution[0] * (1 + 1e-6)        # rounding noise where the reference wrote nothing: allowed
    solution[2] = solution[2] + 5                 # wrong inside the slice: correctness's business
    assert effects.stray_writes([solution], tolerance) == []
    solution[5, 1] = 100.0                        # outside the slice
    finding, = effects.stray_writes([solution], tolerance)
    assert finding.rule == "input-mutation" and "1 values" in finding.evidence and "updates 4 of 24" in finding.evidence


def test_a_write_that_moves_no_version_counter_is_still_seen_on_a_clone():
    x, w = torch.randn(3, 4), torch.randn(4)
    given = [x.clone(), w]                       # w was given as it is (a large input the reference never wrote)
    version = given[0]._version
    given[0].numpy()[1, 2] = 7.0                 # through numpy: the counter does not move
    assert given[0]._version == version
    effects = observe_reference([x, w], given, set(), [])
    assert list(effects.updated) == [0] and int(effects.updated[0].changed.sum()) == 1
