"""`kb train`: the LLM-training benchmarks (trainers/README.md).

    kb train fixed-budget CANDIDATE.py [--budget 300] [--seeds N] [--baseline FILE|reference]
    kb train speedrun CANDIDATE.py --target-loss LOSS [--budget 600] [--eval-every S]
    kb train search CANDIDATE.py --space SPACE.json --budget SECONDS [--trial-budget S]
    kb train download fineweb10b|fineweb-edu|climbmix --out DIR [--shards N]

CANDIDATE may be `reference`: the benchmark's reference candidate. Every run is recorded in the
store; the summary's mean and spread cover every recorded run of the candidate under the same
configuration, and an improvement over --baseline is claimed only if Welch's t-test supports it.
"""

from __future__ import annotations

import functools
import json
import secrets
import uuid
from pathlib import Path

import click
import torch

from kernelbench.core.errors import KernelBenchError
from kernelbench.core.store import Store
from trainers import records
from trainers.candidate import Candidate
from trainers.datasets import SHIPPED, open_dataset
from trainers.download import SOURCES, download
from trainers.harness import FIXED_BUDGET, SPEEDRUN, RunConfig, RunResult, run_training
from trainers.search import load_space, search
from trainers.stats import compare, summarize

from .common import console, resolve_device, settings

REFERENCES = {FIXED_BUDGET: "fixed_budget_gpt.py", SPEEDRUN: "speedrun_gpt.py"}
REFERENCE_DIR = Path(__file__).resolve().parents[2] / "trainers" / "references"
DEFAULT_BUDGET = {FIXED_BUDGET: 300.0, SPEEDRUN: 600.0}


@click.group("train")
def train():
    """LLM-training benchmarks: fixed-budget (val bits per byte) and speedrun (time to a target loss)."""


def run_options(function):
    options = [
        click.argument("candidate"),
        click.option("--budget", type=float, default=None,
                     help="Seconds of training (fixed-budget: the budget, default 300; speedrun: the limit, default 600)."),
        click.option("--seeds", type=int, default=1, show_default=True, help="Runs, each with a fresh random seed."),
        click.option("--seed", "fixed_seeds", type=int, multiple=True, help="Run exactly this seed (repeatable)."),
        click.option("--device", default=None, help="cuda | cuda:N | cpu (default: cuda when present)."),
        click.option("--data", default=SHIPPED, show_default=True,
                     help="'shipped' (the committed corpus) or a directory of .bin token or .parquet text shards."),
        click.option("--tokenizer", default=None, help="tokenizer.json for text shards, or for bits per byte on .bin shards."),
        click.option("--seq-len", type=int, default=256, show_default=True, help="The evaluator's window (ctx.seq_len)."),
        click.option("--eval-batch-size", type=int, default=16, show_default=True),
        click.option("--val-tokens", type=int, default=None, help="Validation tokens to score (default: all)."),
        click.option("--param", "params", multiple=True, help="A hyperparameter for ctx.params: NAME=VALUE (repeatable)."),
        click.option("--baseline", default=None, help="A candidate file, or 'reference', to test an improvement against."),
        click.option("--cpu-threads", type=int, default=None, help="torch threads of each child on a CPU device."),
        click.option("--no-os-isolation", is_flag=True, help="Do not use Landlock (the audit hook still watches reads)."),
        click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout."),
        click.option("--verbose", is_flag=True, help="Print the candidate's ctx.log progress."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


@train.command("fixed-budget")
@run_options
def fixed_budget_command(**options):
    """Train CANDIDATE for --budget seconds; score: validation bits per byte (lower is better)."""
    _benchmark(FIXED_BUDGET, target_loss=None, eval_every=None, **options)


@train.command("speedrun")
@run_options
@click.option("--target-loss", type=float, required=True, help="Validation loss (nats per token) to reach.")
@click.option("--eval-every", type=float, default=None, help="Seconds of training between checkpoints (default budget/20).")
def speedrun_command(target_loss, eval_every, **options):
    """Train CANDIDATE until the validation loss reaches --target-loss; score: time to target (lower is better)."""
    _benchmark(SPEEDRUN, target_loss=target_loss, eval_every=eval_every, **options)


@train.command("search")
@click.argument("candidate")
@click.option("--space", required=True, help="JSON: hyperparameter -> {low, high[, log, type]} or {choices}.")
@click.option("--budget", type=float, required=True, help="Seconds for the whole search.")
@click.option("--trial-budget", type=float, default=60.0, show_default=True, help="Training seconds of each trial.")
@click.option("--benchmark", type=click.Choice([FIXED_BUDGET, SPEEDRUN]), default=FIXED_BUDGET, show_default=True)
@click.option("--target-loss", type=float, default=None, help="Speedrun trials: the loss to reach.")
@click.option("--device", default=None)
@click.option("--data", default=SHIPPED, show_default=True)
@click.option("--tokenizer", default=None)
@click.option("--seq-len", type=int, default=256, show_default=True)
@click.option("--val-tokens", type=int, default=None)
@click.option("--param", "params", multiple=True, help="Fixed hyperparameters: NAME=VALUE (repeatable).")
@click.option("--cpu-threads", type=int, default=None)
@click.option("--json", "as_json", is_flag=True)
def search_command(candidate, space, budget, trial_budget, benchmark, target_loss, device, data, tokenizer, seq_len,
                   val_tokens, params, cpu_threads, as_json):
    """Search CANDIDATE's hyperparameters within --budget seconds; every trial is a full audited run."""
    if benchmark == SPEEDRUN and target_loss is None:
        raise KernelBenchError("a speedrun search needs --target-loss")
    chosen = _candidate(candidate, benchmark)
    dataset = open_dataset(data, cache_dir=settings().cache_dir, tokenizer=tokenizer)
    config = RunConfig(benchmark=benchmark, budget_s=trial_budget, device=resolve_device(device), seq_len=seq_len,
                       target_loss=target_loss, params=_parse_params(params), val_tokens=val_tokens,
                       cpu_threads=cpu_threads)
    store = Store(settings().db)
    key = records.config_key(config, dataset.name, _hardware(config.device))
    run_id = f"search-{uuid.uuid4().hex[:12]}"

    def on_trial(trial):
        records.record_run(store, run_id, chosen, {**key, "params": {**config.params, **trial.params}}, trial.result)
        if not as_json:
            console.print(f"trial {trial.number}: {_params_text(trial.params)} -> {trial.result.summary()}", highlight=False)

    outcome = search(chosen, dataset, config, load_space(space), budget_s=budget, on_trial=on_trial)
    best = outcome.best
    if as_json:
        click.echo(json.dumps({"run_id": run_id, "trials": [{"number": t.number, "params": t.params, "value": t.value,
                                                              "result": t.result.to_json()} for t in outcome.trials],
                               "best": None if best is None else {"number": best.number, "params": best.params,
                                                                  "value": best.value}}, default=str))
        return
    if best is None:
        console.print(f"{len(outcome.trials)} trials, none passed", highlight=False)
    else:
        console.print(f"best of {len(outcome.trials)} trials: trial {best.number}, {_params_text(best.params)} -> "
                      f"{best.result.summary()}; confirm it over several seeds with --param", highlight=False)


@train.command("download")
@click.argument("source", type=click.Choice(sorted(SOURCES)))
@click.option("--out", required=True, help="Directory to write the shards into (then: --data DIR).")
@click.option("--shards", type=int, default=1, show_default=True, help="Training shards to fetch (plus the validation shard).")
@click.option("--base-url", default=None, help="Another mirror of the same files (any URL urllib opens).")
def download_command(source, out, shards, base_url):
    """Fetch real training data (the only command that uses the network)."""
    download(source, out, shards=shards, base_url=base_url,
             on_file=lambda path: console.print(f"{path}", highlight=False))


# ---------------------------------------------------------------------- one benchmark

def _benchmark(benchmark, *, candidate, budget, seeds, fixed_seeds, device, data, tokenizer, seq_len, eval_batch_size,
               val_tokens, params, baseline, cpu_threads, no_os_isolation, as_json, verbose, target_loss, eval_every):
    chosen = _candidate(candidate, benchmark)
    dataset = open_dataset(data, cache_dir=settings().cache_dir, tokenizer=tokenizer)
    config = RunConfig(benchmark=benchmark, budget_s=budget or DEFAULT_BUDGET[benchmark], device=resolve_device(device),
                       seq_len=seq_len, eval_batch_size=eval_batch_size, target_loss=target_loss,
                       eval_every_s=eval_every, params=_parse_params(params), val_tokens=val_tokens,
                       os_isolation=not no_os_isolation, cpu_threads=cpu_threads)
    store = Store(settings().db)
    key = records.config_key(config, dataset.name, _hardware(config.device))
    run_id = f"train-{uuid.uuid4().hex[:12]}"
    seed_list = list(fixed_seeds) or [secrets.randbits(31) for _ in range(max(1, seeds))]
    on_log = (lambda metrics: console.print(f"  {_params_text(metrics)}", highlight=False)) if verbose and not as_json else None
    results = []
    for seed in seed_list:
        result = run_training(chosen, dataset, _with_seed(config, seed), on_log=on_log)
        records.record_run(store, run_id, chosen, key, result)
        results.append(result)
        if not as_json:
            _print_run(result)
    report = {"run_id": run_id, "candidate": chosen.name, "candidate_hash": chosen.hash, "config": key,
              "runs": [r.to_json() for r in results]}
    recorded = records.recorded_runs(store, chosen.hash, key)
    values = records.metric_values(recorded, benchmark)
    report["summary"] = _summary(benchmark, results, values, len(recorded))
    if baseline:
        report["comparison"] = _compare(store, benchmark, _candidate(baseline, benchmark), dataset, config, key,
                                        len(seed_list), values, on_log, as_json)
    if as_json:
        click.echo(json.dumps(report, default=str))
    else:
        console.print(report["summary"]["text"], highlight=False)
        if baseline:
            console.print(report["comparison"]["text"], highlight=False)


def _compare(store, benchmark, base, dataset, config, key, seeds, values, on_log, as_json) -> dict:
    """The baseline's recorded runs under the same configuration, topped up to `seeds` passed runs."""
    base_values = records.metric_values(records.recorded_runs(store, base.hash, key), benchmark)
    run_id = f"baseline-{uuid.uuid4().hex[:12]}"
    for _ in range(max(0, seeds - len(base_values))):
        result = run_training(base, dataset, _with_seed(config, secrets.randbits(31)), on_log=on_log)
        records.record_run(store, run_id, base, key, result)
        if not as_json:
            console.print(f"baseline {base.name}: ", end="", highlight=False)
            _print_run(result)
    base_values = records.metric_values(records.recorded_runs(store, base.hash, key), benchmark)
    comparison = compare(values, base_values)
    metric = "time to target" if benchmark == SPEEDRUN else "val bpb"
    text = (f"vs baseline {base.name} ({metric} {comparison.baseline}): {comparison.verdict}" if comparison.baseline.n
            else f"vs baseline {base.name}: no passed run to compare with")
    return {**comparison.to_json(), "baseline": base.name, "text": text}


def _summary(benchmark, results: list[RunResult], recorded_values: list[float], recorded_count: int) -> dict:
    metric = "time to target (s)" if benchmark == SPEEDRUN else "val bpb"
    these = [v for v in (_metric(r) for r in results) if v is not None]
    passed = sum(r.status == "PASSED" for r in results)
    text = f"{benchmark}: "
    if these:
        ours = summarize(these)
        text += f"{metric} {ours.mean:.4f} ± {ours.std:.4f} (mean ± std over {ours.n} of {len(results)} runs)"
    else:
        text += f"no {metric} ({passed} of {len(results)} runs passed" + \
                (", none reached the target)" if benchmark == SPEEDRUN and passed else ")")
    if recorded_count > len(results) and recorded_values:
        every = summarize(recorded_values)
        text += f"; every recorded run of this candidate and configuration: {every.mean:.4f} ± {every.std:.4f} (n={every.n})"
    return {"metric": metric, "values": these, "recorded_values": recorded_values, "text": text}


def _metric(result: RunResult) -> float | None:
    if result.status != "PASSED":
        return None
    if result.benchmark == SPEEDRUN:
        return result.time_to_target_s
    return result.val_bpb if result.val_bpb is not None else result.val_loss


def _print_run(result: RunResult) -> None:
    details = f"{result.steps} steps in {result.train_s or 0:.1f} s of training, " \
              f"{result.overhead_s.get('not_training', 0.0):.1f} s of harness time"
    console.print(f"seed {result.seed}: {result.summary()} ({details}; isolation {result.isolation or '-'})",
                  highlight=False)
    for finding in result.findings:
        console.print(f"  [red]{finding['rule']}[/red]: {finding['evidence']}", highlight=False)
    if result.log and result.status != "PASSED":
        console.print(f"  {result.log.strip().splitlines()[-1]}", highlight=False)


# ---------------------------------------------------------------------- helpers

def _candidate(path: str, benchmark: str) -> Candidate:
    if path == "reference":
        return Candidate.read(REFERENCE_DIR / REFERENCES[benchmark])
    return Candidate.read(path)


@functools.lru_cache(maxsize=None)
def _hardware(device: str) -> str:
    return torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else "cpu"


def _with_seed(config: RunConfig, seed: int) -> RunConfig:
    return RunConfig(**{**config.__dict__, "seed": seed})


def _parse_params(items) -> dict:
    params = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise KernelBenchError(f"--param {item!r}: expected NAME=VALUE")
        try:
            params[name] = json.loads(value)
        except ValueError:
            params[name] = value
    return params


def _params_text(params: dict) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
