"""`rft serve`: an OpenAI-compatible server (FastAPI on uvicorn) over a transformers model, optionally + LoRA.

It lets a trained adapter be evaluated by any OpenAI client and gives the HTTP judge a real server to talk
to without vLLM. Routes: `POST /v1/chat/completions` (whole or `stream=true` server-sent events),
`POST /v1/embeddings`, `GET /v1/models`, `GET /health`, OpenAI's grader endpoints (`POST /v1/fine_tuning/alpha/graders/run` and
`/validate`), OpenAI's Files and fine-tuning jobs APIs (`/v1/files`, `/v1/fine_tuning/jobs...`, with the
tuned models served by name; see `rft.serve.jobs`), and the generated OpenAPI page at `/docs`.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from rft.serve.app import ApiError, build_app
from rft.serve.chat import ChatModel, ChatRequest
from rft.serve.completions import add_completion_routes
from rft.serve.embeddings import add_embedding_routes
from rft.serve.graders_api import add_grader_routes
from rft.serve.jobs import add_fine_tuning
from rft.serve.server import Server

__all__ = [
    "ApiError",
    "ChatModel",
    "ChatRequest",
    "Server",
    "add_completion_routes",
    "add_embedding_routes",
    "add_fine_tuning",
    "add_grader_routes",
    "build_app",
    "serve",
]


def full_app(chat: ChatModel) -> FastAPI:
    """Chat completions, embeddings, OpenAI's grader endpoints and the rollout server's completions with token ids
    and run-time LoRA adapters; `serve` adds the fine-tuning API (`add_fine_tuning(app, chat, state_dir, ...)`),
    which needs a state directory and a job runner."""
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
    state_dir: str = "runs/serve",
    max_jobs: int = 1,
) -> None:
    """Load the model and answer requests until interrupted; prints the base URL once listening.

    Fine-tuning jobs train `model` in `max_jobs` worker processes at a time, their state kept in `state_dir`.
    """
    chat = ChatModel.load(model, adapter=adapter, name=name, dtype=dtype, device=device)
    app = full_app(chat)
    runner = add_fine_tuning(app, chat, Path(state_dir), base_model=model, device=device, max_jobs=max_jobs)
    try:
        server = Server(app, host, port, verbose=verbose)
        print(f"rft serve: {chat.name!r} listening on {server.base_url}", flush=True)
        server.run()
    finally:
        runner.close()
