"""Held-out evaluation: mean score, accuracy and pass@k with 95% confidence intervals.

Every sample is written with its grade to JSONL so a number can always be traced back to outputs.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from graders.base import Grade, pass_threshold
from rft.budget import usage_from_metrics
from rft.config import EvalConfig
from rft.rollout import rollout
from rft.sampling.base import Sampler, SamplingParams
from tasks.base import Task

Z95 = 1.959963984540054


@dataclass
class Interval:
    value: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{100 * self.value:.1f}% [{100 * self.low:.1f}, {100 * self.high:.1f}]"


@dataclass
class EvalResult:
    n_items: int
    samples_per_item: int
    mean_score: Interval
    accuracy: Interval
    pass_at_k: Interval | None
    per_grader: dict[str, float] = field(default_factory=dict)
    grader_errors: int = 0
    seconds: float = 0.0
    tokens: dict[str, dict[str, int]] = field(default_factory=dict)  # judge tokens per grader (rft.budget)
    extra: dict[str, Interval] = field(default_factory=dict)  # more statistics, e.g. a two-turn evaluation's

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def wilson(successes: float, n: int) -> Interval:
    """Wilson score interval for a binomial proportion (better than normal near 0 and 1)."""
    if n == 0:
        return Interval(0.0, 0.0, 0.0)
    p = successes / n
    denom = 1 + Z95**2 / n
    centre = (p + Z95**2 / (2 * n)) / denom
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / denom
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half))


def mean_interval(values: Sequence[float]) -> Interval:
    """Mean with a normal-approximation 95% interval (standard error over items)."""
    n = len(values)
    if n == 0:
        return Interval(0.0, 0.0, 0.0)
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    half = Z95 * math.sqrt(var / n)
    return Interval(mean, max(0.0, mean - half), min(1.0, mean + half))


def summarize(grades: Sequence[Sequence[Grade]], threshold: float) -> EvalResult:
    """Aggregate grades[i][j] (item i, sample j) into the reported statistics."""
    n, k = len(grades), len(grades[0]) if grades else 0
    item_scores = [sum(g.score for g in row) / k for row in grades]
    item_pass = [sum(g.score >= threshold for g in row) / k for row in grades]
    accuracy = wilson(sum(item_pass), n) if k == 1 else mean_interval(item_pass)
    pass_k = wilson(sum(any(g.score >= threshold for g in row) for row in grades), n) if k > 1 else None
    names = sorted({name for row in grades for g in row for name in g.sub_grades})
    per_grader = {
        name: sum(g.sub_grades[name].score for row in grades for g in row if name in g.sub_grades)
        / max(1, sum(name in g.sub_grades for row in grades for g in row))
        for name in names
    }
    errors = sum(g.error is not None for row in grades for g in row)
    return EvalResult(n, k, mean_interval(item_scores), accuracy, pass_k, per_grader, errors)


def evaluate(
    sampler: Sampler, task: Task, cfg: EvalConfig, *, out_path: Path | None = None, seed: int = 0
) -> EvalResult:
    """Sample `cfg.samples` completions for each held-out item, grade them, and summarise.

    A task training on a learned reward is evaluated by its true grader (`task.eval_grader`).
    """
    start = time.perf_counter()
    if task.eval_grader is not None:
        task = replace(task, grader=task.eval_grader, eval_grader=None)
    items: list[Mapping[str, Any]] = list(task.test[: cfg.limit] if cfg.limit else task.test)
    if not items:
        raise ValueError(f"task {task.name!r} has an empty held-out split")
    params = SamplingParams(
        n=cfg.samples, temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens, seed=seed
    )
    result_rollout = rollout(sampler, task, items, params, batch_size=cfg.batch_size)
    grades = result_rollout.grade_rows()
    texts = [[c.text for c in group] for group in result_rollout.groups]
    result = summarize(grades, pass_threshold(task.grader))
    result.seconds = time.perf_counter() - start
    result.tokens = usage_from_metrics(result_rollout.metrics)
    if out_path is not None:
        write_samples(out_path, task, items, texts, grades)
    return result


def write_samples(
    path: Path, task: Task, items: Sequence[Mapping[str, Any]], texts: list[list[str]], grades: list[list[Grade]]
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    threshold = pass_threshold(task.grader)
    with path.open("w") as fh:
        for i, (item, row_t, row_g) in enumerate(zip(items, texts, grades)):
            for j, (text, grade) in enumerate(zip(row_t, row_g)):
                line = {
                    "item_index": i,
                    "sample_index": j,
                    "prompt": task.messages(item)[-1]["content"],
                    "reference": task.reference(item) if task.reference else None,
                    "output_text": text,
                    "passed": grade.score >= threshold,
                    **grade.to_dict(),
                }
                fh.write(json.dumps(line, ensure_ascii=False, default=str) + "\n")
