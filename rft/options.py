"""Config field declarations: a default, a one-line help text and optional choices on each field.

The help text and choices live in the field's metadata, so the JSON Schema in `schemas/` and the
validation both read them from the declaration itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any


class ConfigError(ValueError):
    """A setting a user must fix; the CLI prints it without a traceback."""


def opt(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    factory: Callable[[], Any] | None = None,
    choices: tuple[Any, ...] | None = None,
) -> Any:
    """A dataclass field with `help` (and `choices`, checked on load) in its metadata."""
    metadata = {"help": help, **({"choices": choices} if choices else {})}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)
