"""`countdown`: reach a target number from given numbers, each used once, with + - * /.

Answers are checked by `tasks.expressions` (an `ast` whitelist, never `eval`): the expression must
use only the given numbers, each at most once (exactly once when `use_all`), and equal the target.
A well-formed expression with the wrong value earns `format_score` (0 unless configured). No expression, or
one that does not parse, is the answer's fault: an error of kind `sample_parse_error`, counted but not raising
the grader-error alarm (a countdown run's first step had 23 of 32 such answers).
"""

from __future__ import annotations

import ast
import operator
import random
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from graders.base import Grade, GraderInputError, Sample
from graders.extract import extract_boxed
from tasks.base import Item, Task, generate_splits
from tasks.expressions import ExpressionError, evaluate, literals, parse

TEMPLATE = (
    "Using the numbers {numbers}, write an arithmetic expression that equals {target}. "
    "You may use + - * / and parentheses, and must use each number exactly once. "
    "Think it through, then give only the expression inside <answer> </answer> tags, "
    "for example <answer>(1 + 2) * 3</answer>."
)
COMBINE = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.floordiv}
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.S | re.I)


def extract_expression(text: str) -> str | None:
    """The last `<answer>...</answer>`, else the last `\\boxed{}`, else the last non-empty line.

    A trailing `= N` is dropped, so `(1 + 2) * 3 = 9` gives `(1 + 2) * 3`.
    """
    tagged = _ANSWER_TAG.findall(text)
    found = tagged[-1] if tagged else extract_boxed(text)
    if found is None:
        lines = [ln for ln in text.strip().splitlines() if ln.strip()]
        found = lines[-1] if lines else None
    if found is None:
        return None
    return found.split("=", 1)[0].strip().strip("$`").strip() or None


@dataclass
class CountdownGrader:
    """Scores 1 when the expression reaches `item["target"]` using `item["numbers"]` correctly."""

    format_score: float = 0.0
    use_all: bool = True
    name: str = "countdown"

    def __post_init__(self) -> None:
        if not 0.0 <= self.format_score < 1.0:
            raise GraderInputError(f"countdown: format_score must be in [0, 1), got {self.format_score}")

    def grade(self, sample: Sample, item: Mapping[str, Any]) -> Grade:
        for key in ("numbers", "target"):
            if key not in item:
                raise GraderInputError(f"countdown: item has no '{key}' field")
        text = Sample.coerce(sample).output_text
        expression = extract_expression(text)
        if expression is None:
            return Grade.failure("no expression found", error_kind="sample_parse_error")
        try:
            used = literals(expression)
        except ExpressionError as exc:
            return Grade.failure(f"unparseable expression: {exc}", error_kind="sample_parse_error", expression=expression)
        details: dict[str, Any] = {"expression": expression}
        given = Counter(int(n) for n in item["numbers"])
        if used - given or (self.use_all and used != given):
            details["reason"] = (
                "must use each given number exactly once" if self.use_all else "unknown numbers"
            )
            return Grade(0.0, details)
        try:
            value = evaluate(expression)
        except ExpressionError as exc:
            return Grade(0.0, {**details, "reason": str(exc)})
        details["value"] = str(value)
        return Grade(1.0 if value == int(item["target"]) else self.format_score, details)


def combine(rng: random.Random, a: tuple[str, int], b: tuple[str, int]) -> tuple[str, int]:
    """`a op b` or `b op a`, the op drawn uniformly from those whose result is a positive whole number.

    Replacing a `-` or `/` that did not fit by `+` made most targets sums (72% with two numbers), and a
    policy learned to always add.
    """
    fits = {
        op: [(x, y) for x, y in ((a, b), (b, a)) if (op != "-" or x[1] > y[1]) and (op != "/" or x[1] % y[1] == 0)]
        for op in "+-*/"
    }
    op = rng.choice([op for op, orders in fits.items() if orders])
    (sx, x), (sy, y) = rng.choice(fits[op])
    return f"({sx} {op} {sy})", COMBINE[op](x, y)


def make_item(rng: random.Random, count: int, max_number: int, max_target: int) -> Item:
    """Combine random numbers in random order with random ops until the result is a valid target."""
    while True:
        numbers = [rng.randint(1, max_number) for _ in range(count)]
        atoms = [(str(n), n) for n in numbers]
        while len(atoms) > 1:
            a, b = atoms.pop(rng.randrange(len(atoms))), atoms.pop(rng.randrange(len(atoms)))
            atoms.append(combine(rng, a, b))
        expression, target = atoms[0]
        if 1 <= target <= max_target:
            break
    expression = ast.unparse(parse(expression))  # drop redundant parentheses
    return {
        "numbers": numbers,
        "target": target,
        "solution": expression,
        "puzzle": f"{sorted(numbers)} -> {target}",
    }


def countdown(
    count: int = 4,
    max_number: int = 50,
    max_target: int = 200,
    n_train: int = 2000,
    n_test: int = 200,
    seed: int = 0,
    format_score: float = 0.0,
    use_all: bool = True,
    template: str = TEMPLATE,
) -> Task:
    """Countdown puzzles; every target is reachable (the generating expression is the reference)."""
    if count < 2 or max_number < 1 or max_target < 1:
        raise ValueError(
            f"countdown: need count >= 2 and positive maxima, got {count}, {max_number}, {max_target}"
        )
    train, test = generate_splits(
        lambda rng: make_item(rng, count, max_number, max_target), n_train, n_test, seed, key="puzzle"
    )

    def prompt(item: Any) -> str:
        return template.format(numbers=", ".join(map(str, item["numbers"])), target=item["target"])

    return Task(
        name="countdown",
        train=train,
        test=test,
        prompt=prompt,
        grader=CountdownGrader(format_score=format_score, use_all=use_all),
        reference=lambda item: f"<answer>{item['solution']}</answer>",
        description=f"countdown with {count} numbers up to {max_number}, targets up to {max_target}",
    )
