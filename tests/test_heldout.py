"""Every held-out problem (heldout/README.md) is valid and its reference runs on its smallest workload on CPU."""

from pathlib import Path

import pytest

from kernelbench.core.problem import find_problem_dirs
from kernelbench.core.validation import check_problem

HELDOUT = find_problem_dirs(Path(__file__).resolve().parents[1] / "heldout")


def test_every_official_subset_is_represented():
    assert {d.parent.name for d in HELDOUT} == {"L1", "L2", "Quant", "FlashInfer-Bench"} and len(HELDOUT) >= 40


@pytest.mark.parametrize("directory", HELDOUT, ids=lambda d: f"{d.parent.name}/{d.name}")
def test_problem_checks_and_runs_on_cpu(directory):
    result = check_problem(directory, run=True)
    assert result.ok and result.ran, "\n".join(result.messages)
