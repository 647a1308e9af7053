"""Safe arithmetic for OpenAI-style `calculate_output` formulas such as `"0.7 * correct + 0.3 * style"`.

The formula is parsed with `ast` and checked against a strict whitelist (numbers, the given names,
`+ - * / ^ **`, unary minus, parentheses and a few math functions), so nothing is ever `eval`'d.
`^` means power, as in OpenAI's grader docs, not Python's xor.

>>> f = compile_formula("0.5 * a + max(b, c) ^ 2", names=["a", "b", "c"])
>>> f({"a": 1.0, "b": 0.5, "c": 0.2})
0.75
>>> compile_formula("a + d", names=["a"])
Traceback (most recent call last):
...
graders.base.GraderInputError: formula 'a + d': unknown name 'd' at column 5 (known: a)
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from graders.base import GraderInputError

_BINARY: dict[type, Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
}
_UNARY: dict[type, Callable[[float], float]] = {ast.USub: operator.neg, ast.UAdd: operator.pos}
# name -> (function, min args, max args or None for variadic)
FUNCTIONS: dict[str, tuple[Callable[..., float], int, int | None]] = {
    "min": (min, 1, None),
    "max": (max, 1, None),
    "abs": (abs, 1, 1),
    "floor": (math.floor, 1, 1),
    "ceil": (math.ceil, 1, 1),
    "exp": (math.exp, 1, 1),
    "sqrt": (math.sqrt, 1, 1),
    "log": (math.log, 1, 2),
}


@dataclass(frozen=True)
class Formula:
    """A checked formula; call it with a mapping of name -> value to evaluate.

    Evaluation errors (division by zero, `sqrt(-1)`, overflow) raise `ArithmeticError`/`ValueError`
    so the caller can turn them into a counted `Grade` error.
    """

    text: str
    tree: ast.Expression

    @property
    def names(self) -> set[str]:
        """The variable names the formula reads."""
        return {n.id for n in ast.walk(self.tree) if isinstance(n, ast.Name) and n.id not in FUNCTIONS}

    def __call__(self, values: Mapping[str, float]) -> float:
        return float(_evaluate(self.tree.body, values))


def compile_formula(text: str, names: Iterable[str]) -> Formula:
    """Parse and check `text`; every name must be in `names` and every function in `FUNCTIONS`."""
    known = set(names)
    try:
        # `^` becomes `**` before parsing so it keeps power's precedence (xor binds looser than `+`).
        tree = ast.parse(text.strip().replace("^", "**"), mode="eval")
    except SyntaxError as exc:
        raise GraderInputError(f"formula {text!r}: syntax error at column {exc.offset}: {exc.msg}") from exc
    for node in ast.walk(tree):
        _check(node, text, known)
    return Formula(text, tree)


def _check(node: ast.AST, text: str, known: set[str]) -> None:
    where = f"at column {getattr(node, 'col_offset', 0) + 1}"
    if isinstance(node, (ast.Expression, ast.Load, ast.operator, ast.unaryop)):
        if isinstance(node, ast.operator) and type(node) not in _BINARY:
            raise GraderInputError(f"formula {text!r}: operator {type(node).__name__} is not allowed")
        if isinstance(node, ast.unaryop) and type(node) not in _UNARY:
            raise GraderInputError(f"formula {text!r}: operator {type(node).__name__} is not allowed")
    elif isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise GraderInputError(f"formula {text!r}: only numbers are allowed, got {node.value!r} {where}")
    elif isinstance(node, ast.Name):
        if node.id not in known and node.id not in FUNCTIONS:
            listed = ", ".join(sorted(known)) or "none"
            raise GraderInputError(f"formula {text!r}: unknown name {node.id!r} {where} (known: {listed})")
    elif isinstance(node, ast.Call):
        _check_call(node, text, where)
    elif not isinstance(node, (ast.BinOp, ast.UnaryOp)):
        raise GraderInputError(f"formula {text!r}: {type(node).__name__} is not allowed {where}")


def _check_call(node: ast.Call, text: str, where: str) -> None:
    if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
        allowed = ", ".join(sorted(FUNCTIONS))
        raise GraderInputError(f"formula {text!r}: only the functions {allowed} may be called {where}")
    _, lo, hi = FUNCTIONS[node.func.id]
    n = len(node.args)
    if node.keywords or n < lo or (hi is not None and n > hi):
        raise GraderInputError(f"formula {text!r}: wrong arguments to {node.func.id}() {where}")


def _evaluate(node: ast.AST, values: Mapping[str, float]) -> float:
    if isinstance(node, ast.Constant):
        return float(node.value)
    if isinstance(node, ast.Name):
        return float(values[node.id])
    if isinstance(node, ast.BinOp):
        left, right = _evaluate(node.left, values), _evaluate(node.right, values)
        result = _BINARY[type(node.op)](left, right)
        if isinstance(result, complex):
            raise ValueError(f"{left} ^ {right} is not a real number")
        return result
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](_evaluate(node.operand, values))
    assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    fn = FUNCTIONS[node.func.id][0]
    return float(fn(*(_evaluate(arg, values) for arg in node.args)))
