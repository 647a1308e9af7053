"""How far a grader agrees with human labels: a confusion table, error rates, Cohen's kappa, correlations.

A grader that says "pass" to wrong answers trains a model to write wrong answers; this measures that before a
run does. `calibrate(grades, labels)` compares a grader's verdicts (score >= its pass threshold; a grading
error counts as a fail, as it does in training) with labelled verdicts, overall and per category. Labels are
verdicts (true/false, 1/0, "pass"/"fail", "correct"/"incorrect") or scores (any other numbers, e.g. a rater's
0-10), which pass at `label_threshold`; with scores the Pearson and Spearman correlations of grader score and
label score are reported too. `rft grade SPEC DATA --labels` prints the same numbers.

>>> from graders.base import Grade
>>> cal = calibrate([Grade(1.0), Grade(0.0), Grade(1.0), Grade(0.0)], [True, False, False, False])
>>> (cal.tp, cal.fp, cal.tn, cal.fn), round(cal.precision, 2), cal.recall, round(cal.kappa, 2)
((1, 1, 2, 0), 0.5, 1.0, 0.5)
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from graders.base import Grade, GraderInputError

__all__ = ["Calibration", "calibrate", "parse_label"]

_WORDS = {"true": True, "pass": True, "passed": True, "correct": True, "yes": True,
          "false": False, "fail": False, "failed": False, "incorrect": False, "no": False}


def parse_label(value: Any, where: str) -> bool | float:
    """A verdict (bool) or a score (float) from a label value; anything else is an error naming `where`."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    if isinstance(value, str) and value.strip().lower() in _WORDS:
        return _WORDS[value.strip().lower()]
    raise GraderInputError(
        f"{where}: label must be true/false, a number, or one of {sorted(_WORDS)}; got {value!r}"
    )


@dataclass
class Calibration:
    """Agreement of one grader with labels over `n` samples (`errors` of them grading errors)."""

    tp: int = 0  # grader passes, label passes
    fp: int = 0  # grader passes, label fails: the reward a policy can hack
    tn: int = 0
    fn: int = 0  # grader fails a right answer: lost signal
    errors: int = 0
    pearson: float | None = None
    spearman: float | None = None
    categories: dict[str, Calibration] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.tn + self.fn

    @property
    def precision(self) -> float | None:
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float | None:
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def false_positive_rate(self) -> float | None:
        return _ratio(self.fp, self.fp + self.tn)

    @property
    def false_negative_rate(self) -> float | None:
        return _ratio(self.fn, self.fn + self.tp)

    @property
    def accuracy(self) -> float | None:
        return _ratio(self.tp + self.tn, self.n)

    @property
    def kappa(self) -> float | None:
        """Cohen's kappa (Cohen 1960, eq. 1): (p_o - p_e) / (1 - p_e), p_e from each side's pass rate.
        None where both sides give every sample the same verdict (p_e = 1: agreement beyond chance is undefined)."""
        n = self.n
        if n == 0:
            return None
        observed = (self.tp + self.tn) / n
        chance = ((self.tp + self.fp) * (self.tp + self.fn) + (self.fn + self.tn) * (self.fp + self.tn)) / n**2
        return None if chance == 1 else (observed - chance) / (1 - chance)

    def to_dict(self) -> dict[str, Any]:
        keys = ("n", "tp", "fp", "tn", "fn", "errors", "precision", "recall", "false_positive_rate",
                "false_negative_rate", "accuracy", "kappa", "pearson", "spearman")
        out = {k: getattr(self, k) for k in keys}
        if self.categories:
            out["categories"] = {name: c.to_dict() for name, c in self.categories.items()}
        return out

    def table(self) -> str:
        """The confusion table and rates as plain text lines."""
        width = max(len(str(v)) for v in (self.tp, self.fp, self.tn, self.fn, "label fail"))
        lines = [
            f"{'':14}{'label pass':>{width + 2}}{'label fail':>{width + 2}}",
            f"{'grader pass':14}{self.tp:>{width + 2}}{self.fp:>{width + 2}}",
            f"{'grader fail':14}{self.fn:>{width + 2}}{self.tn:>{width + 2}}",
            "  ".join(f"{k} {_fmt(getattr(self, k))}" for k in (
                "precision", "recall", "false_positive_rate", "false_negative_rate", "accuracy", "kappa")),
        ]
        if self.pearson is not None or self.spearman is not None:
            lines.append(f"score correlation: pearson {_fmt(self.pearson)}  spearman {_fmt(self.spearman)}")
        return "\n".join(lines)


def calibrate(
    grades: Sequence[Grade],
    labels: Sequence[bool | float],
    *,
    threshold: float = 1.0,
    label_threshold: float = 1.0,
    categories: Sequence[str | None] | None = None,
) -> Calibration:
    """Compare `grades` (pass at score >= `threshold`) with `labels` (bools, or scores passing at
    `label_threshold`), overall and per category (`categories[i]` names sample i's; None: no category)."""
    if len(grades) != len(labels) or (categories is not None and len(categories) != len(grades)):
        raise GraderInputError(f"calibrate: {len(grades)} grades, {len(labels)} labels"
                               + (f", {len(categories)} categories" if categories is not None else ""))
    if not grades:
        raise GraderInputError("calibrate: no labelled samples")
    result = _count(grades, labels, threshold, label_threshold)
    for name in sorted({c for c in categories or () if c is not None}):
        picked = [i for i, c in enumerate(categories or ()) if c == name]
        result.categories[name] = _count([grades[i] for i in picked], [labels[i] for i in picked],
                                         threshold, label_threshold)
    return result


def _count(grades: Sequence[Grade], labels: Sequence[bool | float], threshold: float, label_threshold: float
           ) -> Calibration:
    cal = Calibration()
    for grade, label in zip(grades, labels):
        says = grade.error is None and grade.score >= threshold
        truth = label if isinstance(label, bool) else label >= label_threshold
        cal.errors += grade.error is not None
        if says:
            cal.tp += truth
            cal.fp += not truth
        else:
            cal.fn += truth
            cal.tn += not truth
    if not all(isinstance(label, bool) for label in labels):
        scores = [g.score for g in grades]
        values = [float(label) for label in labels]
        cal.pearson = _correlation(scores, values)
        cal.spearman = _correlation(_ranks(scores), _ranks(values))
    return cal


def _correlation(xs: list[float], ys: list[float]) -> float | None:
    """Pearson's r, or None when either side is constant (r is undefined)."""
    if len(xs) < 2 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return None
    return statistics.correlation(xs, ys)


def _ranks(values: list[float]) -> list[float]:
    """Ranks from 1 with ties given their average rank, so Pearson on ranks is Spearman's rho."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for k in range(start, end + 1):
            ranks[order[k]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
