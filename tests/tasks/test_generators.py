"""Difficulty knobs of the generated tasks and the countdown grader's decisions, case by case."""

import math
import re

import pytest

from graders.base import Sample
from tasks.countdown import CountdownGrader, countdown, extract_expression
from tasks.expressions import evaluate
from tasks.json_extract import json_extract
from tasks.word_problems import word_problems

ITEM = {"numbers": [25, 5, 3, 4], "target": 60}


@pytest.mark.parametrize(
    ("output", "score", "error"),
    [
        ("<answer>25 + 5 * (3 + 4)</answer>", 1.0, None),  # 25 + 35 = 60
        ("work...\n<answer>(3 + 4) * 5 + 25</answer>", 1.0, None),
        ("\\boxed{(3 + 4) × 5 + 25}", 1.0, None),  # boxed, typographic times
        ("Let me try.\n5 * (3 + 4) + 25 = 60\n", 1.0, None),  # last line, "= 60" dropped
        ("<answer>(25 - 5) * 3 / 4</answer>", 0.0, None),  # each number once, but equals 15
        ("<answer>(25 - 5) * 3</answer>", 0.0, None),  # 60, but 4 unused while use_all is on
        ("<answer>25 + 35</answer>", 0.0, None),  # 35 is not given
        ("<answer>25 * 3 - 5 * 4 + 5</answer>", 0.0, None),  # 5 used twice
        ("<answer>(25 + 5) * 4 / (3 - 3)</answer>", 0.0, None),  # 3 twice (and divides by zero)
        ("<answer>25 * 4 / (5 - 5) + 3</answer>", 0.0, None),
        ("I give up", 0.0, "unparseable expression"),
        ("", 0.0, "no expression found"),
        ("<answer>__import__('os').getcwd()</answer>", 0.0, "unparseable expression"),
        ("<answer>5 ** 3 - 25 * 4 / 4</answer>", 0.0, "unparseable expression"),  # no powers
        ("$\\boxed{(3 + 4) \\times 5 + 25}$", 1.0, None),  # LaTeX operators accepted
        ("<answer>(3 + 4) x 5 + 25</answer>", 0.0, "unparseable expression"),
    ],
)
def test_countdown_grader_cases(output: str, score: float, error: str | None) -> None:
    grade = CountdownGrader().grade(Sample(output), ITEM)
    assert grade.score == score, grade
    assert (grade.error or "").startswith(error or ""), grade
    assert (grade.error is None) == (error is None)
    if error:  # the answer's fault, not the grader's: kept out of the grader-error alarm
        assert grade.details["error_kind"] == "sample_parse_error"


def test_countdown_division_by_zero_is_a_wrong_answer() -> None:
    grade = CountdownGrader().grade(
        Sample("<answer>3 / (5 - 5)</answer>"), {"numbers": [3, 5, 5], "target": 1}
    )
    assert (grade.score, grade.error, grade.details["reason"]) == (0.0, None, "division by zero")


def test_countdown_partial_credit_only_when_configured() -> None:
    wrong_value = Sample("<answer>(25 - 5) * 3 / 4</answer>")  # each number once, equals 15
    bad_numbers = Sample("<answer>25 + 35</answer>")
    assert CountdownGrader().grade(wrong_value, ITEM).score == 0.0
    assert CountdownGrader(format_score=0.1).grade(wrong_value, ITEM).score == 0.1
    assert CountdownGrader(format_score=0.1).grade(bad_numbers, ITEM).score == 0.0
    assert CountdownGrader(use_all=False).grade(Sample("<answer>(25 - 5) * 3</answer>"), ITEM).score == 1.0
    assert countdown(n_train=5, n_test=5, format_score=0.2).grader.format_score == 0.2


def test_extract_expression_prefers_last_answer_tag() -> None:
    assert extract_expression("<answer>1 + 2</answer> then <answer> 3 * 4 = 12 </answer>") == "3 * 4"


def test_arithmetic_knobs() -> None:
    from tasks.arithmetic import arithmetic

    task = arithmetic(digits=(1, 3), ops="*", steps=2, n_train=200, n_test=20, seed=5)
    for item in [*task.train, *task.test]:
        numbers = [int(n) for n in item["expression"].split(" * ")]
        assert len(numbers) == 3 and all(0 <= n <= 999 for n in numbers)
        assert int(item["answer"]) == math.prod(numbers)
    three = arithmetic(digits=3, ops="+-", n_train=50, n_test=10)
    for item in three.train:
        a, op, b = item["expression"].split()
        assert 100 <= int(a) <= 999 and 100 <= int(b) <= 999 and op in "+-"
    assert (
        three.prompt(three.test[0]) == f"What is {three.test[0]['expression']}? Reply with just the number."
    )
    custom = arithmetic(n_train=5, n_test=5, template="Compute {expression}.", system_prompt="Be terse.")
    assert custom.messages(custom.test[0])[0] == {"role": "system", "content": "Be terse."}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"digits": 0}, "digits must be >= 1"),
        ({"digits": (3, 2)}, "digits must be >= 1"),
        ({"ops": "/"}, "ops must be a non-empty subset"),
        ({"steps": 0}, "steps must be >= 1"),
        ({"template": "no slot"}, "template must contain"),
        ({"digits": 1, "ops": "+", "n_train": 200}, "only 100 distinct items"),
    ],
)
def test_arithmetic_rejects_bad_knobs(options: dict, message: str) -> None:
    from tasks.arithmetic import arithmetic

    with pytest.raises(ValueError, match=message):
        arithmetic(**options)


def test_word_problem_solutions_recompute_to_the_answer() -> None:
    task = word_problems(min_steps=3, max_steps=3, n_train=100, n_test=10)
    for item in task.train:
        lines = item["solution"].splitlines()
        assert len(lines) == 4 and lines[-1] == f"#### {item['answer']}"
        value = int(re.match(r"\d+", lines[0]).group())
        for line in lines[:3]:
            expr, result = line.split(" = ")
            assert int(expr.split()[0]) == value
            value = int(evaluate(expr))
            assert value == int(result) and value >= 0
        assert value == int(item["answer"])


def test_json_extract_carries_a_strict_response_format() -> None:
    task = json_extract(n_train=10, n_test=5)
    assert task.response_format["required"] == ["name", "company", "date", "amount"]
    assert task.grader.grade(Sample(task.reference(task.test[0])), task.test[0]).score == 1.0


def test_countdown_targets_do_not_favour_one_operation() -> None:
    # A '-' or '/' that did not fit used to become '+': 72% of two-number targets were sums, and GRPO learned to
    # always add (72.5% held-out accuracy, every right answer a sum). Now the op is drawn among those that fit.
    task = countdown(count=2, n_train=600, n_test=50)
    ops = [re.search(r" ([-+*/]) ", item["solution"]).group(1) for item in [*task.train, *task.test]]
    shares = {op: ops.count(op) / len(ops) for op in "+-*/"}
    assert max(shares.values()) < 0.5, shares
    assert min(shares.values()) > 0.0, shares
    for item in [*task.train, *task.test]:
        assert evaluate(item["solution"]) == item["target"] >= 1
