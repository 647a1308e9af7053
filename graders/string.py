"""String graders: OpenAI's `string_check` (eq, ne, like, ilike) and exact / normalised match.

Both render `input` and `reference` as `{{item.x}}` / `{{sample.output_text}}` templates, so the
same grader works for every dataset item.

>>> from graders.base import Sample
>>> StringCheckGrader("city", "{{sample.output_text}}", "{{item.city}}", "ilike").grade(
...     Sample("I think it is PARIS."), {"city": "Paris"}).score
1.0
>>> ExactMatchGrader().grade(Sample("The total is $1,234.50!"), {"answer": "the total is 1234.5"}).score
1.0
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from graders.base import Grade, GraderInputError, Sample
from graders.templates import DEFAULT_INPUT, DEFAULT_REFERENCE, check_template, prepare, render_field

# OpenAI semantics: like = case-sensitive "input contains reference", ilike = case-insensitive.
OPERATIONS: dict[str, Callable[[str, str], bool]] = {
    "eq": lambda inp, ref: inp == ref,
    "ne": lambda inp, ref: inp != ref,
    "like": lambda inp, ref: ref in inp,
    "ilike": lambda inp, ref: ref.casefold() in inp.casefold(),
}

_GROUPED = r"[-+]?\d{1,3}(?:,\d{3})+(?!\d)(?:\.\d+)?"
_PLAIN = r"[-+]?\d+(?:\.\d+)?"
_TOKEN = re.compile(rf"{_GROUPED}|{_PLAIN}|[^\W_]+")


def _number(token: str) -> str:
    text = token.replace(",", "").lstrip("+")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def normalize_text(text: str) -> str:
    """Lower-case, drop punctuation, collapse whitespace and write numbers plainly.

    >>> normalize_text("  Hello,   World! It costs 1,000.00 (approx.)")
    'hello world it costs 1000 approx'
    """
    out = []
    for token in _TOKEN.findall(text.casefold()):
        out.append(_number(token) if token[-1].isdigit() else token)
    return " ".join(out)


@dataclass
class StringCheckGrader:
    """OpenAI `string_check`: 1.0 when `operation(input, reference)` holds, else 0.0."""

    cheap: ClassVar[bool] = True  # microseconds per sample: the runner grades it in-process
    name: str = "string_check"
    input: str = DEFAULT_INPUT
    reference: str = DEFAULT_REFERENCE
    operation: str = "eq"

    def __post_init__(self) -> None:
        check_template(self.input, f"{self.name}.input")
        check_template(self.reference, f"{self.name}.reference")
        if self.operation not in OPERATIONS:
            raise GraderInputError(
                f"{self.name}.operation: {self.operation!r} is not one of {list(OPERATIONS)}"
            )

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> StringCheckGrader:
        return cls(spec.get("name", "string_check"), spec["input"], spec["reference"], spec["operation"])

    def grade(self, sample: Sample, item: Mapping[str, Any]) -> Grade:
        sample, item = prepare(sample, item)
        inp = render_field(self.input, sample, item, f"{self.name}.input")
        ref = render_field(self.reference, sample, item, f"{self.name}.reference")
        ok = OPERATIONS[self.operation](inp, ref)
        return Grade(float(ok), {"input": inp, "reference": ref, "operation": self.operation})


@dataclass
class ExactMatchGrader:
    """Exact match of `input` against `reference`, optionally after `normalize_text`.

    A reference that resolves to a list (e.g. answer aliases) matches when any element does.
    """

    cheap: ClassVar[bool] = True
    name: str = "exact_match"
    input: str = DEFAULT_INPUT
    reference: str = DEFAULT_REFERENCE
    normalize: bool = True

    def __post_init__(self) -> None:
        check_template(self.input, f"{self.name}.input")
        check_template(self.reference, f"{self.name}.reference")

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> ExactMatchGrader:
        return cls(
            spec.get("name", "exact_match"),
            spec.get("input", DEFAULT_INPUT),
            spec.get("reference", DEFAULT_REFERENCE),
            spec.get("normalize", True),
        )

    def grade(self, sample: Sample, item: Mapping[str, Any]) -> Grade:
        sample, item = prepare(sample, item)
        inp = render_field(self.input, sample, item, f"{self.name}.input")
        ref = render_field(self.reference, sample, item, f"{self.name}.reference", keep_type=True)
        refs = [r if isinstance(r, str) else str(r) for r in (ref if isinstance(ref, list) else [ref])]
        fix = normalize_text if self.normalize else (lambda s: s.strip())
        got = fix(inp)
        matched = [r for r in refs if fix(r) == got]
        return Grade(float(bool(matched)), {"input": got, "reference": [fix(r) for r in refs]})
