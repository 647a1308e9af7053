"""`rft serve`: an OpenAI-compatible server (FastAPI on uvicorn) over a transformers model, optionally + LoRA.

It lets a trained adapter be evaluated by any OpenAI client and gives the HTTP judge a real server to talk
to without vLLM. Routes: `POST /v1/chat/completions` (whole or `stream=true` server-sent events),
`POST /v1/embeddings`, `GET /v1/models`, `GET /health`, OpenAI's grader endpoints (`POST /v1/fine_tuning/alpha/graders/run` and
`/validate`), and the generated OpenAPI page at `/docs`.
"""

from __future__ import annotations

from fastapi import FastAPI

from rft.serve.app import ApiError, build_app
from rft.serve.chat import ChatModel, ChatRequest
from rft.serve.completions import add_completion_routes
from rft.serve.embeddings import add_embedding_routes
from rft.serve.graders_api import add_grader_routes
from rft.serve.server import Server

__all__ = [
    "ApiError",
    "ChatModel",
    "ChatRequest",
    "Server",
    "add_completion_routes",
    "add_embedding_routes",
    "add_grader_routes",
    "build_app",
    "serve",
]


def full_app(chat: ChatModel) -> FastAPI:
    """Everything `rft serve` answers: chat completions, embeddings, OpenAI's grader endpoints, and the rollout
    server's completions with token ids and run-time LoRA adapters."""
    app = build_app(chat)
    add_embedding_routes(app, chat)
    add_completion_routes(app, chat)
    add_grader_routes(app)
    return app


def serve(
    model: str = "default",
    *,
    adapter: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    name: str | None = None,
    dtype: str = "float32",
    device: str = "auto",
    verbose: bool = False,
) -> None:
    """Load the model and answer requests until interrupted; prints the base URL once listening."""
    chat = ChatModel.load(model, adapter=adapter, name=name, dtype=dtype, device=device)
    server = Server(full_app(chat), host, port, verbose=verbose)
    print(f"rft serve: {chat.name!r} listening on {server.base_url}", flush=True)
    server.run()
