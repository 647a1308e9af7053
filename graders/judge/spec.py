"""Checks for judge grader specs: every bad field is named before a model is loaded or a request sent.

Spec fields follow OpenAI's `score_model` / `label_model` graders (`input`, `range`, `pass_threshold`,
`labels`, `sampling_params`), plus rft's judge settings (`backend`, `base_url`, `api_key_env`, `rubric`,
`response_prefix`, `max_concurrency`, ...), listed in `graders.judge.backends.BACKEND_FIELDS` and
`COMMON_FIELDS` here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from graders.base import GraderInputError
from graders.judge.backends import BACKEND_FIELDS, JudgeClient, JudgeParams, backend_name, make_backend

_ROLES = ("system", "developer", "user", "assistant")
_TEXT_PARTS = ("input_text", "output_text")
# Fields every judge grader accepts, besides the backend's.
COMMON_FIELDS = frozenset(
    {
        "type",
        "name",
        "input",
        "pass_threshold",
        "sampling_params",
        "max_concurrency",
        "cache_size",
        "response_prefix",
    }
)


def check_messages(value: Any, where: str) -> list[dict[str, str]]:
    """Validate chat messages (`{"role", "content"}`, optional OpenAI `"type": "message"`); clean copies."""
    if not isinstance(value, list) or not value:
        raise GraderInputError(f"{where} must be a non-empty list of {{'role', 'content'}} messages")
    messages = []
    for i, msg in enumerate(value):
        ok = isinstance(msg, Mapping) and msg.get("role") in _ROLES and isinstance(msg.get("content"), str)
        if not ok:
            raise GraderInputError(
                f"{where}[{i}] must be {{'role': one of {_ROLES}, 'content': text}}, got {msg!r}"
            )
        extra = sorted(set(msg) - {"role", "content", "type"})
        if extra or msg.get("type", "message") != "message":
            raise GraderInputError(f"{where}[{i}]: unsupported fields {extra or ['type']}")
        messages.append({"role": msg["role"], "content": msg["content"]})
    return messages


def check_input(template: Any, where: str) -> list[dict[str, Any]]:
    """The grader's `input` message template; OpenAI content parts are accepted as well as plain text.

    `content` may be a string, one part, or a list of parts: `input_text` / `output_text` (`text`) and
    `input_image` (`image_url`, optional `detail`). Text-only parts are joined into one string with single
    spaces, as OpenAI's eval output items show a rendered grader input, so every backend can take them;
    messages with images keep a list of parts (see `has_images`).
    """
    if not isinstance(template, list) or not template:
        raise GraderInputError(f"{where}.input must be a non-empty list of {{'role', 'content'}} messages")
    messages = []
    for i, msg in enumerate(template):
        at = f"{where}.input[{i}]"
        if not isinstance(msg, Mapping) or msg.get("role") not in _ROLES or "content" not in msg:
            raise GraderInputError(f"{at} must be {{'role': one of {_ROLES}, 'content': text or parts}}, got {msg!r}")
        extra = sorted(set(msg) - {"role", "content", "type"})
        if extra or msg.get("type", "message") != "message":
            raise GraderInputError(f"{at}: unsupported fields {extra or ['type']}")
        messages.append({"role": msg["role"], "content": _content(msg["content"], f"{at}.content")})
    return messages


def _content(content: Any, where: str) -> str | list[dict[str, str]]:
    if isinstance(content, str):
        return content
    parts = [content] if isinstance(content, Mapping) else content
    if not isinstance(parts, list) or not parts:
        raise GraderInputError(f"{where} must be text, a content part or a non-empty list of parts")
    clean = []
    for j, part in enumerate(parts):
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind in _TEXT_PARTS and isinstance(part.get("text"), str) and set(part) <= {"type", "text"}:
            clean.append({"type": "input_text", "text": part["text"]})
        elif kind == "input_image" and isinstance(part.get("image_url"), str):
            if not set(part) <= {"type", "image_url", "detail"}:
                raise GraderInputError(f"{where}[{j}]: unsupported fields {sorted(set(part) - {'type', 'image_url', 'detail'})}")
            clean.append({k: str(v) for k, v in part.items()})
        else:
            raise GraderInputError(
                f"{where}[{j}] must be {{'type': 'input_text', 'text': ...}} or "
                f"{{'type': 'input_image', 'image_url': ...}}, got {part!r}"
            )
    if all(p["type"] == "input_text" for p in clean):
        return " ".join(p["text"] for p in clean)
    return clean


def has_images(messages: list[dict[str, Any]]) -> bool:
    """Whether any message shows the judge an image (only an http backend can send those)."""
    return any(not isinstance(m["content"], str) for m in messages)


def check_fields(spec: Mapping[str, Any], allowed: set[str], where: str) -> None:
    """Reject fields neither the grader (`allowed`) nor the judge backend knows, naming them."""
    unknown = sorted(set(spec) - allowed - BACKEND_FIELDS)
    if unknown:
        raise GraderInputError(
            f"{where}: unknown fields {unknown}; known: {sorted(allowed | BACKEND_FIELDS)}"
        )


def check_prefix(spec: Mapping[str, Any], where: str) -> str | None:
    """The optional `response_prefix`: the start of the judge's reply, for it to continue."""
    prefix = spec.get("response_prefix")
    if prefix is not None and (not isinstance(prefix, str) or not prefix):
        raise GraderInputError(f"{where}.response_prefix must be a non-empty string, got {prefix!r}")
    return prefix


def make_judge(spec: Mapping[str, Any], where: str) -> JudgeClient:
    """Check the judge settings, then build the backend (a local model is loaded only when first asked)."""
    params = JudgeParams.from_spec(spec.get("sampling_params"), f"{where}.sampling_params")
    if has_images(check_input(spec.get("input"), where)) and backend_name(spec, where) != "http":
        raise GraderInputError(
            f"{where}.input: input_image parts need an http judge backend (an OpenAI-compatible vision "
            f"model); backend {backend_name(spec, where)!r} takes text only"
        )
    concurrency = spec.get("max_concurrency", 8)
    if not isinstance(concurrency, int) or concurrency < 1:
        raise GraderInputError(f"{where}.max_concurrency must be a positive integer, got {concurrency!r}")
    return JudgeClient(make_backend(spec, where), params, concurrency, int(spec.get("cache_size", 10_000)))


def check_rubric(rubric: Any, where: str) -> list[dict[str, Any]]:
    """Validate `[{"criterion": text, "points": number}, ...]` (negative points allowed)."""
    if not isinstance(rubric, list) or not rubric:
        raise GraderInputError(f"{where} must be a non-empty list of {{'criterion', 'points'}} objects")
    for i, c in enumerate(rubric):
        ok = (
            isinstance(c, Mapping)
            and isinstance(c.get("criterion"), str)
            and set(c) <= {"criterion", "points"}
        )
        if not ok or isinstance(c.get("points"), bool) or not isinstance(c.get("points"), (int, float)):
            raise GraderInputError(f"{where}[{i}] must be {{'criterion': text, 'points': number}}, got {c!r}")
    if not any(c["points"] > 0 for c in rubric):
        raise GraderInputError(f"{where}: a rubric needs at least one criterion with positive points")
    return [dict(c) for c in rubric]


def check_range(value: Any, where: str) -> tuple[float, float]:
    """`range: [min, max]` with min < max, so scores can be normalised to [0, 1]."""
    ok = isinstance(value, (list, tuple)) and len(value) == 2
    ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    if not ok:
        raise GraderInputError(f"{where}.range must be [min, max] numbers, got {value!r}")
    lo, hi = float(value[0]), float(value[1])
    if lo >= hi:
        raise GraderInputError(f"{where}.range must have min < max, got [{lo:g}, {hi:g}]")
    return lo, hi
