"""OpenAI's grader endpoints as pure functions, for a server to mount unchanged.

`run_grader(body)` answers `POST /v1/fine_tuning/alpha/graders/run` and `validate_grader(body)` answers
`POST /v1/fine_tuning/alpha/graders/validate`, with the request and response shapes of OpenAI's API
reference (openai-python `GraderRunResponse` / `GraderValidateResponse`):

    run:      {"grader": {...}, "item": {...}, "model_sample": "..."} ->
              {"reward", "sub_rewards", "model_grader_token_usage_per_model",
               "metadata": {"name", "type", "errors": {<flag>: bool, ...}, "execution_time",
                            "scores", "token_usage" (total tokens, as openai-python types it), "sampled_model_name"}}
    validate: {"grader": {...}} -> {"grader": {...}}

A malformed request or grader raises `APIError` (answer it with `exc.status` and `exc.body()`, OpenAI's error
shape). A grading failure is not an HTTP error: like OpenAI, the reward is 0 and `metadata.errors` says what
went wrong (a missing `item` field is `invalid_variable_error`, a sample value a template needs but the sample
lacks is `sample_parse_error`, a judge's bad reply `model_grader_parse_error`, ...). Model graders block on
their judge, so call these from a worker thread (a plain `def` route in FastAPI), not inside an event loop.

>>> body = {"grader": {"type": "string_check", "name": "c", "input": "{{sample.output_text}}",
...                    "reference": "{{item.answer}}", "operation": "eq"},
...         "item": {"answer": "4"}, "model_sample": "4"}
>>> run_grader(body)["reward"], validate_grader(body)["grader"]["name"]
(1.0, 'c')
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from typing import Any

from graders.base import Grade, GraderInputError, Sample, error_kind
from graders.spec import load_grader, read_spec, sub_specs

ERROR_FLAGS = (
    "formula_parse_error",
    "invalid_variable_error",
    "model_grader_parse_error",
    "model_grader_refusal_error",
    "model_grader_server_error",
    "other_error",
    "python_grader_runtime_error",
    "python_grader_server_error",
    "sample_parse_error",
    "truncated_observation_error",
    "unresponsive_reward_error",
)
MODEL_TYPES = ("score_model", "label_model")


class APIError(Exception):
    """A request OpenAI's API would refuse: HTTP `status` with an `invalid_request_error` body naming `param`."""

    def __init__(self, message: str, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.param, self.status = param, status

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": str(self),
                "type": "invalid_request_error",
                "param": self.param,
                "code": None,
            }
        }


def validate_grader(body: Any) -> dict[str, Any]:
    """`/graders/validate`: build the grader (no model is loaded, no request sent) and echo its spec."""
    spec = _spec(body)
    _load(spec)
    return {"grader": spec}


def run_grader(body: Any) -> dict[str, Any]:
    """`/graders/run`: grade `model_sample` against `item` and report it as OpenAI does."""
    spec = _spec(body)
    sample_text = body.get("model_sample")
    if not isinstance(sample_text, str):
        raise APIError("'model_sample' must be a string", "model_sample")
    item = body.get("item") or {}
    if not isinstance(item, Mapping):
        raise APIError("'item' must be an object", "item")
    grader = _load(spec)
    start = time.perf_counter()
    grade = _grade(grader, Sample(sample_text, output_json=_json_or_none(sample_text)), item)
    elapsed = time.perf_counter() - start
    usage: dict[str, dict[str, int]] = {}
    for model, judge in _model_graders(grader, spec):
        usage[model] = _total([usage.get(model, _total([])), _usage(judge)])
    sub_rewards = {key: sub.score for key, sub in grade.sub_grades.items()}
    return {
        "reward": grade.score,
        "sub_rewards": sub_rewards,
        "model_grader_token_usage_per_model": usage,
        "metadata": {
            "name": spec.get("name", spec["type"]),
            "type": spec["type"],
            "errors": _errors(grade, spec),
            "execution_time": elapsed,
            "scores": dict(sub_rewards),
            "token_usage": _total(usage.values())["total_tokens"] if usage else None,
            "sampled_model_name": next(iter(usage), None),
        },
    }


def _spec(body: Any) -> dict[str, Any]:
    if not isinstance(body, Mapping) or not isinstance(body.get("grader"), Mapping):
        raise APIError("the request body must be an object with a 'grader' object", "grader")
    try:
        return read_spec(body["grader"])
    except GraderInputError as exc:
        raise APIError(str(exc), "grader") from exc


def _load(spec: dict[str, Any]) -> Any:
    try:
        return load_grader(spec)
    except GraderInputError as exc:
        raise APIError(f"invalid grader: {exc}", "grader") from exc


def _json_or_none(text: str) -> Any:
    """OpenAI fills `output_json` only when the whole sample is valid JSON."""
    try:
        return json.loads(text)
    except ValueError:
        return None


def _grade(grader: Any, sample: Sample, item: Mapping[str, Any]) -> Grade:
    try:
        return grader.grade(sample, item)
    except GraderInputError as exc:  # a template naming a field this item lacks
        return Grade.failure(str(exc), error_kind="invalid_variable_error")
    except Exception as exc:  # noqa: BLE001 - reported in metadata.errors, as OpenAI does
        return Grade.from_exception(exc)


def _failures(grade: Grade, spec: Mapping[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(kind, error, grader type) for the grade and each failing sub-grade."""
    subs = sub_specs(spec) if spec["type"] == "multi" else {}
    for key, sub in grade.sub_grades.items():
        if sub.error:
            yield error_kind(sub) or "other_error", sub.error, str(subs.get(key, {}).get("type", ""))
    if grade.error and not any(s.error for s in grade.sub_grades.values()):
        yield error_kind(grade) or "other_error", grade.error, spec["type"]


def _errors(grade: Grade, spec: Mapping[str, Any]) -> dict[str, Any]:
    flags: dict[str, Any] = dict.fromkeys(ERROR_FLAGS, False)
    flags.update(
        model_grader_server_error_details=None,
        python_grader_runtime_error_details=None,
        python_grader_server_error_type=None,
    )
    for kind, error, kind_of_grader in _failures(grade, spec):
        if kind == "other_error" and kind_of_grader == "python":
            kind = "python_grader_runtime_error"
        flags[kind if kind in ERROR_FLAGS else "other_error"] = True
        if kind == "python_grader_runtime_error":
            flags["python_grader_runtime_error_details"] = error
        if kind == "model_grader_server_error":
            flags["model_grader_server_error_details"] = error
    return flags


def _model_graders(grader: Any, spec: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """(model name as the spec gives it, grader) for every model grader in the spec."""
    if spec["type"] in MODEL_TYPES:
        yield str(spec.get("model") or "default"), grader
    elif spec["type"] == "multi":
        for key, sub in sub_specs(spec).items():
            yield from _model_graders(grader.graders[key], sub)


def _usage(judge: Any) -> dict[str, int]:
    stats = judge.usage()
    prompt, completion = int(stats["prompt_tokens"]), int(stats["completion_tokens"])
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "cached_tokens": 0,
    }


def _total(usages: Any) -> dict[str, int]:
    total = dict.fromkeys(("prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens"), 0)
    for usage in usages:
        for key in total:
            total[key] += usage[key]
    return total
