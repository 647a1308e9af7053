"""Completions -> grades -> rewards, with the grading metrics the trainer logs every step."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from graders.base import Grade, Grader, Sample, pass_threshold
from graders.runner import grade_batch


def grade_texts(
    grader: Grader, texts: Sequence[str], items: Sequence[Mapping[str, Any]], *, time_limit: float = 30.0
) -> tuple[list[Grade], dict[str, float]]:
    """Grade `texts[i]` against `items[i]` in parallel; returns grades in order and summary metrics.

    Grader errors and timeouts are not rewards of a different kind: they score 0 and are counted
    (`grader_errors`, `grader_timeouts`) so a broken grader shows up in the metrics at once.
    """
    result = grade_batch(grader, [Sample(t) for t in texts], list(items), time_limit=time_limit)
    grades = list(result.grades)
    return grades, summarize(grades, grader) | {
        "grader_errors": float(result.errors),
        "grader_timeouts": float(result.timeouts),
    }


def summarize(grades: Sequence[Grade], grader: Grader) -> dict[str, float]:
    """Mean/std reward, accuracy at the grader's pass threshold, and every sub-grader's mean."""
    scores = [g.score for g in grades]
    n = max(len(scores), 1)
    mean = sum(scores) / n
    threshold = pass_threshold(grader)
    out = {
        "reward_mean": mean,
        "reward_std": math.sqrt(sum((s - mean) ** 2 for s in scores) / n),
        "accuracy": sum(s >= threshold for s in scores) / n,
    }
    names = sorted({name for g in grades for name in g.sub_grades})
    for name in names:
        sub = [g.sub_grades[name].score for g in grades if name in g.sub_grades]
        out[f"grader/{name}"] = sum(sub) / len(sub)
    return out
