"""Judge token usage turned into money, and a budget that stops a run cleanly before it is exceeded.

Every judge call records its token usage in its grade's details (`graders.judge`); `token_usage` sums
it per grader name (a multi grader's judges under their own keys), `cost` prices it with the `judge:`
config section. The run lifecycle (`rft.run`) adds each step's and each evaluation's cost to the
run's total, logs `cost/*`, and stops before a step whose cost (estimated as the last step's) would
take the total over `judge.budget`: the checkpoint is written and the reason is in `summary.json`;
`--resume --judge.budget <more>` continues.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from graders.base import Grade
from rft.options import ConfigError, opt

Usage = dict[str, dict[str, int]]  # grader name -> {"prompt_tokens": n, "completion_tokens": n}


@dataclass
class JudgeConfig:
    prompt_price: float = opt(0.0, "USD per million judge prompt tokens (every grader)")
    completion_price: float = opt(0.0, "USD per million judge completion tokens (every grader)")
    prices: dict[str, Any] = opt(factory=dict, help="per grader name: [prompt, completion] USD per million "
                                                     "tokens, overriding the two prices above")
    budget: float = opt(0.0, "USD the run may spend on judge calls (training and evaluation); 0 = no limit")

    def validate(self) -> None:
        for name, pair in self.prices.items():
            if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, (int, float)) and p >= 0
                                                                      for p in pair)):
                raise ConfigError(f"judge.prices.{name} must be [prompt, completion] USD per million tokens, "
                                  f"got {pair!r}")
        for key in ("prompt_price", "completion_price", "budget"):
            if getattr(self, key) < 0:
                raise ConfigError(f"judge.{key} must be >= 0, got {getattr(self, key)}")


def token_usage(grader_name: str, grades: Iterable[Grade]) -> Usage:
    """Judge tokens per grader name: a grade's own `details["usage"]` under `grader_name`, each sub-grade's
    under its key (cached replies carry no usage: they cost nothing)."""
    out: Usage = {}

    def add(name: str, grade: Grade) -> None:
        usage = grade.details.get("usage") if isinstance(grade.details, Mapping) else None
        if isinstance(usage, Mapping):
            into = out.setdefault(name, {"prompt_tokens": 0, "completion_tokens": 0})
            for key in into:
                into[key] += int(usage.get(key, 0) or 0)
        for key, sub in grade.sub_grades.items():
            add(key, sub)

    for grade in grades:
        add(grader_name, grade)
    return out


def usage_metrics(usage: Usage) -> dict[str, float]:
    """`tokens/<grader>/prompt` and `/completion` for the metrics line."""
    return {f"tokens/{name}/{kind.split('_')[0]}": float(n) for name, u in usage.items() for kind, n in u.items()}


def usage_from_metrics(metrics: Mapping[str, Any]) -> Usage:
    """The inverse of `usage_metrics`, for a step's logged metrics."""
    out: Usage = {}
    for key, value in metrics.items():
        parts = key.split("/")
        if len(parts) == 3 and parts[0] == "tokens" and parts[2] in ("prompt", "completion"):
            out.setdefault(parts[1], {"prompt_tokens": 0, "completion_tokens": 0})[f"{parts[2]}_tokens"] = int(value)
    return out


def cost(usage: Usage, cfg: JudgeConfig) -> dict[str, float]:
    """USD per grader name: tokens x price per million (`judge.prices[name]` where given)."""
    out = {}
    for name, u in usage.items():
        prompt, completion = cfg.prices.get(name, (cfg.prompt_price, cfg.completion_price))
        out[name] = (u["prompt_tokens"] * prompt + u["completion_tokens"] * completion) / 1e6
    return out
