"""OpenAI-style grader specs: JSON Schema validation with field paths, dispatch, lazy imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from graders import spec as spec_module
from graders.base import GraderInputError
from graders.multi import MultiGrader
from graders.spec import SCHEMA_PATH, TYPES, grader_class, load_grader, read_spec, validate_spec
from graders.string import ExactMatchGrader, StringCheckGrader

DATA = Path(__file__).resolve().parents[1] / "data"
CHECK = {"type": "string_check", "name": "c", "input": "{{sample.output_text}}",
         "reference": "{{item.answer}}", "operation": "eq"}
MESSAGES = [{"role": "system", "content": "Grade it."}, {"role": "user", "content": "{{sample.output_text}}"}]

# Spec shapes as OpenAI documents them: they must pass our schema unchanged.
OPENAI_SPECS = [
    CHECK,
    {"type": "text_similarity", "name": "s", "input": "{{sample.output_text}}", "reference": "{{item.ref}}",
     "evaluation_metric": "bleu", "pass_threshold": 0.5},
    {"type": "score_model", "name": "judge", "model": "gpt-4o-mini", "input": MESSAGES, "range": [0, 1],
     "pass_threshold": 0.7, "sampling_params": {"temperature": 0, "max_completions_tokens": 64}},
    {"type": "label_model", "name": "tone", "model": "gpt-4o-mini", "input": MESSAGES,
     "labels": ["polite", "rude"], "passing_labels": ["polite"]},
    {"type": "python", "name": "py", "source": "def grade(sample, item):\n    return 1.0\n", "image_tag": "2025-05-08"},
    {"type": "multi", "name": "m", "graders": {"c": CHECK}, "calculate_output": "c"},
]


def test_importing_graders_never_imports_torch() -> None:
    code = (
        "import sys, graders, graders.spec, graders.runner, graders.multi, graders.json_schema\n"
        "from graders.spec import load_grader\n"
        "g = load_grader(sys.argv[1])\n"
        "assert g.grade('Paris', {'reference_answer': 'Paris'}).score == 1.0\n"
        "bad = [m for m in ('torch', 'transformers', 'rft') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    run = subprocess.run([sys.executable, "-c", code, str(DATA / "grade_openai_spec.json")],
                         check=False, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr


def test_schema_file_is_valid_and_covers_every_type() -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    Draft202012Validator.check_schema(schema)
    assert schema["properties"]["type"]["enum"] == list(TYPES)
    assert set(TYPES) <= set(schema["$defs"])
    validator = Draft202012Validator(schema)
    for spec in OPENAI_SPECS:
        assert list(validator.iter_errors(spec)) == []
    assert list(validator.iter_errors({**CHECK, "operation": "equals"}))


@pytest.mark.parametrize("spec", OPENAI_SPECS, ids=lambda s: s["type"])
def test_openai_specs_validate_unchanged(spec: dict) -> None:
    validate_spec(spec)


def test_real_openai_spec_file_loads_and_grades() -> None:
    grader = load_grader(DATA / "grade_openai_spec.json")
    assert isinstance(grader, MultiGrader)
    grade = grader.grade("Paris", {"reference_answer": "Paris"})
    assert grade.score == 1.0
    assert set(grade.sub_grades) == {"exact", "mentions", "similar"}
    # "paris." fails eq, passes ilike; fuzzy_match lower-cases and drops punctuation first: "paris" == "paris"
    grade = grader.grade("paris.", {"reference_answer": "Paris"})
    assert grade.score == 0.5
    # "Pariss": Indel distance 1 over 11 chars -> ratio 10/11, and WRatio keeps the plain ratio for equal lengths
    grade = grader.grade("Pariss", {"reference_answer": "Paris"})
    assert grade.score == pytest.approx(0.25 + 0.25 * (10 / 11))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"type": "multi", "graders": {"correct": {**CHECK, "operation": "equals"}}, "calculate_output": "correct"},
         "graders.correct.operation: 'equals' is not one of ['eq', 'ne', 'like', 'ilike']"),
        ({"type": "stringcheck"}, "(root): grader spec type 'stringcheck' is unknown; known types: string_check,"),
        ({"name": "x"}, "(root): grader spec has no 'type'; known types:"),
        ({k: v for k, v in CHECK.items() if k != "reference"}, "(root): 'reference' is a required property"),
        ({**CHECK, "operaton": "eq"}, "(root): Additional properties are not allowed ('operaton' was unexpected)"),
        ({**CHECK, "input": 3}, "input: 3 is not of type 'string'"),
        ({**OPENAI_SPECS[1], "evaluation_metric": "rouge"}, "evaluation_metric: 'rouge' is not one of"),
        ({**OPENAI_SPECS[1], "pass_threshold": 2}, "pass_threshold: 2 is greater than the maximum of 1"),
        ({**OPENAI_SPECS[2], "range": [0]}, "range: [0] is too short"),
        ({**OPENAI_SPECS[2], "input": [{"role": "robot", "content": "x"}]}, "input.0.role: 'robot' is not one of"),
        ({k: v for k, v in OPENAI_SPECS[3].items() if k != "labels"}, "'labels' is a required property"),
        ({"type": "python", "source": ""}, "source: '' should be non-empty"),
        ({"type": "multi", "graders": {"a": {"type": "multi", "graders": {"b": CHECK}}}},
         "graders.a: a multi grader cannot contain another multi"),
        ({"type": "multi", "graders": {"a": {"type": "nope"}}}, "graders.a: grader spec type 'nope' is unknown"),
        ({"type": "multi", "graders": {"a": "exact"}}, "graders.a: must be a grader spec object"),
        ({"type": "multi", "graders": {}}, "graders: {} should be non-empty"),
        ({"type": "multi", "graders": {"c": CHECK}, "calculate_output": "c + d"}, "unknown name 'd'"),
        ({"type": "json_schema", "schema": {"type": "objekt"}}, "is not a valid JSON Schema at type"),
        ({"type": "json_schema", "schema": {}, "fields": {"a": "fuzzy"}}, "fields.a: 'fuzzy' is not valid"),
    ],
)
def test_bad_specs_name_the_field(spec: dict, message: str) -> None:
    with pytest.raises(GraderInputError) as info:
        load_grader(spec)
    assert message in str(info.value)


def test_missing_grader_module_gives_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(TYPES, "reverse_check", "graders.not_written_yet:ReverseGrader")
    with pytest.raises(GraderInputError, match="'reverse_check' is provided by graders.not_written_yet:Reverse"):
        grader_class("reverse_check")


def test_dispatch_goes_through_the_types_registry() -> None:
    assert isinstance(load_grader(CHECK), StringCheckGrader)
    assert isinstance(load_grader({"type": "exact_match"}), ExactMatchGrader)
    for kind, target in TYPES.items():
        assert ":" in target, kind


def test_read_spec_accepts_text_files_and_request_bodies(tmp_path: Path) -> None:
    path = tmp_path / "g.json"
    path.write_text(json.dumps({"grader": CHECK, "item": {}, "model_sample": "x"}))
    assert read_spec(path) == CHECK
    assert read_spec(json.dumps(CHECK)) == CHECK
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "type": "string_check",\n  oops\n}')
    with pytest.raises(GraderInputError, match=r"bad.json: invalid JSON at line 3 column 3"):
        read_spec(bad)
    with pytest.raises(GraderInputError, match="cannot read grader spec"):
        read_spec(tmp_path / "missing.json")
    with pytest.raises(GraderInputError, match="must be a JSON object"):
        read_spec("[1, 2]")


@pytest.mark.parametrize(
    ("ref", "outcome"),
    [
        ("graders.string:ExactMatchGrader", ExactMatchGrader),  # a factory (the class) is called
        (f"{__name__}:CHECK", StringCheckGrader),  # a spec dict is loaded
        ("graders.templates:DEFAULT_INPUT", "not a grader"),
        ("graders.nowhere:grader", "cannot import grader 'graders.nowhere:grader'"),
        ("graders.string:nothing", "cannot import grader"),
    ],
)
def test_python_grader_references(ref: str, outcome) -> None:
    if isinstance(outcome, str):
        with pytest.raises(GraderInputError, match=outcome):
            load_grader(ref)
    else:
        assert isinstance(load_grader(ref), outcome)


def test_templates_reach_nested_item_and_sample_json() -> None:
    grader = load_grader({**CHECK, "input": "{{sample.output_json.city}}", "reference": "{{item.gold.city}}"})
    assert grader.grade('{"city": "Oslo"}', {"gold": {"city": "Oslo"}}).score == 1.0
    with pytest.raises(GraderInputError, match="'item.gold.city' is missing"):
        grader.grade('{"city": "Oslo"}', {"gold": {}})
    assert spec_module.sub_specs({"graders": CHECK}) == {"c": CHECK}


def test_registered_types_build_by_dotted_path_and_validate_with_their_own_schema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `rft` does for `reward_model`, here with a class `graders` has: nothing is imported until a spec uses it."""
    schema = tmp_path / "upper.schema.json"
    schema.write_text(json.dumps({"type": "object", "required": ["type"], "additionalProperties": False,
                                  "properties": {"type": {"const": "upper_match"}, "name": {"$ref": "#/$defs/name"}}}))
    monkeypatch.setattr(spec_module, "REGISTERED", {})
    spec_module.register_type("upper_match", "graders.string:ExactMatchGrader", schema)
    assert spec_module.known_types()["upper_match"] == "graders.string:ExactMatchGrader"
    assert isinstance(load_grader({"type": "upper_match", "name": "u"}), ExactMatchGrader)
    with pytest.raises(GraderInputError, match="Additional properties are not allowed"):
        load_grader({"type": "upper_match", "colour": "red"})
    with pytest.raises(GraderInputError, match="name: 7 is not of type 'string'"):  # the shared $defs resolve
        load_grader({"type": "upper_match", "name": 7})
    with pytest.raises(ValueError, match="'math' is built in"):
        spec_module.register_type("math", "graders.string:ExactMatchGrader", schema)
    with pytest.raises(ValueError, match="must look like 'package.module:Class'"):
        spec_module.register_type("upper2", "graders.string.ExactMatchGrader", schema)
