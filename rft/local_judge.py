"""The `local` judge backend: a chat model loaded in this process answers the judge graders.

It lives in `rft` rather than `graders` because it loads a model (torch, transformers) through
`rft.serve.ChatModel`; `graders.judge.backends.BACKENDS` names it by dotted path and imports it only when
a spec asks for `backend: local`, so `graders` never imports `rft`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from graders.base import GraderInputError
from graders.judge.backends import (
    HTTP_ONLY_FIELDS,
    JudgeParams,
    JudgeReply,
    Messages,
    prefill_fields,
    reply_from_response,
)
from rft.serve import ChatModel


class LocalJudge:
    """A transformers model loaded in this process (`"default"` is the packaged model).

    The model is loaded when the judge is first asked, not when the grader is built, so checking a spec
    (`rft grade SPEC --validate`) never loads one. Generation runs in a worker thread so the event loop stays
    free; `ChatModel` serialises generation with a lock, so a concurrency limit above 1 only overlaps prompt
    rendering and parsing. Graders naming the same model share one loaded copy.
    """

    _loaded: ClassVar[dict[tuple[str, str | None], ChatModel]] = {}
    _load_lock = threading.Lock()

    def __init__(self, model: str = "default", adapter: str | None = None) -> None:
        self.key = f"local:{model}:{adapter or ''}"
        self.model, self.adapter = model, adapter

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], where: str) -> LocalJudge:
        extra = sorted(HTTP_ONLY_FIELDS & set(spec))
        if extra:
            raise GraderInputError(f"{where}: {extra} only apply to backend 'http'")
        model = spec.get("model") or "default"
        if model.startswith((".", "/", "~")) and not Path(model).expanduser().exists():
            raise GraderInputError(f"{where}.model: {model!r} is not a directory or file on this machine")
        return cls(model, adapter=spec.get("adapter"))

    def chat(self) -> ChatModel:
        """The loaded model (loading it on first use); a model that cannot be loaded is a config error."""
        key = (self.model, self.adapter)
        with self._load_lock:
            if key not in self._loaded:
                try:
                    self._loaded[key] = ChatModel.load(self.model, adapter=self.adapter)
                except (OSError, ValueError) as exc:
                    raise GraderInputError(f"local judge model {self.model!r} cannot be loaded: {exc}") from exc
            return self._loaded[key]

    async def complete(self, messages: Messages, params: JudgeParams) -> JudgeReply:
        if any(not isinstance(m["content"], str) for m in messages):
            raise GraderInputError("the local judge backend takes text messages only")
        request = {"messages": messages, **params.to_request(), **prefill_fields(messages)}
        body = await asyncio.to_thread(self.chat().complete, request)
        return reply_from_response(body)
