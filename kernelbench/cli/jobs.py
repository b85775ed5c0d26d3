"""`kb optimize`, `kb batch`, `kb leaderboard`: the three jobs."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from kernelbench.core.store import Store
from kernelbench.jobs import leaderboard, report
from kernelbench.jobs.batch import run_batch
from kernelbench.jobs.optimize import optimize

from .common import console, eval_options, load_task, ms, ratio


@click.command("optimize")
@click.argument("task")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("kb_out"), show_default=True)
@click.option("--budget", "budget_s", type=float, default=None, help="Seconds to spend on candidates.")
@eval_options
@click.pass_obj
def optimize_command(settings, task, out_dir, budget_s, run):
    """Optimize TASK: evaluate candidates, keep the best verified one, print its SOL score."""
    problem = load_task(task)
    session = run.session(settings)

    def show(result):
        summary = result.summary
        console.print(f"candidate [bold]{result.solution.name}[/bold]: {summary['workloads_passed']}/"
                      f"{summary['workloads']} passed, score {summary['sol_score']:.3f}, audit {summary['audit_status']}")

    with console.status(f"optimizing {problem.name} on {run.device}..."):
        best = optimize(session, problem, run.config, out_dir=out_dir, budget_s=budget_s, on_candidate=show)
    if best is None:
        console.print("[red]no candidate passed every workload[/red]")
        return
    summary = best.summary
    clock = "CPU clock; T_SOL not applicable" if summary["clock"] == "cpu" else f"roofline {summary['roofline_profile']}"
    table = Table(title=f"{problem.name}: best = {best.solution.name} ({clock})")
    for column in ("workload", "axes", "T_b (ms)", "T_k (ms)", "T_SOL (ms)", "score", "x baseline"):
        table.add_column(column)
    for row in summary["per_workload"]:
        table.add_row(row["uuid"][:8], json.dumps(row["axes"]), ms(row["t_b_ms"]), ms(row["t_k_ms"]),
                      ms(row["t_sol_ms"]), f"{row['score']:.3f}" if row["score"] is not None else "-",
                      f"{row['speedup_vs_baseline']:.2f}" if row["speedup_vs_baseline"] else "-")
    console.print(table)
    console.print(f"SOL score of {problem.name}: [bold]{summary['sol_score']:.3f}[/bold]; "
                  f"solution written to {out_dir / problem.name / 'solution.json'}")


@click.command("batch")
@click.argument("root", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--gpus", default=None, help="Comma-separated GPU indices (default: all visible).")
@click.option("--resume", is_flag=True, help="Skip tasks already finished in this environment.")
@click.option("--only", multiple=True, help='Glob over "subset/name" (repeatable), e.g. "L1/00*".')
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("kb_out"), show_default=True)
@click.option("--budget", "budget_s", type=float, default=None, help="Seconds per task for candidates.")
@eval_options
@click.pass_obj
def batch_command(settings, root, gpus, resume, only, out_dir, budget_s, run):
    """Optimize every task under ROOT (default: tasks235/), one worker per GPU."""
    report = run_batch(root or settings.tasks_root, settings=settings.with_options(hardware=run.hardware,
                       profile=run.profile), device=run.device, gpus=gpus, resume=resume,
                       config=run.config, out_dir=out_dir, budget_s=budget_s, console=console, only=only)
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


