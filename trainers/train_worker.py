"""The training child: maps the training shards, arms the guard, imports the candidate, runs train(ctx).

Order matters. Everything the harness reads from disk (token shards) is opened before the
guard is installed and before Landlock closes the protected directories; the candidate is
imported after the "ready" message, so its import-time work runs on the clock. After train()
returns: threads still running, the guard's state checks, then the hand-over files (off the clock).

Messages to the parent: ready, handover (the deadline snapshot was taken), pause / checkpoint /
resumed (speedrun), log, done, error.
"""

from __future__ import annotations

import faulthandler
import json
import random
import time
import traceback
from pathlib import Path

import numpy as np
import torch
import torch._dynamo  # noqa: F401 - the first optimizer a candidate makes imports it (seconds, a library's, off the clock)

from kernelbench.core import statuses

from .candidate import entry_point, import_candidate
from .child import CONFIG_FILE, WEIGHTS_FILE, isolate, set_up_device
from .context import MAX_CONFIG_BYTES, Harness, TokenStream, TrainContext
from .guard import TrainingGuard
from .shards import read_token_shard

def main(channel) -> None:
    faulthandler.enable()
    request, _ = channel.receive()
    device = torch.device(request["device"])
    set_up_device(device, request)
    shards = [read_token_shard(path) for path in request["train_shards"]]
    seed = request["seed"]
    stream = TokenStream(shards, start=int(np.random.default_rng(seed).integers(0, 1 << 62)))
    handover_dir = Path(request["handover_dir"])
    guard = TrainingGuard(str(device), protected=request["protected"],
                          allowed_paths=[request["candidate_dir"], handover_dir])
    isolation = isolate(guard, request)
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)
    checkpoints = []

    def on_deadline(state: dict, config: dict) -> None:
        channel.send({"kind": "handover", "train_s": harness.elapsed()})

    def checkpoint(state: dict, config: dict) -> bool:
        channel.send({"kind": "pause", "train_s": harness.elapsed()})
        paused_at = time.monotonic()
        path = write_handover(state, config, handover_dir / f"checkpoint_{len(checkpoints)}")
        checkpoints.append(path)
        channel.send({"kind": "checkpoint", "path": str(path)})
        reply, _ = channel.receive()
        busy = 0.0
        if device.type == "cuda":  # work the candidate queued while the clock stood still shows here
            started = time.monotonic()
            torch.cuda.synchronize()
            busy = time.monotonic() - started
        harness.pause(time.monotonic() - paused_at)
        channel.send({"kind": "resumed", "gpu_busy_s": busy})
        return reply["kind"] == "stop"

    harness = Harness(stream, device, request["budget_s"], eval_every_s=request.get("eval_every_s"),
                      on_deadline=on_deadline, checkpoint=checkpoint if request["benchmark"] == "speedrun" else None,
                      send_log=lambda metrics: channel.send({"kind": "log", "metrics": metrics}))
    ctx = TrainContext(device=device, seed=seed, budget_s=request["budget_s"], benchmark=request["benchmark"],
                       vocab_size=request["vocab_size"], seq_len=request["seq_len"], params=request["params"],
                       target_loss=request.get("target_loss"), harness=harness)
    channel.send({"kind": "ready", "isolation": isolation})
    harness.start = time.monotonic()
    try:
        with guard.armed():
            module = import_candidate(request["candidate_dir"])
            train = entry_point(module, "train")
            entry_point(module, "build_model")
    except Exception:
        channel.send({"kind": "error", "status": statuses.COMPILE_ERROR, "log": traceback.format_exc(limit=-8)})
        return
    try:
        with guard.armed():
            train(ctx)
        channel.send({"kind": "returned"})
        harness.hand_over()
    except Exception:
        channel.send({"kind": "error", "status": statuses.RUNTIME_ERROR, "log": traceback.format_exc(limit=-8)})
        return
    guard._check_live_threads()
    guard.check_state()
    findings = [f.to_json() for f in guard.training_findings()]
    state, config = harness.final
    try:
        directory = write_handover(state, config, handover_dir / "final")
    except ValueError as exc:
        findings.append({"rule": "oversized-handover", "evidence": str(exc)})
        directory = None
    channel.send({"kind": "done", "steps": harness.steps, "tokens": harness.tokens, "findings": findings,
                  "handover": str(directory) if directory else None, "isolation": isolation})


def write_handover(state: dict, config, directory: Path) -> Path:
    """The state dict (read back with weights_only=True: tensors only, no code travels to the
    evaluator) and config.json."""
    text = json.dumps(config)
    if len(text) > MAX_CONFIG_BYTES:
        raise ValueError(f"the config is {len(text)} bytes of JSON (at most {MAX_CONFIG_BYTES})")
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(state, directory / WEIGHTS_FILE)
    (directory / CONFIG_FILE).write_text(text)
    return directory
