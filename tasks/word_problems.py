"""`word_problems`: procedurally generated grade-school word problems with one to three steps.

A person starts with some objects and then buys, receives, gives away, multiplies or shares them;
the question asks how many are left. Each item keeps a worked solution ending in `#### N`, so the
reference doubles as a demonstration of the expected answer format (`\\boxed{N}` is accepted too).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from graders.math import MathGrader
from tasks.base import Item, Task, generate_splits

INSTRUCTION = "Solve it step by step, then give the final answer as a number after '####'."
PEOPLE = [
    ("Maria", "She"),
    ("Tom", "He"),
    ("Aisha", "She"),
    ("Ken", "He"),
    ("Lena", "She"),
    ("Omar", "He"),
    ("Priya", "She"),
    ("Jonas", "He"),
    ("Sofia", "She"),
    ("Ravi", "He"),
]
THINGS = ["apples", "marbles", "stickers", "cookies", "books", "pencils", "cards", "stamps", "shells", "eggs"]
FRIENDS = ["a friend", "a neighbour", "a cousin", "a classmate", "the teacher"]

# Each step: rng, current count, pronoun, thing -> (sentence, new count, worked line) or None if it
# does not fit the current count (e.g. sharing when the count is not divisible).
Step = Callable[[random.Random, int, str, str], "tuple[str, int, str] | None"]


def _buy(rng: random.Random, n: int, he: str, thing: str) -> tuple[str, int, str]:
    k = rng.randint(2, 30)
    return f"{he} buys {k} more {thing}.", n + k, f"{n} + {k} = {n + k}"


def _give(rng: random.Random, n: int, he: str, thing: str) -> tuple[str, int, str] | None:
    if n < 2:
        return None
    k = rng.randint(1, n - 1)
    return f"{he} gives {k} {thing} to {rng.choice(FRIENDS)}.", n - k, f"{n} - {k} = {n - k}"


def _packs(rng: random.Random, n: int, he: str, thing: str) -> tuple[str, int, str]:
    p, q = rng.randint(2, 6), rng.randint(2, 12)
    sentence = f"{he} buys {p} packs of {thing} with {q} {thing} in each pack."
    return sentence, n + p * q, f"{n} + {p} * {q} = {n + p * q}"


def _times(rng: random.Random, n: int, he: str, thing: str) -> tuple[str, int, str] | None:
    m, word = rng.choice([(2, "doubles"), (3, "triples")])
    if n * m > 500:
        return None
    return f"Then the number of {thing} {he.lower()} has {word}.", n * m, f"{n} * {m} = {n * m}"


def _share(rng: random.Random, n: int, he: str, thing: str) -> tuple[str, int, str] | None:
    ways = [d for d in (2, 3, 4, 5) if n % d == 0 and n // d > 0]
    if not ways:
        return None
    d = rng.choice(ways)
    sentence = f"{he} splits the {thing} equally into {d} boxes and keeps only one box."
    return sentence, n // d, f"{n} / {d} = {n // d}"


STEPS: list[Step] = [_buy, _give, _packs, _times, _share]


def make_item(rng: random.Random, min_steps: int, max_steps: int) -> Item:
    """One problem with its answer and a worked solution ending in `#### answer`."""
    name, he = rng.choice(PEOPLE)
    thing = rng.choice(THINGS)
    n = rng.randint(5, 60)
    sentences, lines = [f"{name} has {n} {thing}."], []
    target = rng.randint(min_steps, max_steps)
    while len(lines) < target:
        step = rng.choice(STEPS)(rng, n, he, thing)
        if step is None:
            continue
        sentence, n, line = step
        sentences.append(sentence)
        lines.append(line)
    sentences.append(f"How many {thing} does {name} have now?")
    solution = "\n".join(lines) + f"\n#### {n}"
    return {"question": " ".join(sentences), "answer": str(n), "solution": solution}


def word_problems(
    min_steps: int = 1,
    max_steps: int = 3,
    n_train: int = 2000,
    n_test: int = 200,
    seed: int = 0,
    instruction: str = INSTRUCTION,
    system_prompt: str | None = None,
) -> Task:
    """Word problems graded by math equivalence of the final answer (after ####, boxed, or last number)."""
    if not 1 <= min_steps <= max_steps:
        raise ValueError(f"word_problems: need 1 <= min_steps <= max_steps, got {min_steps}, {max_steps}")
    train, test = generate_splits(
        lambda rng: make_item(rng, min_steps, max_steps), n_train, n_test, seed, key="question"
    )

    def prompt(item: Any) -> str:
        return f"{item['question']}\n{instruction}".strip()

    return Task(
        name="word_problems",
        train=train,
        test=test,
        prompt=prompt,
        grader=MathGrader(reference_field="answer", numeric_answer=True),
        reference=lambda item: item["solution"],
        system_prompt=system_prompt,
        description=f"grade-school word problems, {min_steps}-{max_steps} steps, answer after ####",
    )
