"""`kb baseline`: T_b per workload = the best of PyTorch eager, torch.compile and CUDA-graph replay.

Each variant is the reference wrapped as a solution and evaluated by the same evaluator and
timer as any candidate, in its own child process (a variant that cannot be captured, e.g.
randomness under CUDA graphs, fails alone). Results are stored per environment fingerprint and
reused until the environment changes.
"""

from __future__ import annotations

from dataclasses import replace

from kernelbench.core import statuses
from kernelbench.eval.evaluator import EvalConfig, evaluate, select_workloads
from kernelbench.core.problem import Problem
from kernelbench.jobs.session import Session, definition_hash
from kernelbench.core.solution import Solution, reference_solution

# variant -> torch.compile mode (None: eager)
VARIANTS: dict[str, str | None] = {"eager": None, "compile": "default", "cudagraphs": "reduce-overhead"}


def default_variants(device: str) -> list[str]:
    """CUDA graphs only exist on GPUs; on CPU the baseline is eager and torch.compile."""
    return list(VARIANTS) if device.startswith("cuda") else ["eager", "compile"]


def variant_solution(problem: Problem, variant: str) -> Solution:
    return reference_solution(problem.name, problem.definition.reference, compiled=VARIANTS[variant])


def measure_variant(session: Session, problem: Problem, variant: str, config: EvalConfig, run_id: str) -> list[dict]:
    """Evaluate one variant, store its traces and its per-workload times as baselines."""
    solution = variant_solution(problem, variant)
    session.store.record_solution(solution)
    traces = evaluate(problem, solution, config, environment=session.trace_environment(),
                      sol_ms=session.sol_ms(problem))
    session.store.record_traces(traces, solution.content_hash, session.environment_id, run_id)
    digest = definition_hash(problem)
    for trace in traces:
        evaluation = trace["evaluation"]
        latency = (evaluation["performance"] or {}).get("latency_ms") if evaluation["status"] == statuses.PASSED else None
        session.store.record_baseline(problem.name, digest, trace["workload"]["uuid"], session.environment_id,
                                      variant, latency, evaluation["status"])
    return traces


def measure_missing_baselines(session: Session, problem: Problem, config: EvalConfig, variants: list[str],
                              run_id: str, force: bool = False) -> dict[str, list[dict]]:
    """Measure the variants the store lacks for some selected workload; variant -> its traces."""
    workloads = select_workloads(problem, config.max_workloads)
    stored = session.store.baselines(definition_hash(problem), session.environment_id)
    config = replace(config, shape_probe=False)  # the reference's own variants: nothing to probe
    return {v: measure_variant(session, problem, v, config, run_id) for v in variants
            if force or any(v not in stored.get(w.uuid, {}) for w in workloads)}


def baseline_ms(session: Session, problem: Problem, config: EvalConfig, variants: list[str] | None = None,
                run_id: str = "baseline", force: bool = False) -> dict[str, dict[str, float | None]]:
    """uuid -> {variant: ms or None, ..., "best": ms or None}; measures only what the store lacks."""
    variants = variants or default_variants(session.device)
    workloads = select_workloads(problem, config.max_workloads)
    # the variants compute the reference itself: one correctness round suffices
    measure_missing_baselines(session, problem, replace(config, rounds=1), variants, run_id, force)
    stored = session.store.baselines(definition_hash(problem), session.environment_id)
    table = {}
    for w in workloads:
        row = {v: stored.get(w.uuid, {}).get(v) for v in variants}
        row["best"] = _best(row)
        table[w.uuid] = row
    return table


def stored_baseline_ms(session: Session, problem: Problem) -> dict[str, float | None]:
    """uuid -> T_b from what the store holds for this environment (every variant; nothing measured)."""
    stored = session.store.baselines(definition_hash(problem), session.environment_id)
    return {uuid: _best(row) for uuid, row in stored.items()}


def _best(times_ms: dict[str, float | None]) -> float | None:
    """T_b: the fastest variant that passed (None when none did)."""
    return min((t for t in times_ms.values() if t is not None), default=None)
