"""`kb batch --ray ADDRESS`: the batch's tasks spread over a Ray cluster, every result in the driver's store.

Each task is one Ray task that asks for one GPU (one CPU with `--device cpu`). On its worker it
writes the problem's files into a private directory and optimizes it against a private SQLite
store, seeded with what the driver's store holds that the search reads (the baselines of that
environment, so T_b is measured once per environment as in a local batch, and the knowledge base
as it was when the task was sent), then returns every row it recorded. Only the
driver writes the real store: it commits each task's rows in one transaction when the task
returns, so a killed worker (or driver) loses only the tasks in progress, and Ray runs a task
whose worker died again (`RETRIES`). `--resume` skips the tasks finished in the environment the
workers measure in, which a probe task asks one worker for (the cluster's GPUs are taken to be
alike).

Workers get this code through Ray's runtime environment (`py_modules`); the problems travel with
their tasks; safetensors inputs are read under the same `--data-root` path on every node. Ray comes
with the `ray` extra and is imported when a Ray batch starts.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import audit
import kernelbench
import roofline
from kernelbench.core.errors import KernelBenchError
from kernelbench.core.problem import DEFINITION_FILE, WORKLOAD_FILE, load_problem
from kernelbench.core.settings import Settings
from kernelbench.core.solution import parse_solution
from kernelbench.core.store import Store
from kernelbench.core.trace import Trace
from kernelbench.eval.evaluator import EvalConfig
from kernelbench.eval.gpu_state import environment_info
from kernelbench.jobs.batch import BatchReport
from kernelbench.jobs.exchange import TABLES, insert_rows, merge_rows
from kernelbench.jobs.optimize import optimize
from kernelbench.jobs.summary import Evaluated, ranked, write_outputs
from kernelbench.jobs.session import Session, definition_hash

RETRIES = 2          # runs of a task whose worker died, after the first
LOCAL = "local"      # the address that starts a Ray instance on this machine


@dataclass
class RayExecutor:
    """Runs a batch's tasks on the Ray cluster at `address` ("local": a new instance here, "auto": the
    cluster this machine belongs to, "ray://host:port": a remote one)."""
    address: str = LOCAL
    num_cpus: int | None = None   # CPUs of a local instance (default: all)

    def connect(self):
        """Join the cluster (once per process; Ray wants this in the main thread) and return the ray module."""
        try:  # the optional `ray` extra
            import ray
        except ImportError:
            raise KernelBenchError("ray is missing: pip install 'kernelbench[ray]'") from None
        if not ray.is_initialized():
            ray.init(address=None if self.address == LOCAL else self.address,
                     num_cpus=self.num_cpus if self.address == LOCAL else None, include_dashboard=False,
                     log_to_driver=False, runtime_env={"py_modules": [kernelbench, roofline, audit]})
        return ray

    def run(self, directories: list[Path], *, settings: Settings, device: str, resume: bool, config: EvalConfig,
            out_dir: Path | None, budget_s: float, console=None, **optimize_options) -> BatchReport:
        ray = self.connect()
        gpu = device.startswith("cuda")
        resources = {"num_gpus": 1, "num_cpus": 1} if gpu else {"num_cpus": 1}
        if gpu and not ray.cluster_resources().get("GPU"):   # the tasks would wait for a GPU forever
            raise KernelBenchError(f"the Ray cluster at {self.address} has no GPUs (use --device cpu for CPU workers)")
        store = Store(settings.db)
        report = BatchReport()
        environment = ray.get(ray.remote(environment_info).options(**resources).remote(device))
        environment_id = store.environment_id(environment["fingerprint"], environment["hardware"],
                                              environment["device"], environment)
        finished = store.finished_definitions(environment_id) if resume else set()
        task = ray.remote(optimize_task).options(max_retries=RETRIES, **resources)
        pending = {}
        for directory in directories:
            try:
                problem = load_problem(directory)
            except Exception as exc:  # as in a local batch: a malformed task is reported, the others run
                report.failed[directory.name] = f"{type(exc).__name__}: {exc}"
                continue
            if problem.name in finished:
                report.skipped.append(problem.name)
                continue
            files = {name: (directory / name).read_text() for name in (DEFINITION_FILE, WORKLOAD_FILE)}
            seeds = {"baselines": [dict(row) for row in store.db.execute(
                         "SELECT * FROM baselines WHERE definition_hash = ? AND environment_id = ?",
                         (definition_hash(problem), environment_id))],
                     "knowledge": [dict(row) for row in store.knowledge()]}
            future = task.remote(files, problem.subset, directory.name, settings, device, config, budget_s,
                                 optimize_options, seeds)
            pending[future] = (problem.name, directory)
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=False) as progress:
            bar = progress.add_task(f"batch on Ray ({ray.cluster_resources().get('GPU' if gpu else 'CPU', 0):g} "
                                    f"{'GPUs' if gpu else 'CPUs'})", total=len(pending))
            while pending:
                [done], _ = ray.wait(list(pending), num_returns=1)
                name, directory = pending.pop(done)
                try:
                    rows = ray.get(done)
                except Exception as exc:  # the task failed on every try: reported, the batch goes on
                    reason = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[-1]}"
                    report.failed[directory.name] = reason
                    line = f"{directory.parent.name}/{directory.name}: could not be optimized: {reason}"
                else:
                    result = merge_rows(store, rows, directory)
                    summary = json.loads(result["data"])
                    report.done.append(name)
                    report.scores[name] = summary["sol_score"] if ranked(summary) else 0.0
                    if out_dir is not None and ranked(summary):
                        write_outputs(_evaluated(rows, result), Path(out_dir) / name)
                    line = (f"{summary['subset']}/{name}: S {summary['sol_score']:.3f} ({summary['workloads_passed']}/"
                            f"{summary['workloads']} workloads passed, {summary['solution']})")
                progress.console.print(line, highlight=False, markup=False)   # one line per finished task
                progress.advance(bar)
        return report


def optimize_task(files: dict[str, str], subset: str, name: str, settings: Settings, device: str, config: EvalConfig,
                  budget_s: float, optimize_options: dict, seeds: dict[str, list[dict]]) -> dict:
    """On a worker: optimize one problem against a private store seeded with `seeds` (table -> rows);
    every row it recorded."""
    with tempfile.TemporaryDirectory(prefix="kb_fleet_") as scratch:
        directory = Path(scratch) / subset / name
        directory.mkdir(parents=True)
        for filename, text in files.items():
            (directory / filename).write_text(text)
        session = Session.open(replace(settings, db=Path(scratch) / "task.db"), device)
        insert_rows(session.store, "baselines",
                    [{**row, "environment_id": session.environment_id} for row in seeds["baselines"]])
        insert_rows(session.store, "knowledge", seeds["knowledge"])
        optimize(session, load_problem(directory), replace(config, device=session.device), budget_s=budget_s,
                 **optimize_options)
        rows = {table: [dict(row) for row in session.store.db.execute(f"SELECT * FROM {table} ORDER BY rowid")]
                for table in (*TABLES, "environments")}   # a fresh store: all of it is this task
        session.store.close()
        return rows


def _evaluated(rows: dict[str, list[dict]], result: dict) -> Evaluated:
    """The result's solution, traces and summary, as `kb optimize --out` writes them."""
    [solution] = [row for row in rows["solutions"] if row["hash"] == result["solution_hash"]]
    traces = [Trace.from_json(json.loads(row["data"])) for row in rows["traces"]
              if row["run_id"] == result["run_id"] and row["solution_hash"] == result["solution_hash"]]
    return Evaluated(parse_solution(json.loads(solution["data"])), traces, json.loads(result["data"]))
