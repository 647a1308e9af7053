"""`Task`: a dataset with train and held-out splits, a prompt builder and a grader.

Load one by registry name (`load_task("arithmetic")`) or by dotted path
(`load_task("my_pkg.tasks:invoices")`, where the attribute is a `Task` or a function returning one).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from graders.base import Grader

Messages = list[dict[str, str]]


@dataclass
class Task:
    """Everything the trainer and evaluator need to know about a task.

    train / test: dataset items (dicts); `test` is the held-out split and never overlaps `train`.
    prompt: item -> user-visible text or chat messages (a system prompt is prepended when set).
    reference: item -> the reference answer as text (shown by `rft tasks show`, used in tests).
    """

    name: str
    train: Sequence[Mapping[str, Any]]
    test: Sequence[Mapping[str, Any]]
    prompt: Callable[[Mapping[str, Any]], str | Messages]
    grader: Grader
    reference: Callable[[Mapping[str, Any]], str] | None = None
    system_prompt: str | None = None
    response_format: dict[str, Any] | None = None
    description: str = ""

    def messages(self, item: Mapping[str, Any]) -> Messages:
        """Chat messages for one item, with the system prompt first when the task has one."""
        built = self.prompt(item)
        msgs: Messages = [{"role": "user", "content": built}] if isinstance(built, str) else list(built)
        if self.system_prompt and not (msgs and msgs[0].get("role") == "system"):
            msgs = [{"role": "system", "content": self.system_prompt}, *msgs]
        return msgs


# Built-in tasks by name -> "module:factory". Factories take keyword options (seed, sizes, difficulty).
REGISTRY: dict[str, str] = {}


def load_task(spec: str | Task, **options: Any) -> Task:
    """Resolve a registry name or a `pkg.module:attr` path to a `Task`."""
    if isinstance(spec, Task):
        return spec
    target = REGISTRY.get(spec, spec)
    if ":" not in target:
        known = ", ".join(sorted(REGISTRY)) or "none"
        raise ValueError(f"unknown task {spec!r}: use a built-in name ({known}) or 'package.module:attr'")
    module_name, attr = target.split(":", 1)
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot load task {spec!r} from {target!r}: {exc}") from exc
    task = obj(**options) if callable(obj) and not isinstance(obj, Task) else obj
    if not isinstance(task, Task):
        raise ValueError(f"{target!r} gave {type(task).__name__}, expected a tasks.Task")
    if options and isinstance(obj, Task):
        raise ValueError(f"task {spec!r} is a fixed Task and takes no options, got {sorted(options)}")
    return task
