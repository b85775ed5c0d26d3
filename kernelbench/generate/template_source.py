"""Template families as a candidate source: every family that matches the problem proposes its
configurations for each shape class of the problem's workloads, knowledge-base winners first."""

from __future__ import annotations

from dataclasses import replace

from kernelbench.core.problem import Problem

from .candidate import Candidate, Provenance
from .family import FAMILIES, Family, Match
from .sources import CandidateSource, TaskContext, register_source


def shape_classes(family: Family, match: Match, problem: Problem) -> dict[str, list]:
    """shape class -> the problem's workloads in it (file order)."""
    classes: dict[str, list] = {}
    for workload in problem.workloads:
        classes.setdefault(family.shape_class(match, problem.axes_for(workload)), []).append(workload)
    return classes


def matches(problem: Problem, notes: list[str], time_limit_s: float) -> list[tuple[Family, Match]]:
    """(family, match) for every family that implements the problem. A family that fails while
    matching is skipped with a note: one broken family never stops the others."""
    found = []
    for family in FAMILIES.values():
        try:
            match = family.match(problem, time_limit_s)
        except Exception as exc:  # noqa: BLE001 - a note, not an exception: the other families still run
            notes.append(f"family {family.name}: matching failed: {type(exc).__name__}: {exc}")
            continue
        if match is not None:
            found.append((family, match))
    if not found:   # say why no family took the problem
        notes += [f"family {f.name}: {f.last_rejection}" for f in FAMILIES.values() if f.last_rejection]
    return found


@register_source("template")
class TemplateFamilies(CandidateSource):
    def propose(self, task: TaskContext) -> list[Candidate]:
        proposed: dict[str, Candidate] = {}
        for family, match in matches(task.problem, task.notes, task.time_limit_s):
            for shape_class, workloads in shape_classes(family, match, task.problem).items():
                task.shape_classes.update({(family.name, w.uuid): shape_class for w in workloads})
                axes = task.problem.axes_for(max(workloads, key=task.problem.workload_size))
                seeded = [(s.config, f"knowledge base: {s.task}") for s in task.seeds
                          if s.family == family.name and s.shape_class == shape_class]
                for config, proposer in seeded + [(c, f"{family.name} v{family.version}")
                                                  for c in family.space(match, axes)]:
                    candidate = Candidate(family.render(match, config),
                                          Provenance(source="template", family=family.name, parameters=config,
                                                     proposer=proposer, shape_class=shape_class,
                                                     workloads=tuple(w.uuid for w in workloads)))
                    for w in workloads:   # knowledge-base seeds first, then the family's best guess
                        task.first_choices.setdefault(w.uuid, candidate.key)
                    known = proposed.get(candidate.key)
                    if known is None:
                        proposed[candidate.key] = candidate
                    else:  # proposed again for another class: it serves that class's workloads too
                        workloads_served = known.provenance.workloads + candidate.provenance.workloads
                        proposed[candidate.key] = Candidate(known.solution, replace(known.provenance,
                                                                                    workloads=workloads_served))
        return list(proposed.values())
