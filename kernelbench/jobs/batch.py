"""`kb batch`: optimize every task under a root, one worker per GPU, resumable, failure-isolated.

Each worker thread owns one device and its own store connection and pulls tasks from a shared queue; the
evaluation itself happens in child processes, so threads only wait (with `prepare_workers`, every task's untimed
work is first done in parallel while nothing is timed: kernelbench.jobs.prepare). Every finished
task is committed at once, so Ctrl-C or kill -9 loses only tasks in progress, and `--resume`
skips tasks that already have a result for the same environment.
"""

from __future__ import annotations

import fnmatch
import queue
import threading
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from kernelbench.core.problem import find_problem_dirs, load_problem
from kernelbench.core.settings import Settings
from kernelbench.eval import sandbox
from kernelbench.eval.evaluator import EvalConfig
from kernelbench.jobs.optimize import DEFAULT_BUDGET_S, optimize
from kernelbench.jobs.prepare import prepare
from kernelbench.jobs.session import Session


@dataclass
class BatchReport:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # task -> reason (could not be optimized at all)
    scores: dict[str, float] = field(default_factory=dict)
    prepare_s: float = 0.0


def devices_for(device: str, gpus: str | None) -> list[str]:
    if not device.startswith("cuda"):
        return ["cpu"]
    if gpus:
        return [f"cuda:{int(g)}" for g in gpus.split(",") if g.strip()]
    return [f"cuda:{i}" for i in range(max(1, torch.cuda.device_count()))]


def select_tasks(root: Path, only: tuple[str, ...] = ()) -> list[Path]:
    """Problem directories under root; with `only`, those whose "subset/name" matches a glob."""
    directories = find_problem_dirs(root)
    if only:
        directories = [d for d in directories
                       if any(fnmatch.fnmatch(f"{d.parent.name}/{d.name}", pattern) for pattern in only)]
    return directories


def run_batch(root: Path, *, settings: Settings, device: str, gpus: str | None, resume: bool, config: EvalConfig,
              out_dir: Path | None, budget_s: float = DEFAULT_BUDGET_S, console=None, only: tuple[str, ...] = (),
              executor=None, prepare_workers: int = 0, **optimize_options) -> BatchReport:
    """`executor` runs the tasks elsewhere with the same resume and store guarantees
    (kernelbench.jobs.fleet.RayExecutor: a Ray cluster); default: one thread per local device, after
    `prepare_workers` parallel children did the tasks' untimed work (0: none ahead)."""
    directories = select_tasks(root, only)
    if executor is not None:
        return executor.run(directories, settings=settings, device=device, resume=resume, config=config,
                            out_dir=out_dir, budget_s=budget_s, console=console, **optimize_options)
    report = BatchReport()
    devices = devices_for(device, gpus)
    sessions = [Session.open(settings, d) for d in devices]
    pending = []
    for directory in directories:
        name = _definition_name(directory)
        if resume and name in sessions[0].store.finished_definitions(sessions[0].environment_id):
            report.skipped.append(name)
        else:
            pending.append(directory)
    lock = threading.Lock()
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("eta"), TimeRemainingColumn())
    if prepare_workers > 0 and pending:
        with Progress(*columns, console=console, transient=True) as progress:
            bar = progress.add_task(f"preparing ({prepare_workers} at a time)", total=len(pending))
            prepared = prepare(pending, replace(config, device=devices[0]), prepare_workers,
                               on_done=lambda name: progress.advance(bar))
        report.prepare_s = prepared.seconds
        if console is not None:
            console.print(f"prepared {len(pending)} tasks in {prepared.seconds:.0f} s "
                          f"({len(prepared.failed)} left to their own run)", highlight=False)
    todo: queue.Queue[Path] = queue.Queue()
    for directory in pending:
        todo.put(directory)
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task("batch", total=todo.qsize())

        def work(session: Session) -> None:
            worker_config = replace(config, device=session.device)
            while True:
                try:
                    directory = todo.get_nowait()
                except queue.Empty:
                    return
                progress.update(bar, description=f"{directory.name} on {session.device}")
                try:
                    problem = load_problem(directory)
                    result = optimize(session, problem, worker_config, out_dir=out_dir, budget_s=budget_s,
                                      **optimize_options)
                    summary = result.chosen.summary
                    line = (f"{problem.subset}/{problem.name}: S {summary['sol_score']:.3f} "
                            f"({summary['workloads_passed']}/{summary['workloads']} workloads passed, "
                            f"{result.chosen.solution.name}) in {result.describe_seconds()}")
                    with lock:
                        report.done.append(problem.name)
                        report.scores[problem.name] = summary["sol_score"] if result.best else 0.0
                except Exception as exc:  # one task's failure never stops the batch
                    line = f"{directory.parent.name}/{directory.name}: could not be optimized: {type(exc).__name__}: {exc}"
                    with lock:
                        report.failed[directory.name] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"
                progress.console.print(line, highlight=False, markup=False)   # one line per finished task
                progress.advance(bar)

        threads = [threading.Thread(target=work, args=(s,), daemon=True) for s in sessions]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                while thread.is_alive():
                    thread.join(0.5)
        except KeyboardInterrupt:
            sandbox.kill_all()  # finished tasks are already committed; the ones in progress are dropped
            raise
    return report


def _definition_name(directory: Path) -> str:
    try:
        return load_problem(directory).name
    except Exception:
        return directory.name
