"""`kb baseline`: T_b per workload = the best of the baseline variants (eager, torch.compile, CUDA graphs).

Each variant is the reference wrapped as a solution and evaluated by the same evaluator and timer as
any candidate, in its own child process (a variant that cannot be captured, e.g. randomness under
CUDA graphs, fails alone). On a GPU the times are stored per environment fingerprint and reused until
the environment changes. On CPU they are measured again in every run: a CPU clock drifts between
runs, and T_b and T_k of one score must come from the same run.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from kernelbench.core import statuses
from kernelbench.core.problem import Problem
from kernelbench.core.trace import Trace
from kernelbench.eval.evaluator import EvalConfig, evaluate, select_workloads
from kernelbench.generate.baseline_variants import default_variants, variant_solution

from .session import Session, definition_hash


@dataclass
class Baseline:
    variants: list[str]
    table: dict[str, dict[str, float | None]]                 # uuid -> {variant: ms or None}
    traces: dict[str, list[Trace]] = field(default_factory=dict)   # variant -> traces measured in this run

    @property
    def t_b(self) -> dict[str, float | None]:
        """uuid -> T_b, the fastest variant that passed (None when none did)."""
        return {uuid: _best(row) for uuid, row in self.table.items()}


def measure_variant(session: Session, problem: Problem, variant: str, config: EvalConfig, run_id: str) -> list[Trace]:
    """Evaluate one variant, store its traces and its per-workload times as baselines."""
    solution = variant_solution(problem, variant)
    session.store.record_solution(solution)
    traces = evaluate(problem, solution, config, environment=session.trace_environment(),
                      sol_ms=session.sol_ms(problem))
    session.store.record_traces(traces, solution.content_hash, session.environment_id, run_id)
    digest = definition_hash(problem)
    for trace in traces:
        evaluation = trace.evaluation
        passed = evaluation.status == statuses.PASSED and evaluation.performance is not None
        session.store.record_baseline(problem.name, digest, trace.workload.uuid, session.environment_id, variant,
                                      evaluation.performance.latency_ms if passed else None, str(evaluation.status))
    return traces


def measure_baseline(session: Session, problem: Problem, config: EvalConfig, run_id: str = "baseline",
                     variants: list[str] | None = None, force: bool = False) -> Baseline:
    """T_b of the selected workloads: measures what this run needs (everything on CPU; on a GPU only
    what the store lacks for this environment, unless `force`)."""
    variants = variants or default_variants(session.device)
    workloads = select_workloads(problem, config.max_workloads)
    stored = session.store.baselines(definition_hash(problem), session.environment_id)
    remeasure = force or not session.on_gpu
    # the variants compute the reference itself: one correctness round suffices, nothing to probe
    variant_config = replace(config, rounds=1, shape_probe=False)
    traces = {v: measure_variant(session, problem, v, variant_config, run_id) for v in variants
              if remeasure or any(v not in stored.get(w.uuid, {}) for w in workloads)}
    stored = session.store.baselines(definition_hash(problem), session.environment_id)
    table = {w.uuid: {v: stored.get(w.uuid, {}).get(v) for v in variants} for w in workloads}
    return Baseline(variants, table, traces)


def stored_baseline_ms(session: Session, problem: Problem) -> dict[str, float | None]:
    """uuid -> T_b from what the store holds for this environment (every variant; nothing measured)."""
    stored = session.store.baselines(definition_hash(problem), session.environment_id)
    return {uuid: _best(row) for uuid, row in stored.items()}


def _best(times_ms: dict[str, float | None]) -> float | None:
    return min((t for t in times_ms.values() if t is not None), default=None)
