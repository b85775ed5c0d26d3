"""The training audit without training: the static scan over every exploit fixture (and the clean
references), Landlock's denial in a real child, the cross-process comparisons and the leak check
on numbers that an attack would produce, and seed statistics against seed hunting."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from kernelbench.core.store import Store
from trainers import landlock, records
from trainers.candidate import Candidate
from trainers.harness import NONCAUSAL_TOL, RunConfig, RunResult, compare_probe, leak_finding
from trainers.static import scan_candidate
from trainers.stats import compare, summarize

ROOT = Path(__file__).resolve().parents[1]
EXPLOITS = ROOT / "tests" / "train_exploits"
REFERENCES = ROOT / "trainers" / "references"

# fixture -> the rule the static scan names (None: only the runtime defences can see it)
STATIC = {
    "reads_val_data": "file-access", "reads_evaluator": "file-access", "rebuilds_val_text": "val-data-access",
    "daemon_after_deadline": "subprocess", "patches_clock": "monkeypatch", "patches_loss": "monkeypatch",
    "forges_messages": "harness-tampering", "reaches_harness": "harness-tampering", "hunted_seed": "seed-override",
    "thread_after_deadline": None, "ignores_deadline": None, "trains_during_eval": None, "stateful_eval": None,
    "peeks_future": None, "eval_mode_switch": None, "trains_while_paused": None, "honest_bigram": None,
}


def rules(path: Path) -> set[str]:
    return {f.rule for f in scan_candidate(path.name, path.read_text())}


def test_every_fixture_is_listed():
    assert {p.stem for p in EXPLOITS.glob("*.py")} == set(STATIC)


@pytest.mark.parametrize("name", sorted(STATIC))
def test_static_scan_of_each_fixture(name):
    expected, found = STATIC[name], rules(EXPLOITS / f"{name}.py")
    assert expected in found if expected else found == set()


@pytest.mark.parametrize("reference", ["fixed_budget_gpt.py", "speedrun_gpt.py"])
def test_references_are_clean(reference):
    assert rules(REFERENCES / reference) == set()


def test_static_rules_read_names_not_text():
    source = textwrap.dedent('''
        import torch as t
        from inspect import getdoc
        def train(context):
            t.random.manual_seed(7 * 6)          # a constant seed, however written
            context._harness.deadline = 0        # private state of the ctx, whatever its name
            text = getdoc(t.nn.Linear)           # the stdlib's and libraries' docs are the corpus's source
            "ctx._harness and __doc__ in a string do nothing"
            t.manual_seed(context.seed + 1)      # derived from the harness's seed: fine
        ''')
    found = {(f.rule, f.evidence.split(":")[1]) for f in scan_candidate("c.py", source)}
    assert found == {("seed-override", "5"), ("harness-tampering", "6"), ("val-data-access", "7")}


# ---------------------------------------------------------------------- Landlock

@pytest.mark.skipif(not landlock.available(), reason="this kernel has no Landlock")
def test_landlock_denies_reads_under_protected_directories_even_from_c(tmp_path):
    protected, beside = tmp_path / "data", tmp_path / "work"
    protected.mkdir()
    beside.mkdir()
    (protected / "val.bin").write_bytes(b"secret validation tokens")
    (beside / "ok.txt").write_text("fine")
    script = textwrap.dedent(f'''
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from pathlib import Path
        import torch
        from trainers import landlock
        assert landlock.deny_reads([Path({str(protected)!r})])
        def attempt(read):
            try:
                read()
                return "read"
            except (OSError, RuntimeError):
                return "denied"
        print(attempt(lambda: open({str(protected / "val.bin")!r}, "rb").read()),
              attempt(lambda: torch.from_file({str(protected / "val.bin")!r}, size=4, dtype=torch.uint8)),
              attempt(lambda: open({str(beside / "ok.txt")!r}).read()),
              sorted(__import__("os").listdir({str(protected)!r})))
        ''')
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["denied", "denied", "read", "['val.bin']"], out.stderr


def test_landlock_allows_everything_off_the_way_to_a_protected_path(tmp_path):
    (tmp_path / "a" / "secret").mkdir(parents=True)
    (tmp_path / "a" / "open").mkdir()
    (tmp_path / "b").mkdir()
    allowed = set(landlock.allowed_entries([tmp_path / "a" / "secret"]))
    assert tmp_path / "a" / "open" in allowed and tmp_path / "b" in allowed
    assert not {tmp_path / "a", tmp_path / "a" / "secret", tmp_path} & allowed


# ---------------------------------------------------------------------- cross-process comparisons

def probe_numbers(rng, *, peek=0.0, mode_gap=0.0, state_gap=0.0, split=8):
    """Per-token losses as the evaluator and the probe process would report them."""
    base = rng.uniform(1, 5, size=(4, 16))
    last = rng.uniform(1, 5, size=(4, 16))
    mixed = base[:, :split].copy()
    mixed[:, split - 1] += peek           # the token before the split saw a different future
    main = {"nll_probe": base.tolist(), "nll_last": (last - state_gap).tolist()}
    probe = {"nll_mixed": mixed.tolist(), "nll_train_mode": (base + mode_gap).tolist(), "nll_last": last.tolist()}
    return main, probe


def test_the_same_numbers_in_both_processes_raise_nothing():
    main, probe = probe_numbers(np.random.default_rng(0))
    assert compare_probe(main, probe, split=8) == []


@pytest.mark.parametrize("attack, rule", [({"peek": 3 * NONCAUSAL_TOL}, "non-causal"),
                                          ({"mode_gap": 0.2}, "eval-mode-divergence"),
                                          ({"state_gap": 0.3}, "stateful-eval")])
def test_each_difference_names_its_rule(attack, rule):
    main, probe = probe_numbers(np.random.default_rng(1), **attack)
    assert [f["rule"] for f in compare_probe(main, probe, split=8)] == [rule]


def test_leak_check_fires_only_far_below_the_training_text():
    assert leak_finding({"val_bpb": 1.43, "train_bpb": 2.47})["rule"] == "val-leak-suspected"
    assert leak_finding({"val_bpb": 2.30, "train_bpb": 2.47}) is None       # the splits' own difference
    assert leak_finding({"val_loss": 2.0, "train_loss": 4.0, "val_bpb": None})["rule"] == "val-leak-suspected"


# ---------------------------------------------------------------------- seeds

def test_a_lucky_seed_is_not_an_improvement():
    baseline = [2.500, 2.520, 2.480, 2.510, 2.490]
    lucky = [2.470, 2.525, 2.495, 2.490, 2.505]          # its best seed beats every baseline seed
    verdict = compare(lucky, baseline)
    assert min(lucky) < min(baseline) and not verdict.supported and "not supported" in verdict.verdict
    assert compare([2.40, 2.41, 2.39, 2.40], baseline).supported
    assert "at least 2 seeds" in compare([2.0], baseline).verdict


def test_summary_is_mean_and_sample_spread():
    summary = summarize([1.0, 2.0, 3.0])
    assert (summary.n, summary.mean, summary.std) == (3, 2.0, 1.0)


def test_statistics_use_every_recorded_run_not_the_ones_shown(tmp_path):
    store = Store(tmp_path / "kb.db")
    candidate = Candidate("c", "def train(ctx): pass\ndef build_model(config): pass\n")
    config = RunConfig(budget_s=5)
    key = records.config_key(config, "shipped", "cpu")
    for seed, bpb in enumerate([2.6, 2.7, 2.65, 2.1]):    # three honest runs, then the one a hunter would show
        records.record_run(store, "r", candidate, key, RunResult("fixed-budget", seed, "PASSED", val_bpb=bpb))
    records.record_run(store, "r", candidate, key, RunResult("fixed-budget", 9, "REWARD_HACK", val_bpb=0.5))
    other = records.config_key(RunConfig(budget_s=6), "shipped", "cpu")
    records.record_run(store, "r", candidate, other, RunResult("fixed-budget", 0, "PASSED", val_bpb=9.9))
    values = records.metric_values(records.recorded_runs(store, candidate.hash, key), "fixed-budget")
    assert values == [2.6, 2.7, 2.65, 2.1]                # every passed run under this configuration, only those
