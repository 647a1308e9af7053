"""OpenAI's fine-tuning jobs API on `rft serve`: create, list, retrieve, events, checkpoints, cancel, pause, resume.

`POST /v1/fine_tuning/jobs` checks the body (`rft.serve.job_config`), copies the uploaded files into
the job's own task directory (`jobs/<id>/data/`: train.jsonl, test.jsonl when a validation file is
given, grader.json, response_format.json; a dpo job's preference pairs), writes the resolved run config, and answers the job in
status `validating_files`; the runner (`rft.serve.job_runner`) takes it from there. The job is
trained on the served base model and then served as `ft:<base>:<suffix>:<job id>`.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool

from rft.serve.app import ApiError, read_json
from rft.serve.chat import ChatModel
from rft.serve.files import add_file_routes, limit_of, page
from rft.serve.job_config import parse_create, resolve_config
from rft.serve.job_runner import JobRunner
from rft.serve.jobstore import JobStore, new_id, now

TERMINAL = ("succeeded", "failed", "cancelled")
ALLOWED = {"cancel": ("validating_files", "queued", "running", "paused"), "pause": ("queued", "running"),
           "resume": ("paused",)}


def create_job(body: Any, store: JobStore, served: str, base_model: str, device: str) -> dict[str, Any]:
    """Check the body, lay out the job's directory and config, and store the job (status `validating_files`)."""
    def is_fine_tune_file(file_id: str) -> bool:
        obj = store.get_file(file_id)
        return obj is not None and obj["purpose"] == "fine-tune"

    req = parse_create(body, served, is_fine_tune_file)
    job_id = new_id("ftjob")
    job_dir = store.job_dir(job_id)
    data = job_dir / "data"
    data.mkdir(parents=True)
    try:
        shutil.copyfile(store.file_path(req.training_file), data / "train.jsonl")
        if req.validation_file:
            shutil.copyfile(store.file_path(req.validation_file), data / "test.jsonl")
        if req.grader is not None:  # a dpo job's preferences need none
            (data / "grader.json").write_text(json.dumps(req.grader, indent=2))
        if req.response_format:
            (data / "response_format.json").write_text(json.dumps(req.response_format, indent=2))
        n_train = sum(1 for ln in (data / "train.jsonl").read_text().splitlines() if ln.strip())
        cfg, resolved = resolve_config(req, job_dir, base_model, device, n_train)
    except ApiError:
        shutil.rmtree(job_dir, ignore_errors=True)
        raise
    method: dict[str, Any] = {"hyperparameters": resolved}
    if req.grader is not None:
        method["grader"] = req.grader
    if req.response_format:
        method["response_format"] = req.response_format
    job = {
        "id": job_id, "object": "fine_tuning.job", "created_at": now(), "error": None, "fine_tuned_model": None,
        "finished_at": None, "model": req.model, "organization_id": "org-rft", "result_files": [],
        "seed": req.seed, "status": "validating_files", "trained_tokens": None, "training_file": req.training_file,
        "validation_file": req.validation_file, "estimated_finish": None, "integrations": [],
        "metadata": req.metadata, "suffix": req.suffix or None,
        "hyperparameters": {k: resolved[k] for k in ("batch_size", "learning_rate_multiplier", "n_epochs")},
        "method": {"type": req.method, req.method: method},
        "rft": {"config": cfg.to_dict(), "extension": req.extension},
    }
    private = {"config": str(job_dir / "config.yaml"), "run_dir": cfg.train.output_dir, "metrics_offset": 0,
               "total_steps": cfg.train.steps, "prompts_per_step": cfg.train.prompts_per_step,
               "group_size": getattr(cfg.algorithm, "group_size", 2),  # a DPO pair is 2 completions
               "model_name": f"ft:{req.model}:{req.suffix}:{job_id}"}
    store.add_job(job, private)
    return job


def add_job_routes(app: FastAPI, store: JobStore, runner: JobRunner, *, served: str, base_model: str,
                   device: str = "auto") -> None:
    """Mount the jobs API; `served` is the model name clients fine-tune, `base_model` what `rft train` loads."""

    def found(job_id: str) -> dict[str, Any]:
        job = store.get_job(job_id)
        if job is None:
            raise ApiError(404, f"No such fine-tuning job: {job_id}")
        return job

    @app.post("/v1/fine_tuning/jobs")
    async def create(request: Request) -> dict[str, Any]:
        body = await read_json(request)
        return await run_in_threadpool(create_job, body, store, served, base_model, device)

    @app.get("/v1/fine_tuning/jobs")
    def list_jobs(request: Request) -> dict[str, Any]:
        meta = {k[len("metadata["):-1]: v for k, v in request.query_params.items()
                if k.startswith("metadata[") and k.endswith("]")}
        data, more = store.list_jobs(request.query_params.get("after"), limit_of(request, 20), meta)
        return page(data, more)

    @app.get("/v1/fine_tuning/jobs/{job_id}")
    def retrieve(job_id: str) -> dict[str, Any]:
        return found(job_id)

    @app.get("/v1/fine_tuning/jobs/{job_id}/events")
    def events(job_id: str, request: Request) -> dict[str, Any]:
        found(job_id)
        return page(*store.list_events(job_id, request.query_params.get("after"), limit_of(request, 20)))

    @app.get("/v1/fine_tuning/jobs/{job_id}/checkpoints")
    def checkpoints(job_id: str, request: Request) -> dict[str, Any]:
        found(job_id)
        data, more = store.list_checkpoints(job_id, request.query_params.get("after"), limit_of(request, 10))
        return page([{k: v for k, v in c.items() if k != "rft"} for c in data], more)

    for action, allowed in ALLOWED.items():

        def act(job_id: str, action: str = action, allowed: tuple[str, ...] = allowed) -> dict[str, Any]:
            status = found(job_id)["status"]
            if status not in allowed:
                raise ApiError(400, f"cannot {action} job {job_id}: its status is {status!r}; "
                                    f"{action} takes a job in status {' / '.join(allowed)}")
            return runner.resume(job_id) if action == "resume" else runner.stop(job_id, action)

        app.post(f"/v1/fine_tuning/jobs/{{job_id}}/{action}", name=f"{action}_job")(act)


def add_fine_tuning(app: FastAPI, chat: ChatModel, state_dir: Path, *, base_model: str, device: str = "auto",
                    max_jobs: int = 1) -> JobRunner:
    """Files and jobs APIs over `state_dir`, with a started runner serving each tuned model on `chat`.

    The caller closes the returned runner when the server stops (its workers save and stop).
    """
    store = JobStore(state_dir)

    def serve_model(name: str, adapter: Path) -> None:
        if name in chat.served():
            return
        try:
            chat.add_adapter(name, adapter)
        except FileNotFoundError as exc:  # its run directory was deleted by hand: the rest still serves
            print(f"rft serve: cannot serve {name}: {exc}", file=sys.stderr, flush=True)

    runner = JobRunner(store, max_running=max_jobs, on_model=serve_model)
    add_file_routes(app, store)
    add_job_routes(app, store, runner, served=chat.name, base_model=base_model, device=device)
    app.state.job_runner = runner
    return runner.start()
