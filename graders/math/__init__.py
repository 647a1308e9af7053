"""`MathGrader`: is the model's final answer mathematically equal to the reference?

The response's final answer is found by `graders.math.answer.final_answer` (an answer-only response
whole; side-by-side `\\boxed{}` as one answer set unless a later "Final Answer:" overrides them; `####`;
"the answer is"; the last math span or stand-alone number), and so is the reference's, so a wrapped
reference (`\\boxed{24}`, `$x = 3$`) works too; a letter reference is graded as multiple choice. Both
sides are parsed into structures (numbers, sets, tuples, intervals, matrices, equations, times,
expressions; see `graders.math.parsing`) and compared (`graders.math.comparison`). Exact numbers,
strings and structures are settled in microseconds in the calling process; only expressions go to a
sympy worker process, under a hard time limit that holds in any thread, where LaTeX our own translator
does not know goes to latex2sympy2_extended. Pathological inputs (exponent towers, thousands of nested
braces, huge texts) and sympy failures come back as an error grade, never a hang or a crash.

>>> from graders.base import Sample
>>> grader = MathGrader()
>>> grader.grade(Sample(r"Half of 1.5 is $\\boxed{\\frac{3}{4}}$."), {"answer": "0.75"}).score
1.0
>>> grader.grade(Sample("So 1/3 is about 0.33.\\n#### 0.33"), {"answer": "1/3"}).score
0.0
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from graders.base import Grade, GraderInputError, Sample
from graders.extract import extract_choice
from graders.math.answer import final_answer
from graders.math.comparison import NeedsSympy, compare
from graders.math.latex import TooComplex, clean
from graders.math.parsing import Node, parse
from graders.math.sympy_worker import SympyFailure, SympyTimeout, symbolic_compare
from graders.templates import check_template, prepare, resolve

_CHOICE_REFERENCE = re.compile(r"^\(?\s*([A-E])\s*\)?\.?(?:\s+[A-Z][a-z]+(?:\s+\S+)*)?$")
_SPEC_KEYS = {"type", "name", "reference", "timeout", "numeric_answer"}
# A number as a final answer: sign, digits (thousands commas allowed), decimals; `$`, `%`, a final period ignored.
_NUMBER = re.compile(r"[-+]?(\d{1,3}(,\d{3})+|\d+)(\.\d+)?")


def _choice_letter(reference: str) -> str | None:
    """`B`, `(D) Alina`, `C Cecile`, or such a letter after "the answer is" in a longer reference."""
    stated = re.split(r"(?i)\banswer\s*(?:is|:)\s*", reference)[-1]
    m = _CHOICE_REFERENCE.match(clean(stated))
    return m.group(1) if m else None


def _grade_choice(response: str, letter: str) -> Grade:
    answer = extract_choice(response)
    details = {"extracted": answer, "reference": letter, "rule": "choice"}
    if answer is None:
        return Grade.failure("no multiple-choice letter found in the response", error_kind="sample_parse_error",
                             **details)
    return Grade(float(answer == letter), details)


def _parse_side(text: str, side: str) -> Node:
    try:
        return parse(text)
    except RecursionError:
        raise TooComplex(f"{side} is nested too deeply to parse") from None
    except TooComplex as exc:
        raise TooComplex(f"{side}: {exc}") from None


def grade_answer(response: str, reference: str, timeout: float = 1.0, latex_fallback: bool = True) -> Grade:
    """Grade one response against one reference answer (both plain strings).

    latex_fallback: LaTeX our own translator does not know (`\\sum`, matrix arithmetic, ...) goes to
    latex2sympy2_extended in the sympy worker; False compares such answers as text only.

    Details: `extracted` (the final answer found), `parsed_answer` / `parsed_reference`, `rule`
    (which comparison matched: string, numeric, symbolic, set, tuple, interval, matrix, equation,
    text, choice) and `seconds`.
    """
    started = time.perf_counter()
    letter = _choice_letter(reference)
    if letter is not None:
        return _grade_choice(response, letter)
    reference = final_answer(reference) or reference
    answer = final_answer(response)
    details: dict[str, Any] = {"extracted": answer, "reference": reference, "rule": None}
    if answer is None:
        return Grade.failure("no final answer found in the response", error_kind="sample_parse_error", **details)
    if clean(answer) == clean(reference):
        return Grade(1.0, {**details, "rule": "string"})
    try:
        parsed_answer, parsed_reference = _parse_side(answer, "answer"), _parse_side(reference, "reference")
    except TooComplex as exc:
        return Grade.failure(str(exc), **details)
    details.update(parsed_answer=parsed_answer, parsed_reference=parsed_reference)
    try:
        rule = compare(parsed_answer, parsed_reference)
    except NeedsSympy:
        remaining = max(timeout - (time.perf_counter() - started), 0.01)
        try:
            rule, error = symbolic_compare(parsed_answer, parsed_reference, remaining, latex_fallback)
        except SympyTimeout as exc:
            return Grade.failure(f"timeout: {exc}", **details)
        except SympyFailure as exc:
            return Grade.failure(str(exc), **details)
        if error is not None and rule is None:
            return Grade.failure(f"sympy could not compare: {error}", **details)
    details.update(rule=rule, seconds=round(time.perf_counter() - started, 6))
    return Grade(1.0 if rule else 0.0, details)


@dataclass
class MathGrader:
    """Mathematical equivalence of the final answer to `item[reference_field]` (or a `reference` template).

    timeout: hard limit in seconds on the symbolic comparison of one sample.
    numeric_answer: the final answer must be a number (after the last `=` of a worked line such as
    `53 + 12 = 65`): an expression, such as the question echoed back (`53 + 12 =`), scores 0 (rule
    `not_a_number`) however equal it is. Tasks that ask for a computed number turn it on: without it a
    policy learns to restate the question, which symbolic equivalence accepts.
    """

    name: str = "math"
    reference_field: str = "answer"
    timeout: float = 1.0
    reference: str | None = None
    numeric_answer: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.timeout, (int, float)) or self.timeout <= 0:
            raise GraderInputError(
                f"math grader '{self.name}': timeout must be a positive number, got {self.timeout!r}"
            )
        if self.reference is not None:
            check_template(self.reference, f"math grader '{self.name}': reference")

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> MathGrader:
        """Build from `{"type": "math", "name": ..., "reference": "{{item.answer}}", "timeout": 2}`."""
        if spec.get("type", "math") != "math":
            raise GraderInputError(f"math grader spec: type must be 'math', got {spec.get('type')!r}")
        unknown = sorted(set(spec) - _SPEC_KEYS)
        if unknown:
            raise GraderInputError(
                f"math grader spec: unknown field(s) {unknown}; allowed: {sorted(_SPEC_KEYS)}"
            )
        return cls(
            name=spec.get("name", "math"),
            timeout=spec.get("timeout", 1.0),
            reference=spec.get("reference", "{{item.answer}}"),
            numeric_answer=bool(spec.get("numeric_answer", False)),
        )

    def _reference(self, sample: Sample, item: Mapping[str, Any]) -> str:
        if self.reference is not None:
            value = resolve(self.reference, sample, item)
        elif self.reference_field in item:
            value = item[self.reference_field]
        else:
            raise GraderInputError(
                f"math grader '{self.name}': item has no reference field '{self.reference_field}' "
                f"(fields: {sorted(item)})"
            )
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise GraderInputError(
                f"math grader '{self.name}': reference must be a string or number, got {value!r}"
            )
        return str(value)

    def grade(self, sample: Sample | str, item: Mapping[str, Any]) -> Grade:
        """Score 1.0 when the response's final answer equals the reference, else 0.0 (error set if unjudgeable)."""
        sample, item = prepare(sample, item)
        reference = self._reference(sample, item)
        if self.numeric_answer:
            answer = final_answer(sample.output_text)
            value = (answer or "").rsplit("=", 1)[-1].strip().strip("$").rstrip(".%").strip()
            if answer is not None and not _NUMBER.fullmatch(value):
                return Grade(0.0, {"extracted": answer, "reference": reference, "rule": "not_a_number"})
        return grade_answer(sample.output_text, reference, self.timeout)
