"""`calculate_output` formulas: every operator and function against hand-computed values, and the
whitelist rejecting everything else (no eval)."""

from __future__ import annotations

import math

import pytest

from graders.base import GraderInputError
from graders.formula import compile_formula

NAMES = ["a", "b", "c"]
VALUES = {"a": 0.5, "b": 0.25, "c": 2.0}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a + b * 2", 1.0),
        ("(a + b) / 3", 0.25),
        ("a - b - c", -1.75),
        ("-a", -0.5),
        ("-c^2", -4.0),  # power binds tighter than unary minus, as in maths
        ("c ^ 3", 8.0),
        ("2 ^ 3 ^ 2", 512.0),  # right-associative
        ("c ** 2", 4.0),
        ("min(a, b, c)", 0.25),
        ("max(a, b)", 0.5),
        ("abs(b - a)", 0.25),
        ("floor(c + 0.9)", 2.0),
        ("ceil(a)", 1.0),
        ("exp(0)", 1.0),
        ("sqrt(c * 8)", 4.0),
        ("log(1)", 0.0),
        ("log(8, c)", 3.0),
        ("0.7 * a + 0.3 * b", 0.425),
    ],
)
def test_formula_values(text: str, expected: float) -> None:
    assert compile_formula(text, NAMES)(VALUES) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a + d", "unknown name 'd'"),
        ("__import__('os')", "only the functions"),
        ("a.real", "Attribute is not allowed"),
        ("[a][0]", "is not allowed"),
        ("(lambda: 1)()", "only the functions"),
        ("'x'", "only numbers are allowed"),
        ("True + a", "only numbers are allowed"),
        ("a if b else c", "IfExp is not allowed"),
        ("a < b", "Compare is not allowed"),
        ("a and b", "BoolOp is not allowed"),
        ("a % b", "operator Mod is not allowed"),
        ("a // b", "operator FloorDiv is not allowed"),
        ("~a", "operator Invert is not allowed"),
        ("sqrt(a, b)", "wrong arguments to sqrt()"),
        ("min()", "wrong arguments to min()"),
        ("max(a, key=b)", "wrong arguments to max()"),
        ("a +", "syntax error"),
        ("a; b", "syntax error"),
    ],
)
def test_formula_rejects(text: str, message: str) -> None:
    with pytest.raises(GraderInputError) as info:
        compile_formula(text, NAMES)
    assert message in str(info.value)
    assert repr(text) in str(info.value)


@pytest.mark.parametrize(
    ("text", "error"),
    [("a / (b - b)", ZeroDivisionError), ("sqrt(b - a)", ValueError), ("(b - a) ^ 0.5", ValueError),
     ("log(b - b)", ValueError), ("exp(1000)", OverflowError)],
)
def test_formula_runtime_errors_are_arithmetic_or_value_errors(text: str, error: type) -> None:
    """The multi grader turns these into a counted Grade error, so they must be these types."""
    with pytest.raises(error):
        compile_formula(text, NAMES)(VALUES)


def test_formula_names_lists_read_variables_only() -> None:
    assert compile_formula("max(a, 1) + sqrt(c)", NAMES).names == {"a", "c"}
    assert math.isclose(compile_formula("1", NAMES)({}), 1.0)
