"""CodeGrader scores the fraction of tests passed (every test form), resists result forging, caches;
PythonGrader runs an OpenAI-style `grade(sample, item)` in the sandbox."""

from __future__ import annotations

import time

import pytest

from graders.base import Grade, GraderInputError
from graders.code import CodeGrader
from graders.python_grader import PythonGrader
from graders.runner import grade_batch
from graders.sandbox import Limits, pids_of, uid_range

LIMITS = Limits(wall_s=3.0, memory_mb=256)
CALLS = {
    "entry_point": "add",
    "tests": [
        {"args": [1, 2], "expected": 3},
        {"args": [5, 7], "expected": 12},
        {"args": [-4, 4], "expected": 0},
    ],
}
CHECK = {
    "prompt": 'def add(a, b):\n    """Return a + b."""\n',
    "entry_point": "add",
    "test": "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(5, 7) == 12\n",
}
FLOAT_CALLS = {"entry_point": "mean", "tests": [{"args": [[1, 2]], "expected": 1.5}, {"args": [[2, 4]], "expected": 3.0}]}
BIG_CALLS = {"entry_point": "add", "tests": [{"args": [10**20, 1], "expected": 10**20 + 1}]}
ASSERTS = {"tests": ["assert add(1, 2) == 3", "assert add(5, 7) == 12", "assert add(2, 2) == 4"]}
STDIO = {"tests": [{"input": "1 2\n", "output": "3\n"}, {"input": "5 7", "output": "12"}]}


def fenced(code: str) -> str:
    return f"Here is my solution:\n```python\n{code}\n```\nDone."


@pytest.fixture(scope="module")
def grader() -> CodeGrader:
    return CodeGrader(limits=LIMITS)


SCORES = [
    # (case, response, item, expected score)
    ("calls, correct", fenced("def add(a, b):\n    return a + b"), CALLS, 1.0),
    ("calls, wrong on one", fenced("def add(a, b):\n    return a + b if a > 0 else 99"), CALLS, 2 / 3),
    (
        "calls, float result close to an expected float",
        fenced("def mean(xs):\n    return sum(xs) / len(xs) * (1 + 1e-12)"),
        FLOAT_CALLS,
        1.0,
    ),
    ("calls, int result where a float is expected", fenced("def mean(xs):\n    return sum(xs) // len(xs)"),
     FLOAT_CALLS, 0.5),
    ("calls, float result where an int is expected", fenced("def add(a, b):\n    return float(a + b)"), CALLS, 0.0),
    ("calls, big ints compare exactly", fenced("def add(a, b):\n    return a - b"), BIG_CALLS, 0.0),
    ("calls, big ints right", fenced("def add(a, b):\n    return a + b"), BIG_CALLS, 1.0),
    ("calls, bool is not a number", fenced("def add(a, b):\n    return True"), CALLS, 0.0),
    ("calls, raw text without fence", "def add(a, b):\n    return a + b", CALLS, 1.0),
    ("calls, missing function", fenced("def plus(a, b):\n    return a + b"), CALLS, 0.0),
    ("humaneval body completes the prompt", "    return a + b\n", CHECK, 1.0),
    ("humaneval full function", fenced("def add(a, b):\n    return b + a"), CHECK, 1.0),
    ("humaneval empty body", "", CHECK, 0.0),
    ("humaneval wrong body", "    return a - b\n", CHECK, 0.0),
    ("asserts, two of three", fenced("def add(a, b):\n    return a + b if a != 2 else 0"), ASSERTS, 2 / 3),
    ("stdio, correct", fenced("a, b = map(int, input().split())\nprint(a + b)"), STDIO, 1.0),
    (
        "stdio, trailing spaces ignored",
        fenced("a, b = map(int, input().split())\nprint(a + b, '  ')"),
        STDIO,
        1.0,
    ),
    ("stdio, wrong", fenced("print(0)"), STDIO, 0.0),
]


@pytest.mark.parametrize("case,response,item,score", SCORES, ids=[c[0] for c in SCORES])
def test_scores(grader: CodeGrader, case: str, response: str, item: dict, score: float) -> None:
    grade = grader.grade(response, item)
    assert grade.score == pytest.approx(score), grade.to_dict()
    assert grade.details["total"] == len(item.get("tests", [])) + ("test" in item)
    failed = [t for t in grade.details["tests"] if not t["passed"]]
    assert all(t["reason"] for t in failed)


def test_failure_reason_names_the_assertion(grader: CodeGrader) -> None:
    grade = grader.grade("    return a - b\n", CHECK)
    assert grade.details["tests"][0]["reason"] == "AssertionError at line 2: assert candidate(1, 2) == 3"


def test_candidate_exception_is_reported(grader: CodeGrader) -> None:
    grade = grader.grade(fenced("def add(a, b):\n    raise ValueError('nope')"), CALLS)
    assert grade.score == 0.0
    assert grade.details["tests"][0]["reason"] == "ValueError: nope"


FORGERIES = {
    "os._exit(0) before the tests": "import os\nos._exit(0)",
    "sys.exit(0) before the tests": "import sys\nsys.exit(0)",
    "__eq__ always true": "class Yes:\n    def __eq__(self, other):\n        return True\n\ndef add(a, b):\n    return Yes()",
    "int subclass lying in __eq__": "class Yes(int):\n    def __eq__(self, other):\n        return True\n\ndef add(a, b):\n    return Yes(0)",
    "monkeypatched harness": (
        "import sys, json\nboot = sys.modules['__main__']\nboot.encode = lambda value: True\n"
        'json.dumps = lambda *a, **k: \'{"ok": true, "passed": true, "score": 1.0}\'\n'
        "def add(a, b):\n    return None"
    ),
    "stack frames edited": (
        "import sys\ndef add(a, b):\n    frame = sys._getframe()\n    while frame:\n"
        "        for v in list(frame.f_locals.values()):\n"
        "            if isinstance(v, list): v[:] = [True] * len(v)\n"
        "            if isinstance(v, dict): v.update(passed=True, ok=True, score=1.0)\n"
        "        frame = frame.f_back\n    return None"
    ),
    "fake success printed": "print('All tests passed: 3/3')\nprint('{\"ok\": 3}')\ndef add(a, b):\n    return None",
}


@pytest.mark.parametrize("name", list(FORGERIES))
@pytest.mark.parametrize("item", [CALLS, CHECK, ASSERTS], ids=["calls", "humaneval", "asserts"])
def test_forging_scores_zero(grader: CodeGrader, name: str, item: dict) -> None:
    grade = grader.grade(fenced(FORGERIES[name]), item)
    assert grade.score == 0.0, grade.to_dict()
    assert pids_of(uid_range()) == []


def test_test_code_cannot_swallow_a_timeout(grader: CodeGrader) -> None:
    """A check that catches Exception around a hanging call must still fail with status timeout."""
    item = {
        **CHECK,
        "test": "def check(candidate):\n    try:\n        candidate(1, 2)\n    except Exception:\n        pass\n",
    }
    start = time.monotonic()
    grade = grader.grade("    while True: pass\n", item)
    assert time.monotonic() - start < LIMITS.wall_s + 5
    assert (grade.score, grade.details["status"], grade.error) == (
        0.0,
        "timeout",
        "sandbox timeout: wall-clock limit exceeded",
    )


def test_results_are_cached_by_code_and_tests() -> None:
    grader = CodeGrader(limits=LIMITS)
    response = fenced("def add(a, b):\n    return a + b")
    start = time.monotonic()
    first = grader.grade(response, CALLS)
    cold = time.monotonic() - start
    start = time.monotonic()
    second = grader.grade(response, CALLS)
    warm = time.monotonic() - start
    assert first.to_dict() == second.to_dict() and warm < cold / 10
    assert grader.grade(response, {**CALLS, "tests": CALLS["tests"][:1]}).details["total"] == 1


def test_runner_grades_a_batch(grader: CodeGrader) -> None:
    """Batching lives in `graders.runner`, not in the grader: the scores come back in input order."""
    responses = [fenced("def add(a, b):\n    return a + b"), fenced("def add(a, b):\n    return 0"), ""]
    result = grade_batch(grader, responses, [CALLS, CALLS, CHECK], time_limit=None)
    assert result.scores == [1.0, pytest.approx(1 / 3), 0.0]
    assert result.errors == 0  # failing tests are a low score, not a grading error


BAD_ITEMS = [
    ({}, "needs 'test'"),
    ({"tests": "assert f()"}, "'tests' must be a list"),
    ({"tests": [{"args": [1]}]}, r"tests\[0\]"),
    ({"test": "def check(candidate): pass"}, "entry_point"),
    ({"tests": [{"args": [1], "expected": 1}]}, "'fn' or the item's 'entry_point'"),
]


@pytest.mark.parametrize("item,message", BAD_ITEMS)
def test_misuse_raises(grader: CodeGrader, item: dict, message: str) -> None:
    with pytest.raises(GraderInputError, match=message):
        grader.grade(fenced("def f(x):\n    return x"), item)


def test_code_from_spec() -> None:
    grader = CodeGrader.from_spec({"type": "code", "name": "unit", "timeout_s": 2, "memory_mb": 300})
    assert (grader.name, grader.limits.wall_s, grader.limits.memory_mb) == ("unit", 2.0, 300)
    templated = CodeGrader.from_spec({"type": "code", "input": "{{item.solution}}", "timeout_s": 5})
    assert templated.grade("ignored", {**CALLS, "solution": "def add(a, b):\n    return a + b"}).score == 1.0
    with pytest.raises(GraderInputError, match="unknown field"):
        CodeGrader.from_spec({"type": "code", "tests": []})
    with pytest.raises(GraderInputError, match="language"):
        CodeGrader.from_spec({"type": "code", "language": "rust"})


GRADE_SOURCE = """
def grade(sample, item):
    return 1.0 if sample["output_text"].strip() == item["answer"] else 0.25
"""

PYTHON_CASES = [
    # (source, output, expected score, error fragment or None)
    (GRADE_SOURCE, "42", 1.0, None),
    (GRADE_SOURCE, "41", 0.25, None),
    ("def grade(sample, item):\n    return sample['output_json']['x'] / 2", '{"x": 1}', 0.5, None),
    ("def grade(sample, item):\n    raise RuntimeError('boom')", "42", 0.0, "RuntimeError: boom"),
    ("def grade(sample, item):\n    return 'high'", "42", 0.0, "must return a number"),
    ("def grade(sample, item):\n    return 1.5", "42", 0.0, "must return a number"),
    ("def grade(sample, item):\n    return True", "42", 0.0, "must return a number"),
    ("def grade(sample, item):\n    while True: pass", "42", 0.0, "sandbox timeout"),
    ("import os\nos._exit(0)\ndef grade(sample, item):\n    return 1.0", "42", 0.0, "sandbox error"),
    (
        "import socket\ndef grade(sample, item):\n    socket.create_connection(('192.0.2.1', 80), timeout=1)\n    return 1.0",
        "42",
        0.0,
        "grade() failed: ",
    ),
]


@pytest.mark.parametrize("source,output,score,error", PYTHON_CASES)
def test_python_grader(source: str, output: str, score: float, error: str | None) -> None:
    grade = PythonGrader(source, limits=LIMITS).grade(output, {"answer": "42"})
    assert isinstance(grade, Grade) and grade.score == score, grade.to_dict()
    assert (grade.error is None) if error is None else (error in grade.error), grade.error
    assert pids_of(uid_range()) == []


def test_python_from_spec_accepts_openai_fields() -> None:
    spec = {
        "type": "python",
        "name": "py",
        "source": GRADE_SOURCE,
        "image_tag": "2025-05-08",
        "pass_threshold": 0.5,
    }
    grader = PythonGrader.from_spec(spec)
    assert (grader.name, grader.pass_threshold) == ("py", 0.5)
    assert grader.grade("42", {"answer": "42"}).score == 1.0


@pytest.mark.parametrize(
    "source,message",
    [
        ("", "non-empty"),
        ("def grade(:", "line 1"),
        ("def score(sample, item):\n    return 1", "def grade"),
        ("x = 1\n" * 60_000 + "def grade(s, i):\n    return 1", "over the"),
    ],
)
def test_python_grader_rejects_bad_source(source: str, message: str) -> None:
    with pytest.raises(GraderInputError, match=message):
        PythonGrader(source)


def test_python_grader_rejects_items_that_are_not_plain_data() -> None:
    with pytest.raises(GraderInputError, match="cannot pass"):
        PythonGrader(GRADE_SOURCE, limits=LIMITS).grade("42", {"answer": object()})
