"""Held-out statistics: Wilson and normal intervals and pass@k, against numbers derived by hand."""

from __future__ import annotations

import math

import pytest

from graders.base import Grade
from rft.eval import mean_interval, summarize, wilson


def test_wilson_interval_by_hand() -> None:
    # p = 8/20 = 0.4, z = 1.96: centre = (0.4 + z^2/40) / (1 + z^2/20) = 0.49604 / 1.19208 = 0.41612
    # half = z * sqrt(0.4*0.6/20 + z^2/1600) / 1.19208 = 1.96 * sqrt(0.012 + 0.0024010) / 1.19208 = 0.19727
    iv = wilson(8, 20)
    assert iv.value == pytest.approx(0.4)
    assert iv.low == pytest.approx(0.41612 - 0.19727, abs=2e-4)
    assert iv.high == pytest.approx(0.41612 + 0.19727, abs=2e-4)
    assert wilson(0, 10).low == 0.0 and wilson(10, 10).high == pytest.approx(1.0)
    assert wilson(0, 0).value == 0.0


def test_mean_interval_by_hand() -> None:
    # values 0, 0.5, 1: mean 0.5, sample variance 0.25, se = sqrt(0.25/3) = 0.288675, half = 1.96 * se = 0.56580
    iv = mean_interval([0.0, 0.5, 1.0])
    assert iv.value == pytest.approx(0.5)
    assert iv.low == 0.0 and iv.high == 1.0  # clipped to [0, 1]
    iv = mean_interval([0.4, 0.6])
    assert iv.low == pytest.approx(0.5 - 1.959964 * math.sqrt(0.02 / 2))


def test_summarize_pass_at_k_and_per_grader_means() -> None:
    def g(score: float, sub: float | None = None, error: str | None = None) -> Grade:
        return Grade(score, error=error, sub_grades={"fmt": Grade(sub)} if sub is not None else {})

    # item 0: one of two samples passes; item 1: none; item 2: both.
    grades = [[g(1.0, 1.0), g(0.0, 0.0)], [g(0.0, 1.0), g(0.0, 1.0, "timeout")], [g(1.0, 1.0), g(1.0, 0.0)]]
    result = summarize(grades, threshold=1.0)
    assert result.n_items == 3 and result.samples_per_item == 2
    assert result.accuracy.value == pytest.approx((0.5 + 0.0 + 1.0) / 3)
    assert result.pass_at_k.value == pytest.approx(2 / 3)
    assert result.mean_score.value == pytest.approx(0.5)
    assert result.per_grader == {"fmt": pytest.approx(4 / 6)}
    assert result.grader_errors == 1


def test_single_sample_accuracy_uses_wilson() -> None:
    result = summarize([[Grade(1.0)], [Grade(0.0)], [Grade(0.0)], [Grade(1.0)]], threshold=1.0)
    assert result.pass_at_k is None
    assert (result.accuracy.low, result.accuracy.high) == (wilson(2, 4).low, wilson(2, 4).high)
