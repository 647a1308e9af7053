"""OpenAI-style `{{item.x}}` / `{{sample.output_text}}` template rendering.

References follow OpenAI's "JSON path like" syntax: `{{item.field}}`, nested `{{item.a.b}}`, list indices as
`{{item.answers[0]}}` or `{{item.xs.0}}`, quoted keys `{{item["a b"]}}`, and the sample fields
`output_text`, `output_json`, `output_tools` and `choices` (e.g. `{{sample.output_tools[0].function.name}}`).
A reference to a field the item lacks raises `GraderInputError` naming the path (a configuration error);
a sample value that is missing (the output is not JSON, no tool was called) raises `SampleValueMissing`,
which the runner turns into that sample's counted error grade. The helpers every templated grader shares
live here too: the default templates, `check_template`, `render_field`, `prepare`, and `template_fields`
(every template a grader holds, for load-time item checks and for showing rendered templates).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from typing import Any

from graders.base import GraderInputError, Sample, SampleValueMissing

_STEP_SRC = r"\.\s*[\w\-]+|\[\s*(?:-?\d+|\"[^\"]*\"|'[^']*')\s*\]"
_REF = re.compile(r"\{\{\s*([A-Za-z_][\w\-]*(?:\s*(?:" + _STEP_SRC + r"))*)\s*\}\}")
_STEP = re.compile(r"\.\s*([\w\-]+)|\[\s*(-?\d+|\"[^\"]*\"|'[^']*')\s*\]")

SAMPLE_FIELDS = ("output_text", "output_json", "output_tools", "choices", "output_audio")
DEFAULT_INPUT = "{{sample.output_text}}"
DEFAULT_REFERENCE = "{{item.answer}}"


def references(template: str) -> list[str]:
    """The paths a template refers to, e.g. ['item.answer', 'sample.output_tools[0].function.name']."""
    return [re.sub(r"\s+", "", ref) for ref in _REF.findall(template)]


def parse_path(path: str) -> tuple[str, list[str | int]]:
    """`item.a[0]["b c"]` -> ('item', ['a', 0, 'b c']); a dotted digit stays a string key (`xs.0`)."""
    root = re.match(r"[A-Za-z_][\w\-]*", path)
    if root is None:
        raise GraderInputError(f"template reference '{{{{{path}}}}}' is not a valid path")
    steps: list[str | int] = []
    for key, index in _STEP.findall(path[root.end():]):
        if key:
            steps.append(key)
        elif index[0] in "\"'":
            steps.append(index[1:-1])
        else:
            steps.append(int(index))
    return root.group(0), steps


def _step(value: Any, key: str | int) -> tuple[bool, Any]:
    if isinstance(key, int):
        ok = isinstance(value, list) and -len(value) <= key < len(value)
        return ok, value[key] if ok else None
    if isinstance(value, Mapping) and key in value:
        return True, value[key]
    if isinstance(value, list) and key.isdigit() and int(key) < len(value):
        return True, value[int(key)]
    return False, None


def _missing_hint(walked: str, value: Any) -> str:
    if walked == "sample.output_json" and value is None:
        return " (the output is not JSON)"
    if walked.startswith("sample.output_tools") and value == []:
        return " (the sample called no tool)"
    return ""


def lookup(path: str, sample: Sample | None, item: Mapping[str, Any]) -> Any:
    """Resolve one reference (`item.a.b`, `item.xs[0]`, `sample.output_json.x`) to its value."""
    root, steps = parse_path(path)
    if root == "item":
        value: Any = item
    elif root == "sample":
        if sample is None:
            raise GraderInputError(f"template reference '{{{{{path}}}}}' needs a sample")
        value = sample.to_dict()
    else:
        raise GraderInputError(f"template reference '{{{{{path}}}}}' must start with 'item.' or 'sample.'")
    walked = root
    for key in steps:
        found, child = _step(value, key)
        if not found:
            where = walked + (f"[{key}]" if isinstance(key, int) else f".{key}")
            if root == "sample":
                hint = _missing_hint(walked, value)
                raise SampleValueMissing(f"template reference '{{{{{path}}}}}': '{where}' is missing{hint}")
            raise GraderInputError(f"template reference '{{{{{path}}}}}': '{where}' is missing")
        walked += f"[{key}]" if isinstance(key, int) else f".{key}"
        value = child
    return value


def render(template: str, sample: Sample | None, item: Mapping[str, Any]) -> str:
    """Substitute every `{{...}}` reference; non-string values are rendered as JSON."""

    def sub(match: re.Match[str]) -> str:
        value = lookup(match.group(1), sample, item)
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)

    return _REF.sub(sub, template)


def resolve(value: Any, sample: Sample | None, item: Mapping[str, Any]) -> Any:
    """Like `render`, but a string that is exactly one reference keeps the referenced type."""
    if not isinstance(value, str):
        return value
    whole = _REF.fullmatch(value.strip())
    if whole:
        return lookup(whole.group(1), sample, item)
    return render(value, sample, item)


def check_template(template: Any, field: str) -> str:
    """Fail at construction when a template is not a string or refers outside `item.`/`sample.`."""
    if not isinstance(template, str):
        raise GraderInputError(f"{field} must be a template string, got {type(template).__name__}")
    for ref in references(template):
        root, steps = parse_path(ref)
        if root not in ("item", "sample"):
            raise GraderInputError(f"{field}: template reference '{{{{{ref}}}}}' must start with item. or sample.")
        if root == "sample" and steps and steps[0] not in SAMPLE_FIELDS:
            raise GraderInputError(
                f"{field}: template reference '{{{{{ref}}}}}': the sample has no field {steps[0]!r}; "
                f"known: {list(SAMPLE_FIELDS)}"
            )
    return template


def render_field(template: str, sample: Sample, item: Mapping[str, Any], where: str, keep_type: bool = False) -> Any:
    """Render one template, naming the grader field (`where`) when a reference cannot be resolved."""
    try:
        return resolve(template, sample, item) if keep_type else render(template, sample, item)
    except GraderInputError as exc:
        raise GraderInputError(f"{where}: {exc}") from exc
    except SampleValueMissing as exc:
        raise SampleValueMissing(f"{where}: {exc}") from exc


def prepare(sample: Any, item: Any) -> tuple[Sample, Mapping[str, Any]]:
    """Coerce the sample (str / dict / Sample) and reject a non-mapping item with a clear error."""
    if not isinstance(item, Mapping):
        raise GraderInputError(f"item must be a mapping of fields, got {type(item).__name__}")
    return Sample.coerce(sample), item


def template_fields(grader: Any, prefix: str = "") -> dict[str, str]:
    """Every template string a grader holds, keyed by where it sits (`exact.reference`, `geo.input[1].content`).

    It walks the grader's dataclass fields / attributes, descending into message lists and into the
    sub-graders of a composed grader, so it works for any grader built from a spec.
    """
    name = prefix or str(getattr(grader, "name", type(grader).__name__))
    found: dict[str, str] = {}
    attrs = {f.name: getattr(grader, f.name) for f in dataclasses.fields(grader)} if dataclasses.is_dataclass(
        grader
    ) else dict(getattr(grader, "__dict__", {}))
    for key, value in attrs.items():
        if key.startswith("_") or key == "source":
            continue
        _collect(value, f"{name}.{key}", found)
    return found


def _collect(value: Any, where: str, found: dict[str, str]) -> None:
    if isinstance(value, str):
        if _REF.search(value):
            found[where] = value
    elif isinstance(value, Mapping):
        for key, child in value.items():
            if hasattr(child, "grade"):
                found.update(template_fields(child, f"{where.rsplit('.', 1)[0]}.{key}"))
            else:
                _collect(child, f"{where}.{key}", found)
    elif isinstance(value, (list, tuple)):
        for i, child in enumerate(value):
            _collect(child, f"{where}[{i}]", found)


def check_items(grader: Any, items: Any, source: str = "item") -> None:
    """Raise `GraderInputError` for the first item lacking a field some `{{item.*}}` template reads.

    Run where a task and its grader are loaded, so a dataset/grader mismatch stops the run before any model
    work rather than mid-training.
    """
    refs = {ref: where for where, text in template_fields(grader).items() for ref in references(text)}
    item_refs = {ref: where for ref, where in refs.items() if ref.startswith("item")}
    for index, item in enumerate(items):
        for ref, where in item_refs.items():
            try:
                lookup(ref, None, item)
            except GraderInputError as exc:
                raise GraderInputError(f"{source} {index}: {where}: {exc}") from exc
