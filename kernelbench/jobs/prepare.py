"""A batch's untimed work, done ahead and in parallel, before the first task is timed.

Optimizing one task is mostly waiting on work no clock sees: tracing the reference for the families'
plans (a child per task, seconds each) and, on a GPU, torch.compile of the baseline variants (Dynamo,
Inductor and Triton: tens of seconds per task, every shape). `kb batch --prepare N` runs that work for all its
tasks at once in N parallel children while nothing is timed, then times the tasks one after another:
the plans wait in this process (kernelbench.generate.traced), the compiled kernels in Inductor's and
Triton's disk caches, which the baseline's own child then hits. What is timed does not change: the
baseline variants are still measured by the full evaluator in a fresh process; only their compilation
is found done.

Measured once (H100, 2026-12-07, benchmarks/results/memory_bound_batch/): 6 tasks prepared in 77 s by 8
children; the tasks' baseline phase afterwards still took 44-49 s each and whole tasks 91-114 s, as tasks took
without preparation in the run before (85-116 s, other tasks), so `kb batch` leaves it off (`--prepare 0`) until
a run with and without it on the same tasks says otherwise. Most of a baseline phase is three fresh processes
starting torch and CUDA and tracing with Dynamo, which no disk cache keeps.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from kernelbench.core.problem import load_problem
from kernelbench.eval.evaluator import EvalConfig, evaluate
from kernelbench.generate.baseline_variants import VARIANTS, default_variants, variant_solution
from kernelbench.generate.family import MATCH_TIME_LIMIT_S
from kernelbench.generate.traced import plan_ahead

# the variants whose first call compiles (each a fresh process in kb baseline, warmed as one here)
COMPILED_VARIANTS = [v for v, mode in VARIANTS.items() if mode is not None]


@dataclass
class Prepared:
    seconds: float = 0.0
    failed: dict[str, str] = field(default_factory=dict)   # task -> what could not be done ahead (done later)


def prepare(directories: list[Path], config: EvalConfig, workers: int,
            on_done: Callable[[str], None] = lambda name: None) -> Prepared:
    """Plan every task and, on a GPU, warm its compiled baseline variants, `workers` tasks at a time. A
    failure here costs nothing but time later: the task's own run does the same work again and reports it."""
    started = time.monotonic()
    prepared = Prepared()
    warm_config = replace(config, rounds=1, timing=None, shape_probe=False)   # run each compiled variant once

    def one(directory: Path) -> None:
        try:
            problem = load_problem(directory)
            plan_ahead(problem, min(config.workload_timeout_s, MATCH_TIME_LIMIT_S))
            for variant in COMPILED_VARIANTS:
                if variant in default_variants(config.device):
                    evaluate(problem, variant_solution(problem, variant), warm_config)
        except Exception as exc:  # noqa: BLE001 - the task's own run meets the same error and reports it
            prepared.failed[directory.name] = f"{type(exc).__name__}: {exc}"
        on_done(directory.name)

    with _one_compile_thread_per_child(), ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, directories))
    prepared.seconds = time.monotonic() - started
    return prepared


@contextmanager
def _one_compile_thread_per_child():
    """Inductor starts a pool of compile workers per process (one per core); `workers` children each with
    such a pool would oversubscribe the host many times over. The children inherit this process's
    environment, so it is set here, for the preparation only (the cache key does not depend on it)."""
    before = os.environ.get("TORCHINDUCTOR_COMPILE_THREADS")
    os.environ["TORCHINDUCTOR_COMPILE_THREADS"] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TORCHINDUCTOR_COMPILE_THREADS", None)
        else:
            os.environ["TORCHINDUCTOR_COMPILE_THREADS"] = before
