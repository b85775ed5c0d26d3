"""One audited training run: the candidate trains in a child on the harness's clock, the frozen
evaluator scores the handed-over weights in two other children.

The parent is the clock. It starts when the training child says it is ready (just before the
candidate is imported) and stops when the child reports the deadline snapshot (fixed budget)
or a checkpoint (speedrun); pauses for evaluation are measured here, from this side of the pipe,
and the child is killed at the deadline plus a grace. Around the evaluation pauses the parent
reads the child's CPU time per thread from /proc: threads other than the one waiting for the
evaluator, and the candidate's other processes, should be idle.

After the training child is gone, any process it left behind (found as an orphan reparented to
this subreaper) is killed and reported. The evaluator's verdict combines its own checks with
the parent's comparison of per-token losses across two processes (see compare_probe).
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from audit import hooks
from kernelbench.core import statuses

from . import process
from .candidate import Candidate
from .datasets import Dataset
from .guard import PACKAGE_DIR
from .shards import read_token_shard
from .static import scan_candidate

FIXED_BUDGET, SPEEDRUN = "fixed-budget", "speedrun"
BENCHMARKS = (FIXED_BUDGET, SPEEDRUN)
PROTECTED_PACKAGES = tuple(PACKAGE_DIR.parent / name for name in ("trainers", "kernelbench", "audit"))
LEAK_SAMPLE_TOKENS = 65536
LEAK_MARGIN = 0.20           # val bpb this much below train bpb: validation text was learned (the splits'
                             # own difference in difficulty stays well inside it)
NONCAUSAL_TOL = 0.05         # nats: a causal model's prefix losses do not move at all
DIVERGENCE_MEAN_TOL, DIVERGENCE_MAX_TOL = 0.02, 1.0
PAUSE_CPU_ALLOWANCE_S, PAUSE_CPU_FRACTION = 0.3, 0.05
GPU_BUSY_TOL_S = 0.05


@dataclass
class RunConfig:
    benchmark: str = FIXED_BUDGET
    budget_s: float = 300.0
    device: str = "cpu"
    seed: int = 0
    seq_len: int = 256                 # the evaluator's window; ctx.seq_len
    eval_batch_size: int = 16
    target_loss: float | None = None   # speedrun
    eval_every_s: float | None = None  # speedrun: seconds of training between checkpoints (default budget/20)
    params: dict = field(default_factory=dict)
    val_tokens: int | None = None      # None: the whole validation split
    static_audit: bool = True          # off only to exercise the runtime defences in tests
    os_isolation: bool = True          # Landlock where the kernel has it
    cpu_threads: int | None = None     # torch threads of both children on a CPU device (None: torch's default)
    startup_timeout_s: float = 300.0
    eval_timeout_s: float | None = None  # default max(120 s, budget)

    @property
    def grace_s(self) -> float:
        """Past the deadline the child is killed after this; a hand-over later than tolerance_s is over budget."""
        return max(10.0, 0.1 * self.budget_s)

    @property
    def tolerance_s(self) -> float:
        return max(1.0, 0.02 * self.budget_s)


@dataclass
class RunResult:
    benchmark: str
    seed: int
    status: str
    val_bpb: float | None = None
    val_loss: float | None = None
    train_s: float | None = None           # the clock when the model was handed over
    time_to_target_s: float | None = None  # speedrun
    target_loss: float | None = None
    steps: int = 0
    tokens: int = 0
    checkpoints: list[dict] = field(default_factory=list)
    findings: list[dict] = field(default_factory=list)
    overhead_s: dict = field(default_factory=dict)   # wall time not spent training, by phase
    isolation: str = ""
    log: str = ""
    train_bpb: float | None = None

    def summary(self) -> str:
        if self.status not in (statuses.PASSED,):
            rules = sorted({f["rule"] for f in self.findings})
            return f"{self.status}" + (f" ({', '.join(rules)})" if rules else "")
        if self.benchmark == SPEEDRUN:
            if self.time_to_target_s is not None:
                return f"time to target {self.time_to_target_s:.1f} s"
            best = min((c for c in self.checkpoints if c.get("val_loss") is not None), key=lambda c: c["val_loss"],
                       default=None)
            return "target not reached" + (f" (best val loss {best['val_loss']:.3f} at {best['train_s']:.1f} s)"
                                           if best else "")
        if self.val_bpb is not None:
            return f"val bpb {self.val_bpb:.4f}"
        return f"val loss {self.val_loss:.4f}"

    def to_json(self) -> dict:
        return asdict(self)


def run_training(candidate: Candidate, dataset: Dataset, config: RunConfig, *, on_log=None) -> RunResult:
    """Train, evaluate and audit one run of `candidate` (one seed)."""
    if config.benchmark not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {config.benchmark!r}")
    result = RunResult(config.benchmark, config.seed, statuses.PASSED, target_loss=config.target_loss)
    if config.static_audit:
        found = scan_candidate(f"{candidate.name}.py", candidate.source)
        if found:
            result.status, result.findings = statuses.REWARD_HACK, [f.to_json() for f in found]
            return result
    run = _Run(candidate, dataset, config, result, on_log)
    try:
        run.execute()
    finally:
        run.cleanup()
    result.status = _status(result)
    return result


def _status(result: RunResult) -> str:
    if result.status != statuses.PASSED:
        return result.status
    rules = {f["rule"] for f in result.findings}
    if rules - {"over-budget"}:
        return statuses.REWARD_HACK
    return statuses.TIMEOUT if rules else statuses.PASSED


class _Run:
    def __init__(self, candidate: Candidate, dataset: Dataset, config: RunConfig, result: RunResult, on_log):
        self.candidate, self.dataset, self.config, self.result, self.on_log = candidate, dataset, config, result, on_log
        self.rng = np.random.default_rng(secrets.randbits(64))   # probe choices the candidate cannot predict
        self.run_dir = Path(tempfile.mkdtemp(prefix="kb_train_run_")).resolve()
        self.candidate_dir = candidate.materialize()
        self.eval_dir = candidate.materialize()   # the evaluators' own copy: nothing the training child wrote
        self.handover_dir = self.run_dir / "handover"
        self.handover_dir.mkdir()
        self.protected = [str(p) for p in (*dataset.protected, *PROTECTED_PACKAGES) if Path(p).exists()]
        self.evaluator: _Evaluators | None = None
        self.paused = 0.0
        self.stopped = False      # the harness ended the run at a checkpoint

    def cleanup(self) -> None:
        if self.evaluator is not None:
            self.evaluator.close()
        shutil.rmtree(self.run_dir, ignore_errors=True)
        shutil.rmtree(self.candidate_dir, ignore_errors=True)
        shutil.rmtree(self.eval_dir, ignore_errors=True)

    def finding(self, rule: str, evidence: str) -> None:
        entry = {"rule": rule, "evidence": evidence}
        if entry not in self.result.findings:
            self.result.findings.append(entry)

    # ------------------------------------------------------------------ training

    def execute(self) -> None:
        config, result = self.config, self.result
        process.become_subreaper()
        before = process.children_of(os.getpid())
        wall_start = time.monotonic()
        handover = None
        with process.Child("trainers.train_worker", cwd=self.candidate_dir) as child:
            child.send(self.train_request())
            ready = child.receive(config.startup_timeout_s)
            if ready is None or ready.get("kind") != "ready":
                self.child_failed(child, ready, "before training started")
                return
            result.isolation = ready.get("isolation", "")
            t0 = time.monotonic()
            result.overhead_s["startup"] = t0 - wall_start
            handover = self.train_loop(child, t0)
        self.reap_orphans(before, child.pid)
        if handover is not None and result.status == statuses.PASSED and not self.stopped:
            self.evaluate_final(handover)
        result.overhead_s["total_wall"] = time.monotonic() - wall_start
        result.overhead_s["not_training"] = result.overhead_s["total_wall"] - (result.train_s or 0.0)

    def train_request(self) -> dict:
        config = self.config
        eval_every = config.eval_every_s or config.budget_s / 20
        return {"device": config.device, "seed": config.seed, "budget_s": config.budget_s,
                "benchmark": config.benchmark, "eval_every_s": eval_every if config.benchmark == SPEEDRUN else None,
                "vocab_size": self.dataset.vocab_size, "seq_len": config.seq_len, "params": config.params,
                "target_loss": config.target_loss, "train_shards": [str(p) for p in self.dataset.train_shards],
                "candidate_dir": str(self.candidate_dir), "handover_dir": str(self.handover_dir),
                "protected": self.protected, "os_isolation": config.os_isolation, "precreate": hooks.cache_dirs(),
                "cpu_threads": config.cpu_threads}

    def train_loop(self, child: process.Child, t0: float) -> str | None:
        """Follow the child until it is done; returns the hand-over directory of a finished run."""
        config, result = self.config, self.result
        clock = lambda: time.monotonic() - t0 - self.paused  # noqa: E731 - the training clock
        handed_over = False
        while True:
            if handed_over:
                timeout = config.grace_s + 60.0  # writing the weights, off the clock
            else:
                timeout = config.budget_s + config.grace_s - clock()
            message = child.receive(timeout)
            if message is None:
                if child.timed_out:
                    self.finding("over-budget", f"still training {config.grace_s:.0f} s after the deadline; killed")
                    result.status = statuses.TIMEOUT
                    result.train_s = result.train_s or clock()
                else:
                    self.child_failed(child, None, "during training")
                return None
            kind = message.get("kind")
            if kind == process.FORGED:
                self.finding("harness-tampering", f"a message the harness did not write: {message['line']!r}")
            elif kind == "log":
                if self.on_log:
                    self.on_log(message.get("metrics", {}))
            elif kind == "handover":
                handed_over = True
                result.train_s = clock()
                if result.train_s > config.budget_s + config.tolerance_s:
                    self.finding("over-budget", f"the model was handed over at {result.train_s:.2f} s of a "
                                                f"{config.budget_s:.0f} s budget")
            elif kind == "pause":
                self.pause(child, clock())
            elif kind == "resumed":
                if message.get("gpu_busy_s", 0.0) > GPU_BUSY_TOL_S:
                    self.finding("work-outside-clock", f"the GPU was still busy {message['gpu_busy_s']:.3f} s after "
                                                       "an evaluation pause")
            elif kind == "returned":
                late = clock() - config.budget_s
                if late > config.tolerance_s:
                    self.finding("over-budget", f"train() returned {late:.1f} s after the deadline (the model evaluated "
                                                "is the one handed over at the deadline)")
            elif kind == "error":
                result.status, result.log = message["status"], message.get("log", "")
                return None
            elif kind == "done":
                result.steps, result.tokens = message.get("steps", 0), message.get("tokens", 0)
                for entry in message.get("findings", []):
                    self.finding(entry["rule"], entry["evidence"])
                if not handed_over and not self.stopped:  # the harness's own code always hands over
                    self.finding("harness-tampering", "the run finished without handing over a model")
                return message.get("handover")

    def pause(self, child: process.Child, train_s: float) -> None:
        """Speedrun checkpoint: the clock is stopped from here until the reply is sent."""
        paused_at = time.monotonic()
        cpu_before = child.cpu_seconds()
        message = child.receive(60.0 + self.config.grace_s)
        if message is None or message.get("kind") != "checkpoint":
            self.finding("harness-tampering", "a checkpoint pause without its checkpoint")
            child.send({"kind": "stop"})
            return
        verdict = self.evaluate(message["path"], train_s)
        reached = verdict is not None and verdict.get("val_loss") is not None and \
            verdict["val_loss"] <= self.config.target_loss and not self.result.findings
        if reached and self.result.time_to_target_s is None:
            self.result.time_to_target_s = train_s
            self.result.train_s = train_s
        self.check_pause_cpu(child, cpu_before, time.monotonic() - paused_at)
        self.stopped = bool(reached or self.result.findings or self.result.status != statuses.PASSED)
        child.send({"kind": "stop" if self.stopped else "resume"})
        self.paused += time.monotonic() - paused_at
        self.result.overhead_s["eval_pauses"] = self.result.overhead_s.get("eval_pauses", 0.0) + \
            (time.monotonic() - paused_at)

    def check_pause_cpu(self, child: process.Child, before: dict, pause_s: float) -> None:
        after = child.cpu_seconds()
        main = f"thread {child.pid}"
        busy = {name: after[name] - before.get(name, 0.0) for name in after if name != main}
        total = sum(busy.values())
        if total > PAUSE_CPU_ALLOWANCE_S + PAUSE_CPU_FRACTION * pause_s:
            worst = sorted(busy.items(), key=lambda item: -item[1])[:3]
            self.finding("work-outside-clock", f"{total:.2f} s of CPU in other threads or processes during a "
                                               f"{pause_s:.1f} s evaluation pause ({', '.join(f'{n}: {s:.2f} s' for n, s in worst)})")

    def child_failed(self, child: process.Child, message: dict | None, when: str) -> None:
        result = self.result
        if message is not None and message.get("kind") == "error":
            result.status, result.log = message["status"], message.get("log", "")
            return
        result.status = statuses.TIMEOUT if child.timed_out else statuses.RUNTIME_ERROR
        child.kill()
        tail = child.output_tail()
        result.log = f"{child.exit_reason()} {when}" + (f"\n--- output tail ---\n{tail}" if tail else "")

    def reap_orphans(self, before: set[int], session: int) -> None:
        """Processes the candidate left behind (reparented to this subreaper): those of the training
        child's session were killed with it; one alive in another session escaped it."""
        ours = {child.pid for child in (self.evaluator.children.values() if self.evaluator else ())}
        for pid in sorted(process.children_of(os.getpid()) - before - ours):
            if process.kill_and_reap(pid, session):
                self.finding("work-after-deadline", f"process {pid} left the training process's session and "
                                                    "outlived it; killed")

    # ------------------------------------------------------------------ evaluation

    def evaluators(self) -> "_Evaluators":
        if self.evaluator is None:
            self.evaluator = _Evaluators(self, self.eval_request())
        return self.evaluator

    def eval_request(self) -> tuple[dict, bytes]:
        config, dataset = self.config, self.dataset
        arrays = {"val": dataset.val_tokens(config.val_tokens).astype(np.uint16)}
        sample = _random_windows([read_token_shard(p) for p in dataset.train_shards], self.rng,
                                 min(LEAK_SAMPLE_TOKENS, len(arrays["val"])) // config.seq_len, config.seq_len)
        if sample is not None:
            arrays["train_sample"] = sample
        if dataset.token_bytes is not None:
            arrays["token_bytes"] = dataset.token_bytes.astype(np.int32)
        request = {"device": config.device, "batch_size": config.eval_batch_size, "seq_len": config.seq_len,
                   "vocab_size": dataset.vocab_size, "candidate_dir": str(self.eval_dir),
                   "protected": self.protected, "os_isolation": config.os_isolation, "precreate": hooks.cache_dirs(),
                   "cpu_threads": config.cpu_threads, "arrays": [[name, str(a.dtype), int(a.size)] for name, a in arrays.items()]}
        return request, b"".join(a.tobytes() for a in arrays.values())

    def evaluate_final(self, handover: str) -> None:
        verdict = self.evaluate(handover, self.result.train_s)
        if verdict is not None and self.config.benchmark == SPEEDRUN and verdict.get("val_loss") is not None \
                and verdict["val_loss"] <= self.config.target_loss and not self.result.findings:
            self.result.time_to_target_s = self.result.train_s

    def evaluate(self, handover: str, train_s: float | None) -> dict | None:
        """Score one hand-over; findings and failures land in the result."""
        started = time.monotonic()
        verdict = self.evaluators().evaluate(handover)
        self.result.overhead_s["evaluation"] = self.result.overhead_s.get("evaluation", 0.0) + time.monotonic() - started
        for entry in verdict.get("findings", []):
            self.finding(entry["rule"], entry["evidence"])
        if verdict.get("status") != statuses.PASSED:
            self.result.status = verdict["status"]
            self.result.log = verdict.get("log", "")
            return None
        checkpoint = {"train_s": train_s, "val_loss": verdict["val_loss"], "val_bpb": verdict.get("val_bpb")}
        self.result.checkpoints.append(checkpoint)
        self.result.val_loss, self.result.val_bpb = verdict["val_loss"], verdict.get("val_bpb")
        self.result.train_bpb = verdict.get("train_bpb")
        return verdict


class _Evaluators:
    """The evaluator child and the probe child, started on first use and kept for the run."""
    ROLES = ("evaluator", "probe")

    def __init__(self, run: _Run, request: tuple[dict, bytes]):
        self.run = run
        self.request, self.payload = request
        self.children: dict[str, process.Child] = {}
        self.failure: dict | None = None
        config = run.config
        self.timeout_s = config.eval_timeout_s or max(120.0, config.budget_s)
        self.setup_limit_s = max(30.0, 0.1 * config.budget_s)

    def start(self) -> dict | None:
        """Both children boot at once; a failure of either is the run's."""
        pending = {role: process.Child("trainers.eval_worker", cwd=self.run.eval_dir) for role in self.ROLES}
        for child in pending.values():
            child.send(self.request, self.payload)
        failure = None
        for role, child in pending.items():
            ready = child.receive(self.run.config.startup_timeout_s)
            if ready is not None and ready.get("kind") == "ready":
                self.children[role] = child
                continue
            failure = failure or (ready if ready and ready.get("kind") == "error" else {
                "status": statuses.TIMEOUT if child.timed_out else statuses.RUNTIME_ERROR,
                "log": f"the {role} {child.exit_reason()} before it was ready\n{child.output_tail()}"})
            child.close()
        return failure

    def ask(self, messages: dict[str, dict]) -> dict[str, dict]:
        """Send each child its message, then collect the replies."""
        for role, message in messages.items():
            self.children[role].send(message)
        replies = {}
        for role in messages:
            child = self.children[role]
            reply = child.receive(self.timeout_s)
            if reply is not None and reply.get("kind") == "result":
                replies[role] = reply
            elif reply is not None and reply.get("kind") == process.FORGED:
                replies[role] = {"status": statuses.REWARD_HACK, "findings": [{"rule": "harness-tampering", "evidence":
                                 f"a message the evaluator did not write: {reply['line']!r}"}]}
            else:
                replies[role] = {"status": statuses.TIMEOUT if child.timed_out else statuses.RUNTIME_ERROR,
                                 "log": f"the {role} {child.exit_reason()}\n{child.output_tail()}"}
        return replies

    def evaluate(self, handover: str) -> dict:
        if not self.children:
            failure = self.start()
            if failure is not None:
                return failure
        rng = self.run.rng
        batches = self.batch_count()
        probe = int(rng.integers(0, max(1, batches - 1)))
        other = int((probe + 1 + rng.integers(0, max(1, batches - 1))) % batches)
        split = int(rng.integers(self.run.config.seq_len // 4, 3 * self.run.config.seq_len // 4 + 1))
        message = {"handover": handover, "probe_batch": probe, "other_batch": other, "split_at": split}
        replies = self.ask({"evaluator": {"kind": "evaluate", **message}, "probe": {"kind": "probe", **message}})
        main, seen = replies["evaluator"], replies["probe"]
        findings = main.get("findings", []) + seen.get("findings", [])
        for reply in (main, seen):
            if reply.get("status") != statuses.PASSED:
                return {**reply, "findings": findings}
        if main.get("setup_s", 0.0) > self.setup_limit_s:
            findings.append({"rule": "work-outside-clock", "evidence": f"the evaluator waited {main['setup_s']:.1f} s "
                             f"for the model's first logits (limit {self.setup_limit_s:.0f} s)"})
        findings += compare_probe(main, seen, split)
        leak = leak_finding(main)
        if leak:
            findings.append(leak)
        return {**main, "findings": findings}

    def batch_count(self) -> int:
        config = self.run.config
        tokens = int(self.request["arrays"][0][2])
        return max(1, (tokens - 1) // config.seq_len // config.eval_batch_size)

    def close(self) -> None:
        for child in self.children.values():
            child.send({"kind": "exit"})
            child.close()
        self.children.clear()


def _random_windows(shards: list[np.ndarray], rng, count: int, length: int) -> np.ndarray | None:
    """`count` windows of `length` tokens at random places of the training shards, back to back:
    many places, so the sample's difficulty is the training text's on average, not one document's."""
    shards = [s for s in shards if len(s) > length + 1]
    if not shards or count < 1:
        return None
    sizes = np.array([len(s) - length - 1 for s in shards], dtype=np.float64)
    picks = rng.choice(len(shards), size=count, p=sizes / sizes.sum())
    pieces = [np.array(shards[i][start: start + length], dtype=np.uint16)
              for i in picks for start in [int(rng.integers(0, len(shards[i]) - length - 1))]]
    last = shards[picks[-1]]
    return np.concatenate(pieces + [np.array(last[:1], dtype=np.uint16)])


def compare_probe(main: dict, probe: dict, split: int) -> list[dict]:
    """Per-token losses of the same batches in the evaluator and in a fresh process.

    - non-causal: the probe batch with its tokens from `split` on replaced by another window's;
      losses before `split` cannot move unless the model reads later tokens.
    - eval-mode-divergence: the probe batch in train mode with gradients on, against eval mode.
    - stateful-eval: the last batch in a fresh process, against the evaluator that had seen all
      the others before it."""
    findings = []
    reference = np.asarray(main["nll_probe"])
    mixed = np.asarray(probe["nll_mixed"])
    moved = np.abs(mixed - reference[:, :split])
    if moved.max(initial=0.0) > NONCAUSAL_TOL:
        b, t = np.unravel_index(int(moved.argmax()), moved.shape)
        findings.append({"rule": "non-causal", "evidence": f"changing tokens from position {split} on moved the loss at "
                                                           f"position {t} (row {b}) by {moved[b, t]:.3f} nats"})
    for rule, ours, theirs, what in (
            ("eval-mode-divergence", reference, np.asarray(probe["nll_train_mode"]), "in train mode than when evaluated"),
            ("stateful-eval", np.asarray(main["nll_last"]), np.asarray(probe["nll_last"]),
             "in a fresh process than at the end of the evaluation")):
        gap = np.abs(ours - theirs)
        if gap.mean() > DIVERGENCE_MEAN_TOL or gap.max(initial=0.0) > DIVERGENCE_MAX_TOL:
            findings.append({"rule": rule, "evidence": f"per-token losses differ by {gap.mean():.3f} nats on average "
                                                       f"(at most {gap.max():.3f}) {what}"})
    return findings


def leak_finding(main: dict) -> dict | None:
    """Validation text scored far better than training text the model was trained on."""
    key = "bpb" if main.get("val_bpb") is not None and main.get("train_bpb") is not None else "loss"
    val, train = main.get(f"val_{key}"), main.get(f"train_{key}")
    if val is None or train is None or val >= train * (1 - LEAK_MARGIN):
        return None
    return {"rule": "val-leak-suspected", "evidence": f"val {key} {val:.3f} against {train:.3f} on training text "
                                                      f"(more than {LEAK_MARGIN:.0%} lower)"}

