"""The `kb` command line: click noun groups with small verbs; rich tables; --json for scripts."""

from __future__ import annotations

import functools
import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.table import Table

from kernelbench.core.validation import check_problem
from kernelbench.core.errors import KernelBenchError
from kernelbench.core.problem import find_problem_dirs, load_problem
from kernelbench.core.settings import Settings
from kernelbench.core.tasks import resolve_task

if TYPE_CHECKING:
    from kernelbench.eval.evaluator import EvalConfig

console = Console()


class KbGroup(click.Group):
    """Turns a KernelBenchError into a one-line message and exit status 2, not a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KernelBenchError as exc:
            console.print(f"[red]error:[/red] {exc}", highlight=False)
            sys.exit(2)


@click.group(cls=KbGroup)
@click.option("--db", default=None, help="SQLite store (default: $KB_DB or ./kernelbench.db).")
@click.option("--cache-dir", default=None, help="Disk caches, or 'off' (default: $KB_CACHE_DIR or ~/.cache/kernelbench).")
@click.pass_context
def main(ctx, db, cache_dir):
    """kernelbench: optimize GPU kernels and score them against the speed of light."""
    ctx.obj = Settings.from_environment(db=db, cache_dir=cache_dir)


def _register_roofline_commands() -> None:
    from kernelbench.cli.roofline import calibrate_command, roofline_command

    main.add_command(roofline_command)
    main.add_command(calibrate_command)


_register_roofline_commands()


@main.group()
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
    from kernelbench.core.tolerance import MARGIN, measure_spread

    problem = load_problem(resolve_task(task))
    table = Table(title=f"{problem.name}: working precision vs fp32-upcast reference, margin {MARGIN:g}")
    for column in ("output", "dtype", "max |d|", "p99.9 uncovered", "suggested atol", "suggested rtol"):
        table.add_column(column)
    for s in measure_spread(problem, seeds, workloads):
        table.add_row(s.output, s.dtype, f"{s.max_abs:.3g}", f"{s.uncovered_p999:.3g}", f"{s.suggested_atol:.3g}",
                      f"{s.suggested_rtol:g}")
    console.print(table)


# ---------------------------------------------------------------- evaluation jobs

@dataclass
class RunOptions:
    """The evaluation options every job shares (_eval_options collects them into one)."""
    device: str
    config: EvalConfig
    hardware: str | None
    profile: str

    def session(self, settings: Settings):
        from kernelbench.jobs.session import Session

        return Session.open(settings.with_options(hardware=self.hardware, profile=self.profile,
                                                  data_root=self.config.data_root), self.device)


def _eval_options(function):
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
        from kernelbench.eval.evaluator import EvalConfig

        device = device or ("cuda" if _cuda_available() else "cpu")
        settings = click.get_current_context().find_root().obj
        config = EvalConfig(device=device, rounds=rounds, max_workloads=max_workloads,
                            timing={"warmup": warmup, "iterations": iterations},
                            workload_timeout_s=timeout_s, data_root=str(data_root or settings.data_root))
        return function(*args, run=RunOptions(device, config, hardware, profile), **kwargs)

    for option in reversed(options):
        command = option(command)
    return command


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _load_task(task: str):
    return load_problem(resolve_task(task, click.get_current_context().find_root().obj.tasks_root))


@main.command("eval")
@click.argument("task")
@click.option("--solution", "solution_path", required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print traces as JSON lines.")
@_eval_options
@click.pass_obj
def eval_command(settings, task, solution_path, as_json, run):
    """Evaluate one solution on TASK: correctness, audit, timing -> traces."""
    from kernelbench.jobs.baseline import stored_baseline_ms
    from kernelbench.eval.evaluator import evaluate
    from kernelbench.core.solution import load_solution

    problem, solution = _load_task(task), load_solution(solution_path)
    session = run.session(settings)
    session.store.record_solution(solution)
    traces = evaluate(problem, solution, run.config, environment=session.trace_environment(),
                      baseline_ms=stored_baseline_ms(session, problem), sol_ms=session.sol_ms(problem))
    session.store.record_traces(traces, solution.content_hash, session.environment_id, "eval")
    if as_json:
        for trace in traces:
            click.echo(json.dumps(trace))
        return
    table = Table(title=f"kb eval {problem.name} — {solution.name} on {run.device}")
    for column in ("workload", "axes", "status", "T_k (ms)", "T_b (ms)", "max abs err", "log"):
        table.add_column(column, overflow="fold")
    for trace in traces:
        evaluation = trace["evaluation"]
        performance = evaluation["performance"] or {}
        correctness = evaluation["correctness"] or {}
        table.add_row(trace["workload"]["uuid"][:8], json.dumps(trace["workload"]["axes"]), _status(evaluation["status"]),
                      _ms(performance.get("latency_ms")), _ms(performance.get("reference_latency_ms")),
                      f"{correctness.get('max_absolute_error', float('nan')):.3g}" if correctness else "",
                      evaluation["log"][:300])
    console.print(table)


@main.command("baseline")
@click.argument("task")
@click.option("--force", is_flag=True, help="Measure again even if stored for this environment.")
@_eval_options
@click.pass_obj
def baseline_command(settings, task, force, run):
    """Measure T_b (best of eager, torch.compile, CUDA graphs) for TASK; reused until the environment changes."""
    from kernelbench.jobs.baseline import baseline_ms, default_variants

    problem = _load_task(task)
    session = run.session(settings)
    table_data = baseline_ms(session, problem, run.config, force=force)
    variants = default_variants(run.device)
    table = Table(title=f"T_b of {problem.name} on {session.environment['hardware']} ({run.device} clock)")
    for column in ["workload", "axes", *variants, "T_b (ms)"]:
        table.add_column(column)
    axes = {w.uuid: w.axes for w in problem.workloads}
    for uuid, row in table_data.items():
        table.add_row(uuid[:8], json.dumps(axes[uuid]), *(_ms(row[v]) for v in variants), _ms(row["best"]))
    console.print(table)


@main.command("optimize")
@click.argument("task")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("kb_out"), show_default=True)
@click.option("--budget", "budget_s", type=float, default=None, help="Seconds to spend on candidates.")
@_eval_options
@click.pass_obj
def optimize_command(settings, task, out_dir, budget_s, run):
    """Optimize TASK: evaluate candidates, keep the best verified one, print its SOL score."""
    from kernelbench.jobs.optimize import optimize

    problem = _load_task(task)
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
        table.add_row(row["uuid"][:8], json.dumps(row["axes"]), _ms(row["t_b_ms"]), _ms(row["t_k_ms"]),
                      _ms(row["t_sol_ms"]), f"{row['score']:.3f}" if row["score"] is not None else "-",
                      f"{row['speedup_vs_baseline']:.2f}" if row["speedup_vs_baseline"] else "-")
    console.print(table)
    console.print(f"SOL score of {problem.name}: [bold]{summary['sol_score']:.3f}[/bold]; "
                  f"solution written to {out_dir / problem.name / 'solution.json'}")


@main.command("batch")
@click.argument("root", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--gpus", default=None, help="Comma-separated GPU indices (default: all visible).")
@click.option("--resume", is_flag=True, help="Skip tasks already finished in this environment.")
@click.option("--only", multiple=True, help='Glob over "subset/name" (repeatable), e.g. "L1/00*".')
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("kb_out"), show_default=True)
@click.option("--budget", "budget_s", type=float, default=None, help="Seconds per task for candidates.")
@_eval_options
@click.pass_obj
def batch_command(settings, root, gpus, resume, only, out_dir, budget_s, run):
    """Optimize every task under ROOT (default: tasks235/), one worker per GPU."""
    from kernelbench.jobs.batch import run_batch

    report = run_batch(root or settings.tasks_root, settings=settings.with_options(hardware=run.hardware,
                       profile=run.profile), device=run.device, gpus=gpus, resume=resume,
                       config=run.config, out_dir=out_dir, budget_s=budget_s, console=console, only=only)
    console.print(f"{len(report.done)} optimized, {len(report.skipped)} skipped (--resume), "
                  f"{len(report.failed)} could not be optimized")
    for name, reason in report.failed.items():
        console.print(f"[red]{name}[/red]: {reason.splitlines()[0]}")


@main.command("leaderboard")
@click.option("--csv", "csv_path", type=click.Path(path_type=Path), default=None, help="Write the table as CSV.")
@click.option("--per-workload", is_flag=True, help="One row per workload (long format).")
@click.option("--html", "html_path", type=click.Path(path_type=Path), default=None,
              help="Write an HTML report with plots.")
@click.pass_obj
def leaderboard_command(settings, csv_path, per_workload, html_path):
    """The SOL leaderboard from the store: one row per task (flagged solutions never ranked)."""
    from kernelbench.jobs import leaderboard
    from kernelbench.core.store import Store

    store = Store(settings.db, read_only=True)
    frame = leaderboard.workload_table(store) if per_workload else leaderboard.task_table(store)
    if csv_path:
        frame.to_csv(csv_path, index=False)
        console.print(f"wrote {len(frame)} rows to {csv_path}")
    if html_path:
        leaderboard.write_html(leaderboard.task_table(store), leaderboard.workload_table(store), html_path)
        console.print(f"wrote the report to {html_path}")
    if per_workload:
        console.print(frame.to_string(index=False, max_colwidth=24))
        return
    table = Table(title=f"SOL leaderboard ({len(frame)} tasks, mean SOL score {leaderboard.mean_score(frame):.3f})")
    for column in ("task", "subset", "hardware", "passed", "T_k", "T_b", "T_SOL", "sol_score", "x baseline", "audit"):
        table.add_column(column, overflow="fold")
    for _, row in frame.iterrows():
        table.add_row(row["task"], row["subset"], row["hardware"], f"{row['workloads_passed']}/{row['workloads']}",
                      _ms(row["geomean_t_k_ms"]), _ms(row["geomean_t_b_ms"]), _ms(row["geomean_t_sol_ms"]),
                      f"{row['sol_score']:.3f}", _ratio(row["speedup_vs_baseline"]), str(row["audit_status"]))
    console.print(table)


def _ms(value) -> str:
    return "-" if value is None or value != value else f"{value:.4g}"


def _ratio(value) -> str:
    return "-" if value is None or value != value else f"{value:.2f}x"


def _status(status: str) -> str:
    return f"[green]{status}[/green]" if status == "PASSED" else f"[red]{status}[/red]"


@main.command("audit")
@click.argument("task")
@click.option("--solution", "solution_path", required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the verdicts as one JSON object.")
@_eval_options
@click.pass_obj
def audit_command(settings, task, solution_path, as_json, run):
    """Every reward-hacking rule's verdict on a solution: static scan, then a full sandboxed evaluation."""
    from audit.rules import DETECTED_BY, RULES
    from audit.static import scan_solution

    from kernelbench.eval.evaluator import evaluate
    from kernelbench.core.solution import load_solution

    problem, solution = _load_task(task), load_solution(solution_path)
    session = run.session(settings)
    static = scan_solution(solution, problem)
    runtime: list[dict] = []
    if not static:  # a statically flagged solution is not run at all
        config = replace(run.config, max_workloads=run.config.max_workloads or 1)
        traces = evaluate(problem, solution, config, environment=session.trace_environment(),
                          sol_ms=session.sol_ms(problem))
        runtime = [f for t in traces for f in t["evaluation"]["audit"]]
    evidence: dict[str, list[str]] = {}
    for finding in [f.to_json() for f in static] + runtime:
        evidence.setdefault(finding["rule"], []).append(finding["evidence"])
    verdicts = {rule: {"verdict": "FLAGGED" if rule in evidence else "clean", "evidence": evidence.get(rule, []),
                       "detected_by": list(DETECTED_BY[rule]), "rationale": RULES[rule]} for rule in RULES}
    flagged = sorted(evidence)
    if as_json:
        click.echo(json.dumps({"task": problem.name, "solution": solution.name, "flagged": flagged,
                               "ran": not static, "rules": verdicts}))
        return
    table = Table(title=f"kb audit {problem.name} — {solution.name}" + ("" if not static else " (not run: static findings)"))
    for column in ("rule", "verdict", "evidence", "detected by"):
        table.add_column(column, overflow="fold")
    for rule, verdict in verdicts.items():
        mark = "[red]FLAGGED[/red]" if verdict["verdict"] == "FLAGGED" else "[green]clean[/green]"
        table.add_row(rule, mark, "\n".join(verdict["evidence"])[:400], ", ".join(verdict["detected_by"]))
    console.print(table)
    console.print(f"{len(flagged)} rules flagged" + (f": {', '.join(flagged)}" if flagged else ""))
