"""Structural comparison of two parsed answers (see `graders.math.parsing` for the node shapes).

`compare` walks two trees; scalar pairs it cannot settle exactly (anything involving "expr") go to a
`symbolic` callback, which is the sympy worker in `graders.math.sympy_worker`. In the calling process that
callback raises `NeedsSympy`, so exact and structural answers never pay for sympy.

A decimal answer may stand for an exact value it rounds or truncates: against a rational it needs
`RATIONAL_DIGITS` significant digits (1/3 != 0.3333), against an irrational `IRRATIONAL_DIGITS` (the
sympy worker checks those); see tests/data/peer_math/README.md for why.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from typing import Any

from graders.math.parsing import LHS, Node


class NeedsSympy(Exception):
    """Raised by the fast comparison when two scalars can only be compared symbolically."""


def simple_lhs(node: Node) -> bool:
    """An equation whose left side is a plain variable or function name (`y`, `f(x)`)."""
    return node[0] == "eq" and node[1][0] == "expr" and bool(LHS.fullmatch(node[1][1].replace(" ", "")))


Symbolic = Callable[[Node, Node, bool], bool]


RATIONAL_DIGITS = 8
IRRATIONAL_DIGITS = 4


def rounded_match(a: Node, b: Node, min_digits: int) -> bool:
    """A decimal of >= `min_digits` significant digits that agrees with an exact number to its last digit.

    Rounded and truncated decimals both count: |decimal - exact| < 10^-decimals. Two decimals compare exactly.
    """
    if (len(a) == 3) == (len(b) == 3) or a[0] != "num" or b[0] != "num":
        return False
    decimal, exact = (a, b) if len(a) == 3 else (b, a)
    places, significant = decimal[2]
    return significant >= min_digits and abs(decimal[1] - exact[1]) < Fraction(1, 10) ** places


def _fast_scalar(a: Node, b: Node, proportional: bool = False) -> bool:
    if proportional:
        raise NeedsSympy
    if a[0] == "num" and b[0] == "num":
        return bool(a[1] == b[1]) or rounded_match(a, b, RATIONAL_DIGITS)
    if a[0] == "inf" or b[0] == "inf":
        return a == b
    if a == b:
        return True
    raise NeedsSympy


def _match_all(xs: tuple[Any, ...], ys: tuple[Any, ...], eq: Callable[[Any, Any], bool]) -> bool:
    """Order-insensitive equality: a perfect matching between xs and ys (small inputs)."""
    if len(xs) != len(ys):
        return False
    if not xs:
        return True
    for j, y in enumerate(ys):
        if eq(xs[0], y) and _match_all(xs[1:], ys[:j] + ys[j + 1 :], eq):
            return True
    return False


def compare(a: Node, b: Node, symbolic: Symbolic | None = None) -> str | None:
    """The rule under which `a` equals `b`, or None. Without `symbolic`, raises `NeedsSympy` when undecided.

    >>> from graders.math.parsing import parse
    >>> compare(parse("0.75"), parse("\\\\frac{3}{4}"))
    'numeric'
    >>> compare(parse("\\\\{3, 1\\\\}"), parse("\\\\{1, 3\\\\}"))
    'set'
    >>> compare(parse("1/3"), parse("0.33")) is None
    True
    """
    scalar_eq = symbolic or _fast_scalar
    undecided = False

    def eq(x: Node, y: Node) -> bool:
        nonlocal undecided
        try:
            return compare(x, y, symbolic) is not None
        except NeedsSympy:
            undecided = True
            return False

    xs, ys = (n[1] if n[0] == "alt" else (n,) for n in (a, b))
    eqs_a, eqs_b = [x for x in xs if x[0] == "eq"], [y for y in ys if y[0] == "eq"]
    if eqs_a and eqs_b and not all(map(simple_lhs, eqs_a + eqs_b)):
        xs, ys = eqs_a, eqs_b
    for x in xs:
        for y in ys:
            try:
                if (rule := _compare_one(x, y, scalar_eq, eq)) is not None:
                    return rule
            except NeedsSympy:
                undecided = True
    if undecided:
        raise NeedsSympy
    return None


def _compare_one(a: Node, b: Node, scalar_eq: Symbolic, eq: Callable[[Node, Node], bool]) -> str | None:
    kinds = {a[0], b[0]}
    try:
        if kinds <= {"num", "inf", "expr", "latex"} or kinds in ({"matrix", "latex"}, {"matrix", "expr"}):
            return ("numeric" if kinds == {"num"} else "symbolic") if scalar_eq(a, b, False) else None
        if kinds == {"set", "tuple"}:
            return "set" if len(a[1]) == len(b[1]) and all(map(eq, a[1], b[1])) else None
        if len(kinds) == 2:
            return None
        kind = a[0]
        if kind == "text":
            return "text" if a[1] == b[1] else None
        if kind == "set":
            same = all(any(eq(x, y) for y in b[1]) for x in a[1]) and all(
                any(eq(x, y) for x in a[1]) for y in b[1]
            )
            return "set" if same else None
        if kind == "time":
            return "time" if a[1] == b[1] else None
        if kind in ("tuple", "list"):
            return "tuple" if len(a[1]) == len(b[1]) and all(map(eq, a[1], b[1])) else None
        if kind == "matrix":
            same = len(a[1]) == len(b[1]) and all(
                len(r) == len(s) and all(map(eq, r, s)) for r, s in zip(a[1], b[1])
            )
            return "matrix" if same else None
        if kind == "intervals":

            def same_interval(x: tuple[Any, ...], y: tuple[Any, ...]) -> bool:
                return x[1] == y[1] and x[3] == y[3] and eq(x[0], y[0]) and eq(x[2], y[2])

            return "interval" if _match_all(a[1], b[1], same_interval) else None
        if kind == "eq":
            return "equation" if _same_equation(a, b, scalar_eq, eq) else None
    except RecursionError:
        return None
    return None


def _same_equation(a: Node, b: Node, scalar_eq: Symbolic, eq: Callable[[Node, Node], bool]) -> bool:
    """Same sides (either order), else lhs - rhs proportional (2x + 2y = 4 vs x + y = 2).

    With the same non-constant left side L, L - r1 = c (L - r2) forces c = 1, so the right sides decide.
    """
    if eq(a[1], b[1]) and a[1][0] == "expr":
        return eq(a[2], b[2])
    if (eq(a[1], b[1]) and eq(a[2], b[2])) or (eq(a[1], b[2]) and eq(a[2], b[1])):
        return True
    sides = [side for side in (a[1], a[2], b[1], b[2]) if side[0] in ("num", "expr")]
    if len(sides) < 4:
        return False
    left, right = (("expr", f"({as_syntax(x)})-({as_syntax(y)})") for x, y in ((a[1], a[2]), (b[1], b[2])))
    return scalar_eq(left, right, True)


def as_syntax(node: Node) -> str:
    """A num or expr node as sympy syntax."""
    if node[0] == "num":
        return f"({node[1].numerator}/{node[1].denominator})"
    return str(node[1])
