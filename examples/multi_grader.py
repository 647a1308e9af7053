# rft tasks show examples/multi_grader.py:task -o n_train=50 -o n_test=5
"""Correctness plus format: word problems scored 0.9 for the right number and 0.1 for using '####'.

Both sub-scores are reported separately (`Grade.sub_grades`), so metrics show each one.
"""

from dataclasses import replace
from typing import Any

from graders.math import MathGrader
from graders.multi import MultiGrader
from graders.string import StringCheckGrader
from tasks import Task
from tasks.word_problems import word_problems


def task(**options: Any) -> Task:
    """The built-in `word_problems` with a two-part grader; `options` go to `word_problems`."""
    grader = MultiGrader(
        "correct_and_formatted",
        {
            "correct": MathGrader(reference_field="answer"),
            "format": StringCheckGrader("format", reference="####", operation="like"),
        },
        weights={"correct": 0.9, "format": 0.1},
    )
    return replace(word_problems(**options), name="word_problems_multi", grader=grader)
