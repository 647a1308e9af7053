"""Dataset formats: OpenAI-RFT JSONL, plain JSONL / CSV / Parquet with a field mapping, Hugging Face datasets.

Every item ends up in the OpenAI RFT shape, `{"messages": [...], <extra fields>}`, where the extra
fields are what grader templates see as `{{item.*}}`. Rows without `messages` get one from their
`prompt` field (after `mapping` renames columns). Items are checked against
`schemas/dataset_line.schema.json`; a malformed one raises `ValueError` naming the file, line and
field. Duplicate and empty prompts are dropped and reported in `Task.issues`.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema

from graders.base import Grader
from tasks.base import Item, Task, split_items

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "dataset_line.schema.json"
REFERENCE_FIELDS = ("reference", "answer", "reference_answer", "solution", "expected")
Located = list[tuple[str, Item]]  # (where, item) pairs; `where` is "file:line" or "name[row i]"


def _read_jsonl(path: Path) -> Located:
    rows: Located = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: invalid JSON: {exc.msg} (column {exc.colno})") from exc
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            rows.append((f"{path}:{lineno}", row))
    return rows


def _read_csv(path: Path) -> Located:
    with path.open(encoding="utf-8", newline="") as fh:
        # Line 1 is the header, so data row i sits on line i + 1 (multi-line cells aside).
        return [(f"{path}:{i}", dict(row)) for i, row in enumerate(csv.DictReader(fh), 2)]


def _read_parquet(path: Path) -> Located:
    import pyarrow.parquet as pq

    return [(f"{path}[row {i}]", row) for i, row in enumerate(pq.read_table(path).to_pylist())]


def _read_hf_dir(path: Path, split: str | None) -> Located:
    """A directory written by `save_to_disk`, else a folder of data files read by `load_dataset`."""
    import datasets

    saved = (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file()
    data = datasets.load_from_disk(str(path)) if saved else datasets.load_dataset(str(path))
    return _hf_rows(data, str(path), split)


READERS: dict[str, Callable[[Path], Located]] = {
    ".jsonl": _read_jsonl,
    ".csv": _read_csv,
    ".parquet": _read_parquet,
}


def _hf_rows(data: Any, name: str, split: str | None) -> Located:
    """Rows of a `datasets.Dataset`, or of one split of a `DatasetDict`."""
    if isinstance(getattr(data, "column_names", None), dict):
        splits = list(data.keys())
        if split not in splits:
            raise ValueError(f"{name}: choose a split with split=..., one of {splits}")
        data, name = data[split], f"{name}/{split}"
    return [(f"{name}[row {i}]", dict(row)) for i, row in enumerate(data)]


def read_rows(source: Any, split: str | None = None) -> Located:
    """Raw rows with their locations from a file path, a saved-dataset directory or a `datasets` object."""
    if type(source).__module__.split(".")[0] == "datasets":
        return _hf_rows(source, type(source).__name__, split)
    path = Path(source)
    if path.is_dir():
        return _read_hf_dir(path, split)
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise ValueError(f"{path}: unsupported dataset format {path.suffix!r}; use one of {sorted(READERS)}")
    if not path.is_file():
        raise ValueError(f"{path}: no such dataset file")
    return reader(path)


@lru_cache(maxsize=1)
def _validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)


def most_specific_error(
    validator: jsonschema.protocols.Validator, row: Mapping[str, Any]
) -> jsonschema.ValidationError | None:
    """The schema error deepest in `row` (the field a user must fix), or None when `row` is valid.

    Errors at the top of a `oneOf` or at the item itself say little ("is not valid under any of the
    given schemas"); the one with the longest path names the offending field.
    """
    return max(validator.iter_errors(row), key=lambda e: len(e.absolute_path), default=None)


def to_item(row: Mapping[str, Any], where: str, mapping: Mapping[str, str] | None = None) -> Item:
    """Rename columns (`mapping`: our field -> source column), add `messages` from `prompt`, validate."""
    item = dict(row)
    for ours, theirs in (mapping or {}).items():
        if theirs not in row:
            raise ValueError(
                f"{where}: mapped column '{theirs}' (for '{ours}') is missing; has {sorted(row)}"
            )
        item[ours] = row[theirs]
    if "messages" not in item and isinstance(item.get("prompt"), str):
        item["messages"] = [{"role": "user", "content": item["prompt"]}]
    error = most_specific_error(_validator(), item)
    if error is not None:
        field = "/".join(str(p) for p in error.absolute_path) or "(item)"
        message = (
            "needs at least one message with role 'user'" if error.validator == "contains" else error.message
        )
        hint = (
            " (give a 'messages' list, or a 'prompt' text / mapping={'prompt': column})"
            if field == "(item)"
            else ""
        )
        raise ValueError(f"{where}: field '{field}': {message}{hint}")
    return item


def prompt_key(item: Mapping[str, Any]) -> str:
    """The prompt as one string, used to find duplicates and to keep splits disjoint."""
    return json.dumps(item["messages"], sort_keys=True, ensure_ascii=False)


def clean(rows: Located, issues: list[str], exclude: Iterable[str] = ()) -> list[Item]:
    """Drop (and report) empty prompts, duplicates, and prompts found in `exclude` (the held-out split)."""
    seen: dict[str, str] = {key: "the held-out split" for key in exclude}
    kept: list[Item] = []
    for where, item in rows:
        if not any(m["content"].strip() for m in item["messages"] if m["role"] == "user"):
            issues.append(f"{where}: empty prompt, dropped")
            continue
        key = prompt_key(item)
        if key in seen:
            issues.append(f"{where}: duplicate prompt of {seen[key]}, dropped")
            continue
        seen[key] = where
        kept.append(item)
    return kept


def load_items(
    source: Any, mapping: Mapping[str, str] | None = None, split: str | None = None
) -> tuple[list[Item], list[str]]:
    """Read, convert, validate and de-duplicate one dataset; returns (items, issues)."""
    issues: list[str] = []
    rows = [(where, to_item(row, where, mapping)) for where, row in read_rows(source, split)]
    return clean(rows, issues), issues


def _grader(grader: Grader | Mapping[str, Any] | str | Path) -> Grader:
    if hasattr(grader, "grade"):
        return grader  # type: ignore[return-value]
    from graders.spec import load_grader

    return load_grader(grader)


def _reference(items: Sequence[Item], field: str | None) -> Callable[[Mapping[str, Any]], str] | None:
    if field is None:
        field = next((f for f in REFERENCE_FIELDS if items and f in items[0]), None)
    if field is None:
        return None
    name = field
    return lambda item: v if isinstance(v := item[name], str) else json.dumps(v, ensure_ascii=False)


def task_from_files(
    train: Any,
    grader: Grader | Mapping[str, Any] | str | Path,
    test: Any = None,
    name: str | None = None,
    n_test: int | float = 0.1,
    seed: int = 0,
    mapping: Mapping[str, str] | None = None,
    split: str | None = None,
    system_prompt: str | None = None,
    response_format: dict[str, Any] | None = None,
    reference_field: str | None = None,
) -> Task:
    """A task from dataset files (or `datasets` objects) and a grader, a grader object or a JSON spec.

    Without `test`, `n_test` items (a count, or a fraction when < 1) are held out by a fixed `seed`.
    Train prompts that also appear in the held-out split are dropped and reported in `issues`.
    """
    issues: list[str] = []
    train_rows = [(w, to_item(r, w, mapping)) for w, r in read_rows(train, split)]
    if test is None:
        items = clean(train_rows, issues)
        train_items, test_items = split_items(items, n_test, seed)
    else:
        test_rows = [(w, to_item(r, w, mapping)) for w, r in read_rows(test, split)]
        test_items = clean(test_rows, issues)
        train_items = clean(train_rows, issues, exclude=[prompt_key(i) for i in test_items])
    if not train_items:
        raise ValueError(f"{train}: no usable training items ({len(issues)} issues: {issues[:3]})")
    return Task(
        name=name or Path(str(train)).stem,
        train=train_items,
        test=test_items,
        prompt=lambda item: item["messages"],
        grader=_grader(grader),
        reference=_reference(train_items, reference_field),
        system_prompt=system_prompt,
        response_format=response_format,
        description=f"from {train}"
        + (f" and {test}" if test is not None else f" (held out {len(test_items)})"),
        issues=issues,
    )


def task_from_dir(path: str | Path, **options: Any) -> Task:
    """A task from a directory with `train.jsonl`, optional `test.jsonl`, `grader.json` and optional
    `response_format.json`; `options` go to `task_from_files`."""
    root = Path(path)
    for required in ("train.jsonl", "grader.json"):
        if not (root / required).is_file():
            raise ValueError(f"{root}: a task directory needs {required}")
    test = root / "test.jsonl"
    fmt = root / "response_format.json"
    options.setdefault("name", root.name)
    if fmt.is_file():
        options.setdefault("response_format", json.loads(fmt.read_text(encoding="utf-8")))
    return task_from_files(
        root / "train.jsonl", root / "grader.json", test=test if test.is_file() else None, **options
    )
