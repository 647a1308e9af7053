"""The HTTP face of `rft serve`: a FastAPI app with OpenAI's routes, request checks and error bodies.

`build_app(chat)` returns the app; other features add their routes to it (`app.post(...)`) rather than
growing this file. Every error is answered in OpenAI's shape, `{"error": {"message", "type", "code"}}`,
so OpenAI clients raise their usual exceptions with our message.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.exceptions import HTTPException

from rft.serve.chat import ChatModel, ChatRequest


class ApiError(Exception):
    """An error answered to the client with `status` and `message` in OpenAI's error shape."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def error_body(status: int, message: str) -> dict[str, Any]:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "code": status}}


async def read_json(request: Request) -> Any:
    """The request body as JSON, or a 400 saying why it is not."""
    raw = await request.body()
    try:
        return json.loads(raw or b"null")
    except ValueError as exc:
        raise ApiError(400, f"request body is not JSON: {exc}") from None


def check_model(body: Any, chat: ChatModel) -> None:
    """A request naming a model that is not served is a 404, as OpenAI answers an unknown model."""
    model = body.get("model") if isinstance(body, dict) else None
    if model is not None and model not in chat.served():
        served = ", ".join(repr(name) for name in chat.served())
        raise ApiError(404, f"model {model!r} is not served here; this server serves {served}")


def build_app(chat: ChatModel) -> FastAPI:
    """The app serving `chat` on `/v1/chat/completions` (whole or streamed), `/v1/models` and `/health`."""
    app = FastAPI(title="rft serve", docs_url="/docs", redoc_url=None)
    app.state.chat, app.state.started = chat, int(time.time())

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.status, exc.message), status_code=exc.status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        message = (
            f"no route {request.method} {request.url.path}" if exc.status_code == 404 else str(exc.detail)
        )
        return JSONResponse(error_body(exc.status_code, message), status_code=exc.status_code)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    @app.get("/models", include_in_schema=False)
    def models() -> dict[str, Any]:
        cards = [
            {"id": name, "object": "model", "created": app.state.started, "owned_by": "rft",
             "parent": None if name == chat.name else chat.name}
            for name in chat.served()
        ]
        return {"object": "list", "data": cards}

    schema = {"content": {"application/json": {"schema": ChatRequest.model_json_schema()}}, "required": True}

    @app.post("/v1/chat/completions", openapi_extra={"requestBody": schema})
    @app.post("/chat/completions", include_in_schema=False)
    async def chat_completions(request: Request) -> Any:
        body = await read_json(request)
        check_model(body, chat)
        try:
            req = ChatRequest.parse(body)
            if req.stream:
                chunks = await run_in_threadpool(chat.stream, req)
                return StreamingResponse(iterate_in_threadpool(sse(chunks)), media_type="text/event-stream")
            return await run_in_threadpool(chat.complete, req)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - a generation bug must answer 500, not drop the connection
            traceback.print_exc()
            raise ApiError(500, f"generation failed: {exc!r}") from None

    return app


def sse(chunks: Iterator[dict[str, Any]]) -> Iterator[str]:
    """Server-sent events as OpenAI streams them: `data: <chunk>` per chunk, `data: [DONE]` last. An error
    after the response has started is sent as a final `data: {"error": ...}` event."""
    try:
        for chunk in chunks:
            yield f"data: {json.dumps(chunk)}\n\n"
    except Exception as exc:  # noqa: BLE001 - the status line is already sent; tell the client in-band
        traceback.print_exc()
        yield f"data: {json.dumps(error_body(500, f'generation failed: {exc!r}'))}\n\n"
    yield "data: [DONE]\n\n"
