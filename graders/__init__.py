"""Grader SDK: objective scorers used as rewards and for evaluation. Never imports torch.

The core types load eagerly; graders, the spec loader and the batch runner load on first use, so
`import graders` stays cheap:

>>> import graders
>>> graders.load_grader({"type": "math", "reference": "{{item.answer}}"}).grade(
...     graders.Sample("So the answer is \\\\boxed{\\\\frac{1}{2}}"), {"answer": "0.5"}).score
1.0
"""

from __future__ import annotations

import importlib
from typing import Any

from graders.base import Grade, Grader, GraderInputError, Sample, agrade, pass_threshold

_LAZY = {
    "load_grader": "graders.spec",
    "grade_batch": "graders.runner",
    "BatchResult": "graders.runner",
    "MathGrader": "graders.math",
    "StringCheckGrader": "graders.string",
    "ExactMatchGrader": "graders.string",
    "TextSimilarityGrader": "graders.similarity",
    "JsonSchemaGrader": "graders.json_schema",
    "MultiGrader": "graders.multi",
    "CodeGrader": "graders.code",
    "PythonGrader": "graders.python_grader",
    "ScoreModelGrader": "graders.judge",
    "LabelModelGrader": "graders.judge",
}

__all__ = ["Grade", "Grader", "GraderInputError", "Sample", "agrade", "pass_threshold", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'graders' has no attribute {name!r}")
