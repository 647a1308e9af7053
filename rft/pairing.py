"""Preference pairs from graded groups: the best and the worst completion of each prompt, by score.

Both `rft prefs` (pairs written to a file for DPO) and online DPO (pairs trained on at once, Guo et al. 2024)
rank a prompt's G samples with the task's grader or a judge and keep its best-vs-worst pair. A completion
the grader failed on (`Grade.error`) ranks nowhere: its 0 says nothing about its quality. Groups are
dropped, and counted, when fewer than two completions were graded, when best and worst tie, or when their
score margin is under `min_margin`.
"""

from __future__ import annotations

from dataclasses import dataclass

from rft.rollout import Rollout


@dataclass(frozen=True)
class Choice:
    """Group `group`'s pair: sample `chosen` scored `chosen_score`, above sample `rejected`'s `rejected_score`."""

    group: int
    chosen: int
    rejected: int
    chosen_score: float
    rejected_score: float


def best_vs_worst(batch: Rollout, min_margin: float = 0.0, skip_truncated: bool = False
                  ) -> tuple[list[Choice], dict[str, float]]:
    """One pair per group whose best and worst graded scores differ by more than 0 and at least `min_margin`.

    `skip_truncated` leaves completions that hit the length cap out of the ranking. Counts: `pairs/kept`,
    `pairs/ties` (best == worst), `pairs/below_margin`, `pairs/ungraded` (fewer than 2 completions ranked).
    """
    choices: list[Choice] = []
    counts = {"pairs/kept": 0.0, "pairs/ties": 0.0, "pairs/below_margin": 0.0, "pairs/ungraded": 0.0}
    for b, (group, grades) in enumerate(zip(batch.groups, batch.grade_rows())):
        ranked = [g for g, grade in enumerate(grades)
                  if grade.error is None and not (skip_truncated and group[g].truncated)]
        if len(ranked) < 2:
            counts["pairs/ungraded"] += 1
            continue
        best = max(ranked, key=lambda g: grades[g].score)  # the first of equals: reproducible
        worst = min(ranked, key=lambda g: grades[g].score)
        margin = grades[best].score - grades[worst].score
        if margin <= 0:
            counts["pairs/ties"] += 1
        elif margin < min_margin:
            counts["pairs/below_margin"] += 1
        else:
            counts["pairs/kept"] += 1
            choices.append(Choice(b, best, worst, grades[best].score, grades[worst].score))
    return choices, counts
