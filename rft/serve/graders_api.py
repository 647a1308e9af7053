"""OpenAI's grader endpoints on `rft serve`, so code written against OpenAI's client runs against us.

`POST /v1/fine_tuning/alpha/graders/run` and `/validate` take and return exactly what OpenAI's API does
(the logic is `graders.openai_api`, torch-free); model graders inside a spec reach their judge the usual way
(`RFT_MODEL_MAP`, `OPENAI_BASE_URL`, or a local model), possibly this very server's chat model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from graders.openai_api import APIError, run_grader, validate_grader
from rft.serve.app import read_json

ROUTES: dict[str, Callable[[Any], dict[str, Any]]] = {
    "/v1/fine_tuning/alpha/graders/run": run_grader,
    "/v1/fine_tuning/alpha/graders/validate": validate_grader,
}


def add_grader_routes(app: FastAPI) -> None:
    """Mount the grader endpoints; grading runs on a worker thread, since model graders block on a judge."""

    @app.exception_handler(APIError)
    async def grader_api_error(request: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    for path, handler in ROUTES.items():

        async def endpoint(request: Request, handler: Callable[[Any], dict[str, Any]] = handler) -> Any:
            return await run_in_threadpool(handler, await read_json(request))

        app.post(path, name=handler.__name__)(endpoint)
