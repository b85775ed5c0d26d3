"""Screening: check and time many candidates of one task cheaply, to rank them for the search.

    results = screen(problem, {"id": solution, ...}, ScreenConfig(device="cuda", check=[...], timed=[...]))

One long-lived child per task and device (kernelbench.eval.screen_worker) builds every candidate in
turn; a crash or hang marks that candidate and a fresh child takes the rest. On a GPU, Triton
compilation happens first in `compile_workers` parallel children that only call each candidate
once (the kernels land in Triton's shared on-disk cache), so the timing child never waits on a
compiler and the GPU is not idle while the CPU cores compile.
"""

from __future__ import annotations

import math
import threading
from dataclasses import asdict, dataclass, field
from typing import Callable

from kernelbench.core.problem import Problem
from kernelbench.core.solution import Solution

from .evaluator import child_environment
from .sandbox import run_items

WORKER = "kernelbench.eval.screen_worker"


@dataclass
class ScreenConfig:
    device: str
    check: list[str]                    # workloads whose outputs are checked (uuids), e.g. smallest and largest
    timed: list[str]                    # workloads timed (uuids)
    rounds: int = 2
    timing: dict = field(default_factory=lambda: {"warmup": 3, "iterations": 10})
    seed: int = 0
    data_root: str | None = None
    build_timeout_s: float = 300.0      # the child's set-up: reference outputs for the checked rounds
    candidate_timeout_s: float = 120.0  # one candidate: import, checks, timing
    compile_workers: int = 0            # parallel warm-up children (GPU only; 0: none)
    budget_s: float | None = None       # candidates not started within this many seconds come back SKIPPED


@dataclass
class ScreenResult:
    status: str
    log: str = ""
    times_ms: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status == "PASSED"

    def to_json(self) -> dict:
        return asdict(self)


def screen(problem: Problem, candidates: dict[str, Solution], config: ScreenConfig,
           on_result: Callable[[str, ScreenResult], None] | None = None) -> dict[str, ScreenResult]:
    """Screen every candidate (id -> solution); returns id -> result, in the order given."""
    if config.compile_workers > 0 and config.device.startswith("cuda") and len(candidates) > 1:
        warm(problem, candidates, config)
    results: dict[str, ScreenResult] = {}

    def record(candidate_id: str, message: dict) -> None:
        result = ScreenResult(status=message["status"], log=message.get("log", ""),
                              times_ms=message.get("times_ms") or {}, seconds=message.get("seconds", 0.0))
        results[candidate_id] = result
        if on_result is not None:
            on_result(candidate_id, result)

    run_items(WORKER, _request(problem, candidates, config), list(candidates),
              build_timeout_s=config.build_timeout_s, item_timeout_s=config.candidate_timeout_s,
              on_result=record, env=child_environment(config.device))
    return {candidate_id: results[candidate_id] for candidate_id in candidates}


def warm(problem: Problem, candidates: dict[str, Solution], config: ScreenConfig) -> None:
    """Call every candidate once per timed workload in `compile_workers` parallel children (results
    ignored: failures show again, with their reason, when the candidate is screened)."""
    ids = list(candidates)
    per_worker = math.ceil(len(ids) / config.compile_workers)
    slices = [ids[i:i + per_worker] for i in range(0, len(ids), per_worker)]
    threads = [threading.Thread(target=run_items, daemon=True, args=(
        WORKER, {**_request(problem, {i: candidates[i] for i in part}, config), "warm": True}, part),
        kwargs=dict(build_timeout_s=config.build_timeout_s, item_timeout_s=config.candidate_timeout_s,
                    on_result=lambda *_: None, env=child_environment(config.device))) for part in slices]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _request(problem: Problem, candidates: dict[str, Solution], config: ScreenConfig) -> dict:
    return {"problem_dir": str(problem.directory), "device": config.device, "check": config.check,
            "timed": config.timed, "rounds": config.rounds, "timing": config.timing, "seed": config.seed,
            "data_root": config.data_root, "budget_s": config.budget_s,
            "candidates": {candidate_id: solution.to_json() for candidate_id, solution in candidates.items()}}
