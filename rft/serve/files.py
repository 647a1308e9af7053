"""OpenAI's Files API for fine-tuning data: `POST/GET /v1/files`, `GET/DELETE /v1/files/{id}`, `.../content`.

An upload with purpose `fine-tune` is checked line by line against our dataset schema
(`schemas/dataset_line.schema.json`, the OpenAI RFT shape `{"messages": [...], <item fields>}`) through
the same `tasks.datasets.to_item` a task directory loads with, so a file that uploads is a file a job
can train on; a bad line is a 400 naming the file, the line and the field. A file whose first line is a
preference pair (for a dpo job) is checked line by line as pairs (`tasks.preferences.to_pair`) instead.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse

from rft.serve.app import ApiError
from rft.serve.jobstore import JobStore
from tasks.datasets import to_item
from tasks.preferences import is_preference_row, to_pair

PURPOSES = ("fine-tune",)
MAX_LIMIT = 10_000


def check_jsonl(content: bytes, filename: str) -> int:
    """Validate a fine-tuning JSONL upload; returns its number of items, or raises `ValueError` naming the line."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{filename}: not UTF-8 text (byte {exc.start})") from None
    count, check = 0, None
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{filename} line {lineno}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}: invalid JSON: {exc.msg} (column {exc.colno})") from None
        if not isinstance(row, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(row).__name__}")  # noqa: TRY004 - bad data, a 400
        check = check or (to_pair if is_preference_row(row) else to_item)  # the first line decides the file's kind
        check(row, where)
        count += 1
    if count == 0:
        raise ValueError(f"{filename}: the file holds no JSONL lines")
    return count


def page(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    """A list answer as OpenAI pages it (`after` = the last id)."""
    out: dict[str, Any] = {"object": "list", "data": data, "has_more": has_more}
    if data:
        out |= {"first_id": data[0]["id"], "last_id": data[-1]["id"]}
    return out


def limit_of(request: Request, default: int) -> int:
    raw = request.query_params.get("limit", str(default))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise ApiError(400, f"limit: must be an integer from 1 to {MAX_LIMIT}, got {raw!r}")
    return int(raw)


def add_file_routes(app: FastAPI, store: JobStore) -> None:
    """Mount the Files API over `store`."""

    def found(file_id: str) -> dict[str, Any]:
        obj = store.get_file(file_id)
        if obj is None:
            raise ApiError(404, f"No such File object: {file_id}")
        return obj

    @app.post("/v1/files")
    async def upload(request: Request) -> dict[str, Any]:
        form = await request.form()
        unknown = sorted(set(form) - {"file", "purpose"})
        if unknown:
            raise ApiError(400, f"unsupported field(s) {unknown}: this server takes 'file' and 'purpose'")
        purpose, upload = form.get("purpose"), form.get("file")
        if purpose not in PURPOSES:
            raise ApiError(400, f"purpose: {purpose!r} is not supported here; use one of {list(PURPOSES)}")
        if upload is None or isinstance(upload, str):
            raise ApiError(400, "file: a file upload (multipart/form-data) is required")
        content, filename = await upload.read(), upload.filename or "upload.jsonl"
        try:
            check_jsonl(content, filename)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        return store.add_file(filename, purpose, content)

    @app.get("/v1/files")
    def list_files(request: Request) -> dict[str, Any]:
        order = request.query_params.get("order", "desc")
        if order not in ("asc", "desc"):
            raise ApiError(400, f"order: must be 'asc' or 'desc', got {order!r}")
        data, more = store.list_files(request.query_params.get("purpose"), request.query_params.get("after"),
                                      limit_of(request, MAX_LIMIT), order == "asc")
        return page(data, more)

    @app.get("/v1/files/{file_id}")
    def retrieve(file_id: str) -> dict[str, Any]:
        return found(file_id)

    @app.get("/v1/files/{file_id}/content")
    def content(file_id: str) -> FileResponse:
        obj = found(file_id)
        return FileResponse(store.file_path(file_id), filename=obj["filename"], media_type="application/octet-stream")

    @app.delete("/v1/files/{file_id}")
    def delete(file_id: str) -> dict[str, Any]:
        found(file_id)
        store.delete_file(file_id)
        return {"id": file_id, "object": "file", "deleted": True}
