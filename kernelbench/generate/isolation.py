"""A family's matching in a child process.

Tracing a reference and checking a plan against it run the problem's reference code; a reference that
crashes the interpreter (a segfault) or hangs must not take the optimizer with it, so matching runs in a
fresh interpreter under kernelbench.eval.sandbox's limits:

    value, message = call_in_child("kernelbench.generate.families.rowwise:plan_of", problem, time_limit_s=120)

`function` takes a Problem and returns (JSON-serializable value, message); a child that dies or times out
gives (None, what happened).
"""

from __future__ import annotations

import importlib
from typing import Any

from kernelbench.core.problem import Problem, load_problem
from kernelbench.eval.sandbox import run_items, serve

START_S = 120.0   # the child's imports


def call_in_child(function: str, problem: Problem, time_limit_s: float) -> tuple[Any, str]:
    """`function(problem)` in a fresh interpreter, given `time_limit_s` seconds (tracing a large block takes ~40 s)."""
    outcome: dict = {}
    run_items(__name__, {"function": function, "problem_dir": str(problem.directory)}, ["call"],
              build_timeout_s=START_S, item_timeout_s=time_limit_s,
              on_result=lambda _, result: outcome.update(result))
    if "value" not in outcome:
        return None, f"{problem.name}: {function} failed in its child: {outcome.get('log', '')[-500:]}"
    return outcome["value"], outcome["message"]


def handle(request: dict, send) -> None:
    send({"kind": "built"})
    module, name = request["function"].split(":")
    value, message = getattr(importlib.import_module(module), name)(load_problem(request["problem_dir"]))
    send({"kind": "result", "uuid": "call", "value": value, "message": message})


if __name__ == "__main__":
    serve(handle)
