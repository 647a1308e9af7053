"""Two attempts per prompt, and how often the second one fixes or breaks the first (SCoRe's metrics).

The model answers the task prompt (attempt 1); the conversation then continues with its answer as the
assistant turn and a user turn asking it to find and correct any error (the instruction); it answers
again (attempt 2). Both attempts are graded by the task's grader against the same item.

Kumar et al. 2024 ("Training Language Models to Self-Correct via Reinforcement Learning", arXiv
2409.12917, sec. 3) report, over held-out problems: Accuracy@t1, Accuracy@t2, Δ(t1, t2) = Acc@t2 -
Acc@t1, Δi→c (share wrong at t1 and right at t2) and Δc→i (right at t1, wrong at t2); Δ(t1, t2) =
Δi→c - Δc→i. The proportions get Wilson intervals; Δ(t1, t2), a difference of two proportions
measured on the same problems, gets Newcombe's square-and-add interval for paired data
(`paired_difference`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from graders.base import Grade, pass_threshold
from rft.config import EvalConfig
from rft.eval import EvalResult, Interval, summarize, wilson
from rft.rollout import Rollout, rollout
from rft.sampling.base import Sampler, SamplingParams
from tasks.base import Messages, Task


def second_turn(messages: Messages, attempt: str, instruction: str) -> Messages:
    """The conversation that asks for attempt 2: the task prompt, attempt 1 as the assistant, the instruction."""
    return [*messages, {"role": "assistant", "content": attempt}, {"role": "user", "content": instruction}]


@dataclass
class TwoAttempts:
    """B prompts x n first attempts, and one second attempt after each.

    first: the task prompts' rollout, groups[b][g]. second: B*n items (each first attempt's item, in
    `first.completions` order), one completion each, so second row b*n + g answers first row b*n + g.
    """

    first: Rollout
    second: Rollout

    def passed(self, threshold: float) -> tuple[list[bool], list[bool]]:
        """Whether each first and each second attempt (B*n each, row-aligned) scored at least `threshold`."""
        return [g.score >= threshold for g in self.first.grades], [g.score >= threshold for g in self.second.grades]

    def metrics(self, threshold: float) -> dict[str, float]:
        """Each attempt's rollout metrics under `t1/` and `t2/`, and the transitions between them."""
        counts = Transitions.of(*self.passed(threshold))
        out = {f"t1/{k}": v for k, v in self.first.metrics.items()}
        out |= {f"t2/{k}": v for k, v in self.second.metrics.items()}
        return out | {"delta": (counts.fixed - counts.broken) / counts.n, "delta_i_to_c": counts.fixed / counts.n,
                      "delta_c_to_i": counts.broken / counts.n}


def two_attempt_rollout(
    sampler: Sampler,
    task: Task,
    items: Sequence[Mapping[str, Any]],
    params: SamplingParams,
    instruction: str,
    *,
    batch_size: int | None = None,
) -> TwoAttempts:
    """`params.n` first attempts per item, then one second attempt after each, all graded.

    `batch_size`: prompts per generate call; second attempts, each with its own conversation, are
    sampled `batch_size * n` at a time, as many rows as a first-attempt call generates.
    """
    first = rollout(sampler, task, items, params, batch_size=batch_size)
    repeated = [item for item in items for _ in range(params.n)]  # (B*n,), aligned with first.completions
    prompts = [second_turn(task.messages(item), c.text, instruction) for item, c in zip(repeated, first.completions)]
    second = rollout(sampler, task, repeated, replace(params, n=1), batch_size=batch_size and batch_size * params.n,
                     prompts=prompts)
    return TwoAttempts(first, second)


@dataclass(frozen=True)
class Transitions:
    """The paired 2x2 table of attempt 1 against attempt 2 over n problems."""

    both: int  # right at t1 and at t2
    broken: int  # right at t1, wrong at t2 (c -> i)
    fixed: int  # wrong at t1, right at t2 (i -> c)
    neither: int  # wrong at both

    @classmethod
    def of(cls, first: Sequence[bool], second: Sequence[bool]) -> Transitions:
        if len(first) != len(second):
            raise ValueError(f"{len(first)} first attempts but {len(second)} second attempts")
        pairs = list(zip(first, second))
        return cls(pairs.count((True, True)), pairs.count((True, False)), pairs.count((False, True)),
                   pairs.count((False, False)))

    @property
    def n(self) -> int:
        return self.both + self.broken + self.fixed + self.neither


def paired_difference(t: Transitions) -> Interval:
    """Acc@t2 - Acc@t1 with Newcombe's square-and-add 95% interval for paired proportions.

    Newcombe 1998, "Improving the confidence interval for the difference between two proportions:
    paired data" (Statistics in Medicine 17:2635-2650), method 10: the Wilson intervals (l1, u1) of
    p1 = Acc@t1 and (l2, u2) of p2 = Acc@t2 are combined with phi, the correlation of the two
    attempts' outcomes, so an agreement between attempts narrows the interval:
        low  = D - sqrt((p2 - l2)^2 - 2 phi (p2 - l2)(u1 - p1) + (u1 - p1)^2)
        high = D + sqrt((u2 - p2)^2 - 2 phi (u2 - p2)(p1 - l1) + (p1 - l1)^2),   D = p2 - p1.
    phi = (ad - bc) / sqrt of the four margins' product with Newcombe's continuity correction
    (ad - bc - n/2 when ad - bc > n/2, 0 when 0 <= ad - bc <= n/2, unchanged when negative), as in
    Fagerland, Lydersen and Laake's `contingencytables` R package; 0 when a margin is empty.
    """
    n = t.n
    if n == 0:
        return Interval(0.0, 0.0, 0.0)
    one, two = wilson(t.both + t.broken, n), wilson(t.both + t.fixed, n)
    p1, l1, u1 = one.value, one.low, one.high
    p2, l2, u2 = two.value, two.low, two.high
    margins = (t.both + t.broken) * (t.fixed + t.neither) * (t.both + t.fixed) * (t.broken + t.neither)
    cross = t.both * t.neither - t.broken * t.fixed
    corrected = cross - n / 2 if cross > n / 2 else (0.0 if cross >= 0 else cross)
    phi = corrected / math.sqrt(margins) if margins > 0 else 0.0
    diff = p2 - p1
    low = diff - math.sqrt(max(0.0, (p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2))
    high = diff + math.sqrt(max(0.0, (u2 - p2) ** 2 - 2 * phi * (u2 - p2) * (p1 - l1) + (p1 - l1) ** 2))
    return Interval(diff, max(-1.0, low), min(1.0, high))


def self_correction_stats(t: Transitions) -> dict[str, Interval]:
    """SCoRe's five held-out metrics with 95% intervals (Wilson; Newcombe's paired interval for the delta)."""
    return {
        "accuracy_t1": wilson(t.both + t.broken, t.n),
        "accuracy_t2": wilson(t.both + t.fixed, t.n),
        "delta_t1_t2": paired_difference(t),
        "delta_i_to_c": wilson(t.fixed, t.n),
        "delta_c_to_i": wilson(t.broken, t.n),
    }


def evaluate_two_turns(
    sampler: Sampler, task: Task, cfg: EvalConfig, *, instruction: str, out_path: Path | None = None, seed: int = 0
) -> EvalResult:
    """Held-out evaluation of both attempts; `accuracy` is Acc@t2 and `extra` holds the five SCoRe metrics.

    One sample per item (`eval.samples` 1): the intervals treat problems as independent pairs.
    """
    if cfg.samples != 1:
        raise ValueError(f"a two-turn evaluation pairs one first and one second attempt per item: eval.samples "
                         f"must be 1, got {cfg.samples}")
    start = time.perf_counter()
    items = list(task.test[: cfg.limit] if cfg.limit else task.test)
    if not items:
        raise ValueError(f"task {task.name!r} has an empty held-out split")
    params = SamplingParams(n=1, temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens, seed=seed)
    both = two_attempt_rollout(sampler, task, items, params, instruction, batch_size=cfg.batch_size)
    threshold = pass_threshold(task.grader)
    result = summarize(both.second.grade_rows(), threshold)
    result.grader_errors += sum(g.error is not None for g in both.first.grades)
    result.extra = self_correction_stats(Transitions.of(*both.passed(threshold)))
    result.seconds = time.perf_counter() - start
    if out_path is not None:
        write_two_turn_samples(out_path, task, items, both, instruction, threshold)
    return result


def write_two_turn_samples(
    path: Path, task: Task, items: Sequence[Mapping[str, Any]], both: TwoAttempts, instruction: str, threshold: float
) -> None:
    """One JSONL line per item: the prompt, the instruction, and each attempt's output with its grade."""
    path.parent.mkdir(parents=True, exist_ok=True)

    def attempt(text: str, grade: Grade) -> dict[str, Any]:
        return {"output_text": text, "passed": grade.score >= threshold, **grade.to_dict()}

    with path.open("w") as fh:
        for i, (item, one, two) in enumerate(zip(items, both.first.completions, both.second.completions)):
            line = {
                "item_index": i,
                "sample_index": 0,
                "prompt": task.messages(item)[-1]["content"],
                "reference": task.reference(item) if task.reference else None,
                "instruction": instruction,
                "attempt_1": attempt(one.text, both.first.grades[i]),
                "attempt_2": attempt(two.text, both.second.grades[i]),
            }
            fh.write(json.dumps(line, ensure_ascii=False, default=str) + "\n")
