"""Every built-in task: deterministic, disjoint splits; references score 1.0 under the task's own grader
and a plainly wrong answer scores 0."""

import json
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from graders.base import Sample
from tasks.base import REGISTRY, Task, load_task


def _wrong_number(item: Mapping[str, Any]) -> str:
    return f"#### {int(item['answer']) + 1}"


def _wrong_countdown(item: Mapping[str, Any]) -> str:
    # Uses every number once but multiplies them all: well-formed, never the (<= max_target) target here.
    return "<answer>" + " * ".join(str(n) for n in item["numbers"]) + "</answer>"


def _wrong_json(item: Mapping[str, Any]) -> str:
    return json.dumps({"name": "Nobody", "company": "Nowhere", "date": "1900-01-01", "amount": -1})


def _wrong_code(item: Mapping[str, Any]) -> str:
    return f"```python\ndef {item['entry_point']}(*args, **kwargs):\n    return None\n```"


# name -> (small options for the default test run, a plainly wrong answer)
CASES: dict[str, tuple[dict[str, Any], Callable[[Mapping[str, Any]], str]]] = {
    "arithmetic": ({"n_train": 300, "n_test": 40}, lambda item: str(int(item["answer"]) + 1)),
    "word_problems": ({"n_train": 300, "n_test": 40}, _wrong_number),
    "countdown": ({"n_train": 300, "n_test": 40, "max_number": 20}, _wrong_countdown),
    "json_extract": ({"n_train": 300, "n_test": 40}, _wrong_json),
}
SMALL = {name: options for name, (options, _) in CASES.items()}


def _prompts(task: Task, items: Any) -> set[str]:
    return {json.dumps(task.messages(item)) for item in items}


def test_every_registered_task_is_covered() -> None:
    assert set(REGISTRY) == {*CASES, "humaneval"}


@pytest.mark.parametrize("name", [*CASES, "humaneval"])
def test_splits_deterministic_and_disjoint_at_default_sizes(name: str) -> None:
    task, again = load_task(name), load_task(name)
    assert task.test == again.test and task.train == again.train
    assert len(task.test) > 0 and len(task.train) > len(task.test)
    assert not _prompts(task, task.test) & _prompts(task, task.train)
    assert len(_prompts(task, task.test)) == len(task.test)


@pytest.mark.parametrize("name", list(CASES))
def test_seed_changes_the_split(name: str) -> None:
    assert load_task(name, seed=1, **SMALL[name]).test != load_task(name, seed=2, **SMALL[name]).test


@pytest.mark.parametrize("name", list(CASES))
def test_references_score_one_and_wrong_answers_zero(name: str) -> None:
    options, wrong = CASES[name]
    task = load_task(name, **options)
    for item in [*task.test, *task.train[:40]]:
        reference = task.reference(item)
        assert task.grader.grade(Sample(reference), item).score == 1.0, (item, reference)
        assert task.grader.grade(Sample(wrong(item)), item).score == 0.0, item


def test_humaneval_references_pass_and_wrong_code_fails() -> None:
    task = load_task("humaneval")
    assert (len(task.train), len(task.test)) == (100, 64)
    for item in task.test[:5]:
        assert task.grader.grade(Sample(task.reference(item)), item).score == 1.0, item["task_id"]
        assert task.grader.grade(Sample(_wrong_code(item)), item).score == 0.0, item["task_id"]


@pytest.mark.slow
def test_humaneval_all_164_references_pass() -> None:
    task = load_task("humaneval")
    failed = [
        i["task_id"]
        for i in [*task.train, *task.test]
        if task.grader.grade(Sample(task.reference(i)), i).score != 1.0
    ]
    assert failed == []
