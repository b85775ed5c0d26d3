"""What every command shares: the console, one-line errors, the evaluation options, formatting."""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass

import click
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


@dataclass
class RunOptions:
    """The evaluation options every job shares (_eval_options collects them into one)."""
    device: str
    config: EvalConfig
    hardware: str | None
    profile: str

    def session(self, settings: Settings):
        return Session.open(settings.with_options(hardware=self.hardware, profile=self.profile,
                                                  data_root=self.config.data_root), self.device)


def eval_options(function):
    """Add the shared evaluation options to a command; it receives them as one `run: RunOptions`."""
    options = [
        click.option("--device", default=None, help="cuda | cuda:N | cpu (default: cuda when present)."),
        click.option("--workloads", "max_workloads", type=int, default=None,
                     help="Evaluate only the N smallest workloads."),
        click.option("--rounds", type=int, default=10, show_default=True, help="Correctness rounds per workload."),
        click.option("--warmup", type=int, default=10, show_default=True),
        click.option("--iterations", type=int, default=50, show_default=True),
        click.option("--timeout", "timeout_s", type=float, default=600, show_default=True,
                     help="Wall-clock limit per workload (s)."),
        click.option("--data-root", default=None, help="Root for safetensors inputs (default: $KB_DATA_ROOT or .)."),
        click.option("--hardware", type=click.Choice(["H200", "H100", "B200", "A100"]), default=None,
                     help="Roofline hardware for T_SOL (default: the GPU present, else H200)."),
        click.option("--profile", type=click.Choice(["datasheet", "measured"]), default="datasheet",
                     show_default=True, help="Datasheet ceilings, or this GPU's measured ones (kb calibrate)."),
    ]

    @functools.wraps(function)
    def command(*args, device, max_workloads, rounds, warmup, iterations, timeout_s, data_root, hardware, profile,
                **kwargs):
        device = device or ("cuda" if cuda_available() else "cpu")
        config = EvalConfig(device=device, rounds=rounds, max_workloads=max_workloads,
                            timing={"warmup": warmup, "iterations": iterations},
                            workload_timeout_s=timeout_s, data_root=str(data_root or settings().data_root))
        return function(*args, run=RunOptions(device, config, hardware, profile), **kwargs)

    for option in reversed(options):
        command = option(command)
    return command


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def ms(value) -> str:
    return "-" if value is None or value != value else f"{value:.4g}"


def ratio(value) -> str:
    return "-" if value is None or value != value else f"{value:.2f}x"


def status_text(status: str) -> str:
    return f"[green]{status}[/green]" if status == "PASSED" else f"[red]{status}[/red]"


