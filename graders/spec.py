"""Build a grader from an OpenAI-style grader spec (JSON), so real OpenAI RFT grader files load unchanged.

Types are a registry `TYPES: type -> "module:Class"`; each class has `from_spec(spec) -> Grader` and is
imported only when used, so a missing optional grader only breaks specs that use it. Packages that
`graders` must not import (`rft`, with torch) add their types with `register_type(type, "module:Class",
schema_path)` when they are imported; `rft` registers `reward_model` so. Every spec (and
every sub-grader of a `multi`) is validated against `schemas/grader_spec.schema.json` first, and a bad
field is reported by its path, e.g. `graders.correct.operation: 'equals' is not one of [...]`.

>>> g = load_grader({"type": "string_check", "name": "city", "operation": "ilike",
...                  "input": "{{sample.output_text}}", "reference": "{{item.city}}"})
>>> g.grade("It is PARIS", {"city": "Paris"}).score
1.0
>>> load_grader({"type": "string_check", "input": "x", "reference": "y", "operation": "equals"})
Traceback (most recent call last):
...
graders.base.GraderInputError: operation: 'equals' is not one of ['eq', 'ne', 'like', 'ilike']
"""

from __future__ import annotations

import functools
import importlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from graders.base import Grader, GraderInputError

_DOTTED = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")
SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "grader_spec.schema.json"

TYPES: dict[str, str] = {
    "string_check": "graders.string:StringCheckGrader",
    "exact_match": "graders.string:ExactMatchGrader",
    "text_similarity": "graders.similarity:TextSimilarityGrader",
    "json_schema": "graders.json_schema:JsonSchemaGrader",
    "multi": "graders.multi:MultiGrader",
    "math": "graders.math:MathGrader",
    "code": "graders.code:CodeGrader",
    "python": "graders.python_grader:PythonGrader",
    "score_model": "graders.judge:ScoreModelGrader",
    "label_model": "graders.judge:LabelModelGrader",
    "endpoint": "graders.endpoint:EndpointGrader",
}


# Types registered from outside `graders`: type -> ("module:Class", path of the spec's JSON Schema).
REGISTERED: dict[str, tuple[str, Path]] = {}


def register_type(kind: str, target: str, schema: Path) -> None:
    """Make `{"type": kind, ...}` specs build `target` ("module:Class", imported on first use), checked by `schema`.

    For grader types whose code `graders` must not import (torch models in `rft`); the schema file is a
    JSON Schema for one spec and may use this file's shared `$defs` (`#/$defs/name`, `#/$defs/threshold`).
    """
    if kind in TYPES:
        raise ValueError(f"grader type {kind!r} is built in ({TYPES[kind]}); register another name")
    if not _DOTTED.fullmatch(target):
        raise ValueError(f"register_type: target {target!r} must look like 'package.module:Class'")
    REGISTERED[kind] = (target, Path(schema))
    _validator.cache_clear()


def known_types() -> dict[str, str]:
    """Every spec type: built-in and registered, with the class each builds."""
    return TYPES | {kind: target for kind, (target, _) in REGISTERED.items()}


@functools.cache
def _schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())


@functools.cache
def _validator(kind: str) -> Any:
    from jsonschema import Draft202012Validator

    root = _schema()
    if kind in REGISTERED:
        own = json.loads(REGISTERED[kind][1].read_text())
        return Draft202012Validator({"$defs": root["$defs"], **own})
    return Draft202012Validator({"$defs": root["$defs"], "$ref": f"#/$defs/{kind}"})


def read_spec(spec: Mapping[str, Any] | str | Path) -> dict[str, Any]:
    """A spec as a dict: given directly, as JSON text, or as the path of a JSON file.

    An OpenAI request body holding the spec under `"grader"` (as for /graders/run) is unwrapped.
    """
    source = "spec"
    if isinstance(spec, Path) or (isinstance(spec, str) and not spec.lstrip().startswith(("{", "["))):
        source = str(spec)
        try:
            spec = Path(spec).read_text()
        except OSError as exc:
            raise GraderInputError(f"cannot read grader spec {source}: {exc.strerror}") from exc
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except json.JSONDecodeError as exc:
            raise GraderInputError(f"{source}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}")
    if not isinstance(spec, Mapping):
        raise GraderInputError(f"{source}: a grader spec must be a JSON object, got {type(spec).__name__}")
    if "type" not in spec and isinstance(spec.get("grader"), Mapping):
        spec = spec["grader"]
    return dict(spec)


def validate_spec(spec: Mapping[str, Any], path: str = "") -> None:
    """Check a spec (and, for `multi`, each sub-grader) against the JSON Schema; raise naming the field."""
    where = path or "(root)"
    kind = spec.get("type")
    if kind not in known_types():
        problem = "has no 'type'" if kind is None else f"type {kind!r} is unknown"
        raise GraderInputError(f"{where}: grader spec {problem}; known types: {', '.join(known_types())}")
    errors = sorted(_validator(kind).iter_errors(spec), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        messages = []
        for err in errors:
            field = ".".join([path, *map(str, err.absolute_path)]).strip(".") or "(root)"
            messages.append(f"{field}: {err.message}")
        raise GraderInputError("; ".join(messages))
    if kind == "multi":
        for key, sub in sub_specs(spec).items():
            where = f"{path + '.' if path else ''}graders.{key}"
            if not isinstance(sub, Mapping):
                raise GraderInputError(f"{where}: must be a grader spec object")
            if sub.get("type") == "multi":
                raise GraderInputError(f"{where}: a multi grader cannot contain another multi (OpenAI forbids nesting)")
            validate_spec(sub, where)


def sub_specs(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A multi spec's named sub-graders; a single grader object is keyed by its own name."""
    graders = spec["graders"]
    if isinstance(graders.get("type"), str):
        return {graders.get("name", graders["type"]): graders}
    return dict(graders)


def grader_class(kind: str) -> Any:
    """Import the class registered for a type, saying which module is missing when it cannot."""
    target = known_types()[kind]
    module, _, attr = target.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise GraderInputError(
            f"grader type {kind!r} is provided by {target}, which cannot be loaded: {exc}"
        ) from exc


def import_grader(ref: str) -> Grader:
    """A Python grader given as `package.module:attr`: a grader, a no-argument factory, or a spec dict."""
    module, _, attr = ref.partition(":")
    try:
        obj: Any = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise GraderInputError(f"cannot import grader {ref!r}: {exc}") from exc
    if isinstance(obj, Mapping):
        return load_grader(obj)
    if isinstance(obj, type) or (callable(obj) and not hasattr(obj, "grade")):
        obj = obj()
    if not hasattr(obj, "grade"):
        raise GraderInputError(f"{ref!r} is a {type(obj).__name__}, not a grader (it has no grade method)")
    return obj


def load_grader(spec: Mapping[str, Any] | str | Path) -> Grader:
    """Build a grader from a spec (dict, JSON text or file path) or a `pkg.mod:attr` Python grader."""
    if isinstance(spec, str) and _DOTTED.fullmatch(spec) and not Path(spec).exists():
        return import_grader(spec)
    data = read_spec(spec)
    validate_spec(data)
    return grader_class(data["type"]).from_spec(data)
