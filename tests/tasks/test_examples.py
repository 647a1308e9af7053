"""Every example starts with the command that runs it; the command works and the example's task grades
its own references as correct."""

import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from graders.base import Sample
from rft.cli import app
from tasks.base import load_task

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
# The YAML training configs in examples/ are the trainer's; this file covers the task examples.
TASK_EXAMPLES = ["custom_task.py", "multi_grader.py", "openai_format/README.md"]


def _command(example: str) -> list[str]:
    first = (EXAMPLES / example).read_text().splitlines()[0]
    assert first.startswith("# rft "), f"{example} must start with '# rft ...', got {first!r}"
    return shlex.split(first[len("# rft ") :])


@pytest.mark.parametrize("example", TASK_EXAMPLES)
def test_example_header_command_runs(example: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(app, _command(example))
    assert result.exit_code == 0, result.output
    assert "[reference]" in result.output and "[user]" in result.output


def test_custom_task_references_and_wrong_answers() -> None:
    task = load_task("examples/custom_task.py:task")
    assert (task.name, len(task.train), len(task.test)) == ("capitals", 5, 2)
    for item in [*task.train, *task.test]:
        assert task.grader.grade(Sample(task.reference(item) + "."), item).score == 1.0
        assert task.grader.grade(Sample("London"), item).score == 0.0


def test_openai_format_directory_task() -> None:
    task = load_task(str(EXAMPLES / "openai_format"))
    assert (task.name, len(task.train), len(task.test), task.issues) == ("openai_format", 20, 8, [])
    assert task.messages(task.test[0])[0]["role"] == "system"
    labels = {item["reference_answer"] for item in task.test}
    for item in task.test:
        assert task.grader.grade(Sample(task.reference(item)), item).score == 1.0
        other = sorted(labels - {item["reference_answer"]})[0]
        assert task.grader.grade(Sample(other), item).score == 0.0


def test_openai_format_single_file_is_split_by_seed() -> None:
    from tasks.datasets import task_from_files

    folder = EXAMPLES / "openai_format"
    task = task_from_files(folder / "train.jsonl", folder / "grader.json", n_test=5, seed=0)
    assert (len(task.train), len(task.test)) == (15, 5)
    assert task.test == task_from_files(folder / "train.jsonl", folder / "grader.json", n_test=5, seed=0).test


def test_multi_grader_reports_both_sub_scores() -> None:
    task = load_task("examples/multi_grader.py:task", n_train=20, n_test=5)
    item = task.test[0]
    answer = int(item["answer"])
    cases = {
        task.reference(item): 1.0,
        f"\\boxed{{{answer}}}": 0.9,
        f"#### {answer + 1}": 0.1,
        "no idea": 0.0,
    }
    for output, score in cases.items():
        grade = task.grader.grade(Sample(output), item)
        assert grade.score == pytest.approx(score), output
        assert set(grade.sub_grades) == {"correct", "format"}
