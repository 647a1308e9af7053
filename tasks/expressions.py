"""Safe evaluation of integer arithmetic expressions (+ - * / and parentheses), without `eval`.

The text is parsed with `ast` and only integer literals, the four binary operators and parentheses
are accepted, so no names, calls or attribute access can run. Division is exact (`Fraction`), so
`7 / 2` is 7/2 rather than 3.5 or 3. Length is capped to keep parsing cheap on hostile input.

>>> evaluate("(25 - 5) * 3 / 4")
Fraction(15, 1)
>>> sorted(literals("100 - (7 * 3)"))
[3, 7, 100]
"""

from __future__ import annotations

import ast
from collections import Counter
from fractions import Fraction

MAX_LENGTH = 300
# Typographic and LaTeX operators models often write, mapped to Python's.
_SYMBOLS = {"\\times": "*", "\\cdot": "*", "\\div": "/", "×": "*", "·": "*", "÷": "/", "−": "-"}
_OPS = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
}


class ExpressionError(ValueError):
    """The text is not a well-formed arithmetic expression of the accepted kind."""


def parse(text: str) -> ast.expr:
    """Parse `text` into an AST holding only integers, + - * / and parentheses."""
    for symbol, plain in _SYMBOLS.items():
        text = text.replace(symbol, plain)
    text = text.strip()
    if not text:
        raise ExpressionError("empty expression")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"expression longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(text, mode="eval").body
    except (SyntaxError, ValueError, RecursionError) as exc:
        raise ExpressionError(f"not an arithmetic expression: {text!r}") from exc
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            continue
        if isinstance(node, ast.Constant) and type(node.value) is int:
            continue
        if isinstance(node, ast.operator) and type(node) in _OPS:
            continue
        raise ExpressionError(f"only integers, + - * / and parentheses are allowed: {text!r}")
    return tree


def _value(node: ast.expr) -> Fraction:
    if isinstance(node, ast.Constant):
        return Fraction(node.value)
    assert isinstance(node, ast.BinOp)
    left, right = _value(node.left), _value(node.right)
    if isinstance(node.op, ast.Div) and right == 0:
        raise ExpressionError("division by zero")
    return _OPS[type(node.op)](left, right)


def evaluate(text: str) -> Fraction:
    """The exact value of an arithmetic expression; raises `ExpressionError` if it is not one."""
    return _value(parse(text))


def literals(text: str) -> Counter[int]:
    """How many times each integer literal occurs in the expression."""
    return Counter(n.value for n in ast.walk(parse(text)) if isinstance(n, ast.Constant))
