"""What the product families' tests (gemm, conv, scaled_gemm, grouped_gemm) ask of a family: it matches a
problem (else the test says why not), and its first configuration passes every workload."""

from __future__ import annotations

from kernelbench.core.statuses import PASSED
from kernelbench.generate.family import FAMILIES

from test_family_fused import check


def family_match(family_name: str, problem):
    family = FAMILIES[family_name]
    match = family.match(problem)
    assert match is not None, family.last_rejection
    return match


def family_passes_everywhere(family_name: str, problem, config=None):
    """(match, solution) of `config` (default: the family's first configuration at the smallest workload),
    checked against the reference on every workload."""
    family = FAMILIES[family_name]
    match = family_match(family_name, problem)
    solution = family.render(match, config or family.space(match, problem.axes_for(problem.smallest_workload()))[0])
    for workload in problem.workloads:
        comparison = check(problem, solution, workload)
        assert comparison.status == PASSED, (workload.axes, comparison.message)
    return match, solution
