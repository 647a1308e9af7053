"""Rewards from grades: per-grader means, accuracy at the pass threshold, and counted grader errors."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from graders.base import Grade, Sample
from graders.multi import MultiGrader
from graders.spec import load_grader
from graders.string import StringCheckGrader
from rft.config import ConfigError, RunConfig
from rft.rewards import grade_texts
from rft.run import load_checked_task


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


def test_non_json_output_is_a_counted_error_in_the_reward_path() -> None:
    """OpenAI's multi over JSON fields: a sample that is not JSON scores 0 and is counted, the batch goes on."""
    grader = load_grader({
        "type": "multi",
        "graders": {
            "name": {"name": "name_grader", "type": "text_similarity", "input": "{{sample.output_json.name}}",
                     "reference": "{{item.name}}", "evaluation_metric": "fuzzy_match", "pass_threshold": 0.9},
            "email": {"name": "email_grader", "type": "string_check", "input": "{{sample.output_json.email}}",
                      "reference": "{{item.email}}", "operation": "eq"},
        },
        "calculate_output": "(name + email) / 2",
    })
    item = {"name": "John Doe", "email": "john.doe@gmail.com"}
    texts = ['{"name": "John Doe", "email": "john.doe@gmail.com"}', "My name is John Doe.", '{"name": "john doe"}']
    grades, metrics = grade_texts(grader, texts, [item] * 3)
    # line 3: the name matches after default_process (1.0), the email is missing (0, counted): (1 + 0) / 2
    assert [g.score for g in grades] == [1.0, 0.0, 0.5]
    assert metrics["grader_errors"] == 2.0
    assert grades[2].error == (
        "email: sample_parse_error: email_grader.input: template reference '{{sample.output_json.email}}': "
        "'sample.output_json.email' is missing"
    )


def test_item_lacking_a_grader_field_fails_when_the_task_is_loaded(tmp_path: Path) -> None:
    rows = [{"prompt": "Who wrote it?", "name": "Ada"}, {"prompt": "Who built it?", "nom": "Bob"}]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "test.jsonl").write_text(json.dumps({"prompt": "Who ran it?", "name": "Cy"}) + "\n")
    (tmp_path / "grader.json").write_text(json.dumps({
        "type": "string_check", "name": "who", "input": "{{sample.output_text}}", "reference": "{{item.name}}",
        "operation": "eq"}))
    cfg = RunConfig()
    cfg.task.name = str(tmp_path)
    with pytest.raises(ConfigError, match=r"train item 1: who.reference: template reference '\{\{item.name\}\}'"):
        load_checked_task(cfg)
