"""`kb roofline` over all of tasks235: every workload gets a T_SOL or a reason (minutes: marked slow)."""

from __future__ import annotations

import pytest

from kernelbench.core.settings import REPOSITORY
from test_roofline_samples import every_workload_bound_or_reason


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_kb_roofline_bounds_every_tasks235_workload(tmp_path):
    counted, reasons = every_workload_bound_or_reason(REPOSITORY / "tasks235", tmp_path)
    assert (counted, reasons) == (1300, 0)
