"""The traced families plan a problem in one child process (kernelbench.generate.traced.plan_in_child)."""

from __future__ import annotations

import importlib

import pytest

from kernelbench.core.problem import load_problem
from kernelbench.generate import traced
from tiny_problems import write_rmsnorm_problem

CALLS: list[str] = []


def good(problem):
    CALLS.append("good")
    return {"programs": [problem.name]}, ""


def refusing(problem):
    CALLS.append("refusing")
    return None, "nothing to plan"


def broken(problem):
    CALLS.append("broken")
    raise RuntimeError("a family's bug")


@pytest.fixture
def planners(monkeypatch, tmp_path):
    """Three planners of this module, and a child call that runs in-process and counts itself."""
    children = []

    def in_process(function, problem, time_limit_s):
        children.append(function)
        module, name = function.split(":")
        return getattr(importlib.import_module(module), name)(problem)
    monkeypatch.setattr(traced, "PLANNERS", [f"{__name__}:{f}" for f in ("good", "refusing", "broken")])
    monkeypatch.setattr(traced, "call_in_child", in_process)
    monkeypatch.setattr(traced, "_PLANS", {})
    CALLS.clear()
    directory = write_rmsnorm_problem(tmp_path)
    return children, load_problem(directory)


def test_one_child_plans_every_family_and_a_failing_one_costs_the_others_nothing(planners):
    children, problem = planners
    plans = {f: traced.plan_in_child(f"{__name__}:{f}", problem, 10, direct=None) for f in ("good", "refusing", "broken")}
    assert children == [f"{traced.__name__}:plans_of_all"]            # one child for the three
    assert CALLS == ["good", "refusing", "broken"]                     # each planner ran once
    assert plans["good"][0]["programs"] == [problem.name] and plans["good"][0]["problem"] == problem.name
    assert plans["refusing"] == (None, "nothing to plan")
    assert plans["broken"][0] is None and "RuntimeError: a family's bug" in plans["broken"][1]


def test_a_returned_plan_is_a_copy_and_a_new_problem_is_planned_again(planners, tmp_path):
    children, problem = planners
    first, _ = traced.plan_in_child(f"{__name__}:good", problem, 10, direct=None)
    first["programs"].append("changed by a caller")
    again, _ = traced.plan_in_child(f"{__name__}:good", problem, 10, direct=None)
    assert again["programs"] == [problem.name] and len(children) == 1
    other = load_problem(write_rmsnorm_problem(tmp_path / "other", name="002_other", hidden=32))
    traced.plan_in_child(f"{__name__}:good", other, 10, direct=None)
    assert len(children) == 2


def test_problems_planned_ahead_are_not_planned_again_and_the_oldest_go_first(planners, tmp_path, monkeypatch):
    children, problem = planners
    monkeypatch.setattr(traced, "PLANS_KEPT", 2)
    others = [load_problem(write_rmsnorm_problem(tmp_path / f"p{i}", name=f"00{i}_other", hidden=32 * i))
              for i in (2, 3)]
    traced.plan_ahead(problem, 10)
    traced.plan_ahead(others[0], 10)
    assert len(children) == 2
    for planned in (problem, others[0]):             # both kept: asking the families costs no child
        traced.plan_in_child(f"{__name__}:good", planned, 10, direct=None)
    assert len(children) == 2
    traced.plan_ahead(others[1], 10)                  # a third: the oldest (problem) is dropped
    traced.plan_in_child(f"{__name__}:good", others[0], 10, direct=None)
    assert len(children) == 3
    traced.plan_in_child(f"{__name__}:good", problem, 10, direct=None)
    assert len(children) == 4
