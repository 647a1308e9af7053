"""Model-graded graders: `score_model` and `label_model`, following OpenAI's grader specs.

A judge model reads the rendered `input` messages (`{{item.*}}`, `{{sample.output_text}}`) and answers
with JSON `{"steps": [...], "result": ...}`. This is also the RLAIF path: the judge's score is the reward.
`score_model` maps a number in `range` to [0, 1]; its rubric form asks about each criterion separately and
scores achieved points over the positive points (negative points allowed, as in HealthBench).
`label_model` scores 1 when the chosen label is one of `passing_labels`.

An unparseable verdict, a refusal, or a judge that stays unreachable after retries is a `Grade` with
`error` set and is counted in `usage()`, never a silent 0. Settings are checked in `from_spec` before a
model is loaded or a request is sent.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from graders.base import Grade, GraderInputError, Sample
from graders.extract import extract_last_json
from graders.judge.backends import (
    JudgeClient,
    JudgeReply,
    JudgeUnavailable,
    Messages,
    run_sync,
)
from graders.judge.spec import (
    COMMON_FIELDS,
    check_fields,
    check_input,
    check_prefix,
    check_range,
    check_rubric,
    make_judge,
)
from graders.templates import render, resolve

T = TypeVar("T")

_STEPS = '"steps": [{"description": "...", "conclusion": "..."}]'
SCORE_INSTRUCTION = 'Reply with only a JSON object: {{{steps}, "result": <a number from {lo:g} to {hi:g}>}}'
LABEL_INSTRUCTION = 'Reply with only a JSON object: {{{steps}, "result": <exactly one of {labels}>}}'
CRITERION_INSTRUCTION = (
    "Judge whether the response meets the criterion given last. Reply with only a JSON object: "
    '{{{steps}, "result": true or false}}'
)
CRITERION = "Criterion ({points:+g} points): {criterion}"


class VerdictError(Exception):
    """The judge's reply holds no usable verdict."""


def parse_verdict(completion: JudgeReply) -> tuple[Any, list[Any]]:
    """`(result, steps)` from a judge reply, or `VerdictError` saying why there is none.

    >>> parse_verdict(JudgeReply('Sure. {"steps": ["fine"], "result": 7}'))
    (7, ['fine'])
    """
    if completion.refusal:
        raise VerdictError(f"judge refused: {completion.refusal[:200]}")
    if completion.finish_reason == "content_filter":
        raise VerdictError("judge reply was blocked by a content filter")
    data = extract_last_json(completion.text)
    if not isinstance(data, dict) or "result" not in data:
        hint = " (cut off at max_tokens)" if completion.finish_reason == "length" else ""
        raise VerdictError(
            f"no JSON object with 'result' in the judge reply{hint}: {completion.text[:200]!r}"
        )
    steps = data.get("steps", [])
    return data["result"], steps if isinstance(steps, list) else [steps]


def as_number(result: Any) -> float:
    """A numeric verdict; numeric strings are accepted, booleans are not."""
    if isinstance(result, bool):
        raise VerdictError(f"verdict result must be a number, got {result!r}")
    try:
        value = float(result)
    except (TypeError, ValueError) as exc:
        raise VerdictError(f"verdict result must be a number, got {result!r}") from exc
    if math.isnan(value):
        raise VerdictError("verdict result is NaN")
    return value


def as_bool(result: Any) -> bool:
    """A met / not-met verdict: JSON true/false, or the strings true/false/yes/no."""
    if isinstance(result, bool):
        return result
    text = str(result).strip().lower()
    if text in ("true", "yes"):
        return True
    if text in ("false", "no"):
        return False
    raise VerdictError(f"criterion verdict must be true or false, got {result!r}")


def rubric_score(points: Sequence[float], met: Sequence[bool]) -> float:
    """Achieved points over the total of positive points, clipped to [0, 1] (simple-evals' HealthBench).

    >>> rubric_score([5, 3, -4], [True, False, True])
    0.125
    """
    total = sum(p for p in points if p > 0)
    if total <= 0:
        raise GraderInputError("a rubric needs at least one criterion with positive points")
    achieved = sum(p for p, ok in zip(points, met) if ok)
    return min(1.0, max(0.0, achieved / total))


def append_text(content: str | list[dict[str, str]], text: str) -> str | list[dict[str, str]]:
    """Text added after a message's content, which may be a list of content parts."""
    if isinstance(content, str):
        return content + "\n\n" + text
    return [*content, {"type": "input_text", "text": "\n\n" + text}]


def render_content(content: Any, sample: Sample, item: Mapping[str, Any]) -> Any:
    """A message's content with its templates filled in (text, or the text and image URL of each part)."""
    if isinstance(content, str):
        return render(content, sample, item)
    return [{k: render(v, sample, item) if k in ("text", "image_url") else v for k, v in p.items()} for p in content]


def with_instruction(messages: Messages, instruction: str, last: str | None = None) -> Messages:
    """Put the answer-format instruction in the system message (prepending one if there is none).

    The instruction goes first, so the conversation being judged stays where the template put it; `last`
    (a rubric criterion) is added to the final user message, or as a new one.
    """
    out = [dict(m) for m in messages]
    if out[0]["role"] in ("system", "developer"):
        out[0]["content"] = append_text(out[0]["content"], instruction)
    else:
        out.insert(0, {"role": "system", "content": instruction})
    if last is not None and out[-1]["role"] == "user":
        out[-1]["content"] = append_text(out[-1]["content"], last)
    elif last is not None:
        out.append({"role": "user", "content": last})
    return out


class VerdictFailure(Exception):
    """A judge call that produced no usable verdict, with the details worth keeping.

    `kind` names the failure as OpenAI's grader-run metadata does: the judge was unreachable
    (`model_grader_server_error`), refused (`model_grader_refusal_error`) or gave no verdict
    (`model_grader_parse_error`).
    """

    def __init__(self, error: str, kind: str = "model_grader_parse_error", **details: Any) -> None:
        super().__init__(error)
        self.kind = kind
        self.details = details


class ModelGrader:
    """What `score_model` and `label_model` share: the message template, the judge and the sync wrapper.

    `response_prefix` (e.g. `{"result": `, cut where the tokenizer splits) starts the judge's reply for it to
    continue, keeping small local models on the JSON format; servers must support `continue_final_message`.
    """

    def __init__(
        self,
        name: str,
        input: list[dict[str, Any]],
        judge: JudgeClient,
        pass_threshold: float,
        response_prefix: str | None = None,
    ) -> None:
        self.name, self.input, self.judge, self.pass_threshold = name, input, judge, pass_threshold
        self.response_prefix = response_prefix

    def render(self, sample: Sample, item: Mapping[str, Any]) -> Messages:
        """The `input` messages with `{{item.*}}` and `{{sample.*}}` filled in."""
        return [{"role": m["role"], "content": render_content(m["content"], sample, item)} for m in self.input]

    def grade(self, sample: Sample, item: Mapping[str, Any]) -> Grade:
        """Synchronous grading for callers without an event loop (or inside one: runs on a helper loop)."""
        return run_sync(self.agrade(Sample.coerce(sample), item))  # type: ignore[attr-defined]

    def usage(self) -> dict[str, Any]:
        """Requests, cache hits, errors, retries, token counts and judge latency so far."""
        return self.judge.usage()

    async def verdict(self, messages: Messages, convert: Callable[[Any], T]) -> tuple[T, dict[str, Any]]:
        """Ask the judge and convert its `result`; details hold steps, usage, latency and cache state."""
        prefix = self.response_prefix or ""
        if prefix:
            messages = [*messages, {"role": "assistant", "content": prefix}]
        try:
            completion, call = await self.judge.ask(messages)
        except JudgeUnavailable as exc:
            raise VerdictFailure(str(exc), "model_grader_server_error") from exc
        completion = dataclasses.replace(completion, text=prefix + completion.text)
        try:
            result, steps = parse_verdict(completion)
            return convert(result), {"steps": steps, **call}
        except VerdictError as exc:
            kind = "model_grader_refusal_error" if completion.refusal else "model_grader_parse_error"
            raise VerdictFailure(str(exc), kind, raw=completion.text, **call) from exc

    def failure(self, exc: VerdictFailure, **details: Any) -> Grade:
        """A counted error grade."""
        self.judge.count_error()
        return Grade.failure(str(exc), error_kind=exc.kind, **exc.details, **details)


class ScoreModelGrader(ModelGrader):
    """Judge-assigned score: a number in `range` normalised to [0, 1], or a rubric of weighted criteria.

    `pass_threshold` is given in `range` units, as in OpenAI specs (rubric form: in [0, 1]); it is stored
    normalised so that it compares with `Grade.score`.
    """

    def __init__(
        self,
        name: str,
        input: list[dict[str, Any]],
        judge: JudgeClient,
        *,
        range: tuple[float, float] = (0.0, 1.0),
        pass_threshold: float | None = None,
        rubric: list[dict[str, Any]] | str | None = None,
        response_prefix: str | None = None,
    ) -> None:
        lo, hi = range
        norm = 1.0 if pass_threshold is None else (pass_threshold - lo) / (hi - lo)
        super().__init__(name, input, judge, norm, response_prefix)
        self.range, self.rubric = (lo, hi), rubric

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> ScoreModelGrader:
        """Build from `{"type": "score_model", "name", "model", "input", "range", "pass_threshold", ...}`."""
        name = str(spec.get("name", "score_model"))
        where = f"score_model grader {name!r}"
        check_fields(spec, COMMON_FIELDS | {"range", "rubric"}, where)
        messages = check_input(spec.get("input"), where)
        rubric = spec.get("rubric")
        if rubric is not None and "range" in spec:
            raise GraderInputError(f"{where}: give 'range' or 'rubric', not both (a rubric scores points)")
        if rubric is not None and not isinstance(rubric, str):
            rubric = check_rubric(rubric, f"{where}.rubric")
        lo, hi = check_range(spec.get("range", [0, 1]), where)
        threshold = spec.get("pass_threshold")
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))):
            raise GraderInputError(f"{where}.pass_threshold must be a number, got {threshold!r}")
        if threshold is not None and not lo <= threshold <= hi:
            raise GraderInputError(f"{where}.pass_threshold {threshold} is outside range [{lo:g}, {hi:g}]")
        prefix = check_prefix(spec, where)
        judge = make_judge(spec, where)
        return cls(
            name,
            messages,
            judge,
            range=(lo, hi),
            pass_threshold=threshold,
            rubric=rubric,
            response_prefix=prefix,
        )

    def prompt(self, sample: Sample, item: Mapping[str, Any]) -> Messages:
        """The messages the judge gets for a numeric score: the rendered input plus the answer format."""
        lo, hi = self.range
        return with_instruction(
            self.render(sample, item), SCORE_INSTRUCTION.format(steps=_STEPS, lo=lo, hi=hi)
        )

    def criterion_prompt(
        self, sample: Sample, item: Mapping[str, Any], criterion: Mapping[str, Any]
    ) -> Messages:
        """The messages the judge gets for one rubric criterion."""
        instruction = CRITERION_INSTRUCTION.format(steps=_STEPS)
        return with_instruction(self.render(sample, item), instruction, CRITERION.format(**criterion))

    def criteria(self, sample: Sample, item: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The rubric for this item (a `{{item.*}}` reference is resolved and checked per item)."""
        if not isinstance(self.rubric, str):
            return list(self.rubric or [])
        return check_rubric(resolve(self.rubric, sample, item), f"{self.name}: rubric from {self.rubric!r}")

    async def agrade(self, sample: Sample, item: Mapping[str, Any]) -> Grade:
        if self.rubric is not None:
            return await self._grade_rubric(sample, item, self.criteria(sample, item))
        lo, hi = self.range
        try:
            value, details = await self.verdict(self.prompt(sample, item), as_number)
        except VerdictFailure as exc:
            return self.failure(exc)
        clipped = min(hi, max(lo, value))
        details.update(result=value, range=[lo, hi], clipped=clipped != value)
        return Grade((clipped - lo) / (hi - lo), details)

    async def _grade_rubric(
        self, sample: Sample, item: Mapping[str, Any], rubric: list[dict[str, Any]]
    ) -> Grade:
        """One judge call per criterion (run concurrently); the score is `rubric_score` of the verdicts."""
        asks = [self.verdict(self.criterion_prompt(sample, item, c), as_bool) for c in rubric]
        outcomes = await asyncio.gather(*asks, return_exceptions=True)
        criteria: list[dict[str, Any]] = []
        for c, outcome in zip(rubric, outcomes):
            if isinstance(outcome, BaseException) and not isinstance(outcome, VerdictFailure):
                raise outcome
            if isinstance(outcome, VerdictFailure):
                criteria.append({**c, "error": str(outcome), **outcome.details})
            else:
                criteria.append({**c, "met": outcome[0], **outcome[1]})
        failed = [i for i, c in enumerate(criteria) if "error" in c]
        if failed:
            first = criteria[failed[0]]["error"]
            kind = next(o.kind for o in outcomes if isinstance(o, VerdictFailure))
            return self.failure(
                VerdictFailure(f"criteria {failed} unjudged; first: {first}", kind), criteria=criteria
            )
        score = rubric_score([c["points"] for c in criteria], [c["met"] for c in criteria])
        return Grade(score, {"criteria": criteria})


class LabelModelGrader(ModelGrader):
    """Judge-chosen label: score 1 when the label is one of `passing_labels`, else 0."""

    def __init__(
        self,
        name: str,
        input: list[dict[str, Any]],
        judge: JudgeClient,
        *,
        labels: list[str],
        passing_labels: list[str],
        response_prefix: str | None = None,
    ) -> None:
        super().__init__(name, input, judge, 1.0, response_prefix)
        self.labels, self.passing_labels = labels, passing_labels

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> LabelModelGrader:
        """Build from `{"type": "label_model", "name", "model", "input", "labels", "passing_labels", ...}`."""
        name = str(spec.get("name", "label_model"))
        where = f"label_model grader {name!r}"
        check_fields(spec, COMMON_FIELDS - {"pass_threshold"} | {"labels", "passing_labels"}, where)
        messages = check_input(spec.get("input"), where)
        labels, passing = spec.get("labels"), spec.get("passing_labels")
        for key, value in (("labels", labels), ("passing_labels", passing)):
            if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
                raise GraderInputError(f"{where}.{key} must be a non-empty list of strings, got {value!r}")
        if len(set(labels)) != len(labels):
            raise GraderInputError(f"{where}.labels has duplicates: {labels}")
        missing = sorted(set(passing) - set(labels))
        if missing:
            raise GraderInputError(f"{where}.passing_labels {missing} are not among labels {labels}")
        prefix = check_prefix(spec, where)
        return cls(
            name,
            messages,
            make_judge(spec, where),
            labels=labels,
            passing_labels=passing,
            response_prefix=prefix,
        )

    def label(self, result: Any) -> str:
        """The verdict as one of `labels`; matching ignores case and surrounding space."""
        text = str(result).strip()
        if text in self.labels:
            return text
        folded = [lab for lab in self.labels if lab.casefold() == text.casefold()]
        if len(folded) == 1:
            return folded[0]
        raise VerdictError(f"judge chose {result!r}, which is not one of {self.labels}")

    def prompt(self, sample: Sample, item: Mapping[str, Any]) -> Messages:
        """The messages the judge gets: the rendered input plus the answer format listing the labels."""
        instruction = LABEL_INSTRUCTION.format(steps=_STEPS, labels=json.dumps(self.labels))
        return with_instruction(self.render(sample, item), instruction)

    async def agrade(self, sample: Sample, item: Mapping[str, Any]) -> Grade:
        try:
            label, details = await self.verdict(self.prompt(sample, item), self.label)
        except VerdictFailure as exc:
            return self.failure(exc)
        return Grade(1.0 if label in self.passing_labels else 0.0, {"label": label, **details})
