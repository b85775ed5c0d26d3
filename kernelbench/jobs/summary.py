"""A solution's result on a task: per-workload T_b, T_k, T_SOL, binding unit, % of SOL and S, and the
task's score; the one summary `kb eval`, `kb optimize` and the leaderboard all read."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from kernelbench.core import statuses
from kernelbench.core.problem import Problem
from kernelbench.core.score import fraction_of_sol, geomean, sol_score, task_score
from kernelbench.core.solution import Solution, save_solution
from kernelbench.core.trace import Trace

from .session import Session

AUDIT_CLEAN = "clean"


def ranked(summary: dict) -> bool:
    """Only a solution that passed every workload with no audit finding is ranked."""
    return summary["status"] == statuses.PASSED and summary["audit_status"] == AUDIT_CLEAN


def _host_ms(evaluation) -> float | None:
    """The call's host time (the timer's back-to-back calls; GPU timings only)."""
    timing = evaluation.performance.timing if evaluation.performance else None
    return timing.details.get("host_ms_per_call") if timing else None


def summarize(problem: Problem, solution: Solution, traces: list[Trace], t_b: dict[str, float | None],
              session: Session) -> dict:
    sols = session.sol(problem)
    rows = []
    for trace in traces:
        evaluation, uuid = trace.evaluation, trace.workload.uuid
        t_k = evaluation.performance.latency_ms if evaluation.performance else None
        base, sol = t_b.get(uuid), sols.get(uuid)
        t_sol = sol.t_sol_s * 1e3 if sol and sol.t_sol_s is not None else 0.0
        scored = evaluation.status == statuses.PASSED and t_k is not None and base is not None
        rows.append({"uuid": uuid, "axes": trace.workload.axes, "status": str(evaluation.status),
                     "log": evaluation.log[-2000:], "t_k_ms": t_k, "t_b_ms": base, "t_sol_ms": t_sol or None,
                     "binding": sol.binding if sol else None, "t_sol_reason": sol.reason if sol else None,
                     "score": sol_score(t_k, base, t_sol) if scored else None,
                     "fraction_of_sol": fraction_of_sol(t_k, t_sol) if scored and t_sol else None,
                     "speedup_vs_baseline": base / t_k if scored else None,
                     "host_ms": _host_ms(evaluation)})
    all_passed = bool(rows) and all(r["status"] == statuses.PASSED for r in rows)
    hacks = sorted({f.rule for t in traces for f in t.evaluation.audit})
    g_k, g_b, g_sol = (geomean(r[k] for r in rows) for k in ("t_k_ms", "t_b_ms", "t_sol_ms"))
    return {
        "task": problem.name, "subset": problem.subset, "solution": solution.name,
        "solution_hash": solution.content_hash, "language": solution.language,
        "hardware": session.environment["hardware"], "device": session.device,
        "roofline_profile": f"{session.hardware}/{session.profile}" if session.on_gpu else None,
        "clock": "cuda" if session.on_gpu else "cpu",
        "status": statuses.PASSED if all_passed else _worst(rows),
        "workloads": len(rows), "workloads_passed": sum(r["status"] == statuses.PASSED for r in rows),
        "geomean_t_k_ms": g_k, "geomean_t_b_ms": g_b, "geomean_t_sol_ms": g_sol,
        "sol_score": task_score([r["score"] for r in rows], all_passed),
        "fraction_of_sol": (g_sol / g_k) if all_passed and g_sol and g_k else None,
        "speedup_vs_baseline": (g_b / g_k) if all_passed and g_b and g_k else None,
        "audit_status": "REWARD_HACK: " + ", ".join(hacks) if hacks else AUDIT_CLEAN,
        "per_workload": rows,
    }


def _worst(rows: list[dict]) -> str:
    """The status a failing solution is known by: its first failing workload's."""
    return next((r["status"] for r in rows if r["status"] != statuses.PASSED), statuses.RUNTIME_ERROR)


@dataclass
class Evaluated:
    """A solution that went through the full evaluator, with its traces and summary."""
    solution: Solution
    traces: list[Trace]
    summary: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)

    @property
    def ranked(self) -> bool:
        return ranked(self.summary)


def choose_best(results: list[Evaluated]) -> Evaluated | None:
    """Highest task score among ranked results; ties: the lower geometric-mean T_k."""
    return max((r for r in results if r.ranked),
               key=lambda r: (r.summary["sol_score"], -(r.summary["geomean_t_k_ms"] or 0)), default=None)


def record(session: Session, problem: Problem, result: Evaluated, run_id: str) -> None:
    """Store a result as a leaderboard entry of this environment."""
    session.store.record_result(problem.name, problem.subset, result.solution.content_hash, session.environment_id,
                                run_id, result.summary["status"], result.summary["sol_score"], result.summary)


def write_outputs(result: Evaluated, directory: Path) -> None:
    save_solution(result.solution, directory / "solution.json")
    (directory / "traces.jsonl").write_text("".join(json.dumps(t.to_json()) + "\n" for t in result.traces))
    (directory / "summary.json").write_text(json.dumps(result.summary, indent=2) + "\n")
