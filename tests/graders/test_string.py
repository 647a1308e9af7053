"""string_check (OpenAI eq/ne/like/ilike) and exact/normalised match, with hard negatives."""

from __future__ import annotations

import pytest

from graders.base import GraderInputError, Sample, error_kind, pass_threshold
from graders.runner import grade_batch
from graders.string import ExactMatchGrader, StringCheckGrader, normalize_text
from graders.templates import check_items, render, template_fields
from graders.workers import SampleInputError


@pytest.mark.parametrize(
    ("operation", "output", "reference", "expected"),
    [
        ("eq", "Paris", "Paris", 1.0),
        ("eq", "Paris", "paris", 0.0),  # eq is case-sensitive
        ("eq", "Paris ", "Paris", 0.0),  # and whitespace-sensitive
        ("ne", "Paris", "Rome", 1.0),
        ("ne", "Paris", "Paris", 0.0),
        ("like", "It is Paris.", "Paris", 1.0),  # like = input contains reference
        ("like", "It is PARIS.", "Paris", 0.0),
        ("like", "Par", "Paris", 0.0),  # the reference inside the input, not the other way round
        ("ilike", "It is PARIS.", "paris", 1.0),
        ("ilike", "It is Lyon.", "paris", 0.0),
    ],
)
def test_string_check_operations(operation: str, output: str, reference: str, expected: float) -> None:
    grader = StringCheckGrader("city", "{{sample.output_text}}", "{{item.city}}", operation)
    grade = grader.grade(Sample(output), {"city": reference})
    assert grade.score == expected
    assert grade.error is None
    assert grade.details["reference"] == reference


def test_string_check_nested_item_and_output_json_templates() -> None:
    grader = StringCheckGrader("n", "{{sample.output_json.answer.city}}", "{{item.gold.city}}", "eq")
    sample = Sample('Sure: {"answer": {"city": "Oslo"}}')
    assert grader.grade(sample, {"gold": {"city": "Oslo"}}).score == 1.0
    assert grader.grade(sample, {"gold": {"city": "Bergen"}}).score == 0.0


TOOL_CALL = {"id": "call_1", "type": "function",
             "function": {"name": "get_acceptors", "arguments": '{"smiles": "CCO"}'}}


@pytest.mark.parametrize(
    ("template", "sample", "item", "expected"),
    [
        ("{{item.answers[0]}}", Sample("x"), {"answers": ["Oslo", "Bergen"]}, "Oslo"),
        ("{{ item.answers[-1] }}", Sample("x"), {"answers": ["Oslo", "Bergen"]}, "Bergen"),
        ("{{item.answers.1}}", Sample("x"), {"answers": ["Oslo", "Bergen"]}, "Bergen"),
        ('{{item["full name"].first}}', Sample("x"), {"full name": {"first": "Ada"}}, "Ada"),
        ("{{sample.output_tools[0].function.name}}", Sample("", output_tools=[TOOL_CALL]), {}, "get_acceptors"),
        ("{{sample.choices[0].message.tool_calls[0].id}}", Sample("", output_tools=[TOOL_CALL]), {}, "call_1"),
        ("{{sample.choices[0].message.content}}", Sample("Oslo"), {}, "Oslo"),
        ("{{item.n}} of {{item.xs[1]}}", Sample("x"), {"n": 2, "xs": [1, [3]]}, "2 of [3]"),
    ],
)
def test_indexed_templates(template: str, sample: Sample, item: dict, expected: str) -> None:
    assert render(template, sample, item) == expected


def test_missing_sample_value_is_a_counted_error_grade_and_missing_item_field_a_config_error() -> None:
    grader = StringCheckGrader("name", "{{sample.output_json.name}}", "{{item.name}}", "eq")
    result = grade_batch(grader, ['{"name": "Ada"}', "not json", '{"other": 1}'], [{"name": "Ada"}] * 3)
    assert result.scores == [1.0, 0.0, 0.0] and result.errors == 2
    assert [error_kind(g) for g in result.grades] == [None, "sample_parse_error", "sample_parse_error"]
    assert "'sample.output_json.name' is missing (the output is not JSON)" in result.grades[1].error
    assert "name.input: template reference" in result.grades[2].error
    tools = StringCheckGrader("tool", "get_acceptors", "{{sample.output_tools[0].function.name}}", "eq")
    no_call = grade_batch(tools, [Sample("I will not call a tool")], [{}]).grades[0]
    assert no_call.score == 0.0 and "(the sample called no tool)" in no_call.error
    with pytest.raises(SampleInputError, match="'item.name' is missing"):
        grade_batch(grader, ['{"name": "Ada"}'], [{"nom": "Ada"}])
    with pytest.raises(GraderInputError, match="the sample has no field 'output'"):
        StringCheckGrader("bad", "{{sample.output}}", "x", "eq")


def test_check_items_finds_the_first_item_lacking_a_template_field() -> None:
    grader = StringCheckGrader("tool", "{\"smiles\": \"{{item.smiles}}\"}", "{{sample.output_tools[0].function.arguments}}")
    assert template_fields(grader) == {"tool.input": '{"smiles": "{{item.smiles}}"}',
                                       "tool.reference": "{{sample.output_tools[0].function.arguments}}"}
    check_items(grader, [{"smiles": "CCO"}])
    with pytest.raises(GraderInputError, match=r"train item 1: tool.input: template reference '\{\{item.smiles\}\}'"):
        check_items(grader, [{"smiles": "CCO"}, {"smile": "C"}], "train item")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("  Hello,   World! ", "hello world"),
        ("1,234,567", "1234567"),
        ("$1,234.50", "1234.5"),
        ("3.0", "3"),
        ("+7", "7"),
        ("-0.00", "0"),
        ("-12", "-12"),
        ("12,34", "12 34"),  # not a thousands grouping: two numbers
        ("5, 6 and 7.", "5 6 and 7"),
        ("state-of-the-art", "state of the art"),
        ("snake_case", "snake case"),
        ("Ünïcode", "ünïcode"),
    ],
)
def test_normalize_text(text: str, expected: str) -> None:
    assert normalize_text(text) == expected


@pytest.mark.parametrize(
    ("output", "answer", "normalize", "expected"),
    [
        ("The answer is 1,234.", "the answer is 1234", True, 1.0),
        ("2.50", "2.5", True, 1.0),
        ("  42\n", "42", False, 1.0),  # strict mode still strips surrounding whitespace
        ("42.", "42", False, 0.0),
        ("Forty-two", "forty two", True, 1.0),
        ("25", "2.5", True, 0.0),  # hard negatives: digits kept, signs and decimals matter
        ("-5", "5", True, 0.0),
        ("1234", "12,34", True, 0.0),
        ("New York", "York", True, 0.0),
        ("the answer is 7", "7", True, 0.0),  # exact match compares the whole text
    ],
)
def test_exact_match(output: str, answer: str, normalize: bool, expected: float) -> None:
    assert ExactMatchGrader(normalize=normalize).grade(Sample(output), {"answer": answer}).score == expected


def test_exact_match_list_reference_matches_any_alias() -> None:
    grader = ExactMatchGrader(reference="{{item.aliases}}")
    item = {"aliases": ["NYC", "New York City"]}
    assert grader.grade("new york city", item).score == 1.0
    assert grader.grade("Boston", item).score == 0.0
    assert pass_threshold(grader) == 1.0


@pytest.mark.parametrize(
    ("build", "sample", "item", "message"),
    [
        (lambda: ExactMatchGrader(), 123, {"answer": "1"}, "must be a string"),
        (lambda: ExactMatchGrader(), Sample("x"), {"reply": "1"}, "'item.answer' is missing"),
        (lambda: ExactMatchGrader(), Sample("x"), ["1"], "item must be a mapping"),
        (lambda: StringCheckGrader(reference="{{item.a.b}}"), "x", {"a": {"c": 1}}, "'item.a.b' is missing"),
    ],
)
def test_bad_input_raises_naming_the_problem(build, sample, item, message: str) -> None:
    with pytest.raises(GraderInputError, match=message):
        build().grade(sample, item)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"operation": "equals"}, r"operation: 'equals' is not one of \['eq', 'ne', 'like', 'ilike'\]"),
        ({"input": "{{output_text}}"}, "must start with item. or sample."),
        ({"reference": 5}, "reference must be a template string"),
    ],
)
def test_bad_configuration_fails_at_construction(kwargs: dict, message: str) -> None:
    with pytest.raises(GraderInputError, match=message):
        StringCheckGrader("check", **kwargs)
