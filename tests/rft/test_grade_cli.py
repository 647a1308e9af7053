"""`rft grade` run as a real subprocess (`python -m rft.cli grade ...`) on real spec and JSONL files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rft.cli import app

DATA = Path(__file__).resolve().parents[1] / "data"
ROOT = Path(__file__).resolve().parents[2]
INVOICE_SPEC = {
    "type": "json_schema",
    "name": "invoice",
    "schema": {"type": "object", "required": ["vendor", "total"]},
    "reference": "{{item.expected}}",
    "fields": {"vendor": "normalized", "total": {"mode": "numeric", "tolerance": 0.5}},
}


def rft(*args: str | Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "rft.cli", "grade", *map(str, args)]
    return subprocess.run(cmd, check=False, capture_output=True, text=True, cwd=ROOT, timeout=180)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_grade_openai_multi_spec_prints_means_and_writes_grades(tmp_path: Path) -> None:
    out = tmp_path / "graded.jsonl"
    run = rft(DATA / "grade_openai_spec.json", DATA / "grade_capitals.jsonl", "--out", out, "--workers", "2")
    assert run.returncode == 0, run.stderr
    # exact: Paris and Madrid match (2/4); mentions (ilike): all but "Milan" (3/4)
    assert "  exact: mean 0.5000" in run.stdout
    assert "  mentions: mean 0.7500" in run.stdout
    assert "errors: 0   timeouts: 0" in run.stdout
    # blank line 3 skipped; "Milan" shares only "m" with "Rome" (after lower-casing): fuzzy 1 - 7/9, times 0.25
    assert "grade_capitals.jsonl:4: score 0.0556 sample='Milan'" in run.stdout
    assert "      capital_city.similar.reference = 'Rome'" in run.stdout  # the rendered templates of a failure
    graded = _lines(out)
    assert [g["grade"]["sub_grades"]["exact"]["score"] for g in graded] == [1.0, 0.0, 0.0, 1.0]
    assert graded[3]["item"]["country"] == "Spain"  # the input line is kept as it was
    mean = sum(g["grade"]["score"] for g in graded) / 4
    assert f"mean score: {mean:.4f}" in run.stdout


def test_grade_json_schema_spec_counts_unparseable_as_error(tmp_path: Path) -> None:
    spec = tmp_path / "invoice.json"
    spec.write_text(json.dumps(INVOICE_SPEC))
    out = tmp_path / "graded.jsonl"
    run = rft(spec, DATA / "grade_invoices.jsonl", "--out", out, "--mode", "thread")
    assert run.returncode == 0, run.stderr
    # line 1: both fields right (1.0); line 2: total 98 vs 99 outside 0.5 (0.5); line 3: unparseable (0.0)
    assert [g["grade"]["score"] for g in _lines(out)] == [1.0, 0.5, 0.0]
    assert "mean score: 0.5000" in run.stdout
    assert "errors: 1   timeouts: 0" in run.stdout
    assert "grade_invoices.jsonl:3: score 0.0000 error=unparseable" in run.stdout


def test_python_grader_reference_and_validate(tmp_path: Path) -> None:
    data = tmp_path / "answers.jsonl"
    data.write_text('{"answer": "1,000", "sample": "1000"}\n{"answer": "7", "sample": "eight"}\n')
    run = rft("graders.string:ExactMatchGrader", data, "--mode", "thread")
    assert run.returncode == 0, run.stderr
    assert "mean score: 0.5000" in run.stdout
    check = rft(DATA / "grade_openai_spec.json", "--validate")
    assert (check.returncode, check.stdout.strip()) == (0, "spec ok: MultiGrader 'capital_city'")


@pytest.mark.parametrize(
    ("spec", "lines", "message"),
    [
        ({"type": "multi", "graders": {"correct": {"type": "string_check", "input": "a", "reference": "b",
                                                   "operation": "equals"}}},
         None, "graders.correct.operation: 'equals' is not one of ['eq', 'ne', 'like', 'ilike']"),
        ({"type": "fuzzy"}, None, "grader spec type 'fuzzy' is unknown; known types: string_check"),
        ({"type": "exact_match"}, '{"answer": "1", "sample": "1"}\n{"answer": 2, "sample": \n',
         "data.jsonl:2: invalid JSON"),
        ({"type": "exact_match"}, '["answer", "1"]\n', "data.jsonl:1: expected a JSON object"),
        ({"type": "exact_match"}, '{"answer": "1", "sample": "1"}\n\n{"answer": "2"}\n',
         "data.jsonl:3: no sample: give 'sample', 'model_sample', 'output_text' or 'output_tools'"),
        ({"type": "exact_match"}, '{"answer": "1", "sample": 5}\n', "data.jsonl:1: a sample must be a string"),
        ({"type": "exact_match"}, '{"answer": "1", "sample": "1"}\n{"reply": "2", "sample": "2"}\n',
         "data.jsonl:2: exact_match.reference: template reference '{{item.answer}}': 'item.answer' is missing"),
    ],
)
def test_bad_specs_and_lines_exit_2_naming_file_and_line(
    tmp_path: Path, spec: dict, lines: str | None, message: str
) -> None:
    """In-process (typer's CliRunner) to keep the table fast; the tests above run the real subprocess."""
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec))
    args = [str(spec_path), "--validate"]
    if lines is not None:
        (tmp_path / "data.jsonl").write_text(lines)
        args = [str(spec_path), str(tmp_path / "data.jsonl"), "--mode", "thread"]
    result = CliRunner().invoke(app, ["grade", *args])
    assert result.exit_code == 2
    assert message in result.stderr


def test_csv_rows_are_graded_too(tmp_path: Path) -> None:
    data = tmp_path / "answers.csv"
    data.write_text("answer,sample\n42,The answer is 42\n7,8\n")
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"type": "string_check", "input": "{{sample.output_text}}",
                                "reference": "{{item.answer}}", "operation": "like"}))
    result = CliRunner().invoke(app, ["grade", str(spec), str(data), "--mode", "thread"])
    assert result.exit_code == 0, result.stderr
    assert "mean score: 0.5000" in result.stdout
    assert "answers.csv:3: score 0.0000" in result.stdout


def test_report_counts_errors_by_kind_and_shows_what_each_template_rendered(tmp_path: Path) -> None:
    """OpenAI's tool-call multi grader: a sample that called no tool is a counted sample_parse_error."""
    spec = tmp_path / "tools.json"
    spec.write_text(json.dumps({
        "type": "multi",
        "graders": {
            "function_name": {"name": "function_name", "type": "string_check", "input": "get_acceptors",
                              "reference": "{{sample.output_tools[0].function.name}}", "operation": "eq"},
            "arguments": {"name": "arguments", "type": "string_check", "input": "{\"smiles\": \"{{item.smiles}}\"}",
                          "reference": "{{sample.output_tools[0].function.arguments}}", "operation": "eq"},
        },
        "calculate_output": "0.5 * function_name + 0.5 * arguments",
    }))
    call = {"id": "c1", "type": "function", "function": {"name": "get_acceptors", "arguments": '{"smiles": "CCO"}'}}
    data = tmp_path / "calls.jsonl"
    data.write_text(
        json.dumps({"smiles": "CCO", "output_tools": [call]}) + "\n"
        + json.dumps({"smiles": "CCN", "output_tools": [call]}) + "\n"
        + json.dumps({"smiles": "CCO", "output_text": "I cannot call tools."}) + "\n"
    )
    result = CliRunner().invoke(app, ["grade", str(spec), str(data), "--mode", "thread"])
    assert result.exit_code == 0, result.stderr
    assert "mean score: 0.5000" in result.stdout  # 1.0, 0.5 (wrong arguments), 0.0 (no tool call)
    assert "errors: 1   timeouts: 0" in result.stdout
    assert "  errors arguments: sample_parse_error x1" in result.stdout
    assert "  errors function_name: sample_parse_error x1" in result.stdout
    assert "calls.jsonl:3: score 0.0000 error=" in result.stdout
    assert "multi.arguments.reference = <cannot render: template reference" in result.stdout
    assert """multi.arguments.input = '{"smiles": "CCN"}'""" in result.stdout


def test_validate_never_loads_a_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rft.local_judge import LocalJudge

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    loaded = dict(LocalJudge._loaded)  # judges other tests in this session loaded
    messages = [{"role": "user", "content": "Reference: {{ item.reference_answer }}. Model answer: {{ sample.output_text }}"}]
    for model in ("o4-mini-2025-04-16", "default"):
        spec = tmp_path / f"{model}.json"
        spec.write_text(json.dumps({"type": "score_model", "name": "judge", "model": model, "input": messages,
                                    "range": [0, 1], "sampling_params": {"reasoning_effort": "medium"}}))
        result = CliRunner().invoke(app, ["grade", str(spec), "--validate"])
        assert (result.exit_code, result.stdout.strip()) == (0, "spec ok: ScoreModelGrader 'judge'")
    assert LocalJudge._loaded == loaded  # nothing new loaded, the packaged model included


def test_labels_report_the_graders_confusion_table(tmp_path: Path) -> None:
    """A case-sensitive string check against a rater who accepts any case: its false negatives show up."""
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"type": "string_check", "name": "exact", "operation": "eq",
                                "input": "{{sample.output_text}}", "reference": "{{item.answer}}"}))
    rows = [("Paris", "Paris", True, "europe"), ("paris", "Paris", True, "europe"), ("Lyon", "Paris", False, "europe"),
            ("Tokyo", "Tokyo", True, "asia"), ("tokyo", "Tokyo", "pass", "asia"), ("Kyoto", "Tokyo", "fail", "asia")]
    data = tmp_path / "labelled.jsonl"
    data.write_text("".join(json.dumps({"sample": s, "answer": a, "label": lab, "category": c}) + "\n"
                            for s, a, lab, c in rows))
    run = rft(spec, data, "--labels")
    assert run.returncode == 0, run.stderr
    assert "agreement with labels (6 samples, 0 grading errors counted as fails)" in run.stdout
    assert "precision 1.000  recall 0.500  false_positive_rate 0.000  false_negative_rate 0.500" in run.stdout
    assert "category 'asia' (3 samples)" in run.stdout and "kappa 0.400" in run.stdout  # p_o 4/6, p_e 4/9
    data.write_text(data.read_text() + json.dumps({"sample": "x", "answer": "y"}) + "\n")
    run = rft(spec, data, "--labels")
    assert run.returncode == 2 and "labelled.jsonl:7: no 'label' field" in run.stderr
