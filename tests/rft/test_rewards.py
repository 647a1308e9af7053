"""Rewards from grades: per-grader means, accuracy at the pass threshold, and counted grader errors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from graders.base import Grade, Sample
from graders.multi import MultiGrader
from graders.string import StringCheckGrader
from rft.rewards import grade_texts


class FlakyGrader:
    """Raises on one input: the trainer must count it as an error, not crash or lose the batch."""

    name = "flaky"

    def grade(self, sample: Sample, item: Mapping[str, Any]) -> Grade:
        if sample.output_text == "boom":
            raise RuntimeError("grader bug")
        return Grade(1.0)


def test_multi_grader_metrics_by_hand() -> None:
    grader = MultiGrader(
        name="both",
        graders={
            "exact": StringCheckGrader("exact", "{{sample.output_text}}", "{{item.answer}}", "eq"),
            "mentions": StringCheckGrader("mentions", "{{sample.output_text}}", "{{item.answer}}", "ilike"),
        },
        weights={"exact": 3.0, "mentions": 1.0},
    )
    items = [{"answer": "Paris"}] * 4
    grades, metrics = grade_texts(grader, ["Paris", "paris!", "It is PARIS", "Rome"], items)
    # exact: 1, 0, 0, 0; mentions: 1, 1, 1, 0 -> weighted (3e + m) / 4: 1, 0.25, 0.25, 0
    assert [g.score for g in grades] == [1.0, 0.25, 0.25, 0.0]
    assert metrics["reward_mean"] == pytest.approx(0.375)
    assert metrics["reward_std"] == pytest.approx((((0.625**2) + 2 * (0.125**2) + 0.375**2) / 4) ** 0.5)
    assert metrics["accuracy"] == 0.25
    assert metrics["grader/exact"] == 0.25 and metrics["grader/mentions"] == 0.75
    assert metrics["grader_errors"] == 0.0


def test_raising_grader_is_a_counted_error() -> None:
    grades, metrics = grade_texts(FlakyGrader(), ["fine", "boom", "fine"], [{}] * 3)
    assert [g.score for g in grades] == [1.0, 0.0, 1.0]
    assert grades[1].error and "grader bug" in grades[1].error
    assert metrics["grader_errors"] == 1.0
