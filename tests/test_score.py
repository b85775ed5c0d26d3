"""The SOL score's defining properties, checked over random times."""

import math

from hypothesis import given, strategies as st

from kernelbench.core.score import benchmark_score, fraction_of_sol, geomean, sol_score, task_score

times = st.floats(min_value=1e-4, max_value=1e4, allow_nan=False)


@given(t_sol=times, gap=times)
def test_baseline_scores_one_half_and_sol_scores_one(t_sol, gap):
    t_b = t_sol + gap
    assert math.isclose(sol_score(t_b, t_b, t_sol), 0.5, rel_tol=1e-9)
    assert sol_score(t_sol, t_b, t_sol) == 1.0


@given(t_sol=times, gap=times, a=times, b=times)
def test_faster_kernels_never_score_lower(t_sol, gap, a, b):
    t_b = t_sol + gap
    fast, slow = sorted((t_sol + a, t_sol + b))
    assert 0.0 < sol_score(slow, t_b, t_sol) <= sol_score(fast, t_b, t_sol) <= 1.0


def test_hand_computed_values():
    assert math.isclose(sol_score(t_k=3.0, t_b=5.0, t_sol=1.0), 1 / (1 + 2 / 4))
    assert sol_score(t_k=1.0, t_b=1.0, t_sol=2.0) == 1.0   # T_b <= T_SOL: 1 at or under T_SOL
    assert sol_score(t_k=3.0, t_b=1.0, t_sol=2.0) == 0.0   # ... else 0
    assert math.isclose(fraction_of_sol(4.0, 1.0), 0.25)


def test_task_counts_only_when_every_workload_passed():
    assert task_score([0.5, 0.7], all_passed=True) == 0.6
    assert task_score([0.5, 0.7], all_passed=False) == 0.0
    assert task_score([0.5, None], all_passed=True) == 0.0
    assert benchmark_score([0.6, 0.0, 0.9]) == 0.5


def test_geomean_ignores_missing():
    assert math.isclose(geomean([1.0, 4.0, None]), 2.0)
    assert geomean([None]) is None
