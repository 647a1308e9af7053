"""Completions -> grades -> rewards, with the grading metrics the trainer logs every step."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from graders.base import Grade, Grader, Sample, error_kind, pass_threshold
from graders.runner import grade_batch
from rft.budget import token_usage, usage_metrics

# Where this process grades: None = this machine's pools, else a Ray address ("" starts a local Ray).
_ray_address: str | None = None


def use_grading(backend: str, address: str = "") -> None:
    """Grade every later batch of this process locally (`local`) or on the Ray cluster at `address` (`ray`)."""
    global _ray_address
    _ray_address = address if backend == "ray" else None


def grade_texts(
    grader: Grader, texts: Sequence[str], items: Sequence[Mapping[str, Any]], *, time_limit: float = 30.0
) -> tuple[list[Grade], dict[str, float]]:
    """Grade `texts[i]` against `items[i]` in parallel; returns grades in order and summary metrics.

    Metrics: reward mean/std, accuracy at the grader's pass threshold, every sub-grader's mean
    (`grader/<name>`), the number of completions, and the counts of grader errors, timeouts and (among
    the errors) samples the grader could not read, and judge tokens per grader (`tokens/<name>/prompt`,
    `/completion`). Errors and timeouts score 0 and are counted, so a broken grader shows up in the
    metrics at once.
    """
    result = grade_batch(grader, [Sample(t) for t in texts], list(items), time_limit=time_limit,
                         ray_address=_ray_address)
    scores = result.scores
    n = max(len(scores), 1)
    mean = sum(scores) / n
    threshold = pass_threshold(grader)
    metrics = {
        "reward_mean": mean,
        "reward_std": math.sqrt(sum((s - mean) ** 2 for s in scores) / n),
        "accuracy": sum(s >= threshold for s in scores) / n,
        "grader_errors": float(result.errors),
        "grader_timeouts": float(result.timeouts),
        "sample_parse_errors": float(sum(error_kind(g) == "sample_parse_error" for g in result.grades)),
        "completions": float(len(scores)),
    }
    metrics |= usage_metrics(token_usage(getattr(grader, "name", "grader"), result.grades))
    return result.grades, metrics | {f"grader/{k}": v for k, v in sorted(result.sub_means().items())}
