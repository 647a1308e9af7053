"""Pre-flight check: which training prompts can give GRPO a learning signal, before training is spent.

GRPO's advantage is a sample's reward minus its group's mean (Shao et al. 2024, DeepSeekMath, eq. 3),
so a prompt whose G samples all score the same contributes zero gradient. A prompt the model always
solves or never solves is such a prompt (for pass/fail rewards). `preflight` samples the model a few
times per training prompt and reports how many prompts fall in each bucket; `write_signal_items`
keeps the prompts with mixed outcomes as a JSONL training split, which `filtered_task` loads back:

    task:
      name: rft.preflight:filtered_task
      options: {base_task: arithmetic, train_file: kept.jsonl}
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graders.base import pass_threshold
from rft.rollout import rollout
from rft.sampling.base import Sampler, SamplingParams
from tasks.base import Task, load_task
from tasks.datasets import load_items, prompt_key

# Scores closer than this count as equal: the group's reward variance is zero up to float noise.
SCORE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class PromptResult:
    """The sampled outcomes of one training prompt.

    index: position in `task.train`. scores: one score per sample. passed: samples at or above the
    grader's pass threshold. errors / truncated: samples the grader could not judge / that hit
    max_new_tokens.
    """

    index: int
    scores: tuple[float, ...]
    passed: int
    errors: int = 0
    truncated: int = 0

    @property
    def pass_rate(self) -> float:
        return self.passed / len(self.scores)

    @property
    def outcome(self) -> str:
        """'always' (every sample passed), 'never' (none did) or 'mixed'."""
        if self.passed == len(self.scores):
            return "always"
        return "never" if self.passed == 0 else "mixed"

    @property
    def varied(self) -> bool:
        """The scores differ, so GRPO's group-normalised advantage is not zero for every sample."""
        return max(self.scores) - min(self.scores) > SCORE_TOLERANCE


# Which prompts `write_signal_items` keeps: mixed pass/fail (the issue's "signal"), or any spread of
# scores (differs from "mixed" only for graded rewards such as text similarity).
KEEP: dict[str, Callable[[PromptResult], bool]] = {
    "mixed": lambda p: p.outcome == "mixed",
    "varied": lambda p: p.varied,
}


@dataclass
class PreflightReport:
    """Per-prompt outcomes and the shares that tell whether a task suits GRPO for this model."""

    prompts: list[PromptResult]
    threshold: float
    seconds: float = 0.0
    n_train: int = 0  # size of the training split the prompts were drawn from
    extra: dict[str, float] = field(default_factory=dict)  # grader metrics (errors, timeouts, sub-graders)

    def share(self, outcome: str) -> float:
        return sum(p.outcome == outcome for p in self.prompts) / len(self.prompts)

    @property
    def samples(self) -> int:
        return len(self.prompts[0].scores)

    @property
    def mean_reward(self) -> float:
        return sum(sum(p.scores) for p in self.prompts) / (len(self.prompts) * self.samples)

    @property
    def mean_pass_rate(self) -> float:
        return sum(p.pass_rate for p in self.prompts) / len(self.prompts)

    @property
    def zero_variance_share(self) -> float:
        """Share of the sampled groups (G = `samples`) whose scores are all equal: no GRPO gradient."""
        return sum(not p.varied for p in self.prompts) / len(self.prompts)

    def no_signal_estimate(self, group_size: int) -> float:
        """Expected share of GRPO groups of `group_size` samples that all pass or all fail.

        With k samples and c passes per prompt, for G <= k the chance that G samples drawn without
        replacement all pass is C(c, G) / C(k, G) (an unbiased estimate, as for pass@k); for G > k
        the plug-in p^G + (1 - p)^G with p = c / k is used.
        """
        if group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {group_size}")
        total = 0.0
        for p in self.prompts:
            k, c = len(p.scores), p.passed
            if group_size <= k:
                total += (math.comb(c, group_size) + math.comb(k - c, group_size)) / math.comb(k, group_size)
            else:
                total += p.pass_rate**group_size + (1 - p.pass_rate) ** group_size
        return total / len(self.prompts)

    def pass_histogram(self) -> list[int]:
        """counts[c] = how many prompts had exactly c passing samples."""
        counts = [0] * (self.samples + 1)
        for p in self.prompts:
            counts[p.passed] += 1
        return counts

    @property
    def errors(self) -> int:
        return sum(p.errors for p in self.prompts)

    @property
    def truncated_share(self) -> float:
        return sum(p.truncated for p in self.prompts) / (len(self.prompts) * self.samples)

    def to_dict(self, group_size: int | None = None) -> dict[str, Any]:
        group = group_size or self.samples
        return {
            "prompts": len(self.prompts),
            "n_train": self.n_train,
            "samples": self.samples,
            "pass_threshold": self.threshold,
            "always_share": self.share("always"),
            "never_share": self.share("never"),
            "mixed_share": self.share("mixed"),
            "mean_reward": self.mean_reward,
            "mean_pass_rate": self.mean_pass_rate,
            "zero_variance_share": self.zero_variance_share,
            "group_size": group,
            "no_signal_estimate": self.no_signal_estimate(group),
            "truncated_share": self.truncated_share,
            "grader_errors": self.errors,
            "pass_histogram": self.pass_histogram(),
            "grader_metrics": self.extra,
            "seconds": self.seconds,
            "per_prompt": [dataclasses.asdict(p) for p in self.prompts],
        }


def build_report(
    scores: Sequence[Sequence[float]],
    threshold: float,
    *,
    indices: Sequence[int] | None = None,
    errors: Sequence[int] | None = None,
    truncated: Sequence[int] | None = None,
) -> PreflightReport:
    """A report from scores[b][g] (prompt b, sample g); a pure function, so testable by hand."""
    if not scores or any(len(row) != len(scores[0]) or not row for row in scores):
        raise ValueError("preflight needs at least one prompt and the same (>= 1) number of samples for each")
    prompts = [
        PromptResult(
            index=indices[b] if indices is not None else b,
            scores=tuple(float(s) for s in row),
            passed=sum(s >= threshold for s in row),
            errors=errors[b] if errors is not None else 0,
            truncated=truncated[b] if truncated is not None else 0,
        )
        for b, row in enumerate(scores)
    ]
    return PreflightReport(prompts, threshold)


def choose_prompts(n_train: int, n_prompts: int, seed: int) -> list[int]:
    """A seeded random subset of training indices, in order; all of them when `n_prompts` is 0 or too big."""
    if n_prompts < 0:
        raise ValueError(f"n_prompts must be >= 0 (0 = every training prompt), got {n_prompts}")
    if n_prompts == 0 or n_prompts >= n_train:
        return list(range(n_train))
    return sorted(random.Random(seed).sample(range(n_train), n_prompts))


def preflight(
    task: Task,
    sampler: Sampler,
    *,
    n_prompts: int = 32,
    samples: int = 8,
    temperature: float = 1.0,
    max_new_tokens: int = 48,
    seed: int = 0,
    batch_size: int = 8,
) -> PreflightReport:
    """Sample `samples` completions for `n_prompts` training prompts (0 = all), grade them, and report."""
    if samples < 2:
        raise ValueError(f"samples must be >= 2 to tell mixed outcomes from constant ones, got {samples}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not task.train:
        raise ValueError(f"task {task.name!r} has an empty training split")
    start = time.perf_counter()
    indices = choose_prompts(len(task.train), n_prompts, seed)
    items = [task.train[i] for i in indices]
    params = SamplingParams(n=samples, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed)
    result = rollout(sampler, task, items, params, batch_size=batch_size, seed_per_batch=True)
    rows, metrics = result.grade_rows(), result.metrics
    truncated = [sum(c.truncated for c in group) for group in result.groups]
    report = build_report(
        [[g.score for g in row] for row in rows],
        pass_threshold(task.grader),
        indices=indices,
        errors=[sum(g.error is not None for g in row) for row in rows],
        truncated=truncated,
    )
    report.n_train = len(task.train)
    report.extra = metrics
    report.seconds = time.perf_counter() - start
    return report


def write_signal_items(path: str | Path, task: Task, report: PreflightReport, keep: str = "mixed") -> int:
    """Write the checked training items that pass `KEEP[keep]` to JSONL; returns how many were written.

    Each line is the original item with its fields unchanged, plus `messages` (the rendered prompt)
    when the item has none, so the file is also a valid dataset for `tasks.datasets.task_from_files`.
    """
    if keep not in KEEP:
        raise ValueError(f"keep must be one of {sorted(KEEP)}, got {keep!r}")
    kept = [task.train[p.index] for p in report.prompts if KEEP[keep](p)]
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as fh:
        for item in kept:
            line = dict(item) if "messages" in item else {**item, "messages": task.messages(item)}
            fh.write(json.dumps(line, ensure_ascii=False) + "\n")
    return len(kept)


def filtered_task(base_task: str, train_file: str, **options: Any) -> Task:
    """`base_task` (loaded with `options`) with its training split replaced by the items in `train_file`.

    The held-out split, prompt builder and grader stay the task's own; training items whose prompt
    is in the held-out split (possible when `options` differ from the pre-flight run's) are dropped
    and listed in `issues`.
    """
    base = load_task(base_task, **options)
    items, issues = load_items(train_file)

    def key(item: Mapping[str, Any]) -> str:
        return prompt_key({"messages": base.messages(item)})

    held_out = {key(item) for item in base.test}
    train = [item for item in items if key(item) not in held_out]
    if len(train) < len(items):
        issues.append(f"{train_file}: {len(items) - len(train)} item(s) are in the held-out split, dropped")
    if not train:
        raise ValueError(f"{train_file}: no usable training items for task {base.name!r} ({issues[:3]})")
    return dataclasses.replace(
        base,
        train=train,
        issues=[*base.issues, *issues],
        description=f"{base.description} (train filtered by preflight: {train_file})".strip(),
    )
