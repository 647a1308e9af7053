"""A transformers chat model answering OpenAI chat-completions requests, whole or streamed token by token.

`ChatRequest` is the validated request (pydantic; errors name the field); `ChatModel` turns one into an
OpenAI-shaped `chat.completion` dict, or into `chat.completion.chunk` dicts as tokens are generated.
Generation is serialised by a lock: one model gains nothing from running two generations at once.
Besides the model it was loaded as, a `ChatModel` serves any number of LoRA adapters by name
(`add_adapter` / `remove_adapter`): each is a peft adapter slot on the one base model, picked per request
by its `model` field, so a tuned model or a new policy version is served without merging or reloading.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from graders.judge.spec import check_messages

PositiveInt = Annotated[StrictInt, Field(ge=1)]


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: StrictBool = False


class ChatRequest(BaseModel):
    """A validated chat-completions request; `parse` raises `ValueError` naming the bad field (HTTP 400)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str | None = None
    messages: list[dict[str, str]]
    temperature: Annotated[float, Field(ge=0, le=2)] = 1.0
    top_p: Annotated[float, Field(gt=0, le=1)] = 1.0
    max_tokens: PositiveInt = 512
    seed: StrictInt | None = None
    n: PositiveInt = 1
    stop: tuple[str, ...] = ()
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    continue_final_message: StrictBool = (
        False  # vLLM's extension: extend a final assistant message (a prefill)
    )
    add_generation_prompt: StrictBool | None = None  # vLLM's extension; must be `not continue_final_message`
    reasoning_effort: str | None = (
        None  # sent by OpenAI-style judges; a local model has no reasoning budget to set
    )

    @model_validator(mode="before")
    @classmethod
    def _nulls_and_aliases(cls, body: Any) -> Any:
        """JSON null means the default (as OpenAI clients send it); `max_completion_tokens` wins over `max_tokens`."""
        if not isinstance(body, dict):
            return body
        body = {k: v for k, v in body.items() if v is not None}
        if "max_completion_tokens" in body:
            body["max_tokens"] = body.pop("max_completion_tokens")
        return body

    @field_validator("messages", mode="before")
    @classmethod
    def _messages(cls, value: Any) -> list[dict[str, str]]:
        return check_messages(value, "messages")

    @field_validator("stop", mode="before")
    @classmethod
    def _stop(cls, value: Any) -> tuple[str, ...]:
        stops = (value,) if isinstance(value, str) else value
        if not isinstance(stops, (list, tuple)) or not all(isinstance(s, str) and s for s in stops):
            raise ValueError("stop must be a string or a list of non-empty strings")
        return tuple(stops)

    @model_validator(mode="after")
    def _prefill(self) -> ChatRequest:
        if (
            self.add_generation_prompt is not None
            and self.add_generation_prompt == self.continue_final_message
        ):
            raise ValueError("add_generation_prompt must be the opposite of continue_final_message")
        if self.continue_final_message and self.messages[-1]["role"] != "assistant":
            raise ValueError("continue_final_message needs the last message to be from the assistant")
        return self

    @classmethod
    def parse(cls, body: Any) -> ChatRequest:
        try:
            return cls.model_validate(body)
        except ValidationError as exc:
            raise ValueError(describe(exc)) from None


def describe(exc: ValidationError) -> str:
    """One line per pydantic error, each naming its field the way a user wrote it (`messages[0].content`)."""
    lines = []
    for err in exc.errors():
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".")
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unsupported field"
        elif err["type"] == "model_type":
            msg = "request body must be a JSON object"
        elif "got " not in msg:
            msg = f"{msg}, got {err['input']!r}"
        lines.append(msg if not where or msg.startswith(where) else f"{where}: {msg}")
    return "; ".join(lines)


class ChatModel:
    """A causal LM with a chat template, answering `ChatRequest`s with OpenAI-shaped responses."""

    def __init__(self, model: Any, tokenizer: Any, name: str) -> None:
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError(
                f"model {name!r}: its tokenizer has no chat_template, so chat messages cannot be rendered"
            )
        self.model, self.tokenizer, self.name = model.eval(), tokenizer, name
        eos = model.generation_config.eos_token_id
        eos = eos if eos is not None else tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])
        self._lock = threading.Lock()
        self._adapters: dict[str, str] = {}  # served name -> peft adapter slot on self.model
        self._slots = itertools.count(1)
        self._own_adapter = getattr(model, "active_adapter", None)  # the adapter it was loaded with, if any

    def served(self) -> list[str]:
        """Model names requests may ask for: the loaded model first, then the added adapters."""
        return [self.name, *self._adapters]

    def add_adapter(self, name: str, path: str | Path) -> None:
        """Serve the peft adapter directory `path` as model `name`, beside the base and the other adapters."""
        from peft import PeftModel

        if name in self.served():
            raise ValueError(f"model {name!r} is already served here")
        if not (Path(path) / "adapter_config.json").is_file():
            raise FileNotFoundError(f"{path} is not a peft adapter directory (no adapter_config.json)")
        slot = f"served_{next(self._slots)}"
        with self._lock:
            if isinstance(self.model, PeftModel):
                self.model.load_adapter(str(path), adapter_name=slot)
            else:
                self.model = PeftModel.from_pretrained(self.model, str(path), adapter_name=slot).eval()
            self._adapters[name] = slot

    def remove_adapter(self, name: str) -> None:
        """Stop serving adapter `name` and free its weights; KeyError if no such adapter was added."""
        if name not in self._adapters:
            raise KeyError(f"no adapter {name!r} is served here; adapters: {sorted(self._adapters)}")
        with self._lock:
            slot = self._adapters.pop(name)
            if self._adapters or self._own_adapter is not None:
                self.model.delete_adapter(slot)
            else:  # the last added adapter: back to the plain base model, as before the first add
                self.model = self.model.unload().eval()

    @contextmanager
    def using(self, model: str | None) -> Iterator[Any]:
        """Hold the generation lock with `model`'s weights active (None: the loaded model) and yield the model."""
        with self._lock:
            if model not in (None, self.name) and model not in self._adapters:
                raise KeyError(f"model {model!r} is not served here; this server serves {self.served()}")
            slot = self._adapters.get(model, self._own_adapter) if model else self._own_adapter
            if slot is not None:
                self.model.set_adapter(slot)
                yield self.model
            elif self._adapters:  # a peft wrapper holding only added adapters: the base is the model off
                with self.model.disable_adapter():
                    yield self.model
            else:
                yield self.model

    @classmethod
    def load(
        cls,
        name_or_path: str = "default",
        *,
        adapter: str | None = None,
        name: str | None = None,
        dtype: str = "float32",
        device: str = "auto",
    ) -> ChatModel:
        """Load through `rft.policy.load_policy` (the loader training and eval use), adapter included."""
        from rft.policy import load_policy

        policy = load_policy(name_or_path, dtype=dtype, device=device, adapter=adapter)
        return cls(policy.model, policy.tokenizer, name or name_or_path)

    def complete(self, request: ChatRequest | Any) -> dict[str, Any]:
        """Answer one request (a `ChatRequest` or a request dict) with a `chat.completion` dict."""
        import torch

        req = request if isinstance(request, ChatRequest) else ChatRequest.parse(request)
        enc = self._encode(req)
        config = self._generation_config(req)
        choices, completion_tokens = [], 0
        with self.using(req.model), torch.inference_mode():
            if req.seed is not None:
                torch.manual_seed(req.seed)
            for index in range(req.n):
                out = self.model.generate(**enc, generation_config=config, tokenizer=self.tokenizer)
                text, used, finish = self._decode(out[0, enc["input_ids"].shape[1] :].tolist(), req)
                completion_tokens += used
                message = {"role": "assistant", "content": text}
                choices.append({"index": index, "message": message, "finish_reason": finish})
        head = self._head("chat.completion", req)
        return {**head, "choices": choices, "usage": self._usage(enc, completion_tokens)}

    def stream(self, req: ChatRequest) -> Iterator[dict[str, Any]]:
        """`chat.completion.chunk` dicts as tokens arrive: choices one after another, each ending with its
        finish reason; a usage chunk last when `stream_options.include_usage`. The concatenated deltas equal
        `complete`'s text for the same seed. Closing the iterator stops generation at the next token."""
        enc = self._encode(req)  # template errors surface here, before any byte is sent
        return self._chunks(req, enc)

    def _chunks(self, req: ChatRequest, enc: Any) -> Iterator[dict[str, Any]]:
        events: queue.Queue = queue.Queue()
        cancel = threading.Event()
        threading.Thread(target=self._generate_into, args=(req, enc, events, cancel), daemon=True).start()
        head, completion_tokens = self._head("chat.completion.chunk", req), 0
        try:
            for index in range(req.n):
                yield {**head, "choices": [_delta(index, {"role": "assistant", "content": ""})]}
                ids: list[int] = []
                sent = ""
                while (item := events.get()) is not None:
                    if isinstance(item, BaseException):
                        raise item
                    ids.extend(item)
                    text = self._visible(ids, req)
                    if len(text) > len(sent) and text.startswith(sent):
                        yield {**head, "choices": [_delta(index, {"content": text[len(sent) :]})]}
                        sent = text
                text, used, finish = self._decode(ids, req)
                completion_tokens += used
                rest = {"content": text[len(sent) :]} if len(text) > len(sent) else {}
                yield {**head, "choices": [_delta(index, rest, finish)]}
            if req.stream_options and req.stream_options.include_usage:
                yield {**head, "choices": [], "usage": self._usage(enc, completion_tokens)}
        finally:
            cancel.set()

    def _generate_into(
        self, req: ChatRequest, enc: Any, events: queue.Queue, cancel: threading.Event
    ) -> None:
        """Generation thread of `stream`: token ids onto `events`, None after each choice, or the exception."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        class Cancelled(StoppingCriteria):
            def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
                return torch.full((input_ids.shape[0],), cancel.is_set(), device=input_ids.device)

        config = self._generation_config(req)
        try:
            with self.using(req.model), torch.inference_mode():
                if req.seed is not None:
                    torch.manual_seed(req.seed)
                for _ in range(req.n):
                    if cancel.is_set():
                        return
                    self.model.generate(
                        **enc,
                        generation_config=config,
                        tokenizer=self.tokenizer,
                        streamer=_TokenQueue(events),
                        stopping_criteria=StoppingCriteriaList([Cancelled()]),
                    )
        except Exception as exc:  # noqa: BLE001 - handed to the consumer, which reports it to the client
            events.put(exc)

    def _encode(self, req: ChatRequest) -> Any:
        prompt = self.tokenizer.apply_chat_template(
            req.messages,
            tokenize=False,
            add_generation_prompt=not req.continue_final_message,
            continue_final_message=req.continue_final_message,
        )
        enc = self.tokenizer(prompt, add_special_tokens=False, return_tensors="pt")
        return enc.to(self.model.device)

    def _generation_config(self, req: ChatRequest) -> Any:
        from transformers import GenerationConfig

        sample = req.temperature > 0
        return GenerationConfig(
            max_new_tokens=req.max_tokens,
            do_sample=sample,
            temperature=req.temperature if sample else None,
            top_p=req.top_p if sample else None,
            top_k=None,
            stop_strings=list(req.stop) or None,
            eos_token_id=sorted(self.eos_ids),
            pad_token_id=self.tokenizer.pad_token_id,
        )

    def _decode(self, ids: list[int], req: ChatRequest) -> tuple[str, int, str]:
        """Text, token count and finish reason of one generation (`ids`: the generated token ids)."""
        end = next((i for i, t in enumerate(ids) if t in self.eos_ids), None)
        used = len(ids) if end is None else end + 1
        text = self.tokenizer.decode(ids[: used if end is None else end], skip_special_tokens=True)
        cuts = [text.find(s) for s in req.stop if s in text]
        if cuts:
            return text[: min(cuts)], used, "stop"
        return text, used, "length" if end is None and used >= req.max_tokens else "stop"

    def _visible(self, ids: list[int], req: ChatRequest) -> str:
        """The part of the text so far that can be sent now: no half-decoded character, and nothing that
        could still turn out to be the start of a stop string."""
        text, _, _ = self._decode(ids, req)
        text = text.rstrip("\ufffd")
        hold = max((len(s) for s in req.stop), default=1) - 1
        return text[: len(text) - hold] if hold else text

    def _head(self, kind: str, req: ChatRequest) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": kind,
            "created": int(time.time()),
            "model": req.model or self.name,
        }

    @staticmethod
    def _usage(enc: Any, completion_tokens: int) -> dict[str, int]:
        prompt_tokens = int(enc["input_ids"].shape[1])
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }


def _delta(index: int, delta: dict[str, str], finish: str | None = None) -> dict[str, Any]:
    return {"index": index, "delta": delta, "finish_reason": finish}


class _TokenQueue:
    """A transformers streamer (`put` / `end`) that forwards generated token ids to a queue, prompt skipped."""

    def __init__(self, events: queue.Queue) -> None:
        self.events, self.prompt_seen = events, False

    def put(self, value: Any) -> None:
        if not self.prompt_seen:  # generate() puts the prompt ids first
            self.prompt_seen = True
            return
        self.events.put(value.reshape(-1).tolist())

    def end(self) -> None:
        self.events.put(None)
