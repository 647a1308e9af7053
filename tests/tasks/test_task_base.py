"""`load_task` resolution (registry, dotted path, file path, directory) and the split helpers."""

import random
import sys
from pathlib import Path

import pytest

from graders.string import ExactMatchGrader
from tasks.base import Task, generate_splits, load_task, split_items

TASK_FILE = """
from graders.string import ExactMatchGrader
from tasks import Task

def make(size=2):
    items = [{{"q": str(i), "answer": str(i)}} for i in range(size)]
    return Task("{name}", items[1:], items[:1], lambda it: it["q"], ExactMatchGrader())

fixed = make()
"""


def test_load_task_from_file_path_with_options(tmp_path: Path) -> None:
    path = tmp_path / "my_task.py"
    path.write_text(TASK_FILE.format(name="from_file"))
    task = load_task(f"{path}:make", size=5)
    assert (task.name, len(task.train), len(task.test)) == ("from_file", 4, 1)
    assert task.messages(task.test[0]) == [{"role": "user", "content": "0"}]
    assert load_task(f"{path}:fixed").name == "from_file"


def test_load_task_from_dotted_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "user_tasks_pkg.py").write_text(TASK_FILE.format(name="dotted"))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert len(load_task("user_tasks_pkg:make", size=3).train) == 2
    finally:
        sys.modules.pop("user_tasks_pkg", None)


@pytest.mark.parametrize(
    ("spec", "options", "message"),
    [
        ("no_such_task", {}, "unknown task 'no_such_task'"),
        ("tasks.no_such_module:x", {}, "cannot load task"),
        ("tasks.base:no_such_attr", {}, "cannot load task"),
        ("missing/file.py:task", {}, "no such file"),
        ("tasks.base:REGISTRY", {}, "expected a tasks.Task"),
    ],
)
def test_load_task_errors(spec: str, options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_task(spec, **options)


def test_directory_without_grader_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "train.jsonl").write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    with pytest.raises(ValueError, match="a task directory needs grader.json"):
        load_task(str(tmp_path))


def test_fixed_task_rejects_options(tmp_path: Path) -> None:
    path = tmp_path / "fixed_task.py"
    path.write_text(TASK_FILE.format(name="fixed"))
    with pytest.raises(ValueError, match="takes no options"):
        load_task(f"{path}:fixed", size=3)


def test_system_prompt_is_prepended_once() -> None:
    task = Task("t", [], [], lambda it: it["q"], ExactMatchGrader(), system_prompt="Be brief.")
    assert [m["role"] for m in task.messages({"q": "hi"})] == ["system", "user"]
    chat = Task(
        "t",
        [],
        [],
        lambda it: [{"role": "system", "content": "own"}, {"role": "user", "content": "x"}],
        ExactMatchGrader(),
        system_prompt="Be brief.",
    )
    assert chat.messages({})[0]["content"] == "own"


def _digit_pair(rng: random.Random) -> dict:
    a, b = rng.randint(0, 9), rng.randint(0, 9)
    return {"key": f"{a}+{b}"}


def test_generate_splits_deterministic_disjoint_and_stable_test() -> None:
    train, test = generate_splits(_digit_pair, 60, 20, seed=1, key="key")
    again_train, again_test = generate_splits(_digit_pair, 60, 20, seed=1, key="key")
    assert (train, test) == (again_train, again_test)
    assert len({i["key"] for i in train + test}) == 80
    # The held-out split does not depend on the train size.
    assert generate_splits(_digit_pair, 10, 20, seed=1, key="key")[1] == test
    assert generate_splits(_digit_pair, 60, 20, seed=2, key="key")[1] != test


def test_generate_splits_reports_exhausted_space() -> None:
    with pytest.raises(ValueError, match="only 100 distinct items"):
        generate_splits(_digit_pair, 95, 10, seed=0, key="key")


def test_split_items_fraction_and_count() -> None:
    items = [{"i": i} for i in range(50)]
    train, test = split_items(items, 0.2, seed=3)
    assert (len(train), len(test)) == (40, 10)
    assert split_items(items, 10, seed=3) == (train, test)
    assert not {i["i"] for i in train} & {i["i"] for i in test}
    with pytest.raises(ValueError, match="cannot hold out 50 of 50"):
        split_items(items, 50, seed=0)
