"""`Task`: a dataset with train and held-out splits, a prompt builder and a grader.

Load one by registry name (`load_task("arithmetic")`), by dotted path
(`load_task("my_pkg.tasks:invoices")`), by file path (`load_task("examples/custom_task.py:task")`),
where the attribute is a `Task` or a function returning one, or from a directory holding
`train.jsonl`, an optional `test.jsonl` and `grader.json` (`load_task("examples/openai_format")`).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import random
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graders.base import Grader

Messages = list[dict[str, str]]
Item = dict[str, Any]


@dataclass
class Task:
    """Everything the trainer and evaluator need to know about a task.

    train / test: dataset items (dicts); `test` is the held-out split and never overlaps `train`.
    prompt: item -> user-visible text or chat messages (a system prompt is prepended when set).
    reference: item -> the reference answer as text (shown by `rft tasks show`, used in tests).
    issues: problems found while loading the data (duplicates, empty prompts), for `rft tasks show`.
    eval_grader: when set, held-out evaluation grades with it instead of `grader` (the task's true
    grader, kept while training rewards come from a learned reward model).
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
    issues: list[str] = field(default_factory=list)
    eval_grader: Grader | None = None

    def messages(self, item: Mapping[str, Any]) -> Messages:
        """Chat messages for one item, with the system prompt first when the task has one."""
        built = self.prompt(item)
        msgs: Messages = [{"role": "user", "content": built}] if isinstance(built, str) else list(built)
        if self.system_prompt and not (msgs and msgs[0].get("role") == "system"):
            msgs = [{"role": "system", "content": self.system_prompt}, *msgs]
        return msgs


# Built-in tasks by name -> "module:factory". Factories take keyword options (seed, sizes, difficulty).
REGISTRY: dict[str, str] = {
    "arithmetic": "tasks.arithmetic:arithmetic",
    "word_problems": "tasks.word_problems:word_problems",
    "countdown": "tasks.countdown:countdown",
    "json_extract": "tasks.json_extract:json_extract",
    "humaneval": "tasks.humaneval:humaneval",
}
DEFAULT_TASK = "arithmetic"


def load_task(spec: str | Task, **options: Any) -> Task:
    """Resolve a registry name, `pkg.module:attr`, `path/to/file.py:attr` or a data directory to a `Task`."""
    if isinstance(spec, Task):
        return spec
    target = REGISTRY.get(spec, spec)
    if ":" not in target and Path(target).is_dir():
        from tasks.datasets import task_from_dir

        return task_from_dir(target, **options)
    if ":" not in target:
        known = ", ".join(sorted(REGISTRY)) or "none"
        raise ValueError(
            f"unknown task {spec!r}: use a built-in name ({known}), 'package.module:attr', "
            "'path/to/file.py:attr' or a directory with train.jsonl and grader.json"
        )
    module_name, attr = target.rsplit(":", 1)
    try:
        obj = getattr(_import(module_name), attr)
    except (ImportError, AttributeError, FileNotFoundError) as exc:
        raise ValueError(f"cannot load task {spec!r} from {target!r}: {exc}") from exc
    if options and isinstance(obj, Task):
        raise ValueError(f"task {spec!r} is a fixed Task and takes no options, got {sorted(options)}")
    task = obj(**options) if callable(obj) and not isinstance(obj, Task) else obj
    if not isinstance(task, Task):
        raise ValueError(f"{target!r} gave {type(task).__name__}, expected a tasks.Task")
    return task


def _import(module: str) -> Any:
    """Import a dotted module, or a `.py` file by path (cached under a name derived from the path)."""
    if not module.endswith(".py"):
        return importlib.import_module(module)
    path = Path(module).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {module}")
    name = "_rft_task_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        del sys.modules[name]
        raise
    return mod


def generate_splits(
    make: Callable[[random.Random], Item],
    n_train: int,
    n_test: int,
    seed: int,
    key: str,
    max_tries: int = 50,
) -> tuple[list[Item], list[Item]]:
    """Draw unique items for a held-out split, then a train split sharing none of their `key` values.

    The held-out split is drawn first from its own seeded stream, so it does not change when
    `n_train` changes. Raises `ValueError` when the generator cannot produce enough distinct items.
    """
    if n_train < 0 or n_test < 0:
        raise ValueError(f"n_train and n_test must be >= 0, got {n_train} and {n_test}")
    seen: set[Any] = set()
    test = _draw(make, random.Random(f"{seed}/test"), n_test, key, seen, max_tries)
    train = _draw(make, random.Random(f"{seed}/train"), n_train, key, seen, max_tries)
    return train, test


def _draw(
    make: Callable[[random.Random], Item],
    rng: random.Random,
    n: int,
    key: str,
    seen: set[Any],
    max_tries: int,
) -> list[Item]:
    out: list[Item] = []
    misses = 0
    while len(out) < n:
        item = make(rng)
        if item[key] in seen:
            misses += 1
            if misses > max_tries * (n + 10):
                raise ValueError(
                    f"only {len(seen)} distinct items could be generated ({n} requested for this split): "
                    "lower n_train/n_test or raise the difficulty knobs"
                )
            continue
        seen.add(item[key])
        out.append(item)
    return out


def split_items(items: Sequence[Item], n_test: int | float, seed: int) -> tuple[list[Item], list[Item]]:
    """Shuffle with a fixed seed and hold out `n_test` items (a count, or a fraction when < 1)."""
    count = round(len(items) * n_test) if isinstance(n_test, float) and n_test < 1 else int(n_test)
    if not 0 <= count < len(items):
        raise ValueError(f"cannot hold out {n_test} of {len(items)} items: need at least one train item")
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    test_idx = set(order[:count])
    train = [items[i] for i in range(len(items)) if i not in test_idx]
    test = [items[i] for i in sorted(test_idx)]
    return train, test
