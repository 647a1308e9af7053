"""Embeddings from an OpenAI-compatible `/v1/embeddings` endpoint, for `text_similarity` with `cosine`.

OpenAI's `cosine` metric embeds input and reference with `text-embedding-3-large`. Here that name is routed
like any hosted model (`graders.endpoints`): to the server `RFT_MODEL_MAP` names for it, else to
`OPENAI_BASE_URL` with `OPENAI_API_KEY`. A server that cannot be reached or answers badly is that sample's
counted error (`EmbeddingUnavailable`); a refused model or key is a configuration error.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from graders.base import GraderInputError
from graders.endpoints import MAP_ENV, Endpoint, model_map, resolve

OPENAI_EMBEDDING_MODEL = "text-embedding-3-large"


class EmbeddingUnavailable(Exception):
    """The embeddings endpoint gave no usable answer for this sample."""


def configured(model: str = OPENAI_EMBEDDING_MODEL) -> bool:
    """Whether an embeddings endpoint is configured at all (a map entry or an OPENAI_* variable)."""
    return model in model_map() or bool(os.environ.get("OPENAI_BASE_URL") or os.environ.get("OPENAI_API_KEY"))


@dataclass(frozen=True)
class HTTPEmbedder:
    """Texts -> vectors through `POST {base_url}/embeddings`; picklable, so process workers can use it.

    The endpoint is resolved once, when the grader is built, so every worker sends to the same server.
    """

    endpoint: Endpoint
    timeout_s: float = 60.0

    @classmethod
    def for_model(cls, model: str = OPENAI_EMBEDDING_MODEL) -> HTTPEmbedder:
        return cls(resolve(model))

    def __call__(self, texts: list[str]) -> Sequence[Sequence[float]]:
        import httpx

        endpoint = self.endpoint
        url = endpoint.base_url + "/embeddings"
        try:
            response = httpx.post(
                url,
                json={"model": endpoint.model, "input": texts},
                headers=endpoint.headers(),
                timeout=self.timeout_s,
            )
        except httpx.HTTPError as exc:
            raise EmbeddingUnavailable(f"embeddings request to {url} failed: {exc!r}") from exc
        if response.status_code in (401, 403, 404):
            raise GraderInputError(
                f"embeddings at {url} refused model {endpoint.model!r} with HTTP {response.status_code}: "
                f"{response.text[:300]} (check OPENAI_BASE_URL, OPENAI_API_KEY or ${MAP_ENV})"
            )
        if response.status_code >= 400:
            raise EmbeddingUnavailable(f"embeddings HTTP {response.status_code}: {response.text[:200]}")
        try:
            rows = sorted(response.json()["data"], key=lambda row: row["index"])
            vectors = [[float(x) for x in row["embedding"]] for row in rows]
        except (ValueError, KeyError, TypeError) as exc:
            raise EmbeddingUnavailable(f"malformed embeddings response: {response.text[:200]!r}") from exc
        if len(vectors) != len(texts):
            raise EmbeddingUnavailable(f"asked for {len(texts)} embeddings, got {len(vectors)}")
        return vectors
