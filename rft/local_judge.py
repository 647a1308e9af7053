"""The `local` judge backend: a chat model loaded in this process answers the judge graders.

It lives in `rft` rather than `graders` because it loads a model (torch, transformers) through
`rft.serve.ChatModel`; `graders.judge.backends.BACKENDS` names it by dotted path and imports it only when
a spec asks for `backend: local`, so `graders` never imports `rft`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
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

    Generation runs in a worker thread so the event loop stays free; `ChatModel` serialises generation
    with a lock, so a concurrency limit above 1 only overlaps prompt rendering and parsing. Graders
    naming the same model share one loaded copy.
    """

    _loaded: ClassVar[dict[tuple[str, str | None], ChatModel]] = {}
    _load_lock = threading.Lock()

    def __init__(self, model: str = "default", adapter: str | None = None) -> None:
        self.key = f"local:{model}:{adapter or ''}"
        with self._load_lock:
            if (model, adapter) not in self._loaded:
                self._loaded[(model, adapter)] = ChatModel.load(model, adapter=adapter)
        self.chat = self._loaded[(model, adapter)]

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], where: str) -> LocalJudge:
        extra = sorted(HTTP_ONLY_FIELDS & set(spec))
        if extra:
            raise GraderInputError(f"{where}: {extra} only apply to backend 'http'")
        return cls(spec.get("model") or "default", adapter=spec.get("adapter"))

    async def complete(self, messages: Messages, params: JudgeParams) -> JudgeReply:
        request = {"messages": messages, **params.to_request(), **prefill_fields(messages)}
        body = await asyncio.to_thread(self.chat.complete, request)
        return reply_from_response(body)
