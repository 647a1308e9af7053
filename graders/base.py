"""Core grader types shared by every scorer: `Sample`, `Grade` and the `Grader` protocol.

A grader grades one sample against one dataset item. Batching, concurrency and time limits live in
`graders.runner`, never in the individual graders. Expected failures (unparseable answer, timeout,
judge refusal) are returned as a `Grade` with `error` set so they are counted; misuse (a non-string
sample, a missing item field, a malformed spec) raises `GraderInputError` with a message naming
the offending field.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


class GraderInputError(ValueError):
    """Bad input or configuration a user must fix (not a property of the model's answer)."""


class SampleValueMissing(Exception):
    """A template read a sample value that this sample lacks (the output is not JSON, no tool was called).

    It is a property of the model's answer, so the runner grades that sample 0 with `error_kind`
    `sample_parse_error` and counts it, instead of stopping the batch.
    """

    kind = "sample_parse_error"


@dataclass(frozen=True)
class Sample:
    """One model output to grade, with the fields OpenAI's `sample` namespace has.

    `output_json` mirrors `{{sample.output_json}}`: the parsed JSON of the output when the task asked for
    structured output; when not given it is parsed lazily from `output_text` (fenced blocks tolerated) and
    is `None` if the text holds no JSON object. `output_tools` is the reply's `tool_calls` list as the chat
    completions API returns it; `choices` the chat-completions choices (built from the text and tool calls
    when not given).
    """

    output_text: str
    output_json: Any = None
    output_tools: tuple[Any, ...] | list[Any] | None = None
    choices: tuple[Any, ...] | list[Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.output_text, str):
            raise GraderInputError(
                f"sample.output_text must be a string, got {type(self.output_text).__name__}"
            )
        for key in ("output_tools", "choices"):
            value = getattr(self, key)
            if value is not None and not isinstance(value, (list, tuple)):
                raise GraderInputError(f"sample.{key} must be a list, got {type(value).__name__}")

    @classmethod
    def coerce(cls, value: Any) -> Sample:
        """Accept a `Sample`, a plain string, or a dict with `output_text`, `output_tools` or `choices`."""
        if isinstance(value, Sample):
            return value
        if isinstance(value, str):
            return cls(value)
        if isinstance(value, Mapping) and {"output_text", "output_tools", "choices"} & set(value):
            text, tools = value.get("output_text"), value.get("output_tools")
            choices = value.get("choices")
            if text is None and isinstance(choices, list) and choices:
                message = (choices[0] or {}).get("message") or {}
                text = message.get("content") or ""
                tools = tools if tools is not None else message.get("tool_calls")
            return cls(text if text is not None else "", value.get("output_json"), tools, choices)
        raise GraderInputError(
            "a sample must be a string or an object with 'output_text', 'output_tools' or 'choices', "
            f"got {type(value).__name__}"
        )

    def json(self) -> Any:
        """The output as JSON: `output_json` when given, else the first JSON value in the text."""
        if self.output_json is not None:
            return self.output_json
        from graders.extract import extract_json

        return extract_json(self.output_text)

    def tools(self) -> list[Any]:
        """The tool calls of the reply (an empty list when it called none)."""
        return list(self.output_tools or [])

    def chat_choices(self) -> list[Any]:
        """`choices` as given, else one chat-completions choice holding the text and the tool calls."""
        if self.choices is not None:
            return list(self.choices)
        message = {"role": "assistant", "content": self.output_text, "tool_calls": self.tools() or None}
        return [{"index": 0, "message": message, "finish_reason": "tool_calls" if self.output_tools else "stop"}]

    def to_dict(self) -> dict[str, Any]:
        """The `sample` argument of an OpenAI python grader, and the root of `{{sample.*}}` templates."""
        return {
            "output_text": self.output_text,
            "output_json": self.json(),
            "output_tools": self.tools(),
            "choices": self.chat_choices(),
        }


@dataclass
class Grade:
    """The result of grading one sample.

    score: in [0, 1]. details: parsed answer, sub-scores, judge reasoning, per-test results...
    error: why grading could not judge the answer (timeout, unparseable, sandbox status) or None.
    sub_grades: for composed graders, the grade of every named sub-grader.
    """

    score: float
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    sub_grades: dict[str, Grade] = field(default_factory=dict)

    def __post_init__(self) -> None:
        score = float(self.score)
        if score != score or not 0.0 <= score <= 1.0:
            raise ValueError(f"Grade.score must be in [0, 1], got {self.score!r}")
        self.score = score

    @classmethod
    def failure(cls, error: str, **details: Any) -> Grade:
        """A zero score that records why the answer could not be judged (`error_kind` in details if known)."""
        return cls(0.0, dict(details), error)

    @classmethod
    def from_exception(cls, exc: BaseException) -> Grade:
        """The counted error grade for an exception raised while grading one sample."""
        if isinstance(exc, SampleValueMissing):
            return cls.failure(f"{exc.kind}: {exc}", error_kind=exc.kind)
        return cls.failure(f"{type(exc).__name__}: {exc}")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"score": self.score, "error": self.error, "details": _jsonable(self.details)}
        if self.sub_grades:
            out["sub_grades"] = {k: g.to_dict() for k, g in self.sub_grades.items()}
        return out


@runtime_checkable
class Grader(Protocol):
    """Anything with a `name` and `grade(sample, item) -> Grade`.

    A grader may also define `async agrade(sample, item)` (a judge calling a server); the runner
    prefers it when present. `pass_threshold` (default 1.0) turns a score into pass/fail.
    """

    name: str

    def grade(self, sample: Sample, item: Mapping[str, Any]) -> Grade: ...


def error_kind(grade: Grade) -> str | None:
    """What kind of error a grade records, named as in OpenAI's grader-run `metadata.errors` where one fits.

    Graders set `details["error_kind"]` (`sample_parse_error`, `model_grader_parse_error`, ...); a timeout is
    `unresponsive_reward_error`; anything else is `other_error`. `None` for a grade without an error.
    """
    if grade.error is None:
        return None
    if grade.error == "timeout":
        return "unresponsive_reward_error"
    return str(grade.details.get("error_kind") or "other_error")


def pass_threshold(grader: Any) -> float:
    """The score at or above which a sample counts as correct for accuracy metrics."""
    return float(getattr(grader, "pass_threshold", 1.0))


async def agrade(grader: Grader, sample: Sample, item: Mapping[str, Any]) -> Grade:
    """Grade asynchronously: native `agrade` when the grader has one, else `grade` in a thread."""
    native = getattr(grader, "agrade", None)
    if native is not None:
        return await native(sample, item)
    return await asyncio.to_thread(grader.grade, sample, item)


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        if isinstance(value, Mapping):
            return {str(k): _jsonable(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [_jsonable(v) for v in value]
        return repr(value)
