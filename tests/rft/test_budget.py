"""Judge token usage -> cost, checked by hand; and a judge budget stopping a real run, which then resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from graders.base import Grade
from rft.budget import JudgeConfig, cost, token_usage, usage_from_metrics, usage_metrics
from rft.options import ConfigError


def test_usage_is_summed_per_grader_including_sub_graders() -> None:
    judged = Grade(0.5, {"usage": {"prompt_tokens": 100, "completion_tokens": 7}})
    multi = Grade(0.5, {}, sub_grades={"style": judged, "exact": Grade(1.0)})
    cached = Grade(1.0, {"cached": True})
    usage = token_usage("judge", [judged, judged, multi, cached])
    assert usage == {"judge": {"prompt_tokens": 200, "completion_tokens": 14},
                     "style": {"prompt_tokens": 100, "completion_tokens": 7}}
    assert usage_from_metrics(usage_metrics(usage) | {"reward_mean": 0.5}) == usage


def test_cost_per_million_tokens_with_per_grader_prices() -> None:
    usage = {"judge": {"prompt_tokens": 2_000_000, "completion_tokens": 500_000},
             "style": {"prompt_tokens": 1_000_000, "completion_tokens": 0}}
    cfg = JudgeConfig(prompt_price=0.15, completion_price=0.60, prices={"style": [2.0, 8.0]})
    assert cost(usage, cfg) == pytest.approx({"judge": 2 * 0.15 + 0.5 * 0.60, "style": 2.0})
    with pytest.raises(ConfigError, match=r"judge.prices.style must be \[prompt, completion\]"):
        JudgeConfig(prices={"style": 3}).validate()
    with pytest.raises(ConfigError, match="judge.budget must be >= 0"):
        JudgeConfig(budget=-1).validate()
