"""What a candidate's `train(ctx)` is given: the data, the device, the clock, and where to put the model.

    def train(ctx):
        model = GPT(config).to(ctx.device)
        ctx.watch(model, config)                       # the model the harness evaluates
        for x, y in ctx.batches(batch_size=32, seq_len=256):   # ends at the deadline (or the target)
            loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
            ...

    def build_model(config) -> torch.nn.Module         # the evaluator rebuilds the model from it

The iterator of `ctx.batches` is the clock's hand: it stops at the deadline, and there (or when
`train` returns, whichever is first) the harness copies the watched model's state_dict. A
speedrun also stops the clock every `eval_every` seconds of training, inside the iterator, to
have the evaluator measure the model; the pause is not counted, and the iterator ends once the
target is reached. The harness owns the clock: the parent process times the run from its own
side, so nothing done to clocks in this process changes a result.
"""

from __future__ import annotations

import time
from typing import Callable, Iterator

import numpy as np
import torch

MAX_CONFIG_BYTES = 65536


class TrainContext:
    """The candidate's view of the run. Attributes are plain values; the machinery is private."""

    def __init__(self, *, device: torch.device, seed: int, budget_s: float, benchmark: str, vocab_size: int,
                 seq_len: int, params: dict, target_loss: float | None, harness: "Harness"):
        self.device = device                # torch.device to train on
        self.seed = seed                    # the harness's seed; torch, numpy and random are seeded with it
        self.budget_s = budget_s            # seconds of training the clock allows
        self.benchmark = benchmark          # "fixed-budget" | "speedrun"
        self.vocab_size = vocab_size        # token ids are < vocab_size
        self.seq_len = seq_len              # the evaluator's sequence length: the model must take (B, seq_len)
        self.params = dict(params)          # hyperparameters given on the command line or by a search trial
        self.target_loss = target_loss      # speedrun: the validation loss to reach
        self._harness = harness

    def time_left(self) -> float:
        """Seconds of training left before the deadline (pauses excluded)."""
        return self.budget_s - self._harness.elapsed()

    def elapsed(self) -> float:
        """Seconds of training so far (pauses excluded)."""
        return self._harness.elapsed()

    def watch(self, model: torch.nn.Module, config: dict) -> None:
        """Name the model to evaluate and the JSON config that `build_model(config)` rebuilds it from.
        Call it again to hand over another model (an average of weights, say)."""
        self._harness.watch(model, config)

    def batches(self, batch_size: int, seq_len: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(x, y) int64 tensors of shape (batch_size, seq_len) on the device, y = x shifted by one
        token, read in order from a seed-dependent start; ends at the deadline."""
        return self._harness.batches(batch_size, seq_len or self.seq_len)

    def log(self, **metrics) -> None:
        """Progress shown by `kb train --verbose` and kept with the run (numbers and short strings)."""
        self._harness.log(metrics)


class TokenStream:
    """Consecutive windows of B*T+1 tokens across a list of token shards, wrapping around."""

    def __init__(self, shards: list[np.ndarray], start: int):
        self.shards = [s for s in shards if len(s) > 1]
        self.total = sum(len(s) for s in self.shards)
        if not self.total:
            raise ValueError("no training tokens")
        self.position = start % self.total

    def take(self, count: int) -> np.ndarray:
        out = np.empty(count, dtype=np.int64)
        filled = 0
        while filled < count:
            shard, offset = self._locate(self.position)
            piece = shard[offset: offset + count - filled]
            out[filled: filled + len(piece)] = piece
            filled += len(piece)
            self.position = (self.position + len(piece)) % self.total
        return out

    def _locate(self, position: int) -> tuple[np.ndarray, int]:
        for shard in self.shards:
            if position < len(shard):
                return shard, position
            position -= len(shard)
        raise AssertionError("position beyond the stream")


class Harness:
    """The child-side machinery behind a TrainContext: clock, batches, snapshots, checkpoints.

    `on_deadline(state)` is called once with the snapshot taken at the deadline; `checkpoint(state)`
    (speedrun) with each checkpoint's snapshot, and returns True when the target was reached."""

    def __init__(self, stream: TokenStream, device: torch.device, budget_s: float, *, eval_every_s: float | None,
                 on_deadline: Callable[[dict, dict], None], checkpoint: Callable[[dict, dict], bool] | None,
                 send_log: Callable[[dict], None]):
        self.stream, self.device, self.budget_s = stream, device, budget_s
        self.eval_every_s, self.on_deadline, self.checkpoint, self.send_log = eval_every_s, on_deadline, checkpoint, send_log
        self._monotonic = time.monotonic  # bound now: a candidate patching time changes nothing here
        self.start = self._monotonic()
        self.paused = 0.0
        self.model: torch.nn.Module | None = None
        self.config: dict | None = None
        self.final: tuple[dict, dict] | None = None   # (state, config) handed over
        self.finished = False                          # deadline passed or target reached
        self.tokens = 0
        self.steps = 0
        self.next_checkpoint = eval_every_s
        self.last_log = 0.0

    def elapsed(self) -> float:
        return self._monotonic() - self.start - self.paused

    def watch(self, model, config) -> None:
        if not isinstance(model, torch.nn.Module):
            raise TypeError("ctx.watch takes the torch.nn.Module to evaluate")
        self.model, self.config = model, config

    def batches(self, batch_size: int, seq_len: int):
        take, device, pin = self.stream.take, self.device, self.device.type == "cuda"
        while not self.finished:
            if self.elapsed() >= self.budget_s:
                self.hand_over()
                return
            if self.checkpoint is not None and self.next_checkpoint is not None and self.elapsed() >= self.next_checkpoint:
                self.next_checkpoint += self.eval_every_s
                if self.run_checkpoint():
                    return
            tokens = torch.from_numpy(take(batch_size * seq_len + 1))
            if pin:
                tokens = tokens.pin_memory()
            tokens = tokens.to(device, non_blocking=True)
            self.tokens += batch_size * seq_len
            self.steps += 1
            yield tokens[:-1].view(batch_size, seq_len), tokens[1:].view(batch_size, seq_len)

    def run_checkpoint(self) -> bool:
        state, config = self.snapshot()
        reached = self.checkpoint(state, config)
        if reached:
            self.finished = True
            self.final = (state, config)
        return reached

    def hand_over(self) -> None:
        """At the deadline (or when train returns first): the model as it is now is the result."""
        if self.final is None and self.model is not None:
            self.final = self.snapshot()
            self.on_deadline(*self.final)
        self.finished = True

    def snapshot(self) -> tuple[dict, dict]:
        if self.model is None:
            raise RuntimeError("train() never called ctx.watch(model, config): there is no model to evaluate")
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        state = {name: value.detach().to("cpu", copy=True).contiguous()
                 for name, value in self.model.state_dict().items() if isinstance(value, torch.Tensor)}
        return state, self.config

    def pause(self, seconds: float) -> None:
        self.paused += seconds

    def log(self, metrics: dict) -> None:
        now = self._monotonic()
        if now - self.last_log >= 1.0:  # at most one a second, whatever the candidate asks
            self.last_log = now
            self.send_log({k: v for k, v in metrics.items() if isinstance(v, (int, float, str))})
