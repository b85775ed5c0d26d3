"""The prompts, rendered from the jinja2 files in prompts/ beside this module.

system.j2   what the harness does to an answer, what the audit flags, the answer format
task.j2     the definition and reference, the roofline per workload (bytes, FLOPs, binding unit,
            T_SOL), the best solution so far with its numbers and audit verdict, and what won on
            other tasks of the same family
feedback.j2 what became of the last answer (why it could not be parsed, the audit's findings,
            the screening failure, or the evaluation per workload), before the next round
This module only turns measurements into the plain values the templates print.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import jinja2

from kernelbench.core.problem import Problem, Workload
from kernelbench.core.solution import Source

from ..search import representatives

DIRECTORY = Path(__file__).resolve().parent / "prompts"
MAX_SOURCE_CHARS = 12_000      # per file shown: a long dispatch module would crowd out the task
MAX_WORKLOAD_ROWS = 16         # the roofline table shows the smallest, the largest and some between
MAX_LOG_CHARS = 2_000


@dataclass
class Outcome:
    """What became of one answer, as the feedback prompt tells the model."""
    stage: str                                          # parse | audit | screening | evaluation
    status: str                                         # UNPARSED, a screening status, a trace status
    problems: list[str] = field(default_factory=list)   # why it could not be parsed
    findings: list[str] = field(default_factory=list)   # the audit's, "rule: evidence"
    log: str = ""                                       # the first failure's log
    score: str = "-"
    audit: str = ""
    rows: list[dict] = field(default_factory=list)      # per workload (evaluation_rows)
    screening: str = ""                                 # its screening times against the best's
    became_best: bool = False
    repeat_of: int | None = None                        # the round that proposed the same solution


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    # StrictUndefined: a value the code forgot to pass is an error at render time, not an empty string
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(DIRECTORY)), undefined=jinja2.StrictUndefined,
                              keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)


def render(name: str, **context) -> str:
    return environment().get_template(name).render(**context).strip() + "\n"


def system_prompt(target: str) -> str:
    return render("system.j2", target=target)


def task_prompt(problem: Problem, workloads: list[Workload], *, sols: dict, roofline_error: str | None,
                hardware: str, device: str, best: dict, winners: list[dict], seeds: list[dict],
                families: list[str], rounds: int) -> str:
    definition = problem.definition
    axes = [f"{a.name}: " + (f"const {a.value}" if a.kind == "const" else
                             f"= {a.expression}" if a.kind == "expr" else "var (per workload)")
            for a in definition.axes.values()]
    shown = representatives(problem, workloads, MAX_WORKLOAD_ROWS)
    return render("task.j2", problem=definition, axes=axes, inputs=[_spec(s) for s in definition.inputs.values()],
                  outputs=[_spec(s) for s in definition.outputs.values()], constraints=list(definition.constraints),
                  hardware=hardware, device=device, roofline_error=roofline_error,
                  workloads=[_workload_row(w, sols.get(w.uuid), best["rows"].get(w.uuid, {})) for w in shown],
                  workloads_left_out=len(workloads) - len(shown), best=best, winners=winners, seeds=seeds,
                  families=families, rounds=rounds)


def feedback_prompt(outcome: Outcome, best: dict, rounds_left: int) -> str:
    return render("feedback.j2", outcome=outcome, best=best, rounds_left=rounds_left)


def describe_best(result, screening_ms: dict[str, float] | None, labels: dict[str, str]) -> dict:
    """The best solution so far (an evaluated result: solution, summary, provenance) as the prompts show it."""
    summary, provenance = result.summary, result.provenance
    baseline = provenance.get("source") == "baseline"
    origin = result.solution.description if baseline else (
        f"{result.solution.name} (from {provenance.get('source')}"
        + (f", {provenance['proposer']}" if provenance.get("proposer") else "") + ")")
    return {"origin": origin, "score": f"{summary['sol_score']:.3f}", "audit": summary["audit_status"],
            "passed": f"{summary['workloads_passed']}/{summary['workloads']} workloads passed",
            "screening": times_text(screening_ms or {}, labels),
            "sources": [] if baseline else shown_sources(result.solution.sources),
            "rows": {row["uuid"]: row for row in summary["per_workload"]}}


def shown_sources(sources) -> list[Source]:
    return [s if len(s.content) <= MAX_SOURCE_CHARS
            else Source(s.path, s.content[:MAX_SOURCE_CHARS] + "\n# ... (the rest is left out here)") for s in sources]


def evaluation_rows(summary: dict, best: dict) -> list[dict]:
    """Per workload: the proposal's T_k beside the best's, its speedup over T_b, % of SOL and S."""
    rows = []
    for row in summary["per_workload"]:
        before = best["rows"].get(row["uuid"], {}).get("t_k_ms")
        rows.append({"workload": json.dumps(row["axes"]), "status": row["status"], "t_k_ms": ms(row["t_k_ms"]),
                     "best_ms": ms(before), "speedup": ratio(row["speedup_vs_baseline"]),
                     "percent_of_sol": percent(row["fraction_of_sol"]), "score": score(row["score"])})
    return rows


def times_text(times_ms: dict[str, float], labels: dict[str, str]) -> str:
    """Screening times per workload, by the workload's axes."""
    return "; ".join(f"{labels.get(uuid, uuid)} {ms(t)}" for uuid, t in times_ms.items())


def log_excerpt(log: str) -> str:
    """The end of a log, where the error is."""
    log = log.strip()
    return log if len(log) <= MAX_LOG_CHARS else "..." + log[-MAX_LOG_CHARS:]


def _spec(spec) -> str:
    shape = "Python scalar" if spec.shape is None else f"shape [{', '.join(spec.shape)}]"
    return f"{spec.name}: {spec.dtype}, {shape}" + (f" ({spec.description})" if spec.description else "")


def _workload_row(workload: Workload, sol, measured: dict) -> dict:
    return {"axes": json.dumps(workload.axes),
            "bytes": quantity(sol.bytes, "B") if sol else "-", "flops": quantity(sol.flops, "") if sol else "-",
            "binding": sol.binding if sol else "-", "t_sol_us": f"{sol.t_sol_s * 1e6:.3g}" if sol else "-",
            "t_b_ms": ms(measured.get("t_b_ms")), "t_k_ms": ms(measured.get("t_k_ms")),
            "percent_of_sol": percent(measured.get("fraction_of_sol")), "score": score(measured.get("score"))}


def quantity(value: float, unit: str) -> str:
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}".strip()


def ms(value) -> str:
    return "-" if value is None else f"{value:.4g}"


def ratio(value) -> str:
    return "-" if value is None else f"{value:.2f}x"


def percent(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def score(value) -> str:
    return "-" if value is None else f"{value:.3f}"
