"""Preference pairs from both line shapes, files and datasets; malformed lines name their file, line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.preferences import Pair, load_pairs, split_pairs

OPENAI_LINE = {  # the shape of OpenAI's preference fine-tuning guide
    "input": {"messages": [{"role": "user", "content": "Hello, can you tell me how cold San Francisco is today?"}]},
    "preferred_output": [{"role": "assistant", "content": "Today in San Francisco, it is a cool 14°C."}],
    "non_preferred_output": [{"role": "assistant", "content": "It is not particularly cold in San Francisco today."}],
}


def write(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_both_shapes_and_extra_fields(tmp_path: Path) -> None:
    common_text = {"prompt": "2+2?", "chosen": "4", "rejected": "5", "answer": "4"}
    common_msgs = {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+3?"}],
                   "chosen": [{"role": "assistant", "content": "5"}], "rejected": "6"}
    pairs = load_pairs(write(tmp_path / "p.jsonl", [OPENAI_LINE, common_text, common_msgs]))
    assert pairs[0] == Pair(OPENAI_LINE["input"]["messages"], "Today in San Francisco, it is a cool 14°C.",
                            "It is not particularly cold in San Francisco today.", f"{tmp_path}/p.jsonl:1", {})
    assert (pairs[1].messages, pairs[1].chosen, pairs[1].item) == ([{"role": "user", "content": "2+2?"}], "4",
                                                                   {"answer": "4"})
    assert [m["role"] for m in pairs[2].messages] == ["system", "user"] and pairs[2].chosen == "5"
    assert load_pairs(write(tmp_path / "again.jsonl", [p.to_dict() for p in pairs]))[1:] == [
        Pair(p.messages, p.chosen, p.rejected, f"{tmp_path}/again.jsonl:{i}", p.item) for i, p in enumerate(pairs[1:], 2)]


def test_a_datasets_object() -> None:
    import datasets

    data = datasets.Dataset.from_list([{"prompt": "a?", "chosen": "yes", "rejected": "no"}] * 2)
    assert [p.where for p in load_pairs(data)] == ["Dataset[row 0]", "Dataset[row 1]"]


@pytest.mark.parametrize("line, message", [
    ({"question": "2+2?"}, "p.jsonl:2: not a preference pair: give input/preferred_output/non_preferred_output"),
    ({"prompt": "2+2?", "chosen": "4"}, "p.jsonl:2: field (line): 'rejected' is a required property"),
    ({**OPENAI_LINE, "preferred_output": [{"role": "user", "content": "x"}]},
     "p.jsonl:2: field preferred_output/0/role: 'assistant' was expected"),
    ({"prompt": [{"role": "system", "content": "x"}], "chosen": "4", "rejected": "5"}, "p.jsonl:2: field prompt"),
    ({"prompt": "2+2?", "chosen": "4", "rejected": " 4 "}, "p.jsonl:2: chosen and rejected replies are the same"),
    ("{not json", "p.jsonl:2: invalid JSON"),
])
def test_bad_lines_name_file_line_and_field(tmp_path: Path, line: object, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_pairs(write(tmp_path / "p.jsonl", [OPENAI_LINE, line]))


def test_empty_file_and_empty_split(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no preference pairs"):
        load_pairs(write(tmp_path / "empty.jsonl", []))
    pairs = load_pairs(write(tmp_path / "p.jsonl", [OPENAI_LINE] * 10))
    train, test = split_pairs(pairs, 0.2, seed=1)
    assert (len(train), len(test)) == (8, 2) and split_pairs(pairs, 0.2, seed=1) == (train, test)
    with pytest.raises(ValueError, match="the held-out split is empty"):
        split_pairs(pairs[:2], 0.1)
