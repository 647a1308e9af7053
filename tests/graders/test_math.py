"""MathGrader: every answer category with hard negatives, hard time limits, input errors, labelled-set accuracy."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from graders.base import Grade, GraderInputError, Sample
from graders.math import MathGrader, grade_answer
from graders.math.sympy_worker import warm_up

DATA = Path(__file__).resolve().parents[1] / "data" / "math_labelled.jsonl"


@pytest.fixture(autouse=True, scope="module")
def sympy_worker() -> None:
    """Start the sympy worker once, so time limits below measure comparisons, not its start-up."""
    warm_up()


# (category, reference, response, expected score)
CASES = [
    ("separators", "1234567", r"\boxed{1,234,567}", 1.0),
    ("separators", "1234567", "#### 1 234 567", 1.0),
    ("separators", "1234567", r"\boxed{1{,}234{,}567}", 1.0),
    ("separators", "1234567", r"\boxed{1,234,568}", 0.0),
    ("fraction", "0.75", r"\boxed{\frac{3}{4}}", 1.0),
    ("fraction", "0.75", r"\boxed{\dfrac{6}{8}}", 1.0),
    ("fraction", r"\frac{3}{4}", "The answer is 3/4.", 1.0),
    ("fraction", r"\tfrac{3}{4}", r"\boxed{0.750}", 1.0),
    ("fraction", r"\frac{1}{3}", r"\boxed{0.33}", 0.0),
    ("fraction", r"\frac{1}{3}", r"\boxed{0.3333}", 0.0),
    ("fraction", r"\frac{7}{2}", r"\boxed{3\frac{1}{2}}", 1.0),
    ("percent", r"50\%", r"\boxed{50\%}", 1.0),
    ("percent", r"50\%", r"\boxed{0.5}", 1.0),
    ("percent", r"50\%", r"\boxed{50}", 1.0),
    ("percent", "0.5", r"\boxed{50}", 0.0),
    ("percent", r"50\%", r"\boxed{25\%}", 0.0),
    ("negative", "-5", "#### \u22125", 1.0),
    ("negative", "-5", r"\boxed{5}", 0.0),
    ("negative", r"-\frac{1}{2}", r"\boxed{\frac{-1}{2}}", 1.0),
    ("scientific", "1.2e-6", r"\boxed{1.2\times10^{-6}}", 1.0),
    ("scientific", "1.2e-6", r"\boxed{0.0000012}", 1.0),
    ("scientific", "1.2e-6", r"\boxed{1.4\times10^{-6}}", 0.0),
    ("scientific", "1.2e-6", r"\boxed{1.2\times10^{-7}}", 0.0),
    ("sqrt", r"2\sqrt{2}", r"\boxed{\sqrt{8}}", 1.0),
    ("sqrt", r"\frac{\sqrt{2}}{2}", r"\boxed{\frac{1}{\sqrt{2}}}", 1.0),
    ("sqrt", r"2\sqrt{2}", r"\boxed{2.83}", 0.0),
    ("sqrt", r"\sqrt[3]{2}", r"\boxed{2^{1/3}}", 1.0),
    ("pi", r"2\pi", r"\boxed{6.283185307179586}", 1.0),
    ("pi", r"2\pi", r"\boxed{6.28}", 0.0),
    ("pi", r"\frac{\pi}{3}", r"\boxed{\pi/3}", 1.0),
    ("pi", r"\pi - 2", r"\boxed{\pi + 2}", 0.0),
    ("symbolic", "x^2+2x+1", r"\boxed{(x+1)^2}", 1.0),
    ("symbolic", "x^2+2x+1", r"\boxed{x^2+2x+1+c}", 0.0),
    ("symbolic", "x^2+2x+1", r"\boxed{x^2-2x+1}", 0.0),
    ("symbolic", r"\frac{1}{x+1}", r"\boxed{(x+1)^{-1}}", 1.0),
    ("symbolic", "2ab", r"\boxed{2ba}", 1.0),
    ("equation", "3", r"\boxed{x = 3}", 1.0),
    ("equation", "x=3", r"\boxed{3}", 1.0),
    ("equation", "y=2x+1", r"\boxed{2x - y + 1 = 0}", 1.0),
    ("equation", "y=2x+1", r"\boxed{y = 2x - 1}", 0.0),
    ("interval", "[1,2)", r"\boxed{1 \le x < 2}", 1.0),
    ("interval", "[1,2)", r"\boxed{[1,2]}", 0.0),
    ("interval", r"(-\infty,-1)\cup(2,\infty)", r"\boxed{x<-1 \text{ or } x>2}", 1.0),
    ("interval", r"[0, \infty)", r"\boxed{x > 0}", 0.0),
    ("set", r"\{1, 2, 3\}", r"\boxed{\{3, 1, 2\}}", 1.0),
    ("set", r"\{1, 2, 3\}", r"\boxed{\{1, 2\}}", 0.0),
    ("set", "-2, 3", r"\boxed{x=3 \text{ or } x=-2}", 1.0),
    ("tuple", "(1, 2)", r"\boxed{(1,2)}", 1.0),
    ("tuple", "(1, 2)", r"\boxed{(2,1)}", 0.0),
    ("tuple", r"(3, -\frac{1}{2})", r"\boxed{\left(3,-0.5\right)}", 1.0),
    (
        "matrix",
        r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}",
        r"\boxed{\begin{bmatrix}1&2\\3&4\end{bmatrix}}",
        1.0,
    ),
    (
        "matrix",
        r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}",
        r"\boxed{\begin{pmatrix}1&3\\2&4\end{pmatrix}}",
        0.0,
    ),
    ("matrix", r"\begin{pmatrix} 2 \\ -1 \end{pmatrix}", r"\boxed{(2, -1)}", 1.0),
    ("infinity", r"\infty", "It grows without bound, so the answer is \u221e.", 1.0),
    ("infinity", r"\infty", r"\boxed{-\infty}", 0.0),
    ("empty", r"\emptyset", r"\boxed{\varnothing}", 1.0),
    ("empty", r"\emptyset", r"\boxed{\{0\}}", 0.0),
    ("degrees", "30", r"\boxed{30^\circ}", 1.0),
    ("degrees", r"45^\circ", r"\boxed{45}", 1.0),
    ("degrees", "30", r"\boxed{60^{\circ}}", 0.0),
    ("units", "5", r"\boxed{5\text{ cm}}", 1.0),
    ("units", "48", r"\boxed{48 \text{ m}^2}", 1.0),
    ("units", "18", r"\boxed{\$18}", 1.0),
    ("units", "5", r"\boxed{10\text{ cm}}", 0.0),
    ("units", "3x^2", r"\boxed{3 x^{2}}", 1.0),
    ("choice", "B", "The answer is (B).", 1.0),
    ("choice", "(B)", r"\boxed{\textbf{(B)}\ 12}", 1.0),
    ("choice", "B", "Hence the correct option is B.", 1.0),
    ("choice", "B", "Answer: B)", 1.0),
    ("choice", "B", "(A) fails and (B) fails too, so the correct option is C.", 0.0),
    ("repeating", r"\frac{1}{3}", r"\boxed{0.\overline{3}}", 1.0),
    ("repeating", r"\frac{1}{6}", r"\boxed{0.1\overline{6}}", 1.0),
    ("repeating", r"\frac{1}{6}", r"\boxed{0.\overline{16}}", 0.0),
    ("text", "42", r"\boxed{\textbf{42}}", 1.0),
    ("text", r"\text{Monday}", r"\boxed{\text{monday}}", 1.0),
    ("text", "even", r"\boxed{\text{odd}}", 0.0),
    ("text", "parabola", r"\boxed{\text{(C) Parabola}}", 1.0),
    ("last answer", "12", r"First $\boxed{10}$; I forgot two chairs, so $\boxed{12}$.", 1.0),
    ("last answer", "12", r"First $\boxed{12}$; I double counted, so $\boxed{10}$.", 0.0),
]


@pytest.mark.parametrize(("category", "reference", "response", "expected"), CASES)
def test_math_categories(category: str, reference: str, response: str, expected: float) -> None:
    grade = MathGrader().grade(Sample(response), {"answer": reference})
    assert grade.error is None, (category, grade.details)
    assert grade.score == expected, (category, grade.details)


def test_details_name_the_rule_and_parsed_forms() -> None:
    grade = MathGrader().grade(Sample(r"so $\boxed{\{2, 1\}}$"), {"answer": r"\{1,2\}"})
    assert grade.details["extracted"] == r"\{2, 1\}"
    assert grade.details["rule"] == "set"
    assert grade.details["parsed_reference"][0] == "set"


PATHOLOGICAL = [
    r"\boxed{9^{9^{9^9}}}",
    r"\boxed{" + "{" * 2000 + "1" + "}" * 2000 + "}",
    r"\boxed{" + "{" * 300 + "1" + "}" * 300 + "}",
    r"\boxed{\binom{10^{4999}}{10^{4998}}}",
    r"\boxed{2^{10^{100}}}",
    "x" * 5000,
]


@pytest.mark.parametrize("response", PATHOLOGICAL)
def test_pathological_inputs_return_an_error_grade_within_the_limit(response: str) -> None:
    start = time.perf_counter()
    grade = MathGrader(timeout=0.5).grade(Sample(response), {"answer": "x + 1"})
    assert time.perf_counter() - start < 3.0
    assert grade.score == 0.0
    assert grade.error, grade.details


def test_time_limit_holds_in_a_worker_thread_and_the_worker_recovers() -> None:
    results: list[tuple[Grade, float]] = []

    def work() -> None:
        warm_up()
        start = time.perf_counter()
        grade = grade_answer(r"\boxed{\binom{10^{4999}}{10^{4998}}}", "3", timeout=0.5)
        results.append((grade, time.perf_counter() - start))

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(timeout=30)
    assert results, "grade did not return from the worker thread"
    grade, seconds = results[0]
    assert grade.error is not None and grade.error.startswith("timeout")
    assert seconds < 3.0
    assert grade_answer(r"\boxed{(x+1)^2}", "x^2+2x+1").score == 1.0


def test_no_final_answer_is_an_error_grade() -> None:
    grade = MathGrader().grade(Sample("I am not sure how to solve this."), {"answer": "4"})
    assert grade.score == 0.0 and grade.error == "no final answer found in the response"


@pytest.mark.parametrize("sample", [42, None, ["4"], {"text": "4"}])
def test_non_string_sample_raises(sample: object) -> None:
    with pytest.raises(GraderInputError):
        MathGrader().grade(sample, {"answer": "4"})  # type: ignore[arg-type]


def test_missing_reference_field_names_the_field() -> None:
    with pytest.raises(GraderInputError, match="'solution'"):
        MathGrader(reference_field="solution").grade(Sample(r"\boxed{4}"), {"answer": "4"})


def test_from_spec_renders_reference_template_and_timeout() -> None:
    grader = MathGrader.from_spec(
        {"type": "math", "name": "gsm", "reference": "{{item.target.value}}", "timeout": 2}
    )
    assert (grader.name, grader.timeout) == ("gsm", 2)
    assert grader.grade(Sample("#### 1,000"), {"target": {"value": 1000}}).score == 1.0
    with pytest.raises(GraderInputError, match="item.target"):
        grader.grade(Sample("#### 1"), {"answer": "1"})


@pytest.mark.parametrize(
    ("response", "score", "rule"),
    [
        ("53 + 12 =", 0.0, "not_a_number"),  # the question echoed back: symbolically equal, not an answer
        ("The answer is 53 + 12", 0.0, "not_a_number"),
        (r"\boxed{53+12}", 0.0, "not_a_number"),
        ("53 + 12 = 65", 1.0, "numeric"),  # a worked line ending in the number
        (r"\boxed{65}", 1.0, "string"),
        ("$65.", 1.0, "string"),
        ("66", 0.0, None),
    ],
)
def test_numeric_answer_rejects_expressions(response: str, score: float, rule: str | None) -> None:
    """Found by a GRPO run that learned to restate "53 + 12 =": with numeric_answer only a number counts."""
    grade = MathGrader(numeric_answer=True).grade(Sample(response), {"answer": "65"})
    assert (grade.score, grade.details["rule"]) == (score, rule)
    assert MathGrader().grade(Sample("53 + 12 ="), {"answer": "65"}).score == 1.0  # off: symbolic equality holds
    assert MathGrader.from_spec({"type": "math", "numeric_answer": True}).numeric_answer


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"type": "string_check"}, "type must be 'math'"),
        ({"type": "math", "refrence": "{{item.a}}"}, "refrence"),
        ({"type": "math", "timeout": 0}, "timeout"),
        ({"type": "math", "reference": "{{answer}}"}, "must start with item"),
    ],
)
def test_from_spec_rejects_bad_specs(spec: dict[str, object], message: str) -> None:
    with pytest.raises(GraderInputError, match=message):
        MathGrader.from_spec(spec)


def test_accuracy_on_labelled_set_is_at_least_99_percent_and_negatives_fail() -> None:
    rows = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]
    assert len(rows) >= 300
    assert {row["category"] for row in rows} >= {"multiple_choice", "matrix", "interval", "tiny_floats"}
    grader = MathGrader()
    wrong, false_positives = [], []
    for row in rows:
        grade = grader.grade(Sample(row["response"]), {"answer": row["reference"]})
        if (grade.score == 1.0) != row["label"]:
            wrong.append((row["category"], row["reference"], row["response"][-80:]))
            if not row["label"]:
                false_positives.append(wrong[-1])
    assert 1 - len(wrong) / len(rows) >= 0.99, wrong
    assert not false_positives
