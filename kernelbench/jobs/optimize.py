"""`kb optimize`: find the fastest verified solution of one task and score it.

1. T_b: the baseline variants (eager, torch.compile, CUDA graphs), measured by the full evaluator.
2. Candidates: every searched source of the registry (the template families), seeded by the
   knowledge base's winners for the same families.
3. Search: successive halving on the screening child within `budget_s` seconds; with budget 0 no
   search: the knowledge base's configuration (else the family's first guess) per shape class.
4. Finalists (the per-workload winners assembled into a shape-keyed dispatch, and the best single
   candidate) go through the full evaluator; the best one that passes every workload audit-clean
   wins, else the best baseline variant. With `llm`, the research loop (kernelbench.generate.llm)
   then proposes, screens and fully evaluates a model's kernels, which are ranked with the
   finalists. Every candidate tried is stored with its provenance and
   screening numbers; the winners of the search go into the knowledge base.
"""

from __future__ import annotations

import time
import uuid as uuidlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from kernelbench.core.problem import Problem
from kernelbench.eval.evaluator import EvalConfig, evaluate, select_workloads
from kernelbench.eval.screening import ScreenConfig
from kernelbench.generate import knowledge
from kernelbench.generate.baseline_variants import variant_solution
from kernelbench.generate.candidate import Candidate, Provenance
from kernelbench.generate.dispatch import assemble
from kernelbench.generate.family import FAMILIES, MATCH_TIME_LIMIT_S
from kernelbench.generate.llm import LLMConfig, research
from kernelbench.generate.search import Screened, SearchOutcome, successive_halving
from kernelbench.generate.sources import SOURCES, TaskContext

from .baseline import Baseline, measure_baseline
from .session import Session, definition_hash
from .summary import Evaluated, choose_best, record, summarize, write_outputs

DEFAULT_BUDGET_S = 60.0
CPU_BUDGET_S = 0.0           # the interpreter's times rank nothing a GPU would: on CPU each family's first guess
                             # is evaluated, and the search is left to a GPU
COMPILE_WORKERS = 8          # parallel Triton compilation before screening on a GPU


@dataclass
class Event:
    kind: str                 # baseline | proposed | screened | evaluated | note
    text: str = ""
    screened: Screened | None = None
    evaluated: Evaluated | None = None


@dataclass
class OptimizeResult:
    problem: Problem
    run_id: str
    baseline: Baseline
    best: Evaluated | None
    chosen: Evaluated
    evaluated: list[Evaluated] = field(default_factory=list)
    search: SearchOutcome | None = None
    proposed: list[Candidate] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)   # phase -> wall seconds (baseline, propose, ...)

    def describe_seconds(self) -> str:
        return f"{sum(self.seconds.values()):.0f} s (" + ", ".join(f"{k} {v:.0f}" for k, v in self.seconds.items()) + ")"

    def to_json(self) -> dict:
        screened = {}
        for s in (self.search.screened if self.search else []):
            entry = screened.setdefault(s.candidate.key, {"candidate": s.candidate.key[:16],
                                                           "provenance": s.candidate.provenance.to_json(), "rungs": []})
            entry["rungs"].append({"rung": s.rung, "status": s.result.status, "seconds": s.result.seconds,
                                   "times_ms": s.result.times_ms, "log": s.result.log[-500:]})
        return {
            "task": self.problem.name, "run_id": self.run_id,
            "baseline": {"variants": self.baseline.variants, "t_b_ms": self.baseline.t_b},
            "proposed": len(self.proposed),
            "screened": list(screened.values()),
            "search": None if self.search is None else {
                "seconds": self.search.seconds, "candidates_per_second": self.search.rate(),
                "passed": self.search.passed},
            "evaluated": [{"solution": r.solution.name, "description": r.solution.description,   # e.g. launches a call
                           "provenance": r.provenance, "status": r.summary["status"],
                           "sol_score": r.summary["sol_score"], "audit_status": r.summary["audit_status"]}
                          for r in self.evaluated],
            "winner": {"solution": self.chosen.solution.name, "provenance": self.chosen.provenance,
                       "ranked": self.best is not None, "summary": self.chosen.summary},
            "notes": self.notes,
            "seconds": self.seconds,
        }


def optimize(session: Session, problem: Problem, config: EvalConfig, *, budget_s: float = DEFAULT_BUDGET_S,
             out_dir: Path | None = None, on_event: Callable[[Event], None] | None = None,
             variants: list[str] | None = None, llm: LLMConfig | None = None) -> OptimizeResult:
    emit = on_event or (lambda event: None)
    seconds: dict[str, float] = {}
    phase_started = time.monotonic()

    def phase(name: str) -> None:   # the wall time since the previous phase ended, under `name`
        nonlocal phase_started
        now = time.monotonic()
        seconds[name], phase_started = now - phase_started, now

    run_id = f"optimize-{uuidlib.uuid4().hex[:12]}"
    session.store.record_problem(problem.name, problem.subset, str(problem.directory), definition_hash(problem),
                                 len(problem.workloads))
    baseline = measure_baseline(session, problem, config, run_id, variants)
    emit(Event("baseline", f"T_b from {', '.join(baseline.variants)}"))
    evaluated = [_baseline_result(session, problem, baseline, variant, run_id) for variant in baseline.variants]
    phase("baseline")

    gpu = canonical_gpu(session)
    versions = {name: family.version for name, family in FAMILIES.items()}
    task = TaskContext(problem, session.device, session.settings, gpu,
                       seeds=knowledge.seeds(session.store, problem, gpu, versions),
                       time_limit_s=min(config.workload_timeout_s, MATCH_TIME_LIMIT_S))
    proposed = [c for source in SOURCES.values() if source.searched for c in source.propose(task)]
    emit(Event("proposed", f"{len(proposed)} candidates from {len(task.seeds)} knowledge-base seeds and the families"))
    phase("propose")
    workloads = select_workloads(problem, config.max_workloads)
    search = None
    if proposed and budget_s > 0:
        base = ScreenConfig(device=session.device, check=[], timed=[], seed=config.seed, data_root=config.data_root,
                            candidate_timeout_s=min(config.workload_timeout_s, 300.0),
                            compile_workers=COMPILE_WORKERS if session.on_gpu else 0)
        search = successive_halving(problem, proposed, workloads, base, budget_s,
                                    on_screened=lambda s: emit(Event("screened", screened=s)))
        for s in search.screened:
            session.store.record_candidate(problem.name, s.candidate.solution, s.candidate.provenance.to_json(), run_id,
                                           s.result.status, {"rung": s.rung, **s.result.to_json()})
        winners, fallback = search.winners, search.fallback
    else:
        winners, fallback = _first_guesses(proposed, task, workloads)
    phase("search")
    if fallback is not None:
        finalists = list({c.key: c for c in (assemble(problem, winners, fallback), fallback)}.values())
        for candidate in finalists:
            result = _evaluate(session, problem, candidate, config, baseline, run_id)
            evaluated.append(result)
            emit(Event("evaluated", evaluated=result))
        if search is not None and search.winners:
            knowledge.remember(session.store, problem, gpu, _knowledge_entries(problem, task, search, gpu))
        phase("finalists")
    if llm is not None:   # the LLM research loop: its proposals are judged and ranked like the finalists above
        evaluated += research(task, llm, evaluated=evaluated, choose=choose_best, store=session.store, run_id=run_id,
                              evaluate=lambda c: _evaluate(session, problem, c, config, baseline, run_id),
                              config=config, hardware=session.hardware, on_note=lambda t: emit(Event("note", t)))
        phase("llm")
    best = choose_best(evaluated)
    chosen = best or max(evaluated, key=lambda r: r.summary["sol_score"])
    record(session, problem, chosen, run_id)
    if best is not None and out_dir is not None:
        write_outputs(best, Path(out_dir) / problem.name)
    return OptimizeResult(problem, run_id, baseline, best, chosen, evaluated, search, proposed, task.notes, seconds)


def canonical_gpu(session: Session) -> str:
    """The knowledge base's GPU key: the roofline's hardware name on a GPU, "cpu" otherwise."""
    return session.hardware if session.on_gpu else "cpu"


def _baseline_result(session: Session, problem: Problem, baseline: Baseline, variant: str, run_id: str) -> Evaluated:
    solution = variant_solution(problem, variant)
    traces = baseline.traces.get(variant)
    if traces is None:   # reused from the store: this environment's latest traces of the variant
        stored = session.store.latest_traces(problem.name, solution.content_hash, session.environment_id)
        traces = [stored[uuid] for uuid in baseline.table if uuid in stored]
    return Evaluated(solution, traces, summarize(problem, solution, traces, baseline.t_b, session),
                     Provenance(source="baseline", parameters={"variant": variant}).to_json())


def _evaluate(session: Session, problem: Problem, candidate: Candidate, config: EvalConfig, baseline: Baseline,
              run_id: str) -> Evaluated:
    session.store.record_solution(candidate.solution)
    traces = evaluate(problem, candidate.solution, config, environment=session.trace_environment(),
                      baseline_ms=baseline.t_b, sol_ms=session.sol_ms(problem))
    session.store.record_traces(traces, candidate.key, session.environment_id, run_id)
    result = Evaluated(candidate.solution, traces, summarize(problem, candidate.solution, traces, baseline.t_b, session),
                       candidate.provenance.to_json())
    session.store.record_candidate(problem.name, candidate.solution, result.provenance, run_id,
                                   result.summary["status"], None)
    return result


def _first_guesses(proposed: list[Candidate], task: TaskContext,
                   workloads) -> tuple[dict[str, Candidate], Candidate | None]:
    """No search: per workload, the first candidate proposed for its shape class (the sources put the
    knowledge base's winners first, then each family's best guess)."""
    by_key = {c.key: c for c in proposed}
    winners = {w.uuid: by_key[task.first_choices[w.uuid]] for w in workloads
               if task.first_choices.get(w.uuid) in by_key}
    fallback = next(iter(winners.values()), proposed[0] if proposed else None)
    return winners, fallback


def _knowledge_entries(problem: Problem, task: TaskContext, search: SearchOutcome,
                       gpu: str) -> list[knowledge.Entry]:
    """The search's per-workload winners that came from a family, under the shape class of the
    workload they won (a configuration proposed for one class may win in another)."""
    times = {}
    for s in search.screened:      # the latest rung's time of each candidate on each workload
        for uuid, ms in s.result.times_ms.items():
            times[(s.candidate.key, uuid)] = ms
    entries = []
    for uuid, candidate in search.winners.items():
        p = candidate.provenance
        if p.family is None or p.family not in FAMILIES:
            continue
        entries.append(knowledge.Entry(p.family, FAMILIES[p.family].version, knowledge.dtype_signature(problem),
                                       task.shape_classes.get((p.family, uuid), p.shape_class or ""), gpu, p.parameters,
                                       times[(candidate.key, uuid)], problem.name))
    return entries
