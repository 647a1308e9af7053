"""A reward served elsewhere: POST the sample and item as JSON, read a score (and sub-scores) back.

This is how a reward model or a grading service on another machine plugs in:

    {"type": "endpoint", "name": "rm", "url": "http://10.0.0.5:8000/score",
     "headers": {"Authorization": "Bearer ..."}, "timeout": 10, "max_retries": 3, "retry_backoff": 0.5}

Request body: `{"sample": {"output_text", "output_json", "output_tools", "choices"}, "item": {...}}`.
Response body: `{"score": 0.7, "sub_scores": {"helpful": 0.9}, "details": {...}}` (`sub_scores` and
`details` optional). Both are the JSON Schema `schemas/reward_endpoint.schema.json`. Rate limits, server
errors (408, 429, 5xx), timeouts and dropped connections are retried `max_retries` times with
exponential backoff; after that, and for a malformed reply, the sample gets a counted `Grade(error=...)`.
A URL the server refuses (401, 403, 404, 405) is a misconfiguration and raises `GraderInputError`.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from graders.base import Grade, GraderInputError, Sample

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
CONFIG_STATUSES = frozenset({401, 403, 404, 405})
FIELDS = {"type", "name", "url", "headers", "timeout", "max_retries", "retry_backoff", "pass_threshold"}


class _Transient(Exception):
    """A failure worth another attempt."""


class _Rejected(Exception):
    """A reply that another attempt would not change (HTTP 400, 422, a body that is not JSON)."""


@dataclass
class EndpointGrader:
    """Grades one sample by one HTTP POST (plus retries); thread-safe, picklable (the client is rebuilt)."""

    url: str
    name: str = "endpoint"
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float = 30.0
    max_retries: int = 3
    retry_backoff: float = 0.5
    pass_threshold: float = 1.0
    io_bound = True  # the runner grades it on threads, many requests in flight
    retries: int = field(default=0, init=False)  # attempts beyond the first, over this grader's life

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise GraderInputError(f"url: must start with http:// or https://, got {self.url!r}")
        if self.timeout <= 0:
            raise GraderInputError(f"timeout: must be > 0 seconds, got {self.timeout}")
        if self.max_retries < 0 or self.retry_backoff < 0:
            raise GraderInputError(f"max_retries and retry_backoff must be >= 0, got {self.max_retries}, "
                                   f"{self.retry_backoff}")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.headers.items()):
            raise GraderInputError("headers: every header name and value must be a string")
        self._client: Any = None
        self._lock = threading.Lock()

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> EndpointGrader:
        unknown = sorted(set(spec) - FIELDS)
        if unknown:
            raise GraderInputError(f"endpoint grader spec: unknown field(s) {unknown}; allowed: {sorted(FIELDS)}")
        if "url" not in spec:
            raise GraderInputError("url: an endpoint grader needs the URL to POST samples to")
        return cls(url=spec["url"], name=spec.get("name", "endpoint"), headers=dict(spec.get("headers", {})),
                   timeout=float(spec.get("timeout", 30.0)), max_retries=int(spec.get("max_retries", 3)),
                   retry_backoff=float(spec.get("retry_backoff", 0.5)),
                   pass_threshold=float(spec.get("pass_threshold", 1.0)))

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("_client", "_lock")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._client, self._lock = None, threading.Lock()

    def grade(self, sample: Sample | str, item: Mapping[str, Any]) -> Grade:
        body = {"sample": Sample.coerce(sample).to_dict(), "item": dict(item)}
        start, last = time.perf_counter(), ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                self.retries += 1
                time.sleep(self.retry_backoff * 2 ** (attempt - 1) * (0.5 + random.random()))
            try:
                reply = self._post(body)
            except _Transient as exc:
                last = str(exc)
                continue
            except _Rejected as exc:
                return Grade.failure(f"endpoint reply: {exc}", attempts=attempt + 1)
            return _grade_of(reply, attempt + 1, time.perf_counter() - start)
        return Grade.failure(f"endpoint failed after {self.max_retries + 1} attempts: {last}",
                             attempts=self.max_retries + 1)

    def _post(self, body: dict[str, Any]) -> Any:
        import httpx

        with self._lock:
            if self._client is None:
                self._client = httpx.Client(timeout=self.timeout, headers=self.headers)
        try:
            response = self._client.post(self.url, json=body)
        except httpx.TimeoutException as exc:
            raise _Transient(f"timed out after {self.timeout} s") from exc
        except httpx.TransportError as exc:
            raise _Transient(f"transport error: {exc!r}") from exc
        if response.status_code in RETRY_STATUSES:
            raise _Transient(f"HTTP {response.status_code}: {response.text[:200]}")
        if response.status_code in CONFIG_STATUSES:
            raise GraderInputError(f"url: {self.url} answered HTTP {response.status_code}: {response.text[:200]}")
        if response.status_code >= 400:
            raise _Rejected(f"HTTP {response.status_code}: {response.text[:200]}")
        try:
            return response.json()
        except ValueError as exc:
            raise _Rejected(f"body is not JSON: {response.text[:200]!r}") from exc


def _score(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where} must be a number, got {value!r}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{where} must be in [0, 1], got {value}")
    return float(value)


def _grade_of(reply: Any, attempts: int, seconds: float) -> Grade:
    """The reply's score, sub-scores and details, or a counted error naming what was wrong with it."""
    try:
        if not isinstance(reply, Mapping) or "score" not in reply:
            raise ValueError(f"reply must be a JSON object with 'score', got {str(reply)[:200]}")
        score = _score(reply["score"], "score")
        subs = reply.get("sub_scores", {})
        if not isinstance(subs, Mapping):
            raise ValueError(f"sub_scores must be an object of numbers, got {subs!r}")
        sub_grades = {str(k): Grade(_score(v, f"sub_scores.{k}")) for k, v in subs.items()}
    except ValueError as exc:
        return Grade.failure(f"endpoint reply: {exc}", attempts=attempts)
    details = dict(reply.get("details") or {}) if isinstance(reply.get("details"), Mapping) else {}
    return Grade(score, {**details, "attempts": attempts, "latency_s": seconds}, sub_grades=sub_grades)
