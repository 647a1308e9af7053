"""A constitution (a list of written principles) as a `score_model` judge spec with one rubric criterion each.

Constitutional AI (Bai et al. 2022) ranks a model's own samples by how well they follow written
principles; here each principle is a rubric criterion worth one point, judged separately, so a reply's
score is the fraction of principles it meets (`graders.judge.rubric_score`). The judge sees the
conversation as `{{item.conversation}}`, which the caller adds to each item (`rft.pairing`).

    >>> spec = constitution_spec(["Be brief."], {"model": "default", "backend": "local"})
    >>> spec["rubric"], spec["backend"]
    ([{'criterion': 'Be brief.', 'points': 1}], 'local')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from graders.base import GraderInputError

CONVERSATION_FIELD = "conversation"
CONSTITUTION_INPUT = [
    {"role": "system", "content": "You judge an assistant's reply against one principle at a time."},
    {"role": "user", "content": "Conversation:\n{{item.conversation}}\n\nThe assistant replied:\n"
                                "{{sample.output_text}}"},
]
DEFAULT_JUDGE = {"model": "default", "backend": "local"}
RESERVED = frozenset({"type", "input", "rubric", "range"})


def constitution_spec(principles: Sequence[str], judge: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A `score_model` spec whose rubric is `principles`; `judge` holds the judge's own fields (model, backend,
    base_url, sampling_params, ...), the local packaged model when omitted."""
    if isinstance(principles, str) or not principles or not all(
            isinstance(p, str) and p.strip() for p in principles):
        raise GraderInputError(f"principles must be a non-empty list of non-empty texts, got {principles!r}")
    fields = dict(DEFAULT_JUDGE if judge is None else judge)
    clash = sorted(RESERVED & set(fields))
    if clash:
        raise GraderInputError(f"judge: {clash} are set by the constitution; give only the judge's own settings")
    return {"type": "score_model", "name": fields.pop("name", "constitution"), "input": CONSTITUTION_INPUT,
            "rubric": [{"criterion": p.strip(), "points": 1} for p in principles], **fields}


def conversation_text(messages: Sequence[Mapping[str, str]]) -> str:
    """A prompt conversation as the judge reads it: one `role: content` block per message.

    >>> conversation_text([{"role": "user", "content": "2+2?"}])
    'user: 2+2?'
    """
    return "\n\n".join(f"{m['role']}: {m['content']}" for m in messages)
