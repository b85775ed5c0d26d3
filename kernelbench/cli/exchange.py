"""`kb export`, `kb import`: results as SOL-ExecBench's official files, in and out of the store."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from kernelbench.core.store import Store
from kernelbench.jobs.exchange import export_results, import_results

from .common import console


@click.command("export")
@click.argument("tasks", nargs=-1)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Writes OUT/<hardware>/<subset>/<task>/{solution.json, traces.jsonl, summary.json}.")
@click.pass_obj
def export_command(settings, tasks, out_dir):
    """Write the leaderboard's rows (every task, or TASKS) as official solution.json and traces. Exit 1 if a row could not be written."""
    report = export_results(Store(settings.db, read_only=True), out_dir, tasks)
    console.print(f"{len(report.written)} exported under {out_dir}, {len(report.skipped)} not exported")
    for label, reason in report.skipped.items():
        console.print(f"[red]{label}[/red]: {reason}", highlight=False)
    sys.exit(1 if report.skipped else 0)


@click.command("import")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.pass_obj
def import_command(settings, path):
    """Record official traces and solutions under PATH (kb export output, SOL-ExecBench run_dataset output) in the store. Exit 1 if something could not be imported."""
    report = import_results(Store(settings.db), path)
    console.print(f"{len(report.imported)} imported, {len(report.already)} already in the store, "
                  f"{len(report.skipped)} not imported")
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
    for label, reason in report.skipped.items():
        console.print(f"[red]{label}[/red]: {reason}", highlight=False)
    sys.exit(1 if report.skipped else 0)
