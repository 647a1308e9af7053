"""The safe expression evaluator behind countdown and arithmetic: exact values, and rejection of the rest."""

from fractions import Fraction

import pytest

from tasks.expressions import MAX_LENGTH, ExpressionError, evaluate, literals


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1 + 2 * 3", Fraction(7)),  # precedence: 2 * 3 first
        ("(1 + 2) * 3", Fraction(9)),
        ("7 / 2", Fraction(7, 2)),  # exact, not 3.5 float nor 3
        ("100 - 4 * 25", Fraction(0)),
        ("((8))", Fraction(8)),
        ("6 × 7 ÷ 2", Fraction(21)),  # typographic operators are normalised
        ("10 − 3", Fraction(7)),
    ],
)
def test_evaluate_values(text: str, value: Fraction) -> None:
    assert evaluate(text) == value


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2 ** 10",
        "-3 + 4",
        "1.5 + 1",
        "__import__('os').system('true')",
        "x + 1",
        "abs(3)",
        "(1, 2)",
        "1 // 2",
        "3 % 2",
        "1 / 0",
        "1 / (2 - 2)",
        "1 +",
        "(" * 200 + "1" + ")" * 200,
        "1+" * (MAX_LENGTH // 2) + "1",
    ],
)
def test_evaluate_rejects(text: str) -> None:
    with pytest.raises(ExpressionError):
        evaluate(text)


def test_literals_counts_repeats() -> None:
    assert literals("(3 + 3) * 10 / 3") == {3: 3, 10: 1}
