"""Where a hosted model name is served: OpenAI model names go to an OpenAI-compatible HTTP endpoint.

OpenAI grader specs name models such as `gpt-4o-2024-08-06`, `o4-mini-2025-04-16` or
`text-embedding-3-large`. Those can never be loaded locally, so they are routed over HTTP:

1. a model map, `RFT_MODEL_MAP` (inline JSON, or the path of a JSON file), maps a name to
   `{"base_url": ..., "model": ..., "api_key_env": ...}` (each optional), e.g. to send every
   `gpt-4.1-2025-04-14` judge to a vLLM server under another name;
2. otherwise `OPENAI_BASE_URL` (default `https://api.openai.com/v1`) with the key in `OPENAI_API_KEY`,
   the variables the openai client reads.

A missing key is reported when the first request would be sent, so `rft grade SPEC --validate` works offline.

>>> is_hosted_model("gpt-4o-2024-08-06"), is_hosted_model("o4-mini"), is_hosted_model("./my-judge")
(True, True, False)
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from graders.base import GraderInputError

OPENAI_BASE_URL = "https://api.openai.com/v1"
MAP_ENV = "RFT_MODEL_MAP"
# OpenAI's model families (chat, reasoning, embeddings) and fine-tuned ids.
_HOSTED = re.compile(r"(gpt-|chatgpt-|o\d(-|$)|text-embedding-|ft:|omni-moderation)", re.IGNORECASE)
_MAP_KEYS = {"base_url", "model", "api_key_env"}


def is_hosted_model(name: str) -> bool:
    """Whether `name` is an OpenAI model name (served over HTTP) rather than a local model or path."""
    return bool(_HOSTED.match(name)) and not Path(name).exists()


def model_map() -> dict[str, dict[str, str]]:
    """The `RFT_MODEL_MAP` entries (empty when unset); a malformed map is a configuration error."""
    raw = os.environ.get(MAP_ENV, "").strip()
    if not raw:
        return {}
    source = "inline JSON"
    if not raw.startswith("{"):
        source = raw
        try:
            raw = Path(raw).read_text()
        except OSError as exc:
            raise GraderInputError(
                f"${MAP_ENV} names {source}, which cannot be read: {exc.strerror}"
            ) from exc
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise GraderInputError(f"${MAP_ENV} ({source}) is not valid JSON: {exc.msg}") from exc
    if not isinstance(data, Mapping) or not all(isinstance(v, Mapping) for v in data.values()):
        raise GraderInputError(
            f"${MAP_ENV} must map model names to {{'base_url', 'model', 'api_key_env'}} objects"
        )
    for name, entry in data.items():
        extra = sorted(set(entry) - _MAP_KEYS)
        if extra:
            raise GraderInputError(f"${MAP_ENV}.{name}: unknown keys {extra}; known: {sorted(_MAP_KEYS)}")
    return {str(k): dict(v) for k, v in data.items()}


@dataclass(frozen=True)
class Endpoint:
    """An OpenAI-compatible base URL, the model name to send, and the API key (or why it is missing)."""

    base_url: str
    model: str
    api_key: str | None = None
    missing_key: str | None = None

    def headers(self) -> dict[str, str]:
        """Request headers; raises `GraderInputError` when the endpoint needs a key that is not set."""
        if self.missing_key is not None:
            raise GraderInputError(self.missing_key)
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers


def resolve(name: str) -> Endpoint:
    """The endpoint serving the hosted model `name` (model map first, then the OPENAI_* variables)."""
    entry = model_map().get(name, {})
    base_url = entry.get("base_url") or os.environ.get("OPENAI_BASE_URL") or OPENAI_BASE_URL
    key_env = entry.get("api_key_env") or "OPENAI_API_KEY"
    key = os.environ.get(key_env) or None
    missing = None
    if key is None and ("api_key_env" in entry or base_url.rstrip("/") == OPENAI_BASE_URL):
        missing = (
            f"model {name!r} is served at {base_url}, which needs an API key: set ${key_env}, or point "
            f"OPENAI_BASE_URL (or ${MAP_ENV}) at an OpenAI-compatible server such as `rft serve`"
        )
    return Endpoint(base_url.rstrip("/"), entry.get("model") or name, key, missing)
