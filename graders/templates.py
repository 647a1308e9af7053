"""OpenAI-style `{{item.x}}` / `{{sample.output_text}}` template rendering.

Supported references: `{{item.field}}`, nested `{{item.a.b}}` (list indices too: `{{item.xs.0}}`),
`{{sample.output_text}}`, `{{sample.output_json}}` and `{{sample.output_json.a.b}}`. A reference
to a field the item lacks raises `GraderInputError` naming the path, never renders as empty text.
The helpers every templated grader shares live here too: the default `input` / `reference`
templates, `check_template` (at construction), `render_field` (per sample) and `prepare`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from graders.base import GraderInputError, Sample

_REF = re.compile(r"\{\{\s*([A-Za-z_][\w.\-]*)\s*\}\}")

DEFAULT_INPUT = "{{sample.output_text}}"
DEFAULT_REFERENCE = "{{item.answer}}"


def references(template: str) -> list[str]:
    """The dotted paths a template refers to, e.g. ['item.answer', 'sample.output_text']."""
    return _REF.findall(template)


def lookup(path: str, sample: Sample | None, item: Mapping[str, Any]) -> Any:
    """Resolve one dotted path (`item.a.b`, `sample.output_json.x`) to its value."""
    root, *rest = path.split(".")
    if root == "item":
        value: Any = item
    elif root == "sample":
        if sample is None:
            raise GraderInputError(f"template reference '{{{{{path}}}}}' needs a sample")
        value = sample.to_dict()
    else:
        raise GraderInputError(f"template reference '{{{{{path}}}}}' must start with 'item.' or 'sample.'")
    walked = root
    for key in rest:
        walked += "." + key
        if isinstance(value, Mapping) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            raise GraderInputError(f"template reference '{{{{{path}}}}}': '{walked}' is missing")
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
        if ref.split(".")[0] not in ("item", "sample"):
            raise GraderInputError(f"{field}: template reference '{{{{{ref}}}}}' must start with item. or sample.")
    return template


def render_field(template: str, sample: Sample, item: Mapping[str, Any], where: str, keep_type: bool = False) -> Any:
    """Render one template, naming the grader field (`where`) when a reference cannot be resolved."""
    try:
        return resolve(template, sample, item) if keep_type else render(template, sample, item)
    except GraderInputError as exc:
        raise GraderInputError(f"{where}: {exc}") from exc


def prepare(sample: Any, item: Any) -> tuple[Sample, Mapping[str, Any]]:
    """Coerce the sample (str / dict / Sample) and reject a non-mapping item with a clear error."""
    if not isinstance(item, Mapping):
        raise GraderInputError(f"item must be a mapping of fields, got {type(item).__name__}")
    return Sample.coerce(sample), item
