"""The baseline variants as a candidate source: the reference itself, torch.compile of it, and
CUDA-graph replay of that (torch.compile mode "reduce-overhead"). T_b is the best of them."""

from __future__ import annotations

from kernelbench.core.problem import Problem
from kernelbench.core.solution import Solution, reference_solution

from .candidate import Candidate, Provenance
from .sources import CandidateSource, TaskContext, register_source

# variant -> torch.compile mode (None: eager)
VARIANTS: dict[str, str | None] = {"eager": None, "compile": "default", "cudagraphs": "reduce-overhead"}


def default_variants(device: str) -> list[str]:
    """On GPUs all three. On CPU only eager: torch.compile builds C++ for each shape, minutes on a
    small machine, and CPU times are never scores anyway (ask for it with variants=[..., "compile"])."""
    return list(VARIANTS) if device.startswith("cuda") else ["eager"]


def variant_solution(problem: Problem, variant: str) -> Solution:
    return reference_solution(problem.name, problem.definition.reference, compiled=VARIANTS[variant])


@register_source("baseline")
class BaselineVariants(CandidateSource):
    searched = False   # measured by the baseline job with the full evaluator, never screened

    def propose(self, task: TaskContext) -> list[Candidate]:
        return [Candidate(variant_solution(task.problem, variant),
                          Provenance(source="baseline", parameters={"variant": variant}, proposer="kernelbench"))
                for variant in default_variants(task.device)]
