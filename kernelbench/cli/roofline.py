"""`kb roofline TASK` and `kb calibrate`: click commands for the CLI owner to register.

    from kernelbench.cli.roofline import roofline_command, calibrate_command
    main.add_command(roofline_command)
    main.add_command(calibrate_command)

TASK is a problem directory, a task name under tasks235/, or a directory holding many
problems (every problem below it is bounded, in one process).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click
import torch
from rich.table import Table

from kernelbench.core.problem import DEFINITION_FILE, find_problem_dirs, load_problem
from kernelbench.core.store import Store
from kernelbench.core.tasks import resolve_task
from roofline.calibrate import calibrate
from roofline.hardware import HARDWARE_NAMES, ProfileError, canonical_name, load_profile
from roofline.model import WorkloadSOL, prefetch_counts, sol_for_problem
from roofline.plot import roofline_plot

from .common import console



def default_hardware() -> str:
    """The GPU present if it has a profile, else H200."""
    try:
        if torch.cuda.is_available():
            return canonical_name(torch.cuda.get_device_name(0))
    except (ProfileError, RuntimeError):
        pass
    return "H200"


def problem_dirs(task: str) -> list[Path]:
    path = Path(task)
    if path.is_dir() and not (path / DEFINITION_FILE).is_file():
        dirs = find_problem_dirs(path)
        if dirs:
            return dirs
    return [resolve_task(task, click.get_current_context().find_root().obj.tasks_root)]


def _si(value: float, unit: str = "") -> str:
    if not value:
        return "0"
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g}{prefix}{unit}"
    return f"{value:.3g}{unit}"


def _us(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e6:.2f}"


def _classes(flops: dict[str, float]) -> str:
    return " ".join(f"{c}:{_si(n)}" for c, n in sorted(flops.items(), key=lambda kv: -kv[1]) if n) or "-"


def print_table(name: str, sols: list[WorkloadSOL], problem) -> None:
    var_axes = [a for a, spec in problem.definition.axes.items() if spec.kind == "var"]
    published = any(s.published_t_sol_s for s in sols)
    table = Table(title=f"{problem.subset}/{name}  ({sols[0].profile_id})" if sols else name, title_justify="left")
    for column, justify in (("#", "right"), ("axes", "left"), ("T_SOL us", "right"), ("bound", "left"),
                            ("tensor FLOPs", "left"), ("CUDA FLOPs", "left"), ("SFU", "right"),
                            ("bytes", "right"), ("FLOP/B", "right")):
        table.add_column(column, justify=justify)
    if published:
        table.add_column("published us", justify="right")
        table.add_column("ours/pub", justify="right")
    table.add_column("counted", justify="left")
    for s in sols:
        axes = " ".join(f"{a}={s.axes[a]}" for a in var_axes)
        if s.t_sol_s is None:
            row = [str(s.index), axes, "-", "no T_SOL", "-", "-", "-", "-", "-"]
            if published:
                row += [_us(s.published_t_sol_s), "-"]
            table.add_row(*row, "-")
            continue
        row = [str(s.index), axes, _us(s.t_sol_s), s.binding, _classes(s.tensor_flops), _classes(s.cuda_flops),
               _si(s.sfu_ops), _si(s.bytes, "B"), f"{s.intensity:.3g}"]
        if published:
            ratio = s.ratio_to_published
            row += [_us(s.published_t_sol_s), "-" if ratio is None else f"{ratio:.2f}"]
        row.append(s.counted_on if not s.notes else f"{s.counted_on}*")
        table.add_row(*row)
    console.print(table)
    notes = sorted({n for s in sols for n in s.notes})
    for note in notes:
        console.print(f"  * {note}", highlight=False)
    for s in sols:
        if s.reason:
            console.print(f"  #{s.index}: no T_SOL: {s.reason}", highlight=False)


def measured_points(groups: dict, problems: list, hardware: str) -> dict[str, list[tuple[float, float]]]:
    """(FLOP/byte, FLOP/s) of every PASSED trace on this hardware in the store, if a store exists."""
    try:
        settings = click.get_current_context().find_root().obj
        if not settings.db.is_file():
            return {}
        store = Store(settings.db, read_only=True)
        envs = set()
        for row in store.db.execute("SELECT id, hardware FROM environments WHERE device = 'cuda'"):
            try:
                if canonical_name(row["hardware"]) == hardware:
                    envs.add(row["id"])
            except ProfileError:
                continue
        points: dict[str, list] = {}
        for problem in problems:
            label = f"{problem.subset}/{problem.name}"
            sols = {s.uuid: s for s in groups.get(label, [])}
            for t in store.traces(problem.name):
                s = sols.get(t["workload_uuid"])
                if s and t["status"] == "PASSED" and t["latency_ms"] and t["environment_id"] in envs and s.bytes:
                    points.setdefault(label, []).append((s.intensity, s.flops / (t["latency_ms"] * 1e-3)))
        return points
    except Exception:       # a plot without measured points is still a plot
        return {}


@click.command("roofline")
@click.argument("task")
@click.option("--hardware", type=click.Choice(HARDWARE_NAMES, case_sensitive=False), default=None,
              help="Default: the GPU present, else H200.")
@click.option("--profile", type=click.Choice(["datasheet", "measured"]), default="datasheet", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per problem (JSON lines).")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write a log-log roofline PNG, one point per workload.")
@click.option("--jobs", type=int, default=None, help="Worker processes for counting (default: CPU count, max 4).")
@click.pass_obj
def roofline_command(settings, task, hardware, profile, as_json, plot, jobs):
    """Speed-of-light time per workload of TASK: T_SOL, binding unit, FLOPs by class, bytes."""
    hardware = (hardware or default_hardware()).upper()
    try:
        prof = load_profile(hardware, profile, settings.profile_dir)
    except ProfileError as exc:
        raise click.ClickException(str(exc))
    problems = [load_problem(d) for d in problem_dirs(task)]
    jobs = jobs if jobs is not None else min(4, os.cpu_count() or 1)
    prefetch_counts(problems, jobs=jobs, settings=settings)
    groups = {}
    for problem in problems:
        sols = sol_for_problem(problem, prof, settings=settings)   # uncountable workloads carry a reason
        groups[f"{problem.subset}/{problem.name}"] = sols
        if as_json:
            click.echo(json.dumps({"problem": problem.name, "subset": problem.subset,
                                   "directory": str(problem.directory), "hardware": prof.name,
                                   "profile_id": prof.profile_id, "workloads": [s.to_dict() for s in sols]}))
        else:
            print_table(problem.name, sols, problem)
    if plot is not None and groups:
        roofline_plot(groups, prof, plot, measured_points(groups, problems, prof.name))
        if not as_json:
            console.print(f"roofline plot: {plot}")
    if not as_json:
        total = sum(len(sols) for sols in groups.values())
        missing = sum(s.t_sol_s is None for sols in groups.values() for s in sols)
        console.print(f"{len(groups)} problems, {total} workloads: {total - missing} with a T_SOL, "
                      f"{missing} without (each with its reason above)", highlight=False)


@click.command("calibrate")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Profile JSON (default: <cache dir>/profiles/<gpu>.json).")
@click.option("--json", "as_json", is_flag=True, help="Print the profile as JSON.")
@click.pass_obj
def calibrate_command(settings, out, as_json):
    """Measure this GPU's achievable bandwidth and rates; save a measured roofline profile."""
    try:
        profile, raw, path = calibrate(str(out) if out else None, settings.profile_dir)
    except (RuntimeError, ProfileError) as exc:
        raise click.ClickException(str(exc))
    if as_json:
        click.echo(json.dumps({"path": path, "profile": profile.to_dict(), "raw": raw}))
        return
    sheet = load_profile(profile.name, "datasheet")
    table = Table(title=f"{profile.profile_id} ({profile.device_name}) -> {path}", title_justify="left")
    for column in ("quantity", "used", "datasheet", "ratio", "source"):
        table.add_column(column, justify="left" if column in ("quantity", "source") else "right")
    rows = [("dram_bandwidth", "DRAM bandwidth B/s", profile.dram_bandwidth, sheet.dram_bandwidth)]
    rows += [(f"tensor.{c}", f"tensor {c} FLOP/s", v, sheet.tensor.get(c)) for c, v in profile.tensor.items()
             if f"tensor.{c}" in profile.sources]
    rows += [("cuda.fp32", "CUDA fp32 FLOP/s", profile.cuda["fp32"], sheet.cuda["fp32"]),
             ("sfu", "SFU results/s", profile.sfu, sheet.sfu),
             ("launch_floor_s", "launch floor s", profile.launch_floor_s, sheet.launch_floor_s)]
    for key, label, value, datasheet in rows:
        table.add_row(label, _si(value), _si(datasheet) if datasheet else "-",
                      f"{value / datasheet:.2f}" if datasheet else "-", profile.sources.get(key, "datasheet"))
    console.print(table, highlight=False)
