"""How a judge is called: a model in this process or an OpenAI-compatible server, behind one client.

Both backends take chat messages plus `JudgeParams` (`graders.judge.params`) and return a `JudgeReply`.
`JudgeClient` adds what production grading needs on top: a concurrency limit, a response cache keyed by (judge, messages, params),
and per-grader counts of requests, cache hits, errors, retries, tokens and latency. Transient trouble
(timeouts, 429/5xx after all retries, an unreadable body) raises `JudgeUnavailable`, which the judge graders
turn into a counted `Grade(error=...)`; settings a user must fix raise `GraderInputError`.
Backends are registered by dotted path and imported only when a spec uses one: the local backend
(`rft.local_judge`) loads a model with torch, so it lives in `rft`, and `graders` never imports `rft`.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import random
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Coroutine, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Protocol, TypeVar

from graders.base import GraderInputError
from graders.endpoints import Endpoint, is_hosted_model, resolve
from graders.judge.params import JudgeParams

# Chat messages; `content` is text, or a list of content parts when the judge is shown images.
Messages = list[dict[str, Any]]
T = TypeVar("T")

# Statuses worth retrying: rate limits, server overload and gateway failures.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# Statuses that mean the judge settings are wrong, so every sample would fail the same way.
CONFIG_STATUSES = frozenset({401, 403, 404})


class JudgeUnavailable(Exception):
    """The judge gave no usable response for this sample (counted as a grading error, not raised)."""


@dataclass(frozen=True)
class JudgeReply:
    """One judge reply: its text, token usage, and the refusal the API reported, if any."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    refusal: str | None = None


class JudgeBackend(Protocol):
    """Anything that answers chat messages; `key` names the judge for the response cache."""

    key: str

    async def complete(self, messages: Messages, params: JudgeParams) -> JudgeReply: ...


def prefill_fields(messages: Messages) -> dict[str, Any]:
    """Request fields asking the server to continue a final assistant message (vLLM and `rft serve`)."""
    if messages[-1]["role"] != "assistant":
        return {}
    return {"continue_final_message": True, "add_generation_prompt": False}


def chat_message(message: Mapping[str, Any]) -> dict[str, Any]:
    """A judge message in chat-completions form: OpenAI eval content parts become `text` / `image_url` parts."""
    content = message["content"]
    if isinstance(content, str):
        return dict(message)
    parts = []
    for part in content:
        if part["type"] == "input_image":
            image = {"url": part["image_url"], **({"detail": part["detail"]} if part.get("detail") else {})}
            parts.append({"type": "image_url", "image_url": image})
        else:
            parts.append({"type": "text", "text": part["text"]})
    return {"role": message["role"], "content": parts}


def reply_from_response(body: Any) -> JudgeReply:
    """Read the first choice and the usage out of an OpenAI chat-completions response body."""
    try:
        choice = body["choices"][0]
        message = choice["message"]
        usage = body.get("usage") or {}
        return JudgeReply(
            text=message.get("content") or "",
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            finish_reason=choice.get("finish_reason"),
            refusal=message.get("refusal"),
        )
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
        raise JudgeUnavailable(f"malformed chat-completions response ({exc!r}): {str(body)[:200]}") from exc


class HTTPJudge:
    """An OpenAI-compatible `/chat/completions` endpoint (vLLM, `rft serve`, a hosted API).

    The API key is read from the environment variable named by `api_key_env` (never from the spec).
    Transient failures are retried `max_retries` times with exponential backoff and jitter.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str | None = None,
        timeout_s: float = 60.0,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        endpoint: Endpoint | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise GraderInputError(f"judge base_url must start with http:// or https://, got {base_url!r}")
        if not model:
            raise GraderInputError("an HTTP judge needs 'model': the model name the server serves")
        if timeout_s <= 0 or max_retries < 0 or backoff_s < 0:
            raise GraderInputError("judge timeout_s must be > 0, max_retries and retry_backoff_s >= 0")
        self.headers = {"Content-Type": "application/json"}
        self.missing_key = endpoint.missing_key if endpoint is not None else None
        if endpoint is not None and endpoint.api_key:
            self.headers["Authorization"] = f"Bearer {endpoint.api_key}"
        if api_key_env is not None:
            key = os.environ.get(api_key_env)
            if not key:
                raise GraderInputError(f"judge api_key_env names ${api_key_env}, which is not set or empty")
            self.headers["Authorization"] = f"Bearer {key}"
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.key = f"http:{self.url}:{model}"
        self.timeout_s, self.max_retries, self.backoff_s = timeout_s, max_retries, backoff_s
        self.retries = 0
        # An httpx.AsyncClient is bound to the event loop it first ran on: keep one per loop.
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], where: str) -> HTTPJudge:
        """From `base_url` + `model`, or an OpenAI model name routed by `graders.endpoints.resolve`."""
        if "adapter" in spec:
            raise GraderInputError(f"{where}: 'adapter' applies to backend 'local'; serve it with rft serve")
        model = str(spec.get("model", ""))
        endpoint = None
        if "base_url" not in spec:
            if not is_hosted_model(model):
                raise GraderInputError(f"{where}: backend 'http' needs base_url (e.g. http://127.0.0.1:8000/v1)")
            endpoint = resolve(model)
        return cls(
            spec["base_url"] if endpoint is None else endpoint.base_url,
            model if endpoint is None else endpoint.model,
            endpoint=endpoint,
            api_key_env=spec.get("api_key_env"),
            timeout_s=float(spec.get("timeout_s", 60.0)),
            max_retries=int(spec.get("max_retries", 3)),
            backoff_s=float(spec.get("retry_backoff_s", 0.5)),
        )

    def _client(self) -> Any:
        import httpx

        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._clients.get(loop)
            if client is None:
                client = httpx.AsyncClient(timeout=self.timeout_s, headers=self.headers)
                self._clients[loop] = client
        return client

    async def complete(self, messages: Messages, params: JudgeParams) -> JudgeReply:
        if self.missing_key is not None:
            raise GraderInputError(self.missing_key)
        payload = {
            "model": self.model,
            "messages": [chat_message(m) for m in messages],
            **params.to_request(),
            **prefill_fields(messages),
        }
        last = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                self.retries += 1
                await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1) * (0.5 + random.random()))
            try:
                body = await self._post(payload)
            except _Transient as exc:
                last = str(exc)
                continue
            return reply_from_response(body)
        raise JudgeUnavailable(f"judge failed after {self.max_retries + 1} attempts: {last}")

    async def _post(self, payload: dict[str, Any]) -> Any:
        import httpx

        try:
            response = await self._client().post(self.url, json=payload)
        except httpx.TimeoutException as exc:
            raise _Transient(f"timed out after {self.timeout_s}s ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise _Transient(f"transport error: {exc!r}") from exc
        if response.status_code in RETRY_STATUSES:
            raise _Transient(f"HTTP {response.status_code}: {response.text[:200]}")
        if response.status_code in CONFIG_STATUSES:
            raise GraderInputError(
                f"judge at {self.url} refused model {self.model!r} with HTTP {response.status_code}: "
                f"{response.text[:300]} (check base_url, model and api_key_env)"
            )
        if response.status_code >= 400:
            raise JudgeUnavailable(f"HTTP {response.status_code}: {response.text[:200]}")
        try:
            return response.json()
        except ValueError as exc:
            raise JudgeUnavailable(f"response body is not JSON: {response.text[:200]!r}") from exc


class _Transient(Exception):
    """A failure worth retrying."""


# Backend registry: spec["backend"] -> "module:Class" with `from_spec(spec, where)`, imported on first use.
BACKENDS: dict[str, str] = {
    "local": "rft.local_judge:LocalJudge",
    "http": "graders.judge.backends:HTTPJudge",
}
# Spec fields that configure the backend rather than the grader.
BACKEND_FIELDS = frozenset(
    {"backend", "model", "adapter", "base_url", "api_key_env", "timeout_s", "max_retries", "retry_backoff_s"}
)
# Fields only the http backend reads; another backend rejects them by name.
HTTP_ONLY_FIELDS = frozenset({"base_url", "api_key_env", "timeout_s", "max_retries", "retry_backoff_s"})


def backend_name(spec: Mapping[str, Any], where: str) -> str:
    """The backend a spec asks for, checked against `BACKENDS`.

    Default: http when `base_url` is set or `model` is an OpenAI model name (never loadable locally), else local.
    """
    hosted = is_hosted_model(str(spec.get("model") or ""))
    name = spec.get("backend") or ("http" if "base_url" in spec or hosted else "local")
    if name not in BACKENDS:
        raise GraderInputError(f"{where}.backend: unknown judge backend {name!r}; known: {sorted(BACKENDS)}")
    return name


def backend_class(name: str, where: str) -> Any:
    """Import the class registered for backend `name`, naming the backend when it cannot be imported."""
    target = BACKENDS[name]
    module, _, attr = target.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise GraderInputError(
            f"{where}.backend: judge backend {name!r} is provided by {target}, which cannot be loaded: {exc}"
        ) from exc


def make_backend(spec: Mapping[str, Any], where: str) -> JudgeBackend:
    """Build the judge backend a grader spec asks for."""
    name = backend_name(spec, where)
    return backend_class(name, where).from_spec(spec, where)


@dataclass
class JudgeStats:
    """Per-grader counters: requests sent, cache hits, grading errors, tokens and judge latency (seconds)."""

    requests: int = 0
    cache_hits: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0


class JudgeClient:
    """A backend behind a concurrency limit and a response cache keyed by (judge, messages, params)."""

    def __init__(
        self,
        backend: JudgeBackend,
        params: JudgeParams,
        max_concurrency: int = 8,
        cache_size: int = 10_000,
    ) -> None:
        if max_concurrency < 1:
            raise GraderInputError(f"max_concurrency must be >= 1, got {max_concurrency}")
        self.backend, self.params = backend, params
        self.max_concurrency, self.cache_size = max_concurrency, cache_size
        self.stats = JudgeStats()
        self._cache: OrderedDict[str, JudgeReply] = OrderedDict()
        self._lock = threading.Lock()
        # asyncio primitives belong to one event loop; graders may be awaited from several.
        self._limits: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )

    def _limit(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        with self._lock:
            return self._limits.setdefault(loop, asyncio.Semaphore(self.max_concurrency))

    async def ask(self, messages: Messages) -> tuple[JudgeReply, dict[str, Any]]:
        """The judge's reply and per-call details (cached, latency, tokens); raises `JudgeUnavailable`."""
        key = json.dumps([self.backend.key, messages, self.params.to_request()], sort_keys=True)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                self.stats.cache_hits += 1
                return hit, {"cached": True, "latency_s": 0.0}
        async with self._limit():
            start = time.perf_counter()
            completion = await self.backend.complete(messages, self.params)
            latency = time.perf_counter() - start
        with self._lock:
            self.stats.requests += 1
            self.stats.prompt_tokens += completion.prompt_tokens
            self.stats.completion_tokens += completion.completion_tokens
            self.stats.latency_s += latency
            self._cache[key] = completion
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        usage = {"prompt_tokens": completion.prompt_tokens, "completion_tokens": completion.completion_tokens}
        return completion, {"cached": False, "latency_s": round(latency, 4), "usage": usage}

    def count_error(self) -> None:
        with self._lock:
            self.stats.errors += 1

    def usage(self) -> dict[str, Any]:
        with self._lock:
            stats = asdict(self.stats)
        stats["retries"] = getattr(self.backend, "retries", 0)
        return stats


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine from synchronous code, whether or not the caller's thread runs an event loop.

    All synchronous calls share one background loop, so HTTP connections and the cache are reused.
    """
    loop = _background_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        coro.close()
        raise RuntimeError("grade() called from inside the judge's own event loop; await agrade() instead")
    return asyncio.run_coroutine_threadsafe(coro, loop).result()


_LOOP: list[asyncio.AbstractEventLoop] = []
_LOOP_LOCK = threading.Lock()


def _background_loop() -> asyncio.AbstractEventLoop:
    with _LOOP_LOCK:
        if not _LOOP:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="rft-judge-loop", daemon=True).start()
            _LOOP.append(loop)
        return _LOOP[0]
