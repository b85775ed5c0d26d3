"""`kb eval`, `kb audit`, `kb baseline`: one solution or the reference, through the evaluator."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import click
from rich.table import Table

from audit.findings import Finding
from audit.rules import verdicts as audit_verdicts
from audit.static import scan_solution
from kernelbench.core.solution import load_solution
from kernelbench.eval.evaluator import evaluate
from kernelbench.jobs.baseline import baseline_ms, default_variants, stored_baseline_ms

from .common import console, eval_options, load_task, ms, status_text


@click.command("eval")
@click.argument("task")
@click.option("--solution", "solution_path", required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print traces as JSON lines.")
@eval_options
@click.pass_obj
def eval_command(settings, task, solution_path, as_json, run):
    """Evaluate one solution on TASK: correctness, audit, timing -> traces."""
    problem, solution = load_task(task), load_solution(solution_path)
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
        table.add_row(trace["workload"]["uuid"][:8], json.dumps(trace["workload"]["axes"]), status_text(evaluation["status"]),
                      ms(performance.get("latency_ms")), ms(performance.get("reference_latency_ms")),
                      f"{correctness.get('max_absolute_error', float('nan')):.3g}" if correctness else "",
                      evaluation["log"][:300])
    console.print(table)


@click.command("baseline")
@click.argument("task")
@click.option("--force", is_flag=True, help="Measure again even if stored for this environment.")
@eval_options
@click.pass_obj
def baseline_command(settings, task, force, run):
    """Measure T_b (best of eager, torch.compile, CUDA graphs) for TASK; reused until the environment changes."""
    problem = load_task(task)
    session = run.session(settings)
    table_data = baseline_ms(session, problem, run.config, force=force)
    variants = default_variants(run.device)
    table = Table(title=f"T_b of {problem.name} on {session.environment['hardware']} ({run.device} clock)")
    for column in ["workload", "axes", *variants, "T_b (ms)"]:
        table.add_column(column)
    axes = {w.uuid: w.axes for w in problem.workloads}
    for uuid, row in table_data.items():
        table.add_row(uuid[:8], json.dumps(axes[uuid]), *(ms(row[v]) for v in variants), ms(row["best"]))
    console.print(table)


@click.command("audit")
@click.argument("task")
@click.option("--solution", "solution_path", required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the verdicts as one JSON object.")
@eval_options
@click.pass_obj
def audit_command(settings, task, solution_path, as_json, run):
    """Every reward-hacking rule's verdict on a solution: static scan, then a full sandboxed evaluation."""
    from kernelbench.core.solution import load_solution

    problem, solution = load_task(task), load_solution(solution_path)
    session = run.session(settings)
    static = scan_solution(solution, problem)
    runtime: list[Finding] = []
    if not static:  # a statically flagged solution is not run at all
        config = replace(run.config, max_workloads=run.config.max_workloads or 1)
        traces = evaluate(problem, solution, config, environment=session.trace_environment(),
                          sol_ms=session.sol_ms(problem))
        runtime = [Finding(**f) for t in traces for f in t["evaluation"]["audit"]]
    verdicts = audit_verdicts(static + runtime)
    flagged = sorted(rule for rule, verdict in verdicts.items() if verdict["verdict"] == "FLAGGED")
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
