"""Successive halving over candidates, within a time budget, on the screening child.

Rung 0 screens every candidate: two correctness rounds on the smallest and the largest workload,
then a few timed iterations on a handful of representative workloads. Each later rung keeps the
best 1/eta by geometric-mean time, plus the fastest candidate of every workload, and times them
on every workload with more iterations. The result names the fastest candidate per workload (the
dispatch table) and the best over all workloads (the fallback).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Callable

from kernelbench.core.problem import Problem, Workload
from kernelbench.eval.screening import ScreenConfig, ScreenResult, screen

from .candidate import Candidate

RUNG_ITERATIONS = (5, 15, 40)   # timed iterations per rung: noise shrinks as the field does


@dataclass
class Screened:
    candidate: Candidate
    rung: int
    result: ScreenResult


@dataclass
class SearchOutcome:
    screened: list[Screened] = field(default_factory=list)
    winners: dict[str, Candidate] = field(default_factory=dict)   # workload uuid -> fastest passing candidate
    fallback: Candidate | None = None                            # best geometric mean over the timed workloads
    seconds: float = 0.0
    rung_seconds: list[float] = field(default_factory=list)

    @property
    def passed(self) -> int:
        return len({s.candidate.key for s in self.screened if s.result.passed})

    def rate(self) -> float:
        """Candidates screened per second in rung 0 (compilation included)."""
        first = [s for s in self.screened if s.rung == 0 and s.result.status != "SKIPPED"]
        return len(first) / self.rung_seconds[0] if self.rung_seconds and self.rung_seconds[0] else 0.0


def representatives(problem: Problem, workloads: list[Workload], count: int = 3) -> list[Workload]:
    """The smallest, the largest and evenly spaced ones between (by input size)."""
    ordered = sorted(workloads, key=problem.workload_size)
    if len(ordered) <= count:
        return ordered
    picks = {round(i * (len(ordered) - 1) / (count - 1)) for i in range(count)}
    return [ordered[i] for i in sorted(picks)]


def geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def successive_halving(problem: Problem, candidates: list[Candidate], workloads: list[Workload],
                       base: ScreenConfig, budget_s: float, eta: int = 3,
                       on_screened: Callable[[Screened], None] | None = None,
                       screen_fn=screen) -> SearchOutcome:
    """`base` carries device, seed, data root and timeouts; check/timed/timing are set per rung."""
    outcome = SearchOutcome()
    started = time.monotonic()
    if not candidates or budget_s <= 0:
        return outcome
    ordered = sorted(workloads, key=problem.workload_size)
    check = list(dict.fromkeys([ordered[0].uuid, ordered[-1].uuid]))
    field_, timed = candidates, [w.uuid for w in representatives(problem, workloads)]
    times: dict[str, dict[str, float]] = {}
    for rung, iterations in enumerate(RUNG_ITERATIONS):
        left = budget_s - (time.monotonic() - started)
        if left <= 0 or not field_:
            break
        config = replace(base, check=check if rung == 0 else [], timed=timed,
                         timing={"warmup": 2, "iterations": iterations}, budget_s=left)
        by_id = {c.key: c for c in field_}
        rung_started = time.monotonic()
        for key, result in screen_fn(problem, {k: c.solution for k, c in by_id.items()}, config).items():
            screened = Screened(by_id[key], rung, result)
            outcome.screened.append(screened)
            if on_screened:
                on_screened(screened)
            if result.passed:
                times[key] = result.times_ms
        outcome.rung_seconds.append(time.monotonic() - rung_started)
        alive = [c for c in field_ if c.key in times and all(u in times[c.key] for u in timed)]
        if not alive:
            break
        outcome.winners = {u: min(alive, key=lambda c: times[c.key][u]) for u in timed}
        outcome.fallback = min(alive, key=lambda c: geomean([times[c.key][u] for u in timed]))
        if len(alive) == 1 and len(timed) == len(workloads):
            break
        keep = max(1, math.ceil(len(alive) / eta))
        best = sorted(alive, key=lambda c: geomean([times[c.key][u] for u in timed]))[:keep]
        field_ = list({c.key: c for c in best + list(outcome.winners.values())}.values())
        timed = [w.uuid for w in workloads]
        for c in field_:   # a later rung's times replace this one's
            times.pop(c.key, None)
    outcome.seconds = time.monotonic() - started
    return outcome
