"""A budgeted hyperparameter search (optuna's TPE sampler): every trial is a full audited run.

The space is a JSON file, one entry per hyperparameter the candidate reads from ctx.params:

    {"lr_muon": {"low": 0.005, "high": 0.05, "log": true},
     "n_layer": {"low": 2, "high": 6, "type": "int"},
     "d_model": {"choices": [64, 128, 256]}}

Trials run one after another until the next one would not fit the search's budget. A trial
with audit findings or a failure counts as failed (the sampler learns nothing from it); a
speedrun trial that misses the target scores twice its budget.
"""

from __future__ import annotations

import json
import math
import secrets
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from kernelbench.core import statuses
from kernelbench.core.errors import KernelBenchError

from .extras import require
from .harness import SPEEDRUN, RunConfig, RunResult, run_training


class SpaceError(KernelBenchError):
    """The search space file is malformed: the message names the entry."""


@dataclass
class Trial:
    number: int
    params: dict
    result: RunResult
    value: float | None


@dataclass
class SearchResult:
    trials: list[Trial] = field(default_factory=list)

    @property
    def best(self) -> Trial | None:
        scored = [t for t in self.trials if t.value is not None]
        return min(scored, key=lambda t: t.value, default=None)


def load_space(path: str | Path) -> dict:
    try:
        space = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise SpaceError(f"{path}: cannot read the space: {exc}") from None
    if not isinstance(space, dict) or not space:
        raise SpaceError(f"{path}: the space is a JSON object of hyperparameter -> range")
    for name, spec in space.items():
        if not isinstance(spec, dict) or not ("choices" in spec or {"low", "high"} <= set(spec)):
            raise SpaceError(f"{path}: {name}: give either choices or low and high")
    return space


def suggest(trial, name: str, spec: dict):
    if "choices" in spec:
        return trial.suggest_categorical(name, spec["choices"])
    if spec.get("type") == "int":
        return trial.suggest_int(name, int(spec["low"]), int(spec["high"]), log=bool(spec.get("log", False)))
    return trial.suggest_float(name, float(spec["low"]), float(spec["high"]), log=bool(spec.get("log", False)))


def objective(result: RunResult, config: RunConfig) -> float | None:
    if result.status != statuses.PASSED:
        return None
    if config.benchmark == SPEEDRUN:
        return result.time_to_target_s if result.time_to_target_s is not None else 2 * config.budget_s
    return result.val_bpb if result.val_bpb is not None else result.val_loss


def search(candidate, dataset, config: RunConfig, space: dict, *, budget_s: float, on_trial=None,
           sampler_seed: int | None = None) -> SearchResult:
    """Trials of `candidate` (each with a fresh seed) until the next would overrun budget_s."""
    optuna = require("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=sampler_seed))
    outcome = SearchResult()
    started = time.monotonic()
    while True:
        spent = time.monotonic() - started
        typical = spent / len(outcome.trials) if outcome.trials else 0.0
        if outcome.trials and spent + typical > budget_s:
            break
        trial = study.ask()
        params = {name: suggest(trial, name, spec) for name, spec in space.items()}
        result = run_training(candidate, dataset, replace(config, params={**config.params, **params},
                                                          seed=secrets.randbits(31)))
        value = objective(result, config)
        if value is None or not math.isfinite(value):
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            value = None
        else:
            study.tell(trial, value)
        outcome.trials.append(Trial(trial.number, params, result, value))
        if on_trial:
            on_trial(outcome.trials[-1])
        if time.monotonic() - started >= budget_s:
            break
    return outcome
