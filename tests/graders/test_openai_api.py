"""OpenAI's grader endpoints as pure functions: response shapes checked against openai-python's own types."""

from __future__ import annotations

from typing import Any

import pytest
from openai.types.fine_tuning.alpha import GraderRunResponse, GraderValidateResponse

from graders.openai_api import ERROR_FLAGS, APIError, run_grader, validate_grader

CHECK = {
    "type": "string_check",
    "name": "city",
    "input": "{{sample.output_text}}",
    "reference": "{{item.city}}",
    "operation": "ilike",
}
# OpenAI's graders guide, "Combined graders" (name + email from the sample's JSON output).
NAME_EMAIL = {
    "type": "multi",
    "graders": {
        "name": {
            "name": "name_grader",
            "type": "text_similarity",
            "input": "{{sample.output_json.name}}",
            "reference": "{{item.name}}",
            "evaluation_metric": "fuzzy_match",
            "pass_threshold": 0.9,
        },
        "email": {
            "name": "email_grader",
            "type": "string_check",
            "input": "{{sample.output_json.email}}",
            "reference": "{{item.email}}",
            "operation": "eq",
        },
    },
    "calculate_output": "(name + email) / 2",
}
PERSON = {"name": "John Doe", "email": "john.doe@gmail.com"}


def raised_flags(response: dict[str, Any]) -> list[str]:
    return [k for k in ERROR_FLAGS if response["metadata"]["errors"][k]]


def test_string_check_run_has_openais_exact_shape() -> None:
    response = run_grader({"grader": CHECK, "item": {"city": "Paris"}, "model_sample": "It is PARIS."})
    parsed = GraderRunResponse.model_validate(response)  # openai-python's own response type
    assert parsed.reward == 1.0 and parsed.sub_rewards == {} and parsed.metadata.type == "string_check"
    assert set(response) == {"reward", "sub_rewards", "model_grader_token_usage_per_model", "metadata"}
    assert set(response["metadata"]) == {
        "name",
        "type",
        "errors",
        "execution_time",
        "scores",
        "token_usage",
        "sampled_model_name",
    }
    assert response["metadata"]["name"] == "city" and response["metadata"]["token_usage"] is None
    assert raised_flags(response) == [] and 0 <= response["metadata"]["execution_time"] < 5


def test_multi_reports_sub_rewards_and_a_sample_parse_error() -> None:
    good = run_grader(
        {
            "grader": NAME_EMAIL,
            "item": PERSON,
            "model_sample": '{"name": "Jon Doe", "email": "john.doe@gmail.com"}',
        }
    )
    # "jon doe" vs "john doe": Indel distance 1 over 15 chars -> 14/15; (14/15 + 1) / 2
    assert good["sub_rewards"] == {"name": pytest.approx(14 / 15), "email": 1.0}
    assert good["reward"] == pytest.approx((14 / 15 + 1) / 2)
    assert good["metadata"]["scores"] == good["sub_rewards"] and raised_flags(good) == []
    prose = run_grader({"grader": NAME_EMAIL, "item": PERSON, "model_sample": "John Doe, john.doe@gmail.com"})
    GraderRunResponse.model_validate(prose)
    assert prose["reward"] == 0.0 and raised_flags(prose) == ["sample_parse_error"]


def test_missing_item_field_is_an_invalid_variable_error() -> None:
    response = run_grader({"grader": CHECK, "item": {"town": "Paris"}, "model_sample": "Paris"})
    assert response["reward"] == 0.0 and raised_flags(response) == ["invalid_variable_error"]


def test_unreachable_judge_is_a_model_grader_server_error() -> None:
    judge = {
        "type": "score_model",
        "name": "judge",
        "model": "judge",
        "base_url": "http://127.0.0.1:9/v1",
        "max_retries": 0,
        "input": [{"role": "user", "content": "Rate {{sample.output_text}}"}],
    }
    response = run_grader({"grader": judge, "model_sample": "0.9"})
    GraderRunResponse.model_validate(response)
    assert raised_flags(response) == ["model_grader_server_error"]
    assert "transport error" in response["metadata"]["errors"]["model_grader_server_error_details"]
    assert response["model_grader_token_usage_per_model"] == {
        "judge": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0, "cached_tokens": 0}
    }
    assert response["metadata"]["sampled_model_name"] == "judge" and response["metadata"]["token_usage"] == 0


def test_validate_echoes_the_grader_without_loading_a_model() -> None:
    judge = {
        "type": "score_model",
        "name": "judge",
        "model": "o4-mini-2025-04-16",
        "range": [0, 1],
        "input": [{"role": "user", "content": "{{sample.output_text}}"}],
        "sampling_params": {"reasoning_effort": "medium", "max_completions_tokens": 32768},
    }
    for grader in (CHECK, NAME_EMAIL, judge):
        assert validate_grader({"grader": grader}) == {"grader": grader}
    # openai-python types `multi.graders` as one grader with a required name, unlike the guide's own example,
    # so only the single graders are checked against its type
    for grader in (CHECK, judge):
        GraderValidateResponse.model_validate(validate_grader({"grader": grader}))


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        ({"model_sample": "x"}, "grader", "with a 'grader' object"),
        (
            {"grader": {**CHECK, "operation": "equals"}},
            "grader",
            "invalid grader: operation: 'equals' is not one of",
        ),
        (
            {"grader": {"type": "multi", "graders": {"m": NAME_EMAIL}, "calculate_output": "m"}},
            "grader",
            "graders.m: a multi grader cannot contain another multi",
        ),
        ({"grader": CHECK}, "model_sample", "'model_sample' must be a string"),
        ({"grader": CHECK, "model_sample": "x", "item": ["Paris"]}, "item", "'item' must be an object"),
    ],
)
def test_bad_requests_are_400s_naming_the_param(body: dict[str, Any], param: str, message: str) -> None:
    call = run_grader if "model_sample" in body or param == "model_sample" else validate_grader
    with pytest.raises(APIError, match=message) as info:
        call(body)
    assert info.value.status == 400
    assert info.value.body()["error"]["param"] == param
    assert info.value.body()["error"]["type"] == "invalid_request_error"
