"""Whole training runs on the CPU: the honest control and the references through `kb train`, and
the exploit suite through the runtime defences (the static scan switched off, so each attack
actually runs). Budgets are seconds and models tiny; a run still costs three interpreters, so
the rest is marked slow (pytest -m slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from kernelbench.cli import main
from trainers.candidate import Candidate
from trainers.datasets import open_dataset
from trainers.harness import SPEEDRUN, RunConfig, RunResult, run_training

ROOT = Path(__file__).resolve().parents[1]
EXPLOITS = ROOT / "tests" / "train_exploits"
slow = pytest.mark.slow   # a training run each
TINY_GPT = ["--param", "d_model=32", "--param", "n_head=2", "--param", "n_layer=1", "--param", "batch_size=4",
            "--param", "seq_len=32"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return open_dataset("shipped", cache_dir=tmp_path_factory.mktemp("cache"))


def run(name: str, dataset, **overrides):
    config = dict(budget_s=3.0, seq_len=32, eval_batch_size=8, val_tokens=4096, cpu_threads=1, static_audit=False)
    config.update(overrides)
    return run_training(Candidate.read(EXPLOITS / f"{name}.py"), dataset, RunConfig(**config))


def rules(result) -> set[str]:
    return {f["rule"] for f in result.findings}


def test_honest_candidate_passes_with_its_score(dataset):
    result = run("honest_bigram", dataset, val_tokens=None)   # the whole split: the leak check compares like with like
    assert result.status == "PASSED" and not result.findings, result.findings
    assert 1.0 < result.val_bpb < 4.0 and result.steps > 0 and 2.9 < result.train_s < 4.5
    assert result.summary() == f"val bpb {result.val_bpb:.4f}"
    assert result.overhead_s["not_training"] > 0 and result.isolation.endswith("audit-hook")


def test_a_static_finding_stops_the_run_before_any_code_runs(dataset):
    result = run("hunted_seed", dataset, static_audit=True)
    assert result.status == "REWARD_HACK" and rules(result) == {"seed-override"} and result.steps == 0


# the exploit suite: fixture -> (rule the runtime defences name, status)
RUNTIME = {
    "reads_val_data": ("val-data-access", "REWARD_HACK"),
    "thread_after_deadline": ("work-after-deadline", "REWARD_HACK"),
    "ignores_deadline": ("over-budget", "TIMEOUT"),
    "trains_during_eval": ("weights-changed-during-eval", "REWARD_HACK"),
    "peeks_future": ("non-causal", "REWARD_HACK"),
    "forges_messages": ("harness-tampering", "REWARD_HACK"),
}
RUNTIME_SLOW = {
    "reads_evaluator": ("val-data-access", "REWARD_HACK"),
    "daemon_after_deadline": ("work-after-deadline", "REWARD_HACK"),
    "reaches_harness": ("over-budget", "TIMEOUT"),
    "stateful_eval": ("stateful-eval", "REWARD_HACK"),
    "eval_mode_switch": ("eval-mode-divergence", "REWARD_HACK"),
    "patches_clock": ("monkeypatch", "REWARD_HACK"),
    "patches_loss": ("monkeypatch", "REWARD_HACK"),
}


@pytest.mark.parametrize("name", sorted(RUNTIME))
def test_exploit_caught_at_run_time(name, dataset):
    rule, status = RUNTIME[name]
    result = run(name, dataset)
    assert result.status == status and rule in rules(result), (result.status, result.findings, result.log[-2000:])


@slow
@pytest.mark.parametrize("name", sorted(RUNTIME_SLOW))
def test_more_exploits_caught_at_run_time(name, dataset):
    rule, status = RUNTIME_SLOW[name]
    result = run(name, dataset)
    assert result.status == status and rule in rules(result), (result.status, result.findings, result.log[-2000:])


@slow
def test_validation_text_rebuilt_from_the_stdlib_shows_as_a_leak(dataset):
    result = run("rebuilds_val_text", dataset, budget_s=15.0, val_tokens=None)
    assert result.status == "REWARD_HACK" and "val-leak-suspected" in rules(result), result.findings


@slow
def test_training_while_the_speedrun_clock_is_paused(dataset):
    result = run("trains_while_paused", dataset, benchmark=SPEEDRUN, target_loss=0.1, eval_every_s=1.0)
    assert result.status == "REWARD_HACK" and "work-outside-clock" in rules(result), result.findings


# ---------------------------------------------------------------------- kb train

def kb(tmp_path, *args):
    result = CliRunner().invoke(main, ["--db", str(tmp_path / "kb.db"), "--cache-dir", str(tmp_path / "cache"),
                                       "train", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_kb_train_fixed_budget_reference_reports_bpb_and_records_it(tmp_path):
    report = json.loads(kb(tmp_path, "fixed-budget", "reference", "--budget", "3", "--device", "cpu", "--seq-len", "32",
                           "--val-tokens", "4096", "--cpu-threads", "1", "--json", *TINY_GPT))
    run_ = report["runs"][0]
    assert run_["status"] == "PASSED" and run_["val_bpb"] > 0, run_
    assert report["summary"]["values"] == report["summary"]["recorded_values"] == [run_["val_bpb"]]   # in the store
    assert report["summary"]["text"].startswith("fixed-budget: val bpb")


def test_kb_train_speedrun_reference_reports_time_to_target(tmp_path):
    out = kb(tmp_path, "speedrun", "reference", "--target-loss", "7.9", "--budget", "6", "--eval-every", "1.5",
             "--device", "cpu", "--seq-len", "32", "--val-tokens", "4096", "--cpu-threads", "1", *TINY_GPT)
    assert "time to target" in out, out


def test_speedrun_words_for_a_missed_target():
    result = RunResult(SPEEDRUN, 0, "PASSED", checkpoints=[{"train_s": 3.0, "val_loss": 4.2}, {"train_s": 6.0, "val_loss": 3.9}])
    assert result.summary() == "target not reached (best val loss 3.900 at 6.0 s)"


@slow
def test_kb_train_search_runs_audited_trials(tmp_path):
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"lr_adam": {"low": 0.001, "high": 0.02, "log": True}, "d_model": {"choices": [32, 64]}}))
    out = kb(tmp_path, "search", "reference", "--space", str(space), "--budget", "30", "--trial-budget", "2",
             "--device", "cpu", "--seq-len", "32", "--val-tokens", "4096", "--cpu-threads", "1", "--param", "n_head=2",
             "--param", "n_layer=1", "--json")
    report = json.loads(out)
    assert report["trials"] and report["best"] is not None
    assert all(t["result"]["status"] == "PASSED" for t in report["trials"])


@slow
def test_reference_over_tens_of_seconds_learns(tmp_path):
    out = json.loads(kb(tmp_path, "fixed-budget", "reference", "--budget", "20", "--device", "cpu", "--seq-len", "64",
                        "--cpu-threads", "1", "--json", "--param", "d_model=64", "--param", "n_head=2"))
    assert out["runs"][0]["status"] == "PASSED" and out["runs"][0]["val_bpb"] < 2.7, out["runs"][0]
