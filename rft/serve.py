"""A small OpenAI-compatible chat-completions server over a transformers model (optionally + LoRA adapter).

It lets a trained adapter be evaluated by any OpenAI client, and gives the HTTP judge a real server to talk
to without vLLM. Endpoints: `POST /v1/chat/completions` (messages, temperature, top_p, max_tokens, seed, n,
stop), `GET /v1/models`, `GET /health`. Requests are handled on threads; generation is serialised by a
lock, since one CPU model gains nothing from running two generations at once.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from graders.judge.spec import check_messages

_FIELDS = {
    "model",
    "messages",
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "seed",
    "n",
    "stop",
    "stream",
    "user",
    "continue_final_message",
    "add_generation_prompt",
    "reasoning_effort",  # OpenAI judges send it; a local model has no reasoning budget, so it is accepted and unused
}


@dataclass(frozen=True)
class ChatRequest:
    """A validated chat-completions request; `ValueError` names the bad field (answered as HTTP 400)."""

    messages: list[dict[str, str]]
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 512
    seed: int | None = None
    n: int = 1
    stop: tuple[str, ...] = ()
    continue_final_message: bool = False  # vLLM's extension: extend a final assistant message (a prefill)

    @classmethod
    def parse(cls, body: Any) -> ChatRequest:
        if not isinstance(body, Mapping):
            raise ValueError("request body must be a JSON object")
        unknown = sorted(set(body) - _FIELDS)
        if unknown:
            raise ValueError(f"unsupported fields {unknown}; supported: {sorted(_FIELDS)}")
        if body.get("stream"):
            raise ValueError("stream=true is not supported by rft serve")
        messages = check_messages(body.get("messages"), "messages")
        stop = body.get("stop") or ()
        stop = (stop,) if isinstance(stop, str) else tuple(stop)
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens", 512))
        req = cls(
            messages,
            float(_get(body, "temperature", 1.0)),
            float(_get(body, "top_p", 1.0)),
            max_tokens,
            body.get("seed"),
            _get(body, "n", 1),
            stop,
            bool(body.get("continue_final_message")),
        )
        if body.get("add_generation_prompt", not req.continue_final_message) == req.continue_final_message:
            raise ValueError("add_generation_prompt must be the opposite of continue_final_message")
        req._check()
        return req

    def _check(self) -> None:
        if not 0 <= self.temperature <= 2:
            raise ValueError(f"temperature must be in [0, 2], got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        for key in ("max_tokens", "n"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{key} must be a positive integer, got {value!r}")
        if self.seed is not None and not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        if not all(isinstance(s, str) and s for s in self.stop):
            raise ValueError("stop must be a string or a list of non-empty strings")
        if self.continue_final_message and self.messages[-1]["role"] != "assistant":
            raise ValueError("continue_final_message needs the last message to be from the assistant")


def _get(body: Mapping[str, Any], key: str, default: Any) -> Any:
    """A field's value, with JSON null meaning the default (as OpenAI clients send it)."""
    value = body.get(key)
    return default if value is None else value


class ChatModel:
    """A causal LM with a chat template that answers `ChatRequest`s with OpenAI-shaped responses."""

    def __init__(self, model: Any, tokenizer: Any, name: str) -> None:
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError(
                f"model {name!r}: its tokenizer has no chat_template, so chat messages cannot be rendered"
            )
        self.model, self.tokenizer, self.name = model.eval(), tokenizer, name
        self._lock = threading.Lock()

    @classmethod
    def load(
        cls, name_or_path: str = "default", *, adapter: str | None = None, name: str | None = None
    ) -> ChatModel:
        """Load with `rft.models.load_model` (packaged name, path or hub id), then the adapter if given."""
        from rft.models import load_model

        model, tokenizer = load_model(name_or_path)
        if adapter is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, adapter)
        return cls(model, tokenizer, name or name_or_path)

    def complete(self, body: Any) -> dict[str, Any]:
        """Answer one chat-completions request body (a dict) with a chat-completions response dict."""
        import torch

        req = ChatRequest.parse(body)
        prompt = self.tokenizer.apply_chat_template(
            req.messages,
            tokenize=False,
            add_generation_prompt=not req.continue_final_message,
            continue_final_message=req.continue_final_message,
        )
        enc = self.tokenizer(prompt, add_special_tokens=False, return_tensors="pt")
        config = self._generation_config(req)
        choices, completion_tokens = [], 0
        with self._lock, torch.inference_mode():
            if req.seed is not None:
                torch.manual_seed(req.seed)
            for index in range(req.n):
                out = self.model.generate(**enc, generation_config=config, tokenizer=self.tokenizer)
                text, used, finish = self._decode(out[0, enc["input_ids"].shape[1] :], req)
                completion_tokens += used
                choices.append(
                    {
                        "index": index,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": finish,
                    }
                )
        prompt_tokens = int(enc["input_ids"].shape[1])
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.name,
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    def _generation_config(self, req: ChatRequest) -> Any:
        from transformers import GenerationConfig

        eos = self.model.generation_config.eos_token_id
        sample = req.temperature > 0
        return GenerationConfig(
            max_new_tokens=req.max_tokens,
            do_sample=sample,
            temperature=req.temperature if sample else None,
            top_p=req.top_p if sample else None,
            top_k=None,
            stop_strings=list(req.stop) or None,
            eos_token_id=eos if eos is not None else self.tokenizer.eos_token_id,
            pad_token_id=self.tokenizer.pad_token_id,
        )

    def _decode(self, new_tokens: Any, req: ChatRequest) -> tuple[str, int, str]:
        """Text, token count and finish reason of one generation (`new_tokens`: [T] generated ids)."""
        ids = new_tokens.tolist()
        eos = self.model.generation_config.eos_token_id
        eos_ids = set(
            eos if isinstance(eos, list) else [eos if eos is not None else self.tokenizer.eos_token_id]
        )
        end = next((i for i, t in enumerate(ids) if t in eos_ids), None)
        used = len(ids) if end is None else end + 1
        text = self.tokenizer.decode(ids[: used if end is None else end], skip_special_tokens=True)
        cuts = [text.find(s) for s in req.stop if s in text]
        if cuts:
            return text[: min(cuts)], used, "stop"
        return text, used, "length" if end is None and used >= req.max_tokens else "stop"


class ChatHandler(BaseHTTPRequestHandler):
    """Routes the OpenAI endpoints to the server's `ChatModel`; errors use OpenAI's error body shape."""

    protocol_version = "HTTP/1.1"
    server: ChatServer

    def do_GET(self) -> None:
        path = self.path.rstrip("/")
        if path in ("/v1/models", "/models"):
            self.send_json(
                HTTPStatus.OK,
                {
                    "object": "list",
                    "data": [
                        {
                            "id": self.server.chat.name,
                            "object": "model",
                            "created": self.server.started,
                            "owned_by": "rft",
                        }
                    ],
                },
            )
        elif path == "/health":
            self.send_json(HTTPStatus.OK, {"status": "ok"})
        else:
            self.send_error_json(HTTPStatus.NOT_FOUND, f"no route GET {self.path}")

    def do_POST(self) -> None:
        if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            self.read_body()
            self.send_error_json(HTTPStatus.NOT_FOUND, f"no route POST {self.path}")
            return
        try:
            body = json.loads(self.read_body() or b"null")
        except ValueError as exc:
            self.send_error_json(HTTPStatus.BAD_REQUEST, f"request body is not JSON: {exc}")
            return
        model = body.get("model") if isinstance(body, dict) else None
        if model not in (None, self.server.chat.name):
            self.send_error_json(
                HTTPStatus.NOT_FOUND,
                f"model {model!r} is not served here; this server serves {self.server.chat.name!r}",
            )
            return
        try:
            response = self.server.chat.complete(body)
        except ValueError as exc:
            self.send_error_json(HTTPStatus.BAD_REQUEST, str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - a generation bug must answer 500, not drop the connection
            traceback.print_exc()
            self.send_error_json(HTTPStatus.INTERNAL_SERVER_ERROR, f"generation failed: {exc!r}")
            return
        self.send_json(HTTPStatus.OK, response)

    def read_body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def send_json(self, status: HTTPStatus, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def send_error_json(self, status: HTTPStatus, message: str) -> None:
        kind = "invalid_request_error" if status < 500 else "server_error"
        self.send_json(status, {"error": {"message": message, "type": kind, "code": int(status)}})

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)


class ChatServer(ThreadingHTTPServer):
    """A threading HTTP server that carries the `ChatModel` its handlers answer with."""

    daemon_threads = True

    def __init__(
        self,
        chat: ChatModel,
        host: str = "127.0.0.1",
        port: int = 8000,
        handler: type[ChatHandler] = ChatHandler,
        verbose: bool = False,
    ) -> None:
        super().__init__((host, port), handler)
        self.chat, self.verbose, self.started = chat, verbose, int(time.time())

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (e.g. it timed out) is routine; anything else is printed as usual."""
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/v1"


def serve(
    model: str = "default",
    *,
    adapter: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    name: str | None = None,
    verbose: bool = False,
) -> None:
    """Load the model and answer requests until interrupted; prints the base URL once listening."""
    server = ChatServer(ChatModel.load(model, adapter=adapter, name=name), host, port, verbose=verbose)
    print(f"rft serve: {server.chat.name!r} listening on {server.base_url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
