"""`kb eval`, `kb audit`, `kb baseline`: one solution or the reference, through the evaluator."""

from __future__ import annotations

import json
import uuid as uuidlib
from dataclasses import replace
from pathlib import Path

import click
from rich.table import Table

from audit.findings import Finding
from audit.rules import verdicts as audit_verdicts
from audit.static import scan_solution
from kernelbench.core.solution import load_solution
from kernelbench.eval.evaluator import evaluate
from kernelbench.core.errors import KernelBenchError
from kernelbench.generate.baseline_variants import VARIANTS
from kernelbench.generate.candidate import Provenance
from kernelbench.jobs.baseline import measure_baseline, stored_baseline_ms
from kernelbench.jobs.summary import Evaluated, summarize
from kernelbench.jobs.summary import record as record_result

from .common import console, eval_options, load_task, ms, print_summary


@click.command("eval")
@click.argument("task")
@click.option("--solution", "solution_path", required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print traces as JSON lines.")
@click.option("--record", is_flag=True,
              help="Record the result as a leaderboard entry (T_b measured in this run where the store lacks it; "
                   "always on CPU).")
@eval_options
@click.pass_obj
def eval_command(settings, task, solution_path, as_json, record, run):
    """Evaluate one solution on TASK: correctness, audit, timing -> traces, T_b, T_SOL and S."""
    problem, solution = load_task(task), load_solution(solution_path)
    session = run.session()
    run_id = f"eval-{uuidlib.uuid4().hex[:12]}"
    t_b = measure_baseline(session, problem, run.config, run_id).t_b if record else stored_baseline_ms(session, problem)
    session.store.record_solution(solution)
    traces = evaluate(problem, solution, run.config, environment=session.trace_environment(),
                      baseline_ms=t_b, sol_ms=session.sol_ms(problem))
    session.store.record_traces(traces, solution.content_hash, session.environment_id, run_id)
    result = Evaluated(solution, traces, summarize(problem, solution, traces, t_b, session),
                       Provenance(source="user", proposer=solution.author or None).to_json())
    if record:
        session.store.record_candidate(problem.name, solution, result.provenance, run_id, result.summary["status"], None)
        record_result(session, problem, result, run_id)
    if as_json:
        for trace in traces:
            click.echo(json.dumps(trace.to_json()))
        return
    print_summary(result.summary, f"kb eval {problem.name}: {solution.name} on {run.device}")
    if not any(t_b.values()):
        console.print("T_b unknown: run `kb baseline` first, or pass --record", highlight=False)
    if record:
        console.print(f"recorded as a leaderboard entry ({run_id})", highlight=False)


@click.command("baseline")
@click.argument("task")
@click.option("--force", is_flag=True, help="Measure again even if stored for this environment.")
@click.option("--variants", default=None,
              help="Comma-separated baseline variants (eager, compile, cudagraphs; default: all on a GPU, eager on CPU).")
@eval_options
@click.pass_obj
def baseline_command(settings, task, force, variants, run):
    """Measure T_b (best of eager, torch.compile, CUDA graphs) for TASK; on a GPU reused until the environment changes."""
    problem = load_task(task)
    session = run.session()
    chosen = [v.strip() for v in variants.split(",")] if variants else None
    unknown = sorted(set(chosen or ()) - set(VARIANTS))
    if unknown:
        raise KernelBenchError(f"--variants: unknown {', '.join(unknown)} (known: {', '.join(VARIANTS)})")
    baseline = measure_baseline(session, problem, run.config, variants=chosen, force=force)
    table = Table(title=f"T_b of {problem.name} on {session.environment['hardware']} ({run.device} clock)")
    for column in ["workload", "axes", *baseline.variants, "T_b (ms)"]:
        table.add_column(column)
    axes = {w.uuid: w.axes for w in problem.workloads}
    for uuid, row in baseline.table.items():
        table.add_row(uuid[:8], json.dumps(axes[uuid]), *(ms(row[v]) for v in baseline.variants),
                      ms(baseline.t_b[uuid]))
    console.print(table)


@click.command("audit")
@click.argument("task")
@click.option("--solution", "solution_path", required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the verdicts as one JSON object.")
@eval_options
@click.pass_obj
def audit_command(settings, task, solution_path, as_json, run):
    """Every reward-hacking rule's verdict on a solution: static scan, then a full sandboxed evaluation."""
    problem, solution = load_task(task), load_solution(solution_path)
    session = run.session()
    static = scan_solution(solution, problem)
    runtime: list[Finding] = []
    if not static:  # a statically flagged solution is not run at all
        config = replace(run.config, max_workloads=run.config.max_workloads or 1)
        traces = evaluate(problem, solution, config, environment=session.trace_environment(),
                          sol_ms=session.sol_ms(problem))
        runtime = [Finding(f.rule, f.evidence) for t in traces for f in t.evaluation.audit]
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
