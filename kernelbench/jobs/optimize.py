"""`kb optimize`: evaluate candidate solutions for one task, keep the best verified one, score it.

Candidates so far are the reference itself, torch.compile of it and CUDA-graph replay of that
(the baseline variants; the template generator adds more). Every candidate goes through the full evaluator (fresh-input rounds,
audit, timing); the best one that passes every workload is written to --out and stored as the
task's result. Scores use T_b from the baseline and T_SOL from the roofline; on CPU there is
no roofline for the device, so T_SOL = 0 and the score reads as T_b / (T_b + T_k).
"""

from __future__ import annotations

import json
import time
import uuid as uuidlib
from dataclasses import dataclass, field
from pathlib import Path

from kernelbench.core import statuses
from kernelbench.jobs.baseline import baseline_ms, default_variants, measure_missing_baselines, variant_solution
from kernelbench.eval.evaluator import EvalConfig, evaluate
from kernelbench.core.problem import Problem
from kernelbench.core.score import fraction_of_sol, geomean, sol_score, task_score
from kernelbench.jobs.session import Session, definition_hash
from kernelbench.core.solution import Solution, save_solution


@dataclass
class CandidateResult:
    solution: Solution
    traces: list[dict]
    summary: dict = field(default_factory=dict)

    @property
    def all_passed(self) -> bool:
        return all(t["evaluation"]["status"] == statuses.PASSED for t in self.traces)


def summarize(problem: Problem, solution: Solution, traces: list[dict], t_b: dict[str, float | None],
              t_sol: dict[str, float], session: Session) -> dict:
    rows = []
    for trace in traces:
        evaluation, uuid = trace["evaluation"], trace["workload"]["uuid"]
        t_k = (evaluation["performance"] or {}).get("latency_ms")
        base, sol = t_b.get(uuid), t_sol.get(uuid, 0.0)
        passed = evaluation["status"] == statuses.PASSED and t_k is not None and base is not None
        rows.append({"uuid": uuid, "axes": trace["workload"]["axes"], "status": evaluation["status"],
                     "log": evaluation["log"][:500], "t_k_ms": t_k, "t_b_ms": base, "t_sol_ms": sol or None,
                     "score": sol_score(t_k, base, sol) if passed else None,
                     "fraction_of_sol": fraction_of_sol(t_k, sol) if passed and sol else None,
                     "speedup_vs_baseline": base / t_k if passed else None})
    all_passed = all(r["status"] == statuses.PASSED for r in rows)
    hacks = sorted({f["rule"] for t in traces for f in t["evaluation"].get("audit", [])})
    g_k, g_b, g_sol = (geomean(r[k] for r in rows) for k in ("t_k_ms", "t_b_ms", "t_sol_ms"))
    return {
        "task": problem.name, "subset": problem.subset, "solution": solution.name,
        "solution_hash": solution.content_hash, "language": solution.language,
        "hardware": session.environment["hardware"], "device": session.device,
        "roofline_profile": f"{session.hardware}/{session.profile}" if session.on_gpu else None,
        "clock": "cuda" if session.on_gpu else "cpu",
        "workloads": len(rows), "workloads_passed": sum(r["status"] == statuses.PASSED for r in rows),
        "geomean_t_k_ms": g_k, "geomean_t_b_ms": g_b, "geomean_t_sol_ms": g_sol,
        "sol_score": task_score([r["score"] for r in rows], all_passed),
        "fraction_of_sol": (g_sol / g_k) if all_passed and g_sol and g_k else None,
        "speedup_vs_baseline": (g_b / g_k) if all_passed and g_b and g_k else None,
        "audit_status": "REWARD_HACK: " + ", ".join(hacks) if hacks else "clean",
        "per_workload": rows,
    }


def optimize(session: Session, problem: Problem, config: EvalConfig, *, out_dir: Path | None = None,
             budget_s: float | None = None, on_candidate=None,
             baseline_variants: list[str] | None = None) -> CandidateResult | None:
    """Evaluate candidates (within budget_s seconds, at least one), store and return the best.

    The candidates so far are the baseline variants themselves (eager, torch.compile, CUDA
    graphs): a variant measured now for the baseline is not evaluated twice.
    """
    run_id = f"optimize-{uuidlib.uuid4().hex[:12]}"
    session.store.record_problem(problem.name, problem.subset, str(problem.directory), definition_hash(problem),
                                 len(problem.workloads))
    variants = baseline_variants or default_variants(session.device)
    measured = measure_missing_baselines(session, problem, config, variants, run_id)
    t_b = {u: row["best"] for u, row in baseline_ms(session, problem, config, variants, run_id).items()}
    t_sol = session.sol_ms(problem)
    start, results = time.monotonic(), []
    for variant in variants:
        if results and budget_s is not None and time.monotonic() - start > budget_s:
            break
        solution = variant_solution(problem, variant)
        traces = measured.get(variant)
        if traces is None:
            session.store.record_solution(solution)
            traces = evaluate(problem, solution, config, environment=session.trace_environment(),
                              baseline_ms=t_b, sol_ms=t_sol)
            session.store.record_traces(traces, solution.content_hash, session.environment_id, run_id)
        result = CandidateResult(solution, traces, summarize(problem, solution, traces, t_b, t_sol, session))
        results.append(result)
        if on_candidate:
            on_candidate(result)
    best = choose_best(results)
    chosen = best or results[0]
    session.store.record_result(problem.name, problem.subset, chosen.solution.content_hash, session.environment_id,
                                run_id, statuses.PASSED if best else "FAILED", chosen.summary["sol_score"],
                                chosen.summary)
    if best and out_dir is not None:
        write_outputs(best, Path(out_dir) / problem.name)
    return best


def choose_best(results: list[CandidateResult]) -> CandidateResult | None:
    """Highest task score among candidates that pass every workload and are audit-clean; ties: lower geomean T_k."""
    passing = [r for r in results if r.all_passed and r.summary["audit_status"] == "clean"]
    return max(passing, key=lambda r: (r.summary["sol_score"], -(r.summary["geomean_t_k_ms"] or 0)), default=None)


def write_outputs(result: CandidateResult, directory: Path) -> None:
    save_solution(result.solution, directory / "solution.json")
    (directory / "traces.jsonl").write_text("".join(json.dumps(t) + "\n" for t in result.traces))
    (directory / "summary.json").write_text(json.dumps(result.summary, indent=2) + "\n")



