"""`CodeGrader`: unit tests on a submitted program (OpenAI's `{"type": "python"}` grader, a user-written
`grade(sample, item)`, is `graders.python_grader.PythonGrader`, which shares the spec helpers here).

The submission runs only inside `graders.sandbox`; the tests run here, in the grader process, and
see the submission through call proxies that return plain builtin values. So expected outputs never
enter the sandbox and every comparison is made by trusted code (the dataset's tests are trusted,
like the grader itself).

Test forms accepted in an item (any mix):
- HumanEval: `test` holding `def check(candidate)`, `entry_point`, and optionally `prompt`, which is
  put before the code (so a bare function body completes it) and whose helpers the check may use;
- `tests`: a list of cases, each one of
  `"assert f(1) == 2"` (MBPP style; any function the code defines can be called),
  `{"input": "...", "output": "..."}` (stdin/stdout, compared line by line, trailing spaces ignored),
  `{"args": [...], "kwargs": {...}, "expected": ..., "fn": "name"}` (`fn` defaults to `entry_point`).
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import traceback
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from graders.base import Grade, GraderInputError, Sample
from graders.extract import extract_code_block
from graders.sandbox import Limits, RunResult, Sandbox, SandboxDied, Session
from graders.templates import render

_LANGS = ("python", "py", "python3", None)
_TEST_FIELDS = ("prompt", "test", "entry_point", "tests")


def extract_program(text: str) -> str:
    """The code in a response: the first python-tagged fenced block, else any fenced block, else the text.

    >>> extract_program("Sure:\\n```py\\nprint(2)\\n```")
    'print(2)\\n'
    >>> extract_program("x = 1")
    'x = 1'
    """
    for lang in _LANGS:
        block = extract_code_block(text, lang)
        if block is not None:
            return block
    return text


def values_match(actual: Any, expected: Any) -> bool:
    """Exact-type comparison of plain values; lists and tuples interchange (JSON has no tuples). An expected
    int needs that exact int (a float 5.0 is not the int 5, and 10**20 + 1 is not 10**20 - 1); an expected
    float takes an int or float within 1e-9 (relative or absolute); a bool never equals a number.

    >>> values_match((1, 2.0), [1, 2.0]), values_match(True, 1), values_match({"a": 0.1 + 0.2}, {"a": 0.3})
    (True, False, True)
    >>> values_match(5.0, 5), values_match(5, 5.0), values_match(10**20 - 1, 10**20 + 1)
    (False, True, False)
    """
    if isinstance(actual, bool) or isinstance(expected, bool):
        return type(actual) is type(expected) and actual == expected
    if type(expected) is float and type(actual) in (int, float):
        return actual == expected or math.isclose(actual, expected, rel_tol=1e-9, abs_tol=1e-9)
    if type(actual) in (list, tuple) and type(expected) in (list, tuple):
        return len(actual) == len(expected) and all(map(values_match, actual, expected))
    if type(actual) is dict and type(expected) is dict:
        return actual.keys() == expected.keys() and all(values_match(actual[k], expected[k]) for k in actual)
    return type(actual) is type(expected) and actual == expected


def _stdout_matches(actual: str, expected: str) -> bool:
    def norm(text: str) -> list[str]:
        return [line.rstrip() for line in text.rstrip().splitlines()]

    return norm(actual) == norm(expected)


def failure_reason(exc: BaseException, source: str, filename: str) -> str:
    """`AssertionError at line 12: assert candidate(3) == 4` for a failing check, else the exception."""
    if isinstance(exc, SandboxDied):
        return f"sandbox {exc.result.status}: {exc.result.reason or 'process ended'}"
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == filename]
    where = ""
    if frames and frames[-1].lineno:
        lines = source.splitlines()
        where = f" at line {frames[-1].lineno}: {lines[frames[-1].lineno - 1].strip()[:200]}"
    return f"{type(exc).__name__}{where}{': ' + str(exc)[:300] if str(exc) else ''}"


def _trusted_namespace(item: Mapping[str, Any], session: Session) -> dict[str, Any]:
    """Names the tests may use: call proxies for the submission's functions, overridden by the helpers the
    trusted prompt defines (a submission must not replace, say, HumanEval/32's `poly` used by the check)."""
    ns: dict[str, Any] = {name: _proxy(session, name) for name in session.names}
    prompt = item.get("prompt")
    if isinstance(prompt, str):
        trusted: dict[str, Any] = {}
        try:
            exec(compile(prompt, "<prompt>", "exec"), trusted)  # noqa: S102 - trusted dataset code
        except Exception:  # noqa: BLE001 - a prompt that is prose, not code, defines no helpers
            trusted = {}
        entry = item.get("entry_point")
        ns.update({k: v for k, v in trusted.items() if k != entry and not k.startswith("__")})
    return ns


def _proxy(session: Session, name: str) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        return session.call(name, *args, **kwargs)

    call.__name__ = name
    return call


def _run_source_test(source: str, filename: str, ns: dict[str, Any], entry: str | None) -> str | None:
    """Exec trusted test code (a HumanEval check is then called on the candidate); the failure or None."""
    try:
        exec(compile(source, filename, "exec"), ns)  # noqa: S102 - trusted test code; submission via proxies
        if filename == "<check>":
            ns["check"](ns[entry] if entry in ns else _missing(entry))
        return None
    except (Exception, SandboxDied) as exc:  # noqa: BLE001 - any failure of the test fails it
        return failure_reason(exc, source, filename)


def _missing(entry: str | None) -> Callable[..., Any]:
    def candidate(*args: Any, **kwargs: Any) -> Any:
        raise NameError(f"the submission does not define {entry!r}")

    return candidate


def _call_case(case: Mapping[str, Any], session: Session, entry: str | None) -> str | None:
    fn = case.get("fn", entry)
    if not isinstance(fn, str):
        raise GraderInputError("a function-call test needs 'fn' or the item's 'entry_point'")
    if fn not in session.names:
        return f"the submission does not define {fn!r}"
    try:
        actual = session.call(fn, *case.get("args", []), **case.get("kwargs", {}))
    except (Exception, SandboxDied) as exc:  # noqa: BLE001 - any failure of the candidate call fails this test
        return failure_reason(exc, "", "")
    return (
        None
        if values_match(actual, case["expected"])
        else f"returned {actual!r:.300}, expected {case['expected']!r:.300}"
    )


def _case_name(case: Any, index: int) -> str:
    if isinstance(case, str):
        return case.strip()[:120]
    if "input" in case:
        return f"stdin #{index}"
    return f"{case.get('fn', 'call')}(*{json.dumps(case.get('args', []))[:80]})"


def _validate_tests(item: Mapping[str, Any]) -> list[Any]:
    tests = item.get("tests", [])
    if not isinstance(tests, list):
        raise GraderInputError(f"item field 'tests' must be a list, got {type(tests).__name__}")
    for i, case in enumerate(tests):
        ok = isinstance(case, str) or (
            isinstance(case, Mapping) and (("input" in case and "output" in case) or "expected" in case)
        )
        if not ok:
            raise GraderInputError(
                f"item field 'tests[{i}]' must be an assert string, "
                "{'input', 'output'} or {'args', 'expected'}"
            )
    if not tests and not isinstance(item.get("test"), str):
        raise GraderInputError("a code item needs 'test' (HumanEval check) or a non-empty 'tests' list")
    return tests


@dataclass
class CodeGrader:
    """Score = the fraction of an item's tests the code passes; `details["tests"]` says why each failed."""

    name: str = "code"
    limits: Limits = field(default_factory=lambda: Limits(wall_s=10.0))
    pass_threshold: float = 1.0
    isolation: str = "auto"
    cache_size: int = 4096
    input: str = "{{sample.output_text}}"  # template for the text holding the code (OpenAI-style)

    def __post_init__(self) -> None:
        self.sandbox = Sandbox(self.limits, self.isolation)
        self._cache: OrderedDict[str, Grade] = OrderedDict()
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        """Only the settings travel (to grading workers, Ray actors): the sandbox is re-detected where it runs."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__post_init__()

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> CodeGrader:
        """`{"type": "code", "name"?, "input"?, "timeout_s"?, "memory_mb"?, "pass_threshold"?, "language"?}`.

        `input` is a template for the text holding the code (default `{{sample.output_text}}`).
        """
        spec = dict(spec)
        check_spec_keys(spec, "code", {"language", "input"})
        if spec.get("language", "python") != "python":
            raise GraderInputError(f"code grader 'language' must be 'python', got {spec['language']!r}")
        return cls(
            name=spec.get("name", "code"),
            limits=spec_limits(spec),
            pass_threshold=float(spec.get("pass_threshold", 1.0)),
            input=spec.get("input", cls.input),
        )

    def grade(self, sample: Sample | str, item: Mapping[str, Any]) -> Grade:
        sample = Sample.coerce(sample)
        tests = _validate_tests(item)
        text = sample.output_text if self.input == CodeGrader.input else render(self.input, sample, item)
        program = extract_program(text)
        if isinstance(item.get("prompt"), str):
            program = item["prompt"] + "\n" + program
        key = hashlib.sha256(
            json.dumps(
                [program, {k: item.get(k) for k in _TEST_FIELDS}, repr(self.limits)], default=repr
            ).encode()
        ).hexdigest()
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return _copy(self._cache[key])
        grade = self._grade(program, item, tests)
        with self._lock:
            self._cache[key] = grade
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return _copy(grade)

    def _grade(self, program: str, item: Mapping[str, Any], tests: list[Any]) -> Grade:
        results: list[dict[str, Any]] = []
        runs: list[RunResult] = []
        stdio = [(i, c) for i, c in enumerate(tests) if isinstance(c, Mapping) and "input" in c]
        if stdio:
            outs = self.sandbox.run_many([(program, str(c["input"])) for _, c in stdio])
            runs += outs
            for (i, case), out in zip(stdio, outs, strict=True):
                reason = (
                    None
                    if out.ok and _stdout_matches(out.stdout, str(case["output"]))
                    else (
                        f"sandbox {out.status}: {out.reason}"
                        if not out.ok
                        else f"printed {out.stdout[:300]!r}"
                    )
                )
                results.append({"name": _case_name(case, i), "passed": reason is None, "reason": reason})
        in_session = [(i, c) for i, c in enumerate(tests) if not (isinstance(c, Mapping) and "input" in c)]
        if isinstance(item.get("test"), str):
            if not isinstance(item.get("entry_point"), str):
                raise GraderInputError("a HumanEval-style item with 'test' needs a string 'entry_point'")
            in_session.insert(0, (-1, None))
        if in_session:
            session_results, run = self._session_tests(program, item, in_session)
            results += session_results
            runs.append(run)
        passed = sum(r["passed"] for r in results)
        bad = next((r for r in runs if not r.ok), None)
        details = {
            "tests": results,
            "passed": passed,
            "total": len(results),
            "status": bad.status if bad else "ok",
            "stderr": (bad or runs[-1]).stderr[-2000:],
        }
        error = f"sandbox {bad.status}: {bad.reason}" if bad else None
        return Grade(passed / len(results), details, error)

    def _session_tests(
        self, program: str, item: Mapping[str, Any], cases: list[tuple[int, Any]]
    ) -> tuple[list[dict[str, Any]], RunResult]:
        """Run the check / assert / call tests against one loaded submission."""
        entry = item.get("entry_point")
        names = ["check" if c is None else _case_name(c, i) for i, c in cases]
        try:
            session = self.sandbox.session(program)
        except SandboxDied as died:
            reason = failure_reason(died, "", "")
            return [{"name": n, "passed": False, "reason": reason} for n in names], died.result
        results = []
        try:
            ns = _trusted_namespace(item, session)
            for name, (_, case) in zip(names, cases, strict=True):
                if case is None:
                    reason = _run_source_test(item["test"], "<check>", ns, entry)
                elif isinstance(case, str):
                    reason = _run_source_test(case, "<assert>", ns, entry)
                else:
                    reason = _call_case(case, session, entry)
                results.append({"name": name, "passed": reason is None, "reason": reason})
        finally:
            run = session.close()
        if not run.ok:  # a test that "passed" after the sandbox died was swallowed by test code
            for r in results:
                r["passed"], r["reason"] = False, r["reason"] or f"sandbox {run.status}: {run.reason}"
        return results, run


def check_spec_keys(spec: dict[str, Any], kind: str, extra: set[str]) -> None:
    allowed = {"type", "name", "pass_threshold", "timeout_s", "memory_mb"} | extra
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise GraderInputError(f"{kind} grader spec: unknown field(s) {unknown}; allowed: {sorted(allowed)}")
    if spec.get("type", kind) != kind:
        raise GraderInputError(f"{kind} grader spec has type {spec['type']!r}")


def spec_limits(spec: Mapping[str, Any]) -> Limits:
    base = Limits(wall_s=10.0)
    return replace(
        base,
        wall_s=float(spec.get("timeout_s", base.wall_s)),
        memory_mb=int(spec.get("memory_mb", base.memory_mb)),
    )


def _copy(grade: Grade) -> Grade:
    return Grade(grade.score, json.loads(json.dumps(grade.details, default=repr)), grade.error)
