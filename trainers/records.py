"""Training runs in the store (table training_runs): one row per seed, committed as it finishes.

Runs are comparable when their configuration key matches: benchmark, budget, target, data,
hardware, windows and hyperparameters. Statistics over a candidate use every recorded run
under its key, so which seeds a user chose to show does not matter.
"""

from __future__ import annotations

import json
import time

from kernelbench.core import statuses
from kernelbench.core.store import Store, json_hash

from .harness import RunConfig, RunResult


def config_key(config: RunConfig, dataset_name: str, hardware: str) -> dict:
    return {"benchmark": config.benchmark, "budget_s": config.budget_s, "target_loss": config.target_loss,
            "eval_every_s": config.eval_every_s, "data": dataset_name, "hardware": hardware,
            "seq_len": config.seq_len, "eval_batch_size": config.eval_batch_size, "val_tokens": config.val_tokens,
            "params": config.params}


def record_run(store: Store, run_id: str, candidate, key: dict, result: RunResult) -> None:
    with store.transaction() as db:
        db.execute(
            "INSERT INTO training_runs (run_id, benchmark, candidate, candidate_hash, config_hash, seed, status, "
            "val_bpb, val_loss, time_to_target_s, train_s, data, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (run_id, result.benchmark, candidate.name, candidate.hash, json_hash(key), result.seed, result.status,
             result.val_bpb, result.val_loss, result.time_to_target_s, result.train_s,
             json.dumps({"result": result.to_json(), "config": key}), time.time()))


def recorded_runs(store: Store, candidate_hash: str, key: dict) -> list[dict]:
    """Every recorded run of this candidate under this configuration, oldest first."""
    rows = store.db.execute("SELECT * FROM training_runs WHERE benchmark = ? AND candidate_hash = ? AND config_hash = ? "
                            "ORDER BY id", (key["benchmark"], candidate_hash, json_hash(key))).fetchall()
    return [dict(row) for row in rows]


def metric_values(rows: list[dict], benchmark: str) -> list[float]:
    """The score of each passed run: val bpb (val loss without a tokenizer) or time to target."""
    values = []
    for row in rows:
        if row["status"] != statuses.PASSED:
            continue
        value = row["time_to_target_s"] if benchmark == "speedrun" else (row["val_bpb"] if row["val_bpb"] is not None
                                                                         else row["val_loss"])
        if value is not None:
            values.append(value)
    return values
