"""Problems and results in and out: `kb export`, `kb import`, `kb tasks import-kernelbench`, `kb tasks download`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from kernelbench.core.kernelbench_format import DEFAULT_VAR_AXES, import_kernelbench, parse_workload_option
from kernelbench.core.store import Store
from kernelbench.jobs.download import CONFIGS, REPO_ID, REVISION, download_dataset
from kernelbench.jobs.exchange import export_results, import_results, import_store, is_store

from .common import console
from .tasks import tasks


@click.command("export")
@click.argument("tasks", nargs=-1)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Writes OUT/<hardware>/<subset>/<task>/{solution.json, traces.jsonl, summary.json}.")
@click.pass_obj
def export_command(settings, tasks, out_dir):
    """Write the leaderboard's rows (every task, or TASKS) as official solution.json and traces.

    Exit 1 if a row could not be written."""
    report = export_results(Store(settings.db, read_only=True), out_dir, tasks)
    console.print(f"{len(report.written)} exported under {out_dir}, {len(report.skipped)} not exported")
    for label, reason in report.skipped.items():
        console.print(f"[red]{label}[/red]: {reason}", highlight=False)
    sys.exit(1 if report.skipped else 0)


@click.command("import")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--problems", "problems_root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the traces' problems are, for the T_SOL of GPU traces that carry none "
                   "(default: tasks235/).")
@click.pass_obj
def import_command(settings, path, problems_root):
    """Record the official traces and solutions under PATH, or every result of another store (a .db file).

    PATH: kb export output, SOL-ExecBench run_dataset output (<category>/<problem>/{solution.json,
    traces.json}), or trace files with their solution.json beside them. Exit 1 if something could
    not be imported."""
    if is_store(path):
        report = import_store(Store(settings.db), path)
    else:
        report = import_results(Store(settings.db), path, problems_root=problems_root or settings.tasks_root,
                                settings=settings)
    console.print(f"{len(report.imported)} imported, {len(report.already)} already in the store, "
                  f"{len(report.skipped)} not imported")
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
    for label, reason in report.skipped.items():
        console.print(f"[red]{label}[/red]: {reason}", highlight=False)
    sys.exit(1 if report.skipped else 0)


@tasks.command("import-kernelbench")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--subset", default=None, help="Subset directory (default: the source directory's name).")
@click.option("--var", "var_axes", multiple=True, default=DEFAULT_VAR_AXES, show_default=True,
              help="Size constant that becomes a var axis (repeatable).")
@click.option("--workload", "workloads", multiple=True, help='One more workload, e.g. "batch_size=1" (repeatable).')
def tasks_import_kernelbench(source, out_dir, subset, var_axes, workloads):
    """Convert KernelBench problems (a .py file or a directory of them) into problem directories under OUT.

    The rules (parameters as inputs, values from the file's own get_inputs and Model, axes from its
    size constants) are in kernelbench/core/kernelbench_format.py. Exit 1 if one could not be converted."""
    written, failed = import_kernelbench(source, out_dir, subset=subset, var_axes=var_axes,
                                         workloads=[parse_workload_option(w) for w in workloads])
    for directory in written:
        console.print(f"[green]wrote[/green] {directory}", highlight=False)
    for file, reason in failed.items():
        console.print(f"[red]{file}[/red]: {reason}", highlight=False)
    console.print(f"{len(written)} converted, {len(failed)} failed")
    sys.exit(1 if failed else 0)


@tasks.command("download")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("sol_execbench"),
              show_default=True, help="Writes OUT/<config>/<name>/{definition.json, workload.jsonl}.")
@click.option("--config", "configs", multiple=True, type=click.Choice(CONFIGS), help="Default: every config.")
@click.option("--repo", "repo_id", default=REPO_ID, show_default=True)
@click.option("--revision", default=REVISION, show_default=True)
@click.option("--hf-cache", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Hugging Face cache directory (default: huggingface_hub's).")
@click.option("--offline", is_flag=True, help="Use only what the Hugging Face cache holds.")
def tasks_download(out_dir, configs, repo_id, revision, hf_cache, offline):
    """Download the official SOL-ExecBench dataset (parquet) into problem directories.

    Exit 1 if a problem is invalid."""
    report = download_dataset(out_dir, configs or CONFIGS, repo_id=repo_id, revision=revision, cache_dir=hf_cache,
                              local_files_only=offline)
    for label, reason in report.failed.items():
        console.print(f"[red]{label}[/red]: {reason}", highlight=False)
    console.print(f"{len(report.written)} problems written under {out_dir} (from {report.snapshot}), "
                  f"{len(report.failed)} invalid")
    sys.exit(1 if report.failed else 0)
