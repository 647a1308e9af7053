"""`rft serve` as a rollout server: `/v1/completions` with token ids and log-probs, and LoRA adapters loaded
and unloaded at run time, in vLLM's wire format (`vllm serve --enable-lora`).

A trainer elsewhere (`sampler.backend: server`) pushes each policy version's adapter with
`POST /v1/load_lora_adapter {"lora_name", "lora_path"}`, samples with `POST /v1/completions` naming it as
`model` (prompts as token ids, `return_token_ids`, `logprobs`), and drops the old version with
`POST /v1/unload_lora_adapter {"lora_name"}`. Log-probs are those of the sampled tokens under the
sampling distribution (after temperature and top-p), as vLLM's `processed_logprobs` mode returns them.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError, field_validator
from starlette.concurrency import run_in_threadpool

from rft.serve.app import ApiError, check_model, read_json
from rft.serve.chat import ChatModel, describe

PositiveInt = Annotated[StrictInt, Field(ge=1)]


class CompletionRequest(BaseModel):
    """A validated `/v1/completions` request (OpenAI's fields plus vLLM's `return_token_ids` and
    `stop_token_ids`); `prompt` is a string, token ids, or a list of either."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str | None = None
    prompt: str | list[StrictInt] | list[str] | list[list[StrictInt]]
    max_tokens: PositiveInt = 16
    temperature: Annotated[float, Field(ge=0, le=2)] = 1.0
    top_p: Annotated[float, Field(gt=0, le=1)] = 1.0
    n: PositiveInt = 1
    seed: StrictInt | None = None
    logprobs: StrictInt | None = None  # 0: each sampled token's log-prob (alternatives are not listed)
    return_token_ids: StrictBool = False
    stop_token_ids: list[StrictInt] = []
    user: str | None = None

    @field_validator("prompt")
    @classmethod
    def _not_empty(cls, value: Any) -> Any:
        if value in ("", []) or (isinstance(value, list) and any(v in ("", []) for v in value)):
            raise ValueError("prompt must not be empty")
        return value

    @field_validator("logprobs")
    @classmethod
    def _sampled_only(cls, value: int | None) -> int | None:
        if value not in (None, 0):
            raise ValueError(f"logprobs: only 0 (the sampled tokens' log-probs, no alternatives) is served here, "
                             f"got {value}")
        return value

    def prompts(self, tokenizer: Any) -> list[list[int]]:
        """Each prompt as token ids (strings tokenized as vLLM does, special tokens added)."""
        items = self.prompt if isinstance(self.prompt, list) and not isinstance(self.prompt[0], int) else [self.prompt]
        return [tokenizer(p, add_special_tokens=True)["input_ids"] if isinstance(p, str) else list(p) for p in items]


def complete(chat: ChatModel, req: CompletionRequest) -> dict[str, Any]:
    """A `text_completion` dict: choice `b * n + g` is sample g of prompt b."""
    from rft.policy import Policy
    from rft.sampling.base import SamplingParams
    from rft.sampling.hf import HFSampler

    prompt_ids = req.prompts(chat.tokenizer)
    params = SamplingParams(n=req.n, temperature=req.temperature, top_p=req.top_p, max_new_tokens=req.max_tokens,
                            seed=req.seed, logprobs=req.logprobs is not None)
    with chat.using(req.model) as model:
        sampler = HFSampler(Policy(model, chat.tokenizer))
        sampler.eos_ids |= set(req.stop_token_ids)
        groups = sampler.generate_ids(prompt_ids, params)
    choices = []
    for b, group in enumerate(groups):
        for g, c in enumerate(group):
            choice: dict[str, Any] = {
                "index": b * req.n + g, "text": c.text, "finish_reason": "length" if c.truncated else "stop",
                "logprobs": _logprobs(chat.tokenizer, c.token_ids, c.logprobs) if c.logprobs is not None else None,
            }
            if req.return_token_ids:
                choice |= {"token_ids": c.token_ids, "prompt_token_ids": c.prompt_ids}
            choices.append(choice)
    prompt_tokens = sum(len(p) for p in prompt_ids)
    completion_tokens = sum(len(c.token_ids) for group in groups for c in group)
    return {
        "id": f"cmpl-{uuid.uuid4().hex[:24]}", "object": "text_completion", "created": int(time.time()),
        "model": req.model or chat.name, "choices": choices,
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


def _logprobs(tokenizer: Any, ids: list[int], logprobs: list[float]) -> dict[str, Any]:
    """OpenAI's completions `logprobs` object for the sampled tokens (no alternatives are listed)."""
    tokens = [tokenizer.decode([t]) for t in ids]
    offsets, at = [], 0
    for token in tokens:
        offsets.append(at)
        at += len(token)
    return {"tokens": tokens, "token_logprobs": logprobs, "top_logprobs": None, "text_offset": offsets}


class LoadAdapter(BaseModel):
    model_config = ConfigDict(extra="ignore")
    lora_name: Annotated[str, Field(min_length=1)]
    lora_path: Annotated[str, Field(min_length=1)]


class UnloadAdapter(BaseModel):
    model_config = ConfigDict(extra="ignore")
    lora_name: Annotated[str, Field(min_length=1)]


def _parse(cls: type[BaseModel], body: Any) -> Any:
    try:
        return cls.model_validate(body)
    except ValidationError as exc:
        raise ApiError(400, describe(exc)) from None


def add_completion_routes(app: FastAPI, chat: ChatModel) -> None:
    """`POST /v1/completions`, `/v1/load_lora_adapter` and `/v1/unload_lora_adapter` on `app`."""

    @app.post("/v1/completions")
    @app.post("/completions", include_in_schema=False)
    async def completions(request: Request) -> Any:
        body = await read_json(request)
        check_model(body, chat)
        req = _parse(CompletionRequest, body)
        return await run_in_threadpool(complete, chat, req)

    @app.post("/v1/load_lora_adapter")
    async def load_lora_adapter(request: Request) -> PlainTextResponse:
        req = _parse(LoadAdapter, await read_json(request))
        try:
            await run_in_threadpool(chat.add_adapter, req.lora_name, req.lora_path)
        except (ValueError, FileNotFoundError) as exc:
            raise ApiError(400, str(exc)) from None
        return PlainTextResponse(f"Success: LoRA adapter '{req.lora_name}' added successfully.")

    @app.post("/v1/unload_lora_adapter")
    async def unload_lora_adapter(request: Request) -> PlainTextResponse:
        req = _parse(UnloadAdapter, await read_json(request))
        try:
            await run_in_threadpool(chat.remove_adapter, req.lora_name)
        except KeyError as exc:
            raise ApiError(404, exc.args[0]) from None
        return PlainTextResponse(f"Success: LoRA adapter '{req.lora_name}' removed successfully.")
