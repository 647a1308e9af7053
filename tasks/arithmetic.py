"""`arithmetic`: procedurally generated integer arithmetic, the project's default training task.

Difficulty knobs: `digits` (operand size, an int or an inclusive `(lo, hi)` range of digit counts),
`ops` (a subset of "+-*") and `steps` (how many operations are chained, evaluated with the usual
precedence). The default, two-digit addition, sits well below the ceiling of SmolLM2-135M-Instruct
(about a quarter answered correctly, greedy) while still giving GRPO groups some reward signal;
adding subtraction (`ops="+-"`) drops it to about one in twenty.
"""

from __future__ import annotations

import random
from typing import Any

from graders.math import MathGrader
from tasks.base import Item, Task, generate_splits
from tasks.expressions import evaluate

TEMPLATE = "What is {expression}? Reply with just the number."


def _digit_range(digits: int | tuple[int, int]) -> tuple[int, int]:
    lo, hi = (digits, digits) if isinstance(digits, int) else tuple(digits)
    if not 1 <= lo <= hi:
        raise ValueError(f"arithmetic: digits must be >= 1 (an int or a (lo, hi) range), got {digits!r}")
    return lo, hi


def _operand(rng: random.Random, lo: int, hi: int) -> int:
    n = rng.randint(lo, hi)
    return rng.randint(0 if n == 1 else 10 ** (n - 1), 10**n - 1)


def make_item(rng: random.Random, digits: tuple[int, int], ops: str, steps: int) -> Item:
    """One expression such as `37 - 12 * 4` with its exact integer value as the answer."""
    parts = [str(_operand(rng, *digits))]
    for _ in range(steps):
        parts += [rng.choice(ops), str(_operand(rng, *digits))]
    expression = " ".join(parts)
    return {"expression": expression, "answer": str(evaluate(expression))}


def arithmetic(
    digits: int | tuple[int, int] = 2,
    ops: str = "+",
    steps: int = 1,
    n_train: int = 2000,
    n_test: int = 200,
    seed: int = 0,
    template: str = TEMPLATE,
    system_prompt: str | None = None,
) -> Task:
    """Integer arithmetic graded by math equivalence of the final number; `template` uses {expression}."""
    span = _digit_range(digits)
    if not ops or set(ops) - set("+-*"):
        raise ValueError(f"arithmetic: ops must be a non-empty subset of '+-*', got {ops!r}")
    if steps < 1:
        raise ValueError(f"arithmetic: steps must be >= 1, got {steps}")
    if "{expression}" not in template:
        raise ValueError(f"arithmetic: template must contain {{expression}}, got {template!r}")
    size = str(span[0]) if span[0] == span[1] else f"{span[0]} to {span[1]}"
    train, test = generate_splits(
        lambda rng: make_item(rng, span, ops, steps), n_train, n_test, seed, key="expression"
    )

    def prompt(item: Any) -> str:
        return template.format(expression=item["expression"])

    return Task(
        name="arithmetic",
        train=train,
        test=test,
        prompt=prompt,
        grader=MathGrader(reference_field="answer", numeric_answer=True),
        reference=lambda item: item["answer"],
        system_prompt=system_prompt,
        description=f"integer arithmetic: {size}-digit operands, ops {ops!r}, {steps} step(s)",
    )
