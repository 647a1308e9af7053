"""Answer extraction on realistic model responses, including the awkward cases."""

from __future__ import annotations

import time

import pytest

from graders.base import Sample
from graders.extract import (
    extract_answer_phrase,
    extract_boxed,
    extract_choice,
    extract_code_block,
    extract_final_answer,
    extract_hash_answer,
    extract_json,
    extract_last_json,
    extract_last_number,
)


@pytest.mark.parametrize(
    ("text", "last", "expected"),
    [
        (r"Thus $\boxed{42}$.", True, "42"),
        (r"\boxed{\frac{a}{b^{2}}}", True, r"\frac{a}{b^{2}}"),
        (r"first \boxed{1} then \boxed{2}", True, "2"),
        (r"first \boxed{1} then \boxed{2}", False, "1"),
        (r"\fbox{7}", True, "7"),
        (r"\boxed {  x+1 }", True, "x+1"),
        (r"\boxed 5 done", True, "5"),
        (r"\boxed{\{1, 2\}}", True, r"\{1, 2\}"),
        (r"\boxed{unclosed", True, None),
        (r"\boxedx{3}", True, None),
        ("nothing", True, None),
    ],
)
def test_extract_boxed(text: str, last: bool, expected: str | None) -> None:
    assert extract_boxed(text, last=last) == expected


def test_extract_boxed_deep_nesting_is_linear() -> None:
    text = r"\boxed{" + "{" * 2000 + "x" + "}" * 2000 + "}"
    start = time.perf_counter()
    assert extract_boxed(text) == "{" * 2000 + "x" + "}" * 2000
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("She has 5+3=8 apples.\n#### 8", "8"),
        ("#### 1,000\nextra line", "1,000"),
        ("#### 1\n#### 2", "2"),
        ("####   ", None),
        ("no marker", None),
    ],
)
def test_extract_hash_answer(text: str, expected: str | None) -> None:
    assert extract_hash_answer(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("So the answer is 12.", "12"),
        ("The final answer is $\\frac{1}{2}$.", "$\\frac{1}{2}$"),
        ("Answer: (C)", "(C)"),
        ("answer: 3.5.", "3.5"),
        ("The answer is 4. Wait, no. The answer is 5.", "5"),
        ("ANSWER = x^2", "x^2"),
        ("The answer is 1, 2, ...", "1, 2, ..."),
        ("I answered quickly", None),
    ],
)
def test_extract_answer_phrase(text: str, expected: str | None) -> None:
    assert extract_answer_phrase(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("total is 1,234,567 dollars", "1234567"),
        ("temperature \u22125 degrees", "-5"),
        ("x = -3.25", "-3.25"),
        ("about 6.02e23 atoms", "6.02e23"),
        ("about 6.02E\u221223", "6.02E-23"),
        ("then 3/4 of the cake", "3/4"),
        ("it is .5 now", ".5"),
        ("10-3 = 7", "7"),
        ("values 1 and 2", "2"),
        ("step2 done", None),
        ("no digits", None),
        ("\u5171\u6709858\u9897\u7cd6\u679c", "858"),
        (r"so it is \frac{1}{\sqrt{3}}", None),
        (r"we get 7 and x^{2}", "7"),
    ],
)
def test_extract_last_number(text: str, expected: str | None) -> None:
    assert extract_last_number(text) == expected


@pytest.mark.parametrize(
    ("text", "language", "expected"),
    [
        ("```python\nprint(1)\n```", None, "print(1)\n"),
        ("text\n```\nraw\n```", None, "raw\n"),
        ("```js\nx\n```\n```python\ny\n```", "python", "y\n"),
        ("```js\nx\n```", "python", None),
        ("```python\ntruncated = 1\n", None, "truncated = 1\n"),
        ("no fence", None, None),
    ],
)
def test_extract_code_block(text: str, language: str | None, expected: str | None) -> None:
    assert extract_code_block(text, language) == expected


@pytest.mark.parametrize(
    ("text", "first", "last"),
    [
        ('{"a": 1}', {"a": 1}, {"a": 1}),
        (
            'Here you go:\n```json\n{"x": [1, {"y": 2}]}\n```\nThanks',
            {"x": [1, {"y": 2}]},
            {"x": [1, {"y": 2}]},
        ),
        ('draft [1, 2] final {"ok": true}', [1, 2], {"ok": True}),
        ('set {a, b} then {"k": null}', {"k": None}, {"k": None}),
        ("braces { but no json }", None, None),
        ("[" * 3000, None, None),
    ],
)
def test_extract_json(text: str, first: object, last: object) -> None:
    assert extract_json(text) == first
    assert extract_last_json(text) == last


def test_sample_json_uses_extract_json() -> None:
    assert Sample('Result: {"score": 3}').json() == {"score": 3}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"We try \boxed{2}. Re-checking, the result is \boxed{3}.", "3"),
        ("Adding: 4+4=8\n#### 8", "8"),
        ("Therefore the answer is 17.", "17"),
        ("After all that we have 23 marbles left", "23"),
        (r"The answer is 5 but formally \boxed{6}", "6"),
        ("I cannot solve this.", None),
    ],
)
def test_extract_final_answer(text: str, expected: str | None) -> None:
    assert extract_final_answer(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"so it is $\boxed{\text{(C)}}$", "C"),
        ("The answer is for sure D, it can't be A or B", "D"),
        ("Answer: **c**", "C"),
        ("D. it can't be A or B", "D"),
        ("B\u3002 \u4e0d\u662f A", "B"),
        ("Comparing the options, (B) is correct.", "B"),
        ("after checking, I would go with b", "B"),
        ("The answer is A and C", None),
        ("either A or B", None),
        ("A and C", None),
        ("the value of E is 5", None),
    ],
)
def test_extract_choice(text: str, expected: str | None) -> None:
    assert extract_choice(text) == expected
