"""Every task of tasks235 is valid and its reference runs on its smallest workload on CPU."""

import pytest

from kernelbench.core.validation import check_problem
from kernelbench.core.problem import find_problem_dirs
from kernelbench.core.settings import DEFAULTS

TASKS = find_problem_dirs(DEFAULTS.tasks_root)


def test_all_235_tasks_are_there():
    assert len(TASKS) == 235
    subsets = {d.parent.name for d in TASKS}
    assert subsets == {"L1", "L2", "Quant", "Attention"}


@pytest.mark.parametrize("directory", TASKS, ids=lambda d: f"{d.parent.name}/{d.name}")
def test_task_checks_and_runs_on_cpu(directory):
    result = check_problem(directory, run=True)
    assert result.ok and result.ran, "\n".join(result.messages)
    assert 4 <= result.workloads <= 20
