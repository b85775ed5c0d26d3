"""The small safe evaluator for axis expressions and constraints."""

from __future__ import annotations

import pytest

from kernelbench.core.safe_expr import ExpressionError, evaluate, names_in

ENV = {"a": 12, "b": 5, "c": 2}


@pytest.mark.parametrize("expression, expected", [
    ("a + b", 17), ("a - b", 7), ("a * b", 60), ("a / b", 2.4), ("a // b", 2), ("a % b", 2),
    ("c ** 10", 1024), ("b ** 0", 1), ("-a + b", -7), ("+a", 12), ("(a + b) * c", 34),
    ("a // c // 3", 2), ("2 ** 0.5", 2 ** 0.5), ("1.5 * c", 3.0), ("c ** -1", 0.5),
    ("min(a, b)", 5), ("max(a, b, c)", 12), ("abs(b - a)", 7), ("min(max(a, 20), 15)", 15),
    ("a > b", True), ("a < b", False), ("a >= 12", True), ("a <= 11", False), ("a == 12", True),
    ("a != 12", False), ("c < b < a", True), ("c < a < b", False),
    ("a > 1 and b > 1", True), ("a > 100 or b > 1", True), ("not a == 12", False), ("True", True),
    ("a % 4 == 0 and a // 4 == 3", True),
])
def test_arithmetic_and_comparisons(expression, expected):
    assert evaluate(expression, ENV) == expected


def test_integer_results_stay_integers():
    assert isinstance(evaluate("a // b * 3 + a % b", ENV), int)


def test_names_in_excludes_function_names():
    assert names_in("max(a, b) // c + min(d, 1)") == {"a", "b", "c", "d"}
    assert names_in("3 * 4") == set()


@pytest.mark.parametrize("expression", [
    "a.__class__",                      # attribute access
    "a.real",
    "().__class__.__bases__[0]",
    "open('x')",                        # calls of unknown functions
    "print(a)",
    "int(a)",
    "__import__('os')",
    "__import__('os').system('true')",
    "max(a, key=abs)",                  # keywords on an allowed function
    "[a, b][0]",                        # subscripts and containers
    "(a, b)",
    "{'a': 1}['a']",
    "(lambda: 1)()",                    # lambdas
    "lambda: 1",
    "'abc'",                            # strings
    "a if b else c",                    # conditional expressions
    "[x for x in (1, 2)]",              # comprehensions
    "a << 2",                           # operators outside the allowed set
    "a & b",
    "a @ b",
    "~a",
    "(y := 3)",
])
def test_refusals(expression):
    with pytest.raises(ExpressionError):
        evaluate(expression, ENV)


def test_import_does_not_run():
    with pytest.raises(ExpressionError, match="unsupported syntax"):
        evaluate("__import__('os')", {})


@pytest.mark.parametrize("expression", ["2 ** 100", "a ** 65", "c ** (a * 100)", "2 ** -1000",
                                        "10 ** 10 ** 10"])
def test_huge_exponents_refused(expression):
    with pytest.raises(ExpressionError, match="too large"):
        evaluate(expression, ENV)


@pytest.mark.parametrize("expression", ["d + 1", "max(a, z)", "os"])
def test_names_not_given(expression):
    with pytest.raises(ExpressionError, match="unknown name"):
        evaluate(expression, ENV)


@pytest.mark.parametrize("expression", ["a / 0", "a // (b - 5)", "a % 0", "0 ** -1"])
def test_division_by_zero(expression):
    with pytest.raises(ExpressionError, match="division by zero"):
        evaluate(expression, ENV)


@pytest.mark.parametrize("expression", ["", "   ", None, 3, "a +", "a b", "import os", "x = 1"])
def test_unparseable(expression):
    with pytest.raises(ExpressionError):
        evaluate(expression, ENV)


def test_expression_error_is_a_value_error():
    assert issubclass(ExpressionError, ValueError)


# ---------------------------------------------------------------- bugs found

@pytest.mark.parametrize("expression", ["max()", "abs(1, 2)", "min(1)", "(10.0 ** 64) ** 64"])
def test_bad_calls_and_overflow_raise_expression_error(expression):
    with pytest.raises(ExpressionError):
        evaluate(expression, {})


def test_nested_powers_refused():
    with pytest.raises(ExpressionError):
        evaluate("((9 ** 64) ** 64) ** 64", {})
