"""`POST /v1/embeddings` on `rft serve`: the served model's mean-pooled last hidden state, L2-normalised.

It gives `text_similarity` graders with `cosine` (and any OpenAI client) a local embeddings endpoint: map
`text-embedding-3-large` to it with `RFT_MODEL_MAP`. A chat model's hidden states are no trained sentence
embedding, so these vectors rank paraphrases only as well as the model happens to; they are exact, though:
the same text always gives the same vector, and different texts different ones.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.concurrency import run_in_threadpool

from rft.serve.app import ApiError, check_model, read_json
from rft.serve.chat import ChatModel, describe


class EmbeddingRequest(BaseModel):
    """OpenAI's embeddings request; `input` is one text or a list of them (token-id inputs are refused)."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    input: Annotated[list[str], Field(min_length=1)]
    encoding_format: Literal["float", "base64"] = "float"
    user: str | None = None

    @field_validator("input", mode="before")
    @classmethod
    def _texts(cls, value: Any) -> Any:
        texts = [value] if isinstance(value, str) else value
        if not isinstance(texts, list) or not all(isinstance(t, str) and t for t in texts):
            raise ValueError("input must be a non-empty string or a list of non-empty strings")
        return texts


def embed(chat: ChatModel, texts: list[str], model: str | None = None) -> tuple[list[list[float]], int]:
    """One unit vector per text (mean over its tokens of the last hidden state of `model`, one of
    `chat.served()`), and the tokens read."""
    import torch

    vectors, tokens = [], 0
    with chat.using(model) as lm, torch.inference_mode():
        for text in texts:
            enc = chat.tokenizer(text, return_tensors="pt").to(lm.device)
            hidden = lm(**enc, output_hidden_states=True).hidden_states[-1][0]  # (T, H)
            vectors.append(torch.nn.functional.normalize(hidden.float().mean(0), dim=0).tolist())
            tokens += int(enc["input_ids"].shape[1])
    return vectors, tokens


def _encode(vector: list[float], encoding: str) -> list[float] | str:
    """OpenAI's base64 form is the float32 little-endian bytes (what openai-python asks for by default)."""
    if encoding == "float":
        return vector
    import numpy as np

    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()


def add_embedding_routes(app: FastAPI, chat: ChatModel) -> None:
    """Mount `POST /v1/embeddings` for `chat`'s model."""

    @app.post("/v1/embeddings")
    @app.post("/embeddings", include_in_schema=False)
    async def embeddings(request: Request) -> dict[str, Any]:
        body = await read_json(request)
        check_model(body, chat)
        try:
            req = EmbeddingRequest.model_validate(body)
        except ValidationError as exc:
            raise ApiError(400, describe(exc)) from None
        vectors, tokens = await run_in_threadpool(embed, chat, req.input, req.model)
        data = [
            {"object": "embedding", "index": i, "embedding": _encode(v, req.encoding_format)}
            for i, v in enumerate(vectors)
        ]
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return {"object": "list", "data": data, "model": req.model or chat.name, "usage": usage}
