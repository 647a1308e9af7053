"""Preference pairs: a prompt, a chosen and a rejected reply, from JSONL, CSV, Parquet or Hugging Face datasets.

Two line shapes are read (`schemas/preference_line.schema.json`):

- OpenAI's preference fine-tuning shape: `{"input": {"messages": [...]}, "preferred_output": [{"role":
  "assistant", "content": ...}], "non_preferred_output": [...]}`;
- the common shape: `{"prompt": ..., "chosen": ..., "rejected": ...}`, each a string or a message list
  (the prompt's messages; a single assistant message for the replies).

Other fields are kept with the pair (`Pair.item`), so pairs built from a task keep the item its grader
needs. A malformed line, a pair whose chosen and rejected replies are the same, or an empty split is a
`ValueError` naming the file and line (or the dataset row) and the field.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from tasks.datasets import most_specific_error, read_rows

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "preference_line.schema.json"
OPENAI_KEYS = ("input", "preferred_output", "non_preferred_output")
COMMON_KEYS = ("prompt", "chosen", "rejected")


@dataclass(frozen=True)
class Pair:
    """One preference: `messages` (the prompt conversation) answered better by `chosen` than by `rejected`."""

    messages: list[dict[str, str]]
    chosen: str
    rejected: str
    where: str = ""
    item: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The common shape, extra fields included: what `rft prefs` writes and `load_pairs` reads back."""
        return {"prompt": self.messages, "chosen": self.chosen, "rejected": self.rejected, **self.item}

    def to_openai(self) -> dict[str, Any]:
        """OpenAI's preference fine-tuning shape, extra fields included (`load_pairs` reads it back)."""
        clash = sorted(set(self.item) & {*OPENAI_KEYS, *COMMON_KEYS})
        if clash:
            raise ValueError(f"{self.where or 'pair'}: extra field(s) {clash} would be read as the pair itself")
        return {"input": {"messages": self.messages}, "preferred_output": _assistant(self.chosen),
                "non_preferred_output": _assistant(self.rejected), **self.item}


def is_preference_row(row: Mapping[str, Any]) -> bool:
    """Whether a line holds a preference pair rather than a dataset item (a fine-tuning upload may be either)."""
    return any(key in row for key in ("preferred_output", "non_preferred_output", "chosen", "rejected"))


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


@cache
def _validators() -> dict[str, jsonschema.protocols.Validator]:
    """One validator per shape, so an error names the field of the shape the line is in."""
    schema = json.loads(SCHEMA_PATH.read_text())
    openai, common = schema["oneOf"]
    return {name: jsonschema.Draft202012Validator({"$defs": schema["$defs"], **shape})
            for name, shape in (("openai", openai), ("common", common))}


def _shape(row: Mapping[str, Any], where: str) -> str:
    if any(key in row for key in OPENAI_KEYS):
        return "openai"
    if any(key in row for key in COMMON_KEYS):
        return "common"
    raise ValueError(f"{where}: not a preference pair: give {'/'.join(OPENAI_KEYS)} (OpenAI's shape) or "
                     f"{'/'.join(COMMON_KEYS)}; got fields {sorted(row)}")


def _reply(value: str | list[dict[str, str]]) -> str:
    return value if isinstance(value, str) else value[0]["content"]


def to_pair(row: Mapping[str, Any], where: str) -> Pair:
    """Validate one row and turn it into a `Pair`; errors name `where` and the offending field."""
    shape = _shape(row, where)
    error = most_specific_error(_validators()[shape], row)
    if error is not None:
        place = "/".join(str(p) for p in error.absolute_path) or "(line)"
        raise ValueError(f"{where}: field {place}: {error.message}")
    if shape == "openai":
        messages = row["input"]["messages"]
        chosen, rejected = _reply(row["preferred_output"]), _reply(row["non_preferred_output"])
        extra = {k: v for k, v in row.items() if k not in OPENAI_KEYS}
    else:
        prompt = row["prompt"]
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        chosen, rejected = _reply(row["chosen"]), _reply(row["rejected"])
        extra = {k: v for k, v in row.items() if k not in COMMON_KEYS}
    if chosen.strip() == rejected.strip():
        raise ValueError(f"{where}: chosen and rejected replies are the same ({chosen[:60]!r}): the pair says nothing")
    messages = [{"role": m["role"], "content": m["content"]} for m in messages]
    return Pair(messages, chosen, rejected, where, extra)


def load_pairs(source: Any, split: str | None = None) -> list[Pair]:
    """Every pair of a JSONL / CSV / Parquet file, a saved dataset directory or a `datasets` object."""
    rows = read_rows(source, split)
    if not rows:
        raise ValueError(f"{source}: no preference pairs (the file or split is empty)")
    return [to_pair(row, where) for where, row in rows]


def split_pairs(pairs: Sequence[Pair], held_out: float, seed: int = 0) -> tuple[list[Pair], list[Pair]]:
    """A fixed-seed train / held-out split; `held_out` is a fraction (0, 1) or a count (>= 1)."""
    n_test = round(held_out * len(pairs)) if held_out < 1 else int(held_out)
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    test, train = [pairs[i] for i in order[:n_test]], [pairs[i] for i in order[n_test:]]
    for name, part in (("train", train), ("held-out", test)):
        if not part:
            raise ValueError(f"preference split: the {name} split is empty ({len(pairs)} pairs, held_out={held_out})")
    return train, test
