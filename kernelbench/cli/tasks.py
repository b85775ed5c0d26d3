"""`kb tasks`: list, validate and suggest tolerances for problems (SOL-ExecBench format)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.table import Table

from kernelbench.core.errors import KernelBenchError
from kernelbench.core.problem import find_problem_dirs, load_problem
from kernelbench.core.tasks import resolve_task
from kernelbench.core.tolerance import MARGIN, measure_spread
from kernelbench.core.validation import check_problem

from .common import console, load_task


@click.group()
def tasks():
    """List and validate problems (SOL-ExecBench format)."""


@tasks.command("list")
@click.argument("root", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per problem.")
@click.pass_obj
def tasks_list(settings, root, as_json):
    """List the problems under ROOT (default: tasks235/)."""
    root = root or settings.tasks_root
    rows = []
    for directory in find_problem_dirs(root):
        try:
            problem = load_problem(directory)
            d = problem.definition
            rows.append({"name": d.name, "subset": problem.subset, "path": str(directory),
                         "workloads": len(problem.workloads), "op_type": d.op_type, "hf_id": d.hf_id,
                         "inputs": len(d.inputs), "outputs": len(d.outputs), "error": None})
        except KernelBenchError as exc:
            rows.append({"name": directory.name, "subset": directory.parent.name, "path": str(directory),
                         "workloads": 0, "op_type": None, "hf_id": None, "inputs": 0, "outputs": 0,
                         "error": str(exc)})
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    table = Table(title=f"{len(rows)} problems under {root}")
    for column in ("subset", "name", "workloads", "op_type", "hf_id"):
        table.add_column(column)
    for row in rows:
        name = row["name"] if not row["error"] else f"[red]{row['name']} (invalid)[/red]"
        table.add_row(row["subset"], name, str(row["workloads"]), row["op_type"] or "", row["hf_id"] or "")
    console.print(table)


@tasks.command("check")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--run", is_flag=True, help="Also run each reference on its smallest workload on CPU.")
@click.option("--data-root", default=None, help="Root for safetensors inputs (default: $KB_DATA_ROOT or .).")
@click.pass_obj
def tasks_check(settings, paths, run, data_root):
    """Validate problems under PATHS (default: tasks235/). Exit 1 if any fails."""
    directories = []
    for path in paths or (settings.tasks_root,):
        found = find_problem_dirs(path) if Path(path).is_dir() else [resolve_task(path, settings.tasks_root)]
        if not found:
            raise KernelBenchError(f"no problem directories under {path}")
        directories += found
    table = Table(title="kb tasks check" + (" --run" if run else ""))
    for column in ("subset", "problem", "workloads", "result", "details"):
        table.add_column(column, overflow="fold")
    failures = 0
    with console.status("checking...") as status:
        for directory in directories:
            status.update(f"checking {directory.name}")
            result = check_problem(directory, run=run, data_root=data_root or settings.data_root)
            failures += not result.ok
            verdict = "[green]ok[/green]" if result.ok else "[red]FAIL[/red]"
            if result.ok and result.ran:
                verdict += f" (ran {result.seconds:.1f}s)"
            table.add_row(result.subset, result.name, str(result.workloads), verdict, "\n".join(result.messages))
    console.print(table)
    console.print(f"{len(directories) - failures} passed, {failures} failed")
    sys.exit(1 if failures else 0)


@tasks.command("tolerance")
@click.argument("task")
@click.option("--seeds", type=int, default=3, show_default=True)
@click.option("--workloads", type=int, default=2, show_default=True, help="How many of the smallest workloads.")
def tasks_tolerance(task, seeds, workloads):
    """Suggest tolerances from the reference's spread between working precision and fp32 (CPU)."""
    problem = load_task(task)
    table = Table(title=f"{problem.name}: working precision vs fp32-upcast reference, margin {MARGIN:g}")
    for column in ("output", "dtype", "max |d|", "p99.9 uncovered", "suggested atol", "suggested rtol"):
        table.add_column(column)
    for s in measure_spread(problem, seeds, workloads):
        table.add_row(s.output, s.dtype, f"{s.max_abs:.3g}", f"{s.uncovered_p999:.3g}", f"{s.suggested_atol:.3g}",
                      f"{s.suggested_rtol:g}")
    console.print(table)


# ---------------------------------------------------------------- evaluation jobs

