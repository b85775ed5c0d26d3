"""The generator's machinery on CPU: registry, search, dispatch, finalists, knowledge base, --json.

A small family registered for the test (a Triton RMSNorm whose configuration is the number of
warps and a deliberate per-call delay, so the search has a real ranking to find) drives the
real optimize job end to end.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from click.testing import CliRunner

from kernelbench.cli import main
from kernelbench.core.problem import load_problem
from kernelbench.core.settings import Settings
from kernelbench.eval.evaluator import EvalConfig, evaluate
from kernelbench.generate import knowledge
from kernelbench.generate.candidate import Candidate, Provenance
from kernelbench.generate.dispatch import assemble
from kernelbench.generate.family import FAMILIES, Family, Match
from kernelbench.core.solution import Solution, Source
from kernelbench.jobs.optimize import optimize
from kernelbench.jobs.session import Session
from test_screening import TRITON_RMSNORM
from tiny_problems import write_rmsnorm_problem


def rmsnorm_source(delay_rows: int) -> str:
    """The Triton RMSNorm, slowed by `delay_rows` extra launches per call: a configuration that changes
    speed, never results (as a template's configurations do)."""
    return TRITON_RMSNORM + f'''

_run = run


def run(x, weight, eps, out):
    for _ in range({delay_rows}):
        _run(x, weight, eps, out)
    _run(x, weight, eps, out)
'''


class DelayFamily(Family):
    """Matches any problem with one [rows, hidden] bf16 input, a [hidden] weight and an eps scalar."""
    name = "test_delay"

    def match(self, problem, time_limit_s=120):
        inputs = list(problem.definition.inputs.values())
        if [s.dtype for s in inputs] == ["bfloat16", "bfloat16", "float32"] and inputs[2].is_scalar:
            return Match(self.name, "rmsnorm-like")
        return None

    def space(self, match, axes):
        return [{"delay": 3}, {"delay": 0}, {"delay": 6}]

    def shape_class(self, match, axes):
        return f"rows<={4 if axes['batch'] <= 4 else 64}"

    def render(self, match, config):
        return Solution(name=f"delay{config['delay']}", definition="x", entry_point="main.py::run",
                        sources=(Source("main.py", rmsnorm_source(config["delay"])),), languages=("triton",),
                        author="kernelbench", destination_passing_style=True)


@pytest.fixture
def family(monkeypatch):
    """The test family alone: the shipped families (which also match this RMSNorm) step aside."""
    for name in list(FAMILIES):
        monkeypatch.delitem(FAMILIES, name)
    monkeypatch.setitem(FAMILIES, DelayFamily.name, DelayFamily())
    return FAMILIES[DelayFamily.name]


def config():
    return EvalConfig(device="cpu", rounds=2, timing={"warmup": 1, "iterations": 3}, workload_timeout_s=120,
                      build_timeout_s=120)


def test_optimize_searches_verifies_and_remembers(tmp_path, family):
    session = Session.open(Settings(db=tmp_path / "kb.db"), "cpu")
    first = load_problem(write_rmsnorm_problem(tmp_path / "a", "001_first", batches=(2, 8)))
    result = optimize(session, first, config(), budget_s=120, variants=["eager"])
    configs = {json.dumps(s.candidate.provenance.parameters) for s in result.search.screened}
    assert configs == {'{"delay": 3}', '{"delay": 0}', '{"delay": 6}'}
    assert all(s.result.status == "PASSED" for s in result.search.screened)
    assert result.search.fallback.provenance.parameters == {"delay": 0}   # the search found the fast one
    finalists = [r for r in result.evaluated if r.provenance["source"] in ("template", "dispatch")]
    assert finalists and all(r.summary["status"] == "PASSED" for r in finalists)
    # the chosen one is the best verified result (on CPU the interpreter's kernel may lose to eager)
    assert result.chosen is max(result.evaluated, key=lambda r: r.summary["sol_score"])
    stored = session.store.candidates(first.name, run_id=result.run_id)
    assert {row["status"] for row in stored} == {"PASSED"} and len(stored) >= 3
    entries = knowledge.stored(session.store, "cpu")
    assert {e.shape_class for e in entries} == {"rows<=4", "rows<=64"}
    assert all(e.config == {"delay": 0} and e.task == "001_first" for e in entries)

    # a second task of the family starts from the first one's winners, and says so
    second = load_problem(write_rmsnorm_problem(tmp_path / "b", "002_second", batches=(3,)))
    again = optimize(session, second, config(), budget_s=0, variants=["eager"])
    proposers = [c.provenance.proposer for c in again.proposed]
    assert proposers[0] == "knowledge base: 001_first"
    [seeded] = [r for r in again.evaluated if r.provenance["source"] == "template"]
    assert seeded.provenance["parameters"] == {"delay": 0} and seeded.summary["status"] == "PASSED"
    assert any(e["provenance"]["proposer"] == "knowledge base: 001_first" for e in again.to_json()["evaluated"])


def test_budget_zero_renders_the_first_guess_without_screening(tmp_path, family):
    session = Session.open(Settings(db=tmp_path / "kb.db"), "cpu")
    problem = load_problem(write_rmsnorm_problem(tmp_path, batches=(2,)))
    result = optimize(session, problem, config(), budget_s=0, variants=["eager"])
    assert result.search is None
    template = [r for r in result.evaluated if r.provenance["source"] == "template"]
    assert [r.provenance["parameters"] for r in template] == [{"delay": 3}]   # the family's first guess
    assert template[0].summary["status"] == "PASSED"


def test_dispatch_runs_each_shapes_winner_and_the_fallback_elsewhere(tmp_path):
    problem = load_problem(write_rmsnorm_problem(tmp_path, batches=(2, 8)))
    small, large = problem.workloads
    fast = Candidate(DelayFamily().render(None, {"delay": 0}), Provenance("template", "test_delay", {"delay": 0}))
    slow = Candidate(DelayFamily().render(None, {"delay": 2}), Provenance("template", "test_delay", {"delay": 2}))
    assembled = assemble(problem, {small.uuid: slow, large.uuid: fast}, fast)
    entry = next(s.content for s in assembled.solution.sources if s.path == "dispatch.py")
    assert "((2, 64), (64,)): _variant_1" in entry and "((8, 64), (64,)): _variant_0" in entry
    traces = [t.to_json() for t in evaluate(problem, assembled.solution, EvalConfig(device="cpu", rounds=2, timing=None))]
    assert [t["evaluation"]["status"] for t in traces] == ["PASSED", "PASSED"], traces[0]["evaluation"]["log"]
    assert assemble(problem, {small.uuid: fast, large.uuid: fast}, fast) is fast   # one variant: no dispatch


def test_a_winner_of_the_other_call_convention_is_left_to_the_fallback(tmp_path):
    # a value-returning winner cannot share a module with a destination-passing fallback
    problem = load_problem(write_rmsnorm_problem(tmp_path, batches=(2, 8)))
    small, large = problem.workloads
    fast = Candidate(DelayFamily().render(None, {"delay": 0}), Provenance("template", "test_delay", {"delay": 0}))
    returning = replace(fast.solution, name="returning", destination_passing_style=False,
                        sources=(Source("main.py", "def run(x, weight, eps):\n    return x\n"),))
    other = Candidate(returning, Provenance("llm", None, {}))
    assert fast.solution.destination_passing_style
    assert assemble(problem, {small.uuid: other, large.uuid: fast}, fast) is fast


def test_optimize_json_lists_every_candidate(tmp_path, family, monkeypatch):
    task = write_rmsnorm_problem(tmp_path / "tasks", batches=(2,))
    result = CliRunner().invoke(main, ["--db", str(tmp_path / "kb.db"), "optimize", str(task), "--device", "cpu",
                                       "--rounds", "2", "--warmup", "1", "--iterations", "2", "--budget", "120",
                                       "--out", str(tmp_path / "out"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    screened = report["screened"]
    assert len(screened) == 3 and all(s["provenance"]["family"] == "test_delay" for s in screened)
    assert all({"status", "seconds", "times_ms"} <= set(s["rungs"][0]) for s in screened)
    assert report["winner"]["ranked"] and report["search"]["candidates_per_second"] > 0
    assert {e["provenance"]["source"] for e in report["evaluated"]} >= {"baseline", "template"}
