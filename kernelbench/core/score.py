"""SOL score (SOL-ExecBench's definition) and the summaries reported beside it.

Per workload: S = 1 / (1 + (T_k - T_SOL) / (T_b - T_SOL)), so S = 0.5 at the baseline T_b,
1.0 at the speed of light T_SOL, and tends to 0 as the kernel gets slower. If T_b <= T_SOL the
ratio is undefined: S = 1 when T_k <= T_SOL, else 0. A task scores the mean over its workloads,
and 0 unless every workload passed; a benchmark scores the mean over tasks.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence


def sol_score(t_k: float, t_b: float, t_sol: float) -> float:
    if t_b <= t_sol:
        return 1.0 if t_k <= t_sol else 0.0
    if t_k <= t_sol:  # impossible under a sound bound; the audit flags it, the score saturates
        return 1.0
    return 1.0 / (1.0 + (t_k - t_sol) / (t_b - t_sol))


def task_score(workload_scores: Sequence[float | None], all_passed: bool) -> float:
    if not all_passed or not workload_scores or any(s is None for s in workload_scores):
        return 0.0
    return sum(workload_scores) / len(workload_scores)


def benchmark_score(task_scores: Iterable[float]) -> float:
    scores = list(task_scores)
    return sum(scores) / len(scores) if scores else 0.0


def fraction_of_sol(t_k: float, t_sol: float) -> float:
    return t_sol / t_k if t_k > 0 else 0.0


def geomean(values: Iterable[float | None]) -> float | None:
    values = [v for v in values if v is not None and v > 0]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None
