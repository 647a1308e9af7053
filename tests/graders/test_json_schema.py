"""json_schema grader: parsing (fences, prose), schema validation, field-wise partial credit."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from graders.base import GraderInputError, Sample
from graders.json_schema import JsonSchemaGrader

INVOICE = {
    "type": "object",
    "required": ["vendor", "total", "currency"],
    "properties": {
        "vendor": {"type": "string"},
        "total": {"type": "number"},
        "currency": {"enum": ["EUR", "USD"]},
        "address": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
ITEM = {"expected": {"vendor": "Acme Corp", "total": 1234.5, "currency": "EUR", "address": {"city": "Lyon"}}}
FIELDS = {"vendor": "normalized", "total": {"mode": "numeric", "tolerance": 0.01}}


def _grader(**kwargs) -> JsonSchemaGrader:
    return JsonSchemaGrader("invoice", INVOICE, reference="{{item.expected}}", fields=FIELDS, **kwargs)


@pytest.mark.parametrize(
    ("output", "score", "error", "failed"),
    [
        ('{"vendor": "Acme Corp", "total": 1234.5, "currency": "EUR", "address": {"city": "Lyon"}}', 1.0, None, {}),
        # fenced and surrounded by prose; vendor matches after normalisation, total within 0.01
        (('Here:\n```json\n{"vendor": "ACME corp.", "total": 1234.509, "currency": "EUR",'
          ' "address": {"city": "Lyon"}}\n```'), 1.0, None, {}),
        # two of four leaf fields wrong -> half credit, each failure explained
        ('{"vendor": "Acme Corp", "total": 1234.6, "currency": "USD", "address": {"city": "Lyon"}}', 0.5, None,
         {"total": "expected 1234.5, got 1234.6", "currency": "expected 'EUR', got 'USD'"}),
        ('{"vendor": "Acme", "total": 1234.5, "currency": "EUR"}', 0.5, None,
         {"vendor": "expected 'Acme Corp', got 'Acme'", "address.city": "missing"}),
        ("I could not find an invoice.", 0.0, "unparseable", None),
        ('{"vendor": "Acme Corp", "total": "a lot", "currency": "GBP"}', 0.0, "schema_violation", None),
    ],
)
def test_json_schema_grades(output: str, score: float, error: str | None, failed: dict | None) -> None:
    grade = _grader().grade(Sample(output), ITEM)
    assert grade.score == pytest.approx(score)
    assert grade.error == error
    if failed is not None:
        assert grade.details["failed"] == failed


def test_schema_violations_are_listed_with_their_paths() -> None:
    grade = _grader().grade('{"vendor": 3, "total": "x", "currency": "GBP"}', ITEM)
    assert grade.details["violations"] == [
        "currency: 'GBP' is not one of ['EUR', 'USD']",
        "total: 'x' is not of type 'number'",
        "vendor: 3 is not of type 'string'",
    ]


@pytest.mark.parametrize(
    ("mode", "got", "want", "matched"),
    [
        ("exact", 3, 3.0, True),
        ("exact", True, 1, False),  # a boolean is not the number 1
        ("exact", "3", 3, False),
        ("numeric", "1,000", 1000, True),
        ("numeric", "ten", 10, False),
        ("normalized", "  The Answer! ", "the answer", True),
        ("normalized", [1, 2], [2, 1], False),
    ],
)
def test_field_modes(mode: str, got, want, matched: bool) -> None:
    grader = JsonSchemaGrader(schema={"type": "object"}, reference={"x": want}, default_mode=mode)
    assert grader.grade(json.dumps({"x": got}), {}).score == float(matched)


def test_without_reference_a_valid_answer_scores_one_and_output_json_is_used() -> None:
    grader = JsonSchemaGrader(schema=INVOICE)
    sample = Sample("not json at all", output_json={"vendor": "A", "total": 1, "currency": "USD"})
    assert grader.grade(sample, {}).score == 1.0


def test_schema_from_file_and_pickling(tmp_path: Path) -> None:
    path = tmp_path / "invoice.schema.json"
    path.write_text(json.dumps(INVOICE))
    grader = pickle.loads(pickle.dumps(JsonSchemaGrader(schema=str(path))))
    assert grader.grade('{"vendor": "A", "total": 1, "currency": "USD"}', {}).score == 1.0
    assert grader.grade('{"vendor": "A"}', {}).error == "schema_violation"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"schema": {"type": "objekt"}}, r"invoice.schema is not a valid JSON Schema at type"),
        ({"schema": {"properties": {"a": {"type": 5}}}}, r"at properties.a.type"),
        ({"schema": {"required": "a"}}, r"at required: 'a' is not of type 'array'"),
        ({"schema": [1]}, "must be a JSON object"),
        ({"schema": "/no/such/schema.json"}, "cannot read JSON Schema"),
        ({"schema": {}, "fields": {"a": "fuzzy"}}, r"invoice.fields.a: mode 'fuzzy' is not one of"),
    ],
)
def test_malformed_configuration(kwargs: dict, message: str) -> None:
    with pytest.raises(GraderInputError, match=message):
        JsonSchemaGrader("invoice", **kwargs)


def test_reference_that_is_not_json_is_a_configuration_error() -> None:
    grader = JsonSchemaGrader(schema={}, reference="{{item.expected}}")
    with pytest.raises(GraderInputError, match="reference is not JSON"):
        grader.grade('{"a": 1}', {"expected": "{not json"})
    with pytest.raises(GraderInputError, match="'item.expected' is missing"):
        grader.grade('{"a": 1}', {})
