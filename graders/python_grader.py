"""OpenAI RFT's `{"type": "python"}` grader: a user-written `grade(sample, item) -> float` run in the sandbox.

The source is trusted no more than a submission: it runs only inside `graders.sandbox`, with the packages
OpenAI's grader image documents shown read-only (`graders.sandbox.packages`).
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from graders.base import Grade, GraderInputError, Sample
from graders.code import check_spec_keys, failure_reason, spec_limits
from graders.sandbox import Limits, Sandbox, SandboxDied
from graders.sandbox.packages import import_hint


@dataclass
class PythonGrader:
    """OpenAI RFT's python grader: `source` defines `grade(sample, item) -> float`, run in the sandbox.

    Like OpenAI's runtime, it may import the packages of `graders.sandbox.packages.DOCUMENTED` that are
    installed; an exception it raises becomes the grade's error with the line that raised it.
    """

    source: str
    name: str = "python"
    limits: Limits = field(default_factory=lambda: Limits(wall_s=10.0))
    pass_threshold: float = 1.0
    isolation: str = "auto"

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or not self.source.strip():
            raise GraderInputError("python grader 'source' must be non-empty Python source")
        if len(self.source.encode()) > self.limits.max_source_bytes:
            raise GraderInputError(
                f"python grader 'source' is {len(self.source.encode())} bytes, "
                f"over the {self.limits.max_source_bytes} limit"
            )
        try:
            tree = ast.parse(self.source)
        except SyntaxError as exc:
            raise GraderInputError(f"python grader 'source' line {exc.lineno}: {exc.msg}") from exc
        if not any(isinstance(n, ast.FunctionDef) and n.name == "grade" for n in tree.body):
            raise GraderInputError("python grader 'source' must define a top-level `def grade(sample, item)`")
        self.sandbox = Sandbox(self.limits, self.isolation, packages=True)

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> PythonGrader:
        """`{"type": "python", "source", "name"?, "pass_threshold"?, "timeout_s"?, "memory_mb"?,
        "image_tag"?}`.

        `image_tag` names OpenAI's runtime image; it is accepted so their specs load, and has no effect here.
        """
        spec = dict(spec)
        check_spec_keys(spec, "python", {"source", "image_tag"})
        if "source" not in spec:
            raise GraderInputError("python grader spec needs 'source'")
        return cls(
            spec["source"], spec.get("name", "python"), spec_limits(spec), float(spec.get("pass_threshold", 1.0))
        )

    def grade(self, sample: Sample | str, item: Mapping[str, Any]) -> Grade:
        sample = Sample.coerce(sample)
        try:
            session = self.sandbox.session(self.source)
        except SandboxDied as died:
            reason = (
                f"loading the source failed: {died.error}" if died.error else failure_reason(died, "", "")
            )
            return Grade.failure(
                _with_import_hint(reason, self.sandbox.info.interpreter), stderr=died.result.stderr[-2000:]
            )
        try:
            value = session.call("grade", sample.to_dict(), dict(item))
        except (Exception, SandboxDied) as exc:
            run = session.close()
            if isinstance(exc, GraderInputError):
                raise
            reason = session.error or failure_reason(exc, "", "")
            return Grade.failure(
                _with_import_hint(f"grade() failed: {reason}", self.sandbox.info.interpreter),
                traceback=session.traceback,
                stderr=run.stderr[-2000:],
            )
        finally:
            session.close()
        if type(value) not in (int, float) or not 0.0 <= value <= 1.0:
            return Grade.failure(
                f"grade() must return a number in [0, 1], got {value!r:.200}", returned=repr(value)[:200]
            )
        return Grade(float(value), {"returned": value})


def _with_import_hint(reason: str, interpreter: str) -> str:
    """A failed import also says what a python grader can import here and how to install the rest."""
    return reason + import_hint(interpreter) if "ModuleNotFoundError" in reason else reason
