"""Grader calibration against labels, checked on confusion tables worked out by hand."""

from __future__ import annotations

import math

import pytest

from graders.base import Grade, GraderInputError
from graders.calibration import calibrate, parse_label

SCORES = [1, 1, 1, 0, 0, 1, 0, 0, 1, 0]
LABELS = [True, True, False, True, False, False, False, False, True, False]
CATEGORIES = ["a"] * 5 + ["b"] * 5


def test_hand_worked_confusion_table_rates_and_kappa() -> None:
    # pairs (grader, label): TP TP FP FN TN | FP TN TN TP TN
    cal = calibrate([Grade(float(s)) for s in SCORES], LABELS, categories=CATEGORIES)
    assert (cal.tp, cal.fp, cal.tn, cal.fn, cal.n, cal.errors) == (3, 2, 4, 1, 10, 0)
    assert (cal.precision, cal.recall, cal.accuracy) == (0.6, 0.75, 0.7)
    assert math.isclose(cal.false_positive_rate, 1 / 3) and cal.false_negative_rate == 0.25
    # p_o = 0.7; p_e = (5 * 4 + 5 * 6) / 100 = 0.5; kappa = 0.2 / 0.5
    assert math.isclose(cal.kappa, 0.4)
    a, b = cal.categories["a"], cal.categories["b"]
    assert (a.tp, a.fp, a.tn, a.fn) == (2, 1, 1, 1) and (b.tp, b.fp, b.tn, b.fn) == (1, 1, 3, 0)
    assert math.isclose(a.kappa, (0.6 - 13 / 25) / (1 - 13 / 25))  # = 1/6
    assert math.isclose(b.kappa, (0.8 - 14 / 25) / (1 - 14 / 25))  # = 6/11
    assert cal.pearson is None and "grader pass" in cal.table() and "kappa 0.400" in cal.table()


def test_score_labels_give_correlations_and_pass_at_their_threshold() -> None:
    grades = [Grade(0.0), Grade(0.5), Grade(1.0), Grade(1.0)]
    cal = calibrate(grades, [0.0, 2.0, 8.0, 10.0], label_threshold=7)
    assert (cal.tp, cal.tn, cal.fp, cal.fn) == (2, 2, 0, 0) and cal.kappa == 1.0
    assert math.isclose(cal.pearson, 6.5 / math.sqrt(0.6875 * 68))  # 0.9507
    assert math.isclose(cal.spearman, 3 / math.sqrt(10))  # ranks [1, 2, 3.5, 3.5] vs [1, 2, 3, 4]


def test_grading_errors_count_as_fails_and_are_counted() -> None:
    cal = calibrate([Grade(1.0, error="judge timed out"), Grade(1.0)], [True, True])
    assert (cal.tp, cal.fn, cal.errors) == (1, 1, 1) and cal.kappa == 0.0  # p_o = p_e = 0.5
    assert calibrate([Grade(1.0), Grade(1.0)], [True, True]).kappa is None  # both always pass: p_e = 1


def test_labels_and_misuse() -> None:
    assert [parse_label(v, "x") for v in (True, 0, "Pass", " incorrect ", 7.5)] == [True, 0.0, True, False, 7.5]
    with pytest.raises(GraderInputError, match="data.jsonl:3: label must be"):
        parse_label("maybe", "data.jsonl:3")
    with pytest.raises(GraderInputError, match="2 grades, 1 labels"):
        calibrate([Grade(1.0), Grade(0.0)], [True])
    with pytest.raises(GraderInputError, match="no labelled samples"):
        calibrate([], [])
