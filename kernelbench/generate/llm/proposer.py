"""The research loop: ask a model for a faster solution, judge its answer like any candidate, tell it
what became of the answer, for a few rounds.

    results = research(task, LLMConfig(model="..."), evaluated=..., evaluate=..., choose=..., ...)

Each answer is parsed into a solution (or the reasons it could not be), scanned by the audit's static
rules, screened beside the best solution so far, and, when it passes screening, evaluated by the full
evaluator (fresh inputs, the runtime audit and the shape probe, the timer) through `evaluate`, as a
finalist of the search is. The results join the task's finalists and the task's final choice ranks
them like any other: a proposal the audit flags stays in the store and the log as evidence and is
never chosen. Nothing in an answer's text is trusted: only what the audit and the evaluator measure. An answer that
repeats an earlier one gets the earlier verdict without running anything again.
Every exchange is logged (log.py); the first prompt carries what won on other tasks of the family.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any, Callable

from audit.static import scan_solution
from kernelbench.core import statuses
from kernelbench.core.problem import Problem, Workload
from kernelbench.core.reference import compile_reference
from kernelbench.core.settings import Settings
from kernelbench.core.store import Store
from kernelbench.eval.evaluator import EvalConfig, select_workloads
from kernelbench.eval.screening import ScreenConfig, screen
from roofline import load_profile, sol_for_workload

from ..candidate import Candidate, Provenance
from ..search import representatives
from ..sources import TaskContext
from .client import ChatClient, LLMConfig
from .log import AUDIT_CLEAN, ExchangeLog, winners
from .parsing import parse_answer
from .prompts import (MAX_WORKLOAD_ROWS, Outcome, describe_best, evaluation_rows, feedback_prompt, log_excerpt,
                      shown_sources, system_prompt, task_prompt)

SOURCE = "llm"
BEST = "best-so-far"          # the screening id of the best solution, screened beside a proposal
SCREEN_TIMING = {"warmup": 2, "iterations": 10}


def research(task: TaskContext, llm: LLMConfig, *, evaluated: list, evaluate: Callable[[Candidate], Any],
             choose: Callable[[list], Any], store: Store, run_id: str, config: EvalConfig, hardware: str,
             on_note: Callable[[str], None] | None = None) -> list:
    """Run the loop for one task. `evaluated`: the task's results so far (solution, summary,
    provenance); `evaluate(candidate)` runs the full evaluator and records the result; `choose(results)`
    is the task's final choice (None when none is ranked). Returns the proposals' evaluated results."""
    loop = _Loop(task, llm, evaluated, evaluate, choose, store, run_id, config, hardware, on_note or (lambda _: None))
    try:
        loop.run()
    finally:
        loop.client.close()
    return loop.results


def task_families(task: TaskContext) -> list[str]:
    """What makes tasks alike for the knowledge the prompt carries: the template families that
    implement the problem (recorded by the template source as it proposed), and its op_type."""
    names = [family for family, _ in task.shape_classes]
    op_type = task.problem.definition.op_type
    return list(dict.fromkeys(names + ([op_type] if op_type else [])))


def roofline_rows(problem: Problem, workloads: list[Workload], hardware: str,
                  settings: Settings) -> tuple[dict, str | None]:
    """uuid -> WorkloadSOL for the workloads the prompt shows, or the reason there is none."""
    try:
        profile = load_profile(hardware, settings.profile, settings.profile_dir)
        module = compile_reference(problem.definition)
        return {w.uuid: sol_for_workload(problem, w, profile, module=module, settings=settings)
                for w in representatives(problem, workloads, MAX_WORKLOAD_ROWS)}, None
    except Exception as exc:  # noqa: BLE001 - the prompt says why, the loop goes on without the table
        return {}, f"{type(exc).__name__}: {exc}"


class _Loop:
    def __init__(self, task: TaskContext, llm: LLMConfig, evaluated: list, evaluate, choose, store: Store,
                 run_id: str, config: EvalConfig, hardware: str, note: Callable[[str], None]):
        self.task, self.problem, self.llm = task, task.problem, llm
        self.evaluate, self.choose, self.store, self.run_id, self.note = evaluate, choose, store, run_id, note
        self.workloads = select_workloads(self.problem, config.max_workloads)
        self.labels = {w.uuid: json.dumps(w.axes) for w in self.workloads}
        ordered = sorted(self.workloads, key=self.problem.workload_size)
        self.screening = ScreenConfig(device=task.device, check=list(dict.fromkeys([ordered[0].uuid, ordered[-1].uuid])),
                                      timed=[w.uuid for w in representatives(self.problem, self.workloads)],
                                      timing=SCREEN_TIMING, seed=config.seed, data_root=config.data_root,
                                      candidate_timeout_s=min(config.workload_timeout_s, 300.0))
        self.families = task_families(task)
        self.log = ExchangeLog(store, self.problem.name, run_id, llm.model, self.families)
        self.best = choose(evaluated) or evaluated[0]
        self.best_screening: dict[str, dict[str, float]] = {}   # solution hash -> its screening times
        self.client = ChatClient(llm)
        self.results: list = []
        self.judged: dict[str, tuple[int, Outcome]] = {}   # solution hash -> (round, what became of it)
        self.hardware = hardware

    def view(self) -> dict:
        return describe_best(self.best, self.best_screening.get(self.best.solution.content_hash), self.labels)

    def first_messages(self) -> list[dict]:
        sols, error = roofline_rows(self.problem, self.workloads, self.hardware, self.task.settings)
        found = [{**w, "sources": shown_sources(w["solution"].sources)}
                 for w in winners(self.store, self.families, self.problem.name)]
        seeds = [{"family": s.family, "config": json.dumps(s.config, sort_keys=True), "task": s.task,
                  "shape_class": s.shape_class, "time_ms": f"{s.time_ms:.4g}", "gpu": s.gpu}
                 for s in self.task.seeds if s.task != self.problem.name]
        on_cpu = not self.task.device.startswith("cuda")
        target = f"an NVIDIA {self.hardware}" + (
            " (this run checks and times on a CPU, where Triton runs through its interpreter)" if on_cpu else "")
        prompt = task_prompt(self.problem, self.workloads, sols=sols, roofline_error=error, hardware=self.hardware,
                             device="cpu" if on_cpu else self.hardware, best=self.view(), winners=found, seeds=seeds,
                             families=self.families, rounds=self.llm.rounds)
        return [{"role": "system", "content": system_prompt(target)}, {"role": "user", "content": prompt}]

    def run(self) -> None:
        messages = self.first_messages()
        for round_ in range(1, self.llm.rounds + 1):
            spent = self.client.budget.spent()
            if spent:
                self.note(f"LLM: {spent}; stopped before round {round_}")
                return
            reply = self.client.chat(messages)
            row = self.log.call(round_, messages, reply)
            if reply.text is None:   # nothing to judge: the next round asks again
                self.note(f"LLM round {round_}: no answer after {reply.attempts} requests: {reply.error}")
                if reply.hopeless:
                    self.note("LLM: the endpoint refuses this request; no further rounds")
                    return
                continue
            outcome = self.judge(row, round_, reply.text)
            self.note(f"LLM round {round_}: {outcome.stage}: {outcome.status}"
                      + (" (the best so far)" if outcome.became_best else ""))
            if round_ < self.llm.rounds:
                messages = messages + [{"role": "assistant", "content": reply.text},
                                       {"role": "user", "content": feedback_prompt(outcome, self.view(),
                                                                                   self.llm.rounds - round_)}]

    def judge(self, row: int, round_: int, text: str) -> Outcome:
        """Parse, audit, screen and evaluate one answer; log its fate; return what the model is told."""
        model = re.sub(r"\W+", "_", self.llm.model)
        parsed = parse_answer(text, self.problem, name=f"{self.problem.name}__{model}_round{round_}",
                              author=self.llm.model)
        if parsed.solution is None:
            self.log.fate(row, "parse", "UNPARSED", error=parsed.describe())
            return Outcome("parse", "UNPARSED", problems=parsed.problems)
        earlier = self.judged.get(parsed.solution.content_hash)
        if earlier is not None:   # the same code again: its verdict stands, nothing is run twice
            round_of, outcome = earlier
            self.log.fate(row, outcome.stage, outcome.status, candidate_hash=parsed.solution.content_hash,
                          detail={"repeat_of_round": round_of})
            return replace(outcome, repeat_of=round_of, became_best=False)
        outcome = self.judge_solution(round_, row, parsed.solution)
        self.judged[parsed.solution.content_hash] = (round_, outcome)
        return outcome

    def judge_solution(self, round_: int, row: int, solution) -> Outcome:
        """The static audit (a flagged solution goes straight to the evaluator, which refuses to run it),
        then screening beside the best so far, then the full evaluator."""
        candidate = Candidate(solution, Provenance(
            source=SOURCE, parameters={"model": self.llm.model, "round": round_},
            parent=self.best.solution.content_hash, proposer=self.llm.model))
        if scan_solution(solution, self.problem):   # the evaluator will not run it: its verdict costs nothing
            return self.evaluated(row, candidate, "audit", {})
        screened = self.screen(candidate)
        self.store.record_candidate(self.problem.name, candidate.solution, candidate.provenance.to_json(), self.run_id,
                                    screened.status, {"stage": "llm", **screened.to_json()})
        against = self.best_screening.get(self.best.solution.content_hash, {})
        comparison = "; ".join(f"{self.labels[uuid]} {t:.4g} vs {against[uuid]:.4g}" if uuid in against else
                               f"{self.labels[uuid]} {t:.4g}" for uuid, t in screened.times_ms.items())
        if not screened.passed:
            self.log.fate(row, "screening", screened.status, candidate_hash=candidate.key,
                          detail={"log": log_excerpt(screened.log), "times_ms": screened.times_ms})
            return Outcome("screening", screened.status, log=log_excerpt(screened.log))
        return self.evaluated(row, candidate, "evaluation", screened.times_ms, comparison)

    def screen(self, candidate: Candidate):
        """Screen a proposal, and beside it the best solution so far if it has no screening numbers yet."""
        pending = {} if self.best.solution.content_hash in self.best_screening else {BEST: self.best.solution}
        results = screen(self.problem, {**pending, candidate.key: candidate.solution}, self.screening)
        if BEST in results and results[BEST].passed:
            self.best_screening[self.best.solution.content_hash] = results[BEST].times_ms
        return results[candidate.key]

    def evaluated(self, row: int, candidate: Candidate, stage: str, screening_ms: dict[str, float],
                  comparison: str = "") -> Outcome:
        """Through the full evaluator (the task's evaluate); the result may become the best so far."""
        before = self.view()
        result = self.evaluate(candidate)
        self.results.append(result)
        summary = result.summary
        findings = list(dict.fromkeys(f"{f.rule}: {f.evidence}" for t in result.traces for f in t.evaluation.audit))
        status = statuses.REWARD_HACK if summary["audit_status"] != AUDIT_CLEAN else summary["status"]
        became_best = self.choose([self.best, result]) is result
        if became_best:
            self.best = result
            if screening_ms:
                self.best_screening[result.solution.content_hash] = screening_ms
        failing = next((r for r in summary["per_workload"] if r["status"] != statuses.PASSED), None)
        self.log.fate(row, stage, status, candidate_hash=candidate.key, detail={
            "sol_score": summary["sol_score"], "audit_status": summary["audit_status"], "findings": findings,
            "screening_ms": screening_ms, "became_best": became_best,
            "per_workload": [{k: r[k] for k in ("uuid", "status", "t_k_ms", "t_b_ms", "score")}
                             for r in summary["per_workload"]]})
        return Outcome(stage, status, findings=findings, score=f"{summary['sol_score']:.3f}",
                       audit=summary["audit_status"], rows=evaluation_rows(summary, before),
                       log=log_excerpt(failing["log"]) if failing and status != statuses.REWARD_HACK else "",
                       screening=comparison, became_best=became_best)
