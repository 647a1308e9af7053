"""Preference pairs from graded groups: the best and the worst completion of each prompt, by score.

Both `rft prefs` (pairs written to a file for DPO) and online DPO (pairs trained on at once, Guo et al. 2024)
rank a prompt's G samples with the task's grader or a judge and keep its best-vs-worst pair. A completion
the grader failed on (`Grade.error`) ranks nowhere: its 0 says nothing about its quality; but one whose answer
could not be read (error kind `sample_parse_error`: no final answer, malformed JSON) is the answer's fault,
and ranks with its 0. Groups are
dropped, and counted, when fewer than two completions were graded, when best and worst tie, or when their
score margin is under `min_margin`.

The ranking grader is the task's own, any grader spec (a `score_model` judge makes it AI feedback,
RLAIF), or a constitution: a YAML file with a `principles:` list (and an optional `judge:` mapping of the
judge's settings), which `graders.judge.constitution` turns into a rubric judged one principle at a time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from graders.base import Grader, GraderInputError, error_kind
from graders.judge.constitution import CONVERSATION_FIELD, constitution_spec, conversation_text
from graders.spec import load_grader
from rft.config import ConfigError, RunConfig
from rft.rollout import Rollout
from tasks.base import Task
from tasks.preferences import Pair, load_pairs, split_pairs

RANKED_ERRORS = (None, "sample_parse_error")  # error kinds whose score is a verdict on the sample


def load_ranker(spec: str | Path | None, principles: Sequence[str] = ()) -> Grader | None:
    """The grader that ranks samples: a grader spec (JSON or YAML), a constitution YAML, and/or `principles`
    given one by one (added to the file's); None when neither is given (the task's grader ranks)."""
    data = None
    if spec:
        path = Path(spec)
        if path.suffix.lower() not in (".yaml", ".yml"):
            return _only(load_grader(str(spec)), principles, spec)
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise GraderInputError(f"{spec}: cannot read the judge YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise GraderInputError(f"{spec}: expected a mapping (a grader spec, or principles: and judge:)")
        if "principles" not in data:
            return _only(load_grader(data), principles, spec)
        unknown = sorted(set(data) - {"principles", "judge"})
        if unknown:
            raise GraderInputError(f"{spec}: unknown field(s) {unknown}; a constitution has principles: and judge:")
    listed = list(data["principles"] or []) if data else []
    if not listed and not principles:
        return None
    return load_grader(constitution_spec([*listed, *principles], data.get("judge") if data else None))


def _only(grader: Grader, principles: Sequence[str], spec: str | Path) -> Grader:
    if principles:
        raise GraderInputError(f"principles rank with a constitution judge; {spec} is already a grader spec")
    return grader


def ranked_by(task: Task, grader: Grader | None) -> Task:
    """`task` ranked by `grader` (the task itself when None): its items also carry the prompt conversation as
    `item.conversation`, which a judge's template shows (the task's own grader never reads it)."""
    if grader is None:
        return task

    def with_conversation(items: Sequence[dict]) -> list[dict]:
        return [{**item, CONVERSATION_FIELD: conversation_text(task.messages(item))} for item in items]

    return dataclasses.replace(task, train=with_conversation(task.train), test=with_conversation(task.test),
                               grader=grader)


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
        ranked = [g for g, grade in enumerate(grades) if error_kind(grade) in RANKED_ERRORS
                  and not (skip_truncated and group[g].truncated)]
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


def load_pair_splits(cfg: RunConfig) -> tuple[list[Pair], list[Pair]]:
    """Training and held-out pairs: `task.pairs_test`, or a fixed-seed split of `task.pairs`."""
    try:
        pairs = load_pairs(cfg.task.pairs)
        if cfg.task.pairs_test:
            return pairs, load_pairs(cfg.task.pairs_test)
        return split_pairs(pairs, cfg.task.pairs_held_out, cfg.train.seed)
    except (ValueError, OSError) as exc:  # a bad line names its file and line; an unreadable file its path
        raise ConfigError(str(exc)) from exc
