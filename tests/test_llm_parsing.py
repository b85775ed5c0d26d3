"""Answers -> solutions: the plainest answer, destination passing, several files, and a clear record of
what could not be used."""

from __future__ import annotations

import json

import pytest

from kernelbench.core.problem import load_problem
from kernelbench.generate.llm.parsing import parse_answer
from tiny_problems import write_rmsnorm_problem

VALUE = "import torch\n\ndef run(x, weight, eps):\n    return x * weight\n"
DPS = "import torch\n\ndef run(x, weight, eps, out):\n    out.copy_(x * weight)\n"


@pytest.fixture(scope="module")
def problem(tmp_path_factory):
    return load_problem(write_rmsnorm_problem(tmp_path_factory.mktemp("tasks")))


def parse(text, problem):
    return parse_answer(text, problem, name="proposal", author="model-x")


def test_the_plainest_answer_is_a_value_returning_pytorch_solution(problem):
    parsed = parse(f"Vectorized:\n\n```python\n{VALUE}```\nThat is all.", problem)
    solution = parsed.solution
    assert parsed.problems == [] and solution is not None
    assert solution.entry_point == "kernel.py::run" and not solution.destination_passing_style
    assert solution.languages == ("pytorch",) and solution.sources[0].content == VALUE
    assert solution.definition == problem.name and solution.author == "model-x"


def test_outputs_after_the_inputs_mean_destination_passing(problem):
    assert parse(f"```py\n{DPS}```", problem).solution.destination_passing_style
    # a parameter with a default is not an output: `def run(x, weight, eps, _memo={})` returns its outputs
    memo = VALUE.replace("eps)", "eps, _memo={})")
    assert parse(f"```python\n{memo}```", problem).solution.destination_passing_style is False


def test_triton_and_a_named_cuda_file_beside_a_python_entry(problem):
    triton = "import triton\nimport triton.language as tl\n\n" + VALUE
    assert parse(f"```python\n{triton}```", problem).solution.languages == ("triton",)
    answer = (f"```cuda kernel.cu\n__global__ void k() {{}}\n```\n\n```python main.py\n{VALUE}```\n"
              "```python\nprint(run(x, w, 1e-6))  # usage, no file name: left out\n```\n")
    parsed = parse(answer, problem)
    assert parsed.solution.entry_point == "main.py::run" and parsed.solution.languages == ("pytorch",)
    assert [s.path for s in parsed.solution.sources] == ["main.py", "kernel.cu"]
    assert len(parsed.notes) == 1 and "code block 3" in parsed.notes[0]


def test_the_last_block_defining_run_wins_and_an_unfenced_answer_is_accepted(problem):
    answer = f"First try:\n```python\n{VALUE}```\nBetter:\n```python\n{DPS}```\n"
    assert parse(answer, problem).solution.destination_passing_style
    assert parse(VALUE, problem).solution.sources[0].content == VALUE


def test_a_solution_json_block(problem):
    data = {"spec": {"languages": ["pytorch"], "entry_point": "a.py::run", "destination_passing_style": False},
            "sources": [{"path": "a.py", "content": VALUE}]}
    solution = parse(f"```json\n{json.dumps(data)}\n```", problem).solution
    assert solution.entry_point == "a.py::run" and solution.name == "proposal" and solution.definition == problem.name


@pytest.mark.parametrize("answer, reason", [
    ("I would vectorize the loop over rows.", "no ``` code block"),
    ("```python\nimport torch\n\ndef helper(x):\n    return x\n```", "defines a top-level `def run(...)`"),
    ("```python\ndef run(x, weight, eps)\n    return x\n```", "SyntaxError"),
    ("```python\ndef run(x):\n    return x\n```", "takes the 3 inputs (x, weight, eps)"),
    ("```python\ndef run(x, weight, eps):\n    return x\x00\n```", "null bytes"),
    ("```python\ndef run(x, weight, eps):\n    return x\n", "never closed"),
    ("```python ../evil.py\ndef run(x, weight, eps):\n    return x\n```", "must be a relative path"),
    ('```json\n{"spec": {"languages": ["pytorch"], "entry_point": "b.py::run"}, "sources": [{"path": "a.py", '
     '"content": "def run(x, weight, eps): pass"}]}\n```', "not among the sources"),
])
def test_what_cannot_be_used_is_named(problem, answer, reason):
    parsed = parse(answer, problem)
    assert parsed.solution is None and reason in parsed.describe(), parsed.problems
