"""What every command shares: the console, one-line errors, the evaluation options, formatting."""

from __future__ import annotations

import functools
import json
import sys
from dataclasses import dataclass

import click
import torch
from rich.table import Table
from rich.console import Console

from kernelbench.core.errors import KernelBenchError
from kernelbench.core.problem import Problem, load_problem
from kernelbench.core.settings import Settings
from kernelbench.core.tasks import resolve_task
from kernelbench.eval.evaluator import EvalConfig
from kernelbench.jobs.session import Session

PIPED_WIDTH = 1000   # piped or captured output: wide enough that no name or cell is cut
console = Console()


class KbGroup(click.Group):
    """Sizes the console for where output goes; turns a KernelBenchError into a one-line message
    and exit status 2, not a traceback."""

    def invoke(self, ctx):
        console.width = PIPED_WIDTH if not console.is_terminal else console.size.width
        try:
            return super().invoke(ctx)
        except KernelBenchError as exc:
            console.print(f"[red]error:[/red] {exc}", highlight=False)
            sys.exit(2)


def settings() -> Settings:
    """The settings the `kb` group built from its options and the environment."""
    return click.get_current_context().find_root().obj


def load_task(task: str) -> Problem:
    return load_problem(resolve_task(task, settings().tasks_root))


@dataclass(frozen=True)
class Effort:
    rounds: int
    warmup: int
    iterations: int
    timeout_s: float   # wall-clock limit per workload


GPU_DEFAULTS = Effort(rounds=10, warmup=10, iterations=50, timeout_s=600)
# On CPU, Triton runs in its interpreter: times say nothing about a GPU and a round costs seconds,
# so fewer rounds and iterations keep `kb batch` practical; correctness still gets three fresh rounds.
# A workload of GB-sized inputs takes about a minute a round to generate there, and the interpreter's
# calls tens of seconds: a longer limit.
CPU_DEFAULTS = Effort(rounds=3, warmup=2, iterations=10, timeout_s=1800)


@dataclass
class RunOptions:
    """The evaluation options every job shares (eval_options collects them into one)."""
    settings: Settings        # the group's settings with this command's --data-root/--hardware/--profile
    device: str
    config: EvalConfig

    def session(self) -> Session:
        return Session.open(self.settings, self.device)


def eval_options(function):
    """Add the shared evaluation options to a command; it receives them as one `run: RunOptions`."""
    options = [
        click.option("--device", default=None, help="cuda | cuda:N | cpu (default: cuda when present)."),
        click.option("--workloads", "max_workloads", type=int, default=None,
                     help="Evaluate only the N smallest workloads."),
        click.option("--rounds", type=int, default=None,
                     help=f"Correctness rounds per workload (default: {GPU_DEFAULTS.rounds} on a GPU, "
                          f"{CPU_DEFAULTS.rounds} on CPU)."),
        click.option("--warmup", type=int, default=None,
                     help=f"[default: {GPU_DEFAULTS.warmup} on a GPU, {CPU_DEFAULTS.warmup} on CPU]"),
        click.option("--iterations", type=int, default=None,
                     help=f"Timed iterations (default: {GPU_DEFAULTS.iterations} on a GPU, "
                          f"{CPU_DEFAULTS.iterations} on CPU)."),
        click.option("--timeout", "timeout_s", type=float, default=None,
                     help=f"Wall-clock limit per workload (s), the first included (default: {GPU_DEFAULTS.timeout_s:.0f} "
                          f"on a GPU, {CPU_DEFAULTS.timeout_s:.0f} on CPU)."),
        click.option("--build-timeout", "build_timeout_s", type=float, default=600, show_default=True,
                     help="Wall-clock limit for importing the solution (s)."),
        click.option("--data-root", default=None, help="Root for safetensors inputs (default: $KB_DATA_ROOT or .)."),
        click.option("--hardware", type=click.Choice(["H200", "H100", "B200", "A100"]), default=None,
                     help="Roofline hardware for T_SOL (default: the GPU present, else H200)."),
        click.option("--profile", type=click.Choice(["datasheet", "measured"]), default="datasheet",
                     show_default=True, help="Datasheet ceilings, or this GPU's measured ones (kb calibrate)."),
    ]

    @functools.wraps(function)
    def command(*args, device, max_workloads, rounds, warmup, iterations, timeout_s, build_timeout_s, data_root,
                hardware, profile, **kwargs):
        run_settings = settings().with_options(data_root=data_root, hardware=hardware, profile=profile)
        device = resolve_device(device)
        defaults = CPU_DEFAULTS if device == "cpu" else GPU_DEFAULTS
        rounds = defaults.rounds if rounds is None else rounds
        warmup = defaults.warmup if warmup is None else warmup
        iterations = defaults.iterations if iterations is None else iterations
        timeout_s = defaults.timeout_s if timeout_s is None else timeout_s
        config = EvalConfig(device=device, rounds=rounds, max_workloads=max_workloads,
                            timing={"warmup": warmup, "iterations": iterations}, workload_timeout_s=timeout_s,
                            build_timeout_s=build_timeout_s, data_root=str(run_settings.data_root),
                            build_dir=str(run_settings.cache_dir / "cpp_extensions") if run_settings.cache_dir else None)
        return function(*args, run=RunOptions(run_settings, device, config), **kwargs)

    for option in reversed(options):
        command = option(command)
    return command


def resolve_device(device: str | None) -> str:
    """cuda when present and nothing was asked; a clear error for a device this machine lacks."""
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if not device.startswith("cuda"):
        raise KernelBenchError(f"--device {device}: use cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise KernelBenchError(f"--device {device}: no usable CUDA GPU here (torch {torch.__version__} is {build}); "
                               f"use --device cpu")
    index = device.partition(":")[2]
    if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
        raise KernelBenchError(f"--device {device}: this machine has {torch.cuda.device_count()} GPU(s)")
    return device


def ms(value) -> str:
    return "-" if value is None or value != value else f"{value:.4g}"


def ratio(value) -> str:
    return "-" if value is None or value != value else f"{value:.2f}x"


def status_text(status: str) -> str:
    return f"[green]{status}[/green]" if status == "PASSED" else f"[red]{status}[/red]"




def print_summary(summary: dict, title: str) -> None:
    """The per-workload table of a result: T_b, T_k, T_SOL, binding unit, % of SOL, S, and why a workload failed."""
    clock = "CPU clock: no T_SOL, S = T_b / (T_b + T_k)" if summary["clock"] == "cpu" \
        else f"roofline {summary['roofline_profile']}"
    table = Table(title=f"{title} ({clock})")
    for column in ("workload", "axes", "status", "T_b (ms)", "T_k (ms)", "T_SOL (ms)", "bound by", "% of SOL", "S",
                   "x T_b", "error"):
        table.add_column(column, overflow="fold")
    for row in summary["per_workload"]:
        table.add_row(row["uuid"][:8], json.dumps(row["axes"]), status_text(row["status"]), ms(row["t_b_ms"]),
                      ms(row["t_k_ms"]), ms(row["t_sol_ms"]), row.get("binding") or "-",
                      f"{100 * row['fraction_of_sol']:.1f}" if row.get("fraction_of_sol") else "-",
                      f"{row['score']:.3f}" if row["score"] is not None else "-", ratio(row["speedup_vs_baseline"]),
                      error_summary(row["log"]) if row["status"] != "PASSED" else "")
    console.print(table)
    console.print(f"S of the task: {summary['sol_score']:.3f} ({summary['workloads_passed']}/{summary['workloads']} "
                  f"workloads passed, audit {summary['audit_status']})", highlight=False)


def error_summary(log: str, limit: int = 300) -> str:
    """The solution's own error from an evaluation log: the exception line and the solution's frame
    (the harness's frames above it say nothing to the user)."""
    lines = [line.rstrip() for line in log.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    exception = next((line for line in reversed(lines) if not line.startswith(" ")), lines[-1])
    frames = [line.strip() for line in lines if line.lstrip().startswith('File "') and "kb_solution_" in line]
    where = frames[-1].split("kb_solution_", 1)[1].split("/", 1)[-1] if frames else ""
    text = f"{exception} (at {where})" if where else exception
    return text if len(text) <= limit else text[:limit - 1] + "…"
