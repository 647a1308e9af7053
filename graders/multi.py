"""OpenAI's `multi` grader: named sub-graders combined by weights or a `calculate_output` formula.

Every sub-grade is reported in `Grade.sub_grades` (weight 0 = report it, don't count it). A sub-grader
error is surfaced as the multi grade's `error` (so it is counted), never hidden in a silent 0.

>>> from graders.base import Sample
>>> from graders.string import StringCheckGrader
>>> g = MultiGrader("both", {
...     "exact": StringCheckGrader("exact", reference="{{item.answer}}", operation="eq"),
...     "mention": StringCheckGrader("mention", reference="{{item.answer}}", operation="ilike"),
... }, calculate_output="0.25 * exact + 0.75 * mention")
>>> grade = g.grade(Sample("It is Paris"), {"answer": "paris"})
>>> grade.score, {k: v.score for k, v in grade.sub_grades.items()}
(0.75, {'exact': 0.0, 'mention': 1.0})
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from graders.base import Grade, Grader, GraderInputError, Sample, agrade, error_kind
from graders.formula import Formula, compile_formula
from graders.templates import prepare


def _failed(exc: Exception) -> Grade:
    if isinstance(exc, GraderInputError):
        raise exc
    return Grade.from_exception(exc)


def is_io_bound(grader: Any) -> bool:
    """Whether a grader should run on threads/asyncio (it waits on IO) rather than a process pool."""
    return bool(getattr(grader, "io_bound", hasattr(grader, "agrade")))


@dataclass
class MultiGrader:
    """Combine named sub-graders by `calculate_output` (a formula over their names) or `weights`.

    With neither, sub-graders are averaged with equal weights. The result is clipped to [0, 1].
    """

    name: str
    graders: Mapping[str, Grader]
    calculate_output: str | None = None
    weights: Mapping[str, float] | None = None
    pass_threshold: float = 1.0

    def __post_init__(self) -> None:
        if not self.graders:
            raise GraderInputError(f"{self.name}.graders: at least one sub-grader is needed")
        nested = [key for key, g in self.graders.items() if isinstance(g, MultiGrader)]
        if nested:
            raise GraderInputError(f"{self.name}.graders.{nested[0]}: a multi grader cannot contain another multi")
        if self.calculate_output is not None and self.weights is not None:
            raise GraderInputError(f"{self.name}: give calculate_output or weights, not both")
        self._formula: Formula | None = None
        if self.calculate_output is not None:
            self._formula = compile_formula(self.calculate_output, self.graders)
        weights = dict(self.weights) if self.weights is not None else {k: 1.0 for k in self.graders}
        for key, w in weights.items():
            if key not in self.graders:
                raise GraderInputError(f"{self.name}.weights.{key}: no sub-grader named {key!r}")
            if not w >= 0:
                raise GraderInputError(f"{self.name}.weights.{key} must be >= 0, got {w}")
        if self._formula is None and sum(weights.values()) <= 0:
            raise GraderInputError(f"{self.name}.weights: at least one weight must be positive")
        self._weights = {k: float(weights.get(k, 0.0)) for k in self.graders}
        self.io_bound = any(is_io_bound(g) for g in self.graders.values())
        self.cheap = all(getattr(g, "cheap", False) for g in self.graders.values())

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> MultiGrader:
        from graders.spec import load_grader, sub_specs

        graders = {key: load_grader(sub) for key, sub in sub_specs(spec).items()}
        return cls(
            spec.get("name", "multi"),
            graders,
            spec.get("calculate_output"),
            spec.get("weights"),
            spec.get("pass_threshold", 1.0),
        )

    def grade(self, sample: Sample, item: Mapping[str, Any]) -> Grade:
        sample, item = prepare(sample, item)
        subs: dict[str, Grade] = {}
        latency: dict[str, float] = {}
        for key, grader in self.graders.items():
            start = time.perf_counter()
            try:
                subs[key] = grader.grade(sample, item)
            except Exception as exc:  # noqa: BLE001 - one failing sub-grader must not hide the others
                subs[key] = _failed(exc)
            latency[key] = time.perf_counter() - start
        return self._combine(subs, latency)

    async def agrade(self, sample: Sample, item: Mapping[str, Any]) -> Grade:
        """Run the sub-graders concurrently (useful when some are model judges)."""
        sample, item = prepare(sample, item)

        async def one(grader: Grader) -> tuple[Grade, float]:
            start = time.perf_counter()
            try:
                result = await agrade(grader, sample, item)
            except Exception as exc:  # noqa: BLE001 - surfaced in the combined grade
                result = _failed(exc)
            return result, time.perf_counter() - start

        done = await asyncio.gather(*(one(g) for g in self.graders.values()))
        subs = {key: grade for key, (grade, _) in zip(self.graders, done)}
        return self._combine(subs, {key: t for key, (_, t) in zip(self.graders, done)})

    def _combine(self, subs: dict[str, Grade], latency: dict[str, float]) -> Grade:
        details: dict[str, Any] = {"scores": {k: g.score for k, g in subs.items()}, "latency_s": latency}
        counted = self._weights if self._formula is None else dict.fromkeys(self._formula.names, 1.0)
        failed = {k: g for k, g in subs.items() if g.error and counted.get(k, 0.0) > 0}
        errors = [f"{k}: {g.error}" for k, g in failed.items()]
        if failed:
            details["error_kind"] = error_kind(next(iter(failed.values())))
        if self._formula is not None:
            try:
                raw = self._formula({k: g.score for k, g in subs.items()})
            except (ArithmeticError, ValueError) as exc:
                return Grade(0.0, details, f"calculate_output: {exc}", subs)
        else:
            total = sum(self._weights.values())
            raw = sum(self._weights[k] * g.score for k, g in subs.items()) / total
        if math.isnan(raw):
            return Grade(0.0, details, "calculate_output: result is NaN", subs)
        if not 0.0 <= raw <= 1.0:
            details["unclipped"] = raw
        return Grade(min(1.0, max(0.0, raw)), details, "; ".join(errors) or None, subs)
