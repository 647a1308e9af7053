"""Dataset formats: OpenAI JSONL, CSV / Parquet with a field mapping, `datasets` objects and directories;
schema errors naming file, line and field; duplicates and empty prompts reported; fixed-seed splits."""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from graders.base import Sample
from graders.string import ExactMatchGrader
from tasks.datasets import load_items, task_from_files


def _line(q: str, answer: str = "1", **extra: object) -> dict:
    return {"messages": [{"role": "user", "content": q}], "answer": answer, **extra}


def _write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ('{"messages": [', "invalid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ({"answer": "1"}, "field '\\(item\\)': 'messages' is a required property"),
        ({"messages": []}, "field 'messages'"),
        (
            {"messages": [{"role": "user", "content": 5}]},
            "field 'messages/0/content': 5 is not of type 'string'",
        ),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "field 'messages/0/role'"),
        (
            {"messages": [{"role": "system", "content": "only system"}]},
            "field 'messages': needs at least one message with role 'user'",
        ),
    ],
)
def test_malformed_line_names_file_line_and_field(tmp_path: Path, row: object, message: str) -> None:
    path = _write_jsonl(tmp_path / "data.jsonl", [_line("a"), "", _line("b"), row])
    with pytest.raises(ValueError, match=f"data.jsonl:4: {message}"):
        load_items(path)


def test_duplicates_and_empty_prompts_are_dropped_and_reported(tmp_path: Path) -> None:
    rows = [_line("What is 2+2?", "4"), _line("   "), _line("What is 3+3?", "6"), _line("What is 2+2?", "4")]
    path = _write_jsonl(tmp_path / "d.jsonl", rows)
    items, issues = load_items(path)
    assert [i["answer"] for i in items] == ["4", "6"]
    assert issues == [f"{path}:2: empty prompt, dropped", f"{path}:4: duplicate prompt of {path}:1, dropped"]


def test_csv_with_field_mapping(tmp_path: Path) -> None:
    path = tmp_path / "qa.csv"
    path.write_text('question,final\n"What is 1+1?",2\n"Capital of Peru?",Lima\n')
    items, issues = load_items(path, mapping={"prompt": "question", "answer": "final"})
    assert issues == []
    assert items[1]["messages"] == [{"role": "user", "content": "Capital of Peru?"}]
    assert (items[1]["answer"], items[1]["question"]) == ("Lima", "Capital of Peru?")
    with pytest.raises(ValueError, match="qa.csv:2: mapped column 'query' \\(for 'prompt'\\) is missing"):
        load_items(path, mapping={"prompt": "query"})
    with pytest.raises(ValueError, match="qa.csv:2: field '\\(item\\)'.*mapping="):
        load_items(path)


def test_parquet_plain_prompt_field(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"prompt": ["a?", "b?", ""], "answer": ["A", "B", "C"]}), path)
    items, issues = load_items(path)
    assert [i["messages"][0]["content"] for i in items] == ["a?", "b?"]
    assert issues == [f"{path}[row 2]: empty prompt, dropped"]


def test_hugging_face_dataset_object_and_saved_directory(tmp_path: Path) -> None:
    import datasets

    data = datasets.Dataset.from_dict({"q": ["x?", "y?", "z?"], "answer": ["1", "2", "3"]})
    items, _ = load_items(data, mapping={"prompt": "q"})
    assert [i["answer"] for i in items] == ["1", "2", "3"]
    datasets.DatasetDict({"train": data, "validation": data.select([0])}).save_to_disk(tmp_path / "saved")
    items, _ = load_items(tmp_path / "saved", mapping={"prompt": "q"}, split="validation")
    assert [i["q"] for i in items] == ["x?"]
    with pytest.raises(ValueError, match="choose a split"):
        load_items(tmp_path / "saved", mapping={"prompt": "q"})


def test_folder_of_data_files_is_read_by_load_dataset(tmp_path: Path) -> None:
    folder = tmp_path / "raw"
    folder.mkdir()
    (folder / "train.csv").write_text("q,answer\nx?,1\ny?,2\n")
    items, _ = load_items(folder, mapping={"prompt": "q"}, split="train")
    assert [(i["q"], i["answer"]) for i in items] == [("x?", 1), ("y?", 2)]


def test_dataset_line_schema_is_a_valid_json_schema() -> None:
    import jsonschema

    from tasks.datasets import SCHEMA_PATH

    jsonschema.Draft202012Validator.check_schema(json.loads(SCHEMA_PATH.read_text()))


def test_unsupported_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unsupported dataset format '.txt'"):
        load_items(tmp_path / "d.txt")
    with pytest.raises(ValueError, match="no such dataset file"):
        load_items(tmp_path / "d.jsonl")


def test_single_file_split_is_seeded_and_disjoint(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "all.jsonl", [_line(f"q{i}", str(i)) for i in range(40)])
    task = task_from_files(path, ExactMatchGrader(), n_test=0.25, seed=7)
    again = task_from_files(path, ExactMatchGrader(), n_test=0.25, seed=7)
    assert (len(task.train), len(task.test)) == (30, 10)
    assert task.test == again.test
    assert not {i["answer"] for i in task.train} & {i["answer"] for i in task.test}
    assert task.name == "all" and task.reference(task.test[0]) == task.test[0]["answer"]
    item = task.test[0]
    assert task.grader.grade(task.reference(item), item).score == 1.0


def test_train_prompts_leaking_into_test_file_are_dropped(tmp_path: Path) -> None:
    train = _write_jsonl(tmp_path / "train.jsonl", [_line("a"), _line("b"), _line("c")])
    test = _write_jsonl(tmp_path / "test.jsonl", [_line("b")])
    task = task_from_files(train, ExactMatchGrader(), test=test, system_prompt="Be brief.")
    assert [i["messages"][0]["content"] for i in task.train] == ["a", "c"]
    assert task.issues == [f"{train}:2: duplicate prompt of the held-out split, dropped"]
    assert task.messages(task.test[0])[0] == {"role": "system", "content": "Be brief."}


def test_task_directory_with_response_format_and_issues_in_cli(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from rft.cli import app
    from tasks.base import load_task

    rows = [_line(f"Give {i} as JSON", reference={"n": i}) for i in range(12)] + [_line("Give 0 as JSON")]
    _write_jsonl(tmp_path / "train.jsonl", rows)
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    (tmp_path / "response_format.json").write_text(json.dumps(schema))
    spec = {"type": "json_schema", "name": "n", "schema": schema, "reference": "{{item.reference}}"}
    (tmp_path / "grader.json").write_text(json.dumps(spec))
    task = load_task(str(tmp_path), n_test=3, seed=1)
    assert (len(task.train), len(task.test), task.response_format) == (9, 3, schema)
    assert task.issues == [
        f"{tmp_path / 'train.jsonl'}:13: duplicate prompt of {tmp_path / 'train.jsonl'}:1, dropped"
    ]
    item = task.test[0]
    assert task.grader.grade(Sample(task.reference(item)), item).score == 1.0
    assert task.grader.grade(Sample('{"n": -1}'), item).score == 0.0
    shown = CliRunner().invoke(
        app, ["tasks", "show", str(tmp_path), "-o", "n_test=3"], env={"COLUMNS": "300"}
    )
    assert shown.exit_code == 0, shown.output
    assert "duplicate prompt" in shown.output and "response_format:" in shown.output
