"""Structured-output grader: parse the answer as JSON, validate it against a JSON Schema, and
optionally give partial credit field by field against the item's reference object.

Unparseable output -> `Grade(error="unparseable")`; a schema violation -> `Grade(error="schema_violation")`
with the violations listed; both are counted, as kind `sample_parse_error` (the answer's fault, not the
grader's, so the grader-error alarm leaves them out). Without a reference a valid answer scores 1.0; with
one, the score is the fraction of reference fields (leaves, dotted paths) that match.

>>> from graders.base import Sample
>>> g = JsonSchemaGrader(schema={"type": "object", "required": ["total"]}, reference="{{item.expected}}",
...                      fields={"total": {"mode": "numeric", "tolerance": 0.01}})
>>> item = {"expected": {"total": 12.5, "currency": "EUR"}}
>>> grade = g.grade(Sample('```json\\n{"total": 12.504, "currency": "USD"}\\n```'), item)
>>> grade.score, grade.details["failed"]
(0.5, {'currency': "expected 'EUR', got 'USD'"})
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graders.base import Grade, GraderInputError, Sample
from graders.string import normalize_text
from graders.templates import DEFAULT_INPUT, check_template, prepare, render_field

_MISSING = object()


def _exact(got: Any, want: Any, _tol: float) -> bool:
    return got == want and isinstance(got, bool) == isinstance(want, bool)


def _normalized(got: Any, want: Any, _tol: float) -> bool:
    return normalize_text(_as_text(got)) == normalize_text(_as_text(want))


def _numeric(got: Any, want: Any, tol: float) -> bool:
    return _numbers_equal(got, want, tol)


# Field comparison modes: name -> (got, want, tolerance) -> matched. Tolerance is absolute.
MODES: dict[str, Callable[[Any, Any, float], bool]] = {
    "exact": _exact,
    "normalized": _normalized,
    "numeric": _numeric,
}


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _to_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.replace(",", "").strip())
        except ValueError:
            return None
    return None


def _numbers_equal(got: Any, want: Any, tol: float) -> bool:
    a, b = _to_float(got), _to_float(want)
    return a is not None and b is not None and math.isclose(a, b, rel_tol=0.0, abs_tol=tol)


def _leaves(value: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten nested objects to dotted paths; lists and scalars are compared whole."""
    if isinstance(value, Mapping) and value:
        out: dict[str, Any] = {}
        for key, sub in value.items():
            out.update(_leaves(sub, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: value}


def _get(value: Any, path: str) -> Any:
    for key in path.split("."):
        if not isinstance(value, Mapping) or key not in value:
            return _MISSING
        value = value[key]
    return value


def _load_schema(schema: Mapping[str, Any] | str | Path, name: str) -> dict[str, Any]:
    if isinstance(schema, (str, Path)):
        try:
            schema = json.loads(Path(schema).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise GraderInputError(f"{name}.schema: cannot read JSON Schema from {schema}: {exc}") from exc
    if not isinstance(schema, Mapping):
        raise GraderInputError(f"{name}.schema must be a JSON object, got {type(schema).__name__}")
    return dict(schema)


@dataclass
class JsonSchemaGrader:
    """Validate a JSON answer against `schema`; score fields against `reference` when given.

    fields: per-field comparison, `{"path": "exact" | "normalized" | "numeric"}` or
    `{"path": {"mode": "numeric", "tolerance": 0.01}}`; other fields use `default_mode`.
    """

    name: str = "json_schema"
    schema: Mapping[str, Any] | str | Path = field(default_factory=dict)
    input: str = DEFAULT_INPUT
    reference: Any = None
    fields: Mapping[str, str | Mapping[str, Any]] = field(default_factory=dict)
    default_mode: str = "exact"
    pass_threshold: float = 1.0

    def __post_init__(self) -> None:
        from jsonschema import SchemaError
        from jsonschema.validators import validator_for

        check_template(self.input, f"{self.name}.input")
        self.schema = _load_schema(self.schema, self.name)
        cls = validator_for(self.schema)
        try:
            cls.check_schema(self.schema)
        except SchemaError as exc:
            where = ".".join(str(p) for p in exc.absolute_path) or "(root)"
            raise GraderInputError(f"{self.name}.schema is not a valid JSON Schema at {where}: {exc.message}")
        self._validator = cls(self.schema)
        self._modes = {path: self._mode(path, spec) for path, spec in self.fields.items()}
        self._default = self._mode("default_mode", self.default_mode)

    def _mode(self, path: str, spec: str | Mapping[str, Any]) -> tuple[str, float]:
        mode, tol = (spec, 1e-9) if isinstance(spec, str) else (spec.get("mode"), spec.get("tolerance", 1e-9))
        if mode not in MODES:
            raise GraderInputError(f"{self.name}.fields.{path}: mode {mode!r} is not one of {list(MODES)}")
        return mode, float(tol)

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> JsonSchemaGrader:
        keys = ("input", "reference", "fields", "default_mode", "pass_threshold")
        return cls(spec.get("name", "json_schema"), spec["schema"], **{k: spec[k] for k in keys if k in spec})

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_validator"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        from jsonschema.validators import validator_for

        self.__dict__.update(state)
        self._validator = validator_for(self.schema)(self.schema)

    def grade(self, sample: Sample, item: Mapping[str, Any]) -> Grade:
        sample, item = prepare(sample, item)
        answer = self._parse(sample, item)
        if answer is _MISSING:
            return Grade.failure("unparseable", error_kind="sample_parse_error",
                                 input=render_field(self.input, sample, item, "input")[:500])
        violations = [
            f"{'.'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
            for e in sorted(self._validator.iter_errors(answer), key=lambda e: list(map(str, e.path)))
        ]
        if violations:
            return Grade.failure("schema_violation", error_kind="sample_parse_error", answer=answer,
                                 violations=violations)
        if self.reference is None:
            return Grade(1.0, {"answer": answer})
        reference = self.reference
        if isinstance(reference, str):
            reference = render_field(reference, sample, item, f"{self.name}.reference", keep_type=True)
        return self._score_fields(answer, reference)

    def _parse(self, sample: Sample, item: Mapping[str, Any]) -> Any:
        from graders.extract import extract_json

        if self.input == DEFAULT_INPUT and sample.output_json is not None:
            return sample.output_json
        text = render_field(self.input, sample, item, f"{self.name}.input")
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            found = extract_json(text)
            return _MISSING if found is None else found

    def _score_fields(self, answer: Any, reference: Any) -> Grade:
        if isinstance(reference, str):
            try:
                reference = json.loads(reference)
            except json.JSONDecodeError as exc:
                raise GraderInputError(f"{self.name}.reference is not JSON: {exc}") from exc
        expected = _leaves(reference)
        failed: dict[str, str] = {}
        for path, want in expected.items():
            got = _get(answer, path) if path else answer
            mode, tol = self._modes.get(path, self._default)
            if got is _MISSING:
                failed[path] = "missing"
            elif not MODES[mode](got, want, tol):
                failed[path] = f"expected {want!r}, got {got!r}"
        score = (len(expected) - len(failed)) / len(expected) if expected else 1.0
        return Grade(score, {"answer": answer, "fields": len(expected), "failed": failed})
