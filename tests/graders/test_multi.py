"""multi grader: weights (0 = report only), formulas with clipping, and surfaced sub-grader errors."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from graders.base import Grade, GraderInputError, Sample
from graders.json_schema import JsonSchemaGrader
from graders.multi import MultiGrader
from graders.spec import load_grader
from graders.string import ExactMatchGrader, StringCheckGrader

ITEM = {"answer": "Paris"}


class Fixed:
    """A grader that always returns the same score (a plain, real grader for combining)."""

    def __init__(self, name: str, score: float) -> None:
        self.name, self.score = name, score

    def grade(self, sample: Sample, item: Mapping[str, Any]) -> Grade:
        return Grade(self.score)


class Broken:
    name = "broken"

    def grade(self, sample: Sample, item: Mapping[str, Any]) -> Grade:
        raise RuntimeError("disk full")


class Judge:
    """A grader with a native `agrade`, as model judges have."""

    name = "judge"

    def grade(self, sample: Sample, item: Mapping[str, Any]) -> Grade:
        return Grade(0.5, {"via": "grade"})

    async def agrade(self, sample: Sample, item: Mapping[str, Any]) -> Grade:
        await asyncio.sleep(0)
        return Grade(0.5, {"via": "agrade"})


def _fixed(**scores: float) -> dict[str, Fixed]:
    return {k: Fixed(k, v) for k, v in scores.items()}


@pytest.mark.parametrize(
    ("scores", "kwargs", "expected"),
    [
        ({"a": 1.0, "b": 0.0}, {}, 0.5),  # equal weights by default
        ({"a": 1.0, "b": 0.5, "c": 0.0}, {"weights": {"a": 2, "b": 1, "c": 0}}, 2.5 / 3),  # c reported only
        ({"a": 1.0, "b": 0.5}, {"weights": {"a": 1}}, 1.0),  # unlisted weight = 0
        ({"a": 0.2, "b": 0.6}, {"calculate_output": "0.5 * a + 0.5 * b"}, 0.4),
        ({"a": 0.2, "b": 0.6}, {"calculate_output": "min(a, b) * 2 + max(a, b) ^ 2"}, 0.76),
        ({"a": 0.9, "b": 0.8}, {"calculate_output": "a + b"}, 1.0),  # clipped from 1.7
        ({"a": 0.1, "b": 0.8}, {"calculate_output": "a - b"}, 0.0),  # clipped from -0.7
    ],
)
def test_combination(scores: dict[str, float], kwargs: dict, expected: float) -> None:
    grade = MultiGrader("m", _fixed(**scores), **kwargs).grade(Sample("x"), ITEM)
    assert grade.score == pytest.approx(expected)
    assert {k: g.score for k, g in grade.sub_grades.items()} == scores
    assert grade.error is None
    assert set(grade.details["latency_s"]) == set(scores)


def test_clipping_keeps_the_raw_value_in_details() -> None:
    grade = MultiGrader("m", _fixed(a=0.9, b=0.8), calculate_output="a + b").grade(Sample("x"), ITEM)
    assert grade.details["unclipped"] == pytest.approx(1.7)


def test_sub_grader_exception_is_surfaced_and_counted_not_hidden() -> None:
    grader = MultiGrader("m", {"ok": Fixed("ok", 1.0), "bad": Broken()})
    grade = grader.grade(Sample("x"), ITEM)
    assert grade.error == "bad: RuntimeError: disk full"
    assert grade.sub_grades["bad"].error == "RuntimeError: disk full"
    assert grade.sub_grades["ok"].score == 1.0
    assert grade.score == 0.5


def test_sub_grade_error_with_weight_zero_is_reported_but_not_counted() -> None:
    grader = MultiGrader("m", {"ok": Fixed("ok", 1.0), "bad": Broken()}, weights={"ok": 1, "bad": 0})
    grade = grader.grade(Sample("x"), ITEM)
    assert (grade.score, grade.error) == (1.0, None)
    assert grade.sub_grades["bad"].error == "RuntimeError: disk full"


def test_unparseable_sub_grade_surfaces_in_formula_mode() -> None:
    grader = MultiGrader(
        "m",
        {"json": JsonSchemaGrader(schema={"type": "object"}), "exact": ExactMatchGrader()},
        calculate_output="0.5 * json + 0.5 * exact",
    )
    grade = grader.grade(Sample("Paris"), ITEM)
    assert grade.score == 0.5
    assert grade.error == "json: unparseable"


def test_formula_runtime_error_is_a_counted_error() -> None:
    grade = MultiGrader("m", _fixed(a=1.0, b=0.0), calculate_output="a / b").grade(Sample("x"), ITEM)
    assert grade.score == 0.0
    assert grade.error == "calculate_output: float division by zero"
    assert set(grade.sub_grades) == {"a", "b"}


def test_misconfiguration_inside_a_sub_grader_is_raised() -> None:
    grader = MultiGrader("m", {"s": StringCheckGrader(reference="{{item.city}}")})
    with pytest.raises(GraderInputError, match="'item.city' is missing"):
        grader.grade(Sample("x"), ITEM)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"graders": {}}, "at least one sub-grader"),
        ({"calculate_output": "a", "weights": {"a": 1}}, "not both"),
        ({"weights": {"z": 1}}, "weights.z: no sub-grader named 'z'"),
        ({"weights": {"a": -1}}, "weights.a must be >= 0"),
        ({"weights": {"a": 0, "b": 0}}, "at least one weight must be positive"),
        ({"calculate_output": "a + c"}, "unknown name 'c'"),
    ],
)
def test_bad_configuration(kwargs: dict, message: str) -> None:
    kwargs.setdefault("graders", _fixed(a=1.0, b=1.0))
    with pytest.raises(GraderInputError, match=message):
        MultiGrader("m", **kwargs)


def test_agrade_uses_native_async_sub_graders_and_matches_grade() -> None:
    grader = MultiGrader("m", {"judge": Judge(), "exact": ExactMatchGrader()}, calculate_output="judge + exact")
    assert grader.io_bound is True
    via_async = asyncio.run(grader.agrade(Sample("paris"), ITEM))
    via_sync = grader.grade(Sample("paris"), ITEM)
    assert via_async.score == via_sync.score == 1.0  # 0.5 + 1.0 clipped
    assert via_async.sub_grades["judge"].details["via"] == "agrade"
    assert MultiGrader("m", {"exact": ExactMatchGrader()}).io_bound is False


def test_from_spec_with_weights_and_a_single_grader_object() -> None:
    spec = {
        "type": "multi",
        "name": "m",
        "graders": {
            "exact": {"type": "exact_match", "reference": "{{item.answer}}"},
            "mention": {"type": "string_check", "input": "{{sample.output_text}}",
                        "reference": "{{item.answer}}", "operation": "ilike"},
        },
        "weights": {"exact": 3, "mention": 1},
    }
    assert load_grader(spec).grade("It is paris", ITEM).score == 0.25
    single = {"type": "multi", "graders": {"type": "exact_match", "name": "em"}, "calculate_output": "em"}
    assert load_grader(single).grade("paris", ITEM).score == 1.0
