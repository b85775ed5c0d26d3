"""`kb optimize`, `kb batch`, `kb leaderboard`: the three jobs."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from kernelbench.core.store import Store
from kernelbench.jobs import leaderboard, report
from kernelbench.jobs.batch import run_batch
from kernelbench.jobs.fleet import RayExecutor
from kernelbench.jobs.optimize import CPU_BUDGET_S, DEFAULT_BUDGET_S, optimize

from .common import console, eval_options, load_task, ms, print_summary, ratio
from .llm import llm_options


@click.command("optimize")
@click.argument("task")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("kb_out"), show_default=True)
@click.option("--budget", "budget_s", type=float, default=None,
              help=f"Seconds of search (screening); 0: no search, the knowledge base's configurations "
                   f"(default: {DEFAULT_BUDGET_S:g} on a GPU, {CPU_BUDGET_S:g} on CPU).")
@click.option("--json", "as_json", is_flag=True, help="Every candidate tried and the winner, as one JSON object.")
@eval_options
@llm_options
@click.pass_obj
def optimize_command(settings, task, out_dir, budget_s, as_json, run, llm):
    """Optimize TASK: search generated candidates, verify the finalists, print the SOL score."""
    problem = load_task(task)
    session = run.session()
    display = SearchDisplay(problem.name, run.device, quiet=as_json)
    with display:
        result = optimize(session, problem, run.config, out_dir=out_dir, budget_s=search_budget(budget_s, run.device),
                          on_event=display.event, llm=llm)
    if as_json:
        click.echo(json.dumps(result.to_json(), default=str))
        return
    for note in result.notes:
        console.print(f"[yellow]note:[/yellow] {note}", highlight=False)
    print_summary(result.chosen.summary, f"{problem.name}: {result.chosen.solution.name}")
    if result.best is None:
        console.print("[red]no candidate passed every workload audit-clean[/red]")
        return
    console.print(f"SOL score of {problem.name}: [bold]{result.best.summary['sol_score']:.3f}[/bold]; "
                  f"solution written to {out_dir / problem.name / 'solution.json'}")


def search_budget(budget_s: float | None, device: str) -> float:
    """The --budget asked for, else the device's default."""
    if budget_s is not None:
        return budget_s
    return CPU_BUDGET_S if device == "cpu" else DEFAULT_BUDGET_S


class SearchDisplay:
    """The search, live: candidates screened, passing, the fastest so far; then each finalist."""

    def __init__(self, task: str, device: str, quiet: bool):
        self.quiet, self.task, self.device = quiet, task, device
        self.screened = self.passed = 0
        self.best: tuple[float, str] | None = None
        self.status = console.status(f"optimizing {task} on {device}: baseline...")

    def __enter__(self):
        if not self.quiet:
            self.status.__enter__()
        return self

    def __exit__(self, *exc):
        if not self.quiet:
            self.status.__exit__(*exc)

    def event(self, event) -> None:
        if self.quiet:
            return
        if event.kind == "screened":
            self.screened += 1
            result = event.screened.result
            if result.passed:
                self.passed += 1
                fastest = min(result.times_ms.values())
                if self.best is None or fastest < self.best[0]:
                    self.best = (fastest, event.screened.candidate.provenance.describe())
            best = f"; fastest {self.best[0]:.4g} ms: {self.best[1]}" if self.best else ""
            self.status.update(f"optimizing {self.task} on {self.device}: rung {event.screened.rung}, "
                               f"{self.screened} screened, {self.passed} passed{best}")
        elif event.kind == "evaluated":
            summary = event.evaluated.summary
            console.print(f"finalist [bold]{event.evaluated.solution.name}[/bold]: {summary['workloads_passed']}/"
                          f"{summary['workloads']} passed, S {summary['sol_score']:.3f}, audit {summary['audit_status']}",
                          highlight=False)
        else:
            console.print(event.text, highlight=False)


@click.command("batch")
@click.argument("root", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--gpus", default=None, help="Comma-separated GPU indices (default: all visible).")
@click.option("--resume", is_flag=True, help="Skip tasks already finished in this environment.")
@click.option("--only", multiple=True, help='Glob over "subset/name" (repeatable), e.g. "L1/00*".')
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("kb_out"), show_default=True)
@click.option("--budget", "budget_s", type=float, default=None,
              help=f"Seconds of search per task; 0: no search (default: {DEFAULT_BUDGET_S:g} on a GPU, "
                   f"{CPU_BUDGET_S:g} on CPU).")
@click.option("--ray", "ray_address", default=None, metavar="ADDRESS",
              help='Spread the tasks over a Ray cluster ("local": start one here, "auto", "ray://host:port").')
@click.option("--prepare", "prepare_workers", type=click.IntRange(min=0), default=0, show_default=True,
              help="Children doing every task's untimed work ahead, in parallel (plans; on a GPU one untimed run of "
                   "the torch.compile baseline variants) before the first task is timed; 0: none.")
@eval_options
@llm_options
@click.pass_obj
def batch_command(settings, root, gpus, resume, only, out_dir, budget_s, ray_address, prepare_workers, run, llm):
    """Optimize every task under ROOT (default: tasks235/), one worker per GPU (here, or on a Ray cluster)."""
    report = run_batch(root or settings.tasks_root, settings=run.settings, device=run.device, gpus=gpus,
                       resume=resume, config=run.config, out_dir=out_dir,
                       budget_s=search_budget(budget_s, run.device), console=console,
                       only=only, llm=llm, executor=RayExecutor(ray_address) if ray_address else None,
                       prepare_workers=prepare_workers)
    console.print(f"{len(report.done)} optimized, {len(report.skipped)} skipped (--resume), "
                  f"{len(report.failed)} could not be optimized")
    for name, reason in report.failed.items():
        console.print(f"[red]{name}[/red]: {reason.splitlines()[0]}")


@click.command("leaderboard")
@click.option("--csv", "csv_path", type=click.Path(path_type=Path), default=None, help="Write the table as CSV.")
@click.option("--per-workload", is_flag=True, help="One row per workload (long format).")
@click.option("--html", "html_path", type=click.Path(path_type=Path), default=None,
              help="Write the report's overview as one HTML file (kb report --html DIR adds task pages).")
@click.pass_obj
def leaderboard_command(settings, csv_path, per_workload, html_path):
    """The SOL leaderboard from the store: one row per task (flagged solutions never ranked)."""
    store = Store(settings.db, read_only=True)
    frame = leaderboard.workload_table(store) if per_workload else leaderboard.task_table(store)
    if csv_path:
        frame.to_csv(csv_path, index=False)
        console.print(f"wrote {len(frame)} rows to {csv_path}")
    if html_path:
        report.write_overview(store, html_path)
        console.print(f"wrote the overview to {html_path}")
    if per_workload:
        console.print(frame.to_string(index=False, max_colwidth=24))
        return
    rows = leaderboard.leaderboard_rows(store)   # raw values: a missing one prints "-", never nan
    table = Table(title=f"SOL leaderboard ({report.count_noun(len(rows), 'task')}, "
                        f"mean SOL score {leaderboard.mean_score(frame):.3f})")
    for column in ("task", "subset", "hardware", "passed", "T_k", "T_b", "T_SOL", "sol_score", "x baseline", "audit"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row["task"], row["subset"], row["hardware"] or "-",
                      f"{row.get('workloads_passed', '-')}/{row.get('workloads', '-')}",
                      ms(row.get("geomean_t_k_ms")), ms(row.get("geomean_t_b_ms")), ms(row.get("geomean_t_sol_ms")),
                      f"{row['sol_score']:.3f}", ratio(row.get("speedup_vs_baseline")), row.get("audit_status") or "-")
    console.print(table)


