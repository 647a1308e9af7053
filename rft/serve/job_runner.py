"""Runs fine-tuning jobs from the SQLite queue, each in a worker process running `rft train CONFIG`.

One thread (`JobRunner`) validates new jobs, starts queued ones (`max_running` at a time, oldest
first), turns each worker's `metrics.jsonl` lines into job events and its `checkpoint-*` directories
into job checkpoints, and records how each worker ended. A worker is `python -m rft.cli train
config.yaml` (plus `--resume` when its run has a checkpoint) through `rft.serve.job_worker`: the very
code path of `rft train`.

Workers get their own session, so a Ctrl-C meant for the server does not reach them; the server
stops them itself (SIGINT, on which `rft train` saves the last completed step) and leaves them
"running" in the database. A worker also dies with the server (Linux parent-death signal), so a
killed server leaves no orphan training. At start, a job found "running" is queued again and resumes
from its last checkpoint, losing at most the steps since that checkpoint. Pause is SIGINT too (a
checkpoint of the last completed step, then `--resume`); cancel is SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rft import checkpoint
from rft.config import load_config
from rft.options import ConfigError
from rft.recipes.dpo import load_pair_splits
from rft.run import load_checked_task
from rft.serve.job_events import checkpoint_object, events_for, results_csv
from rft.serve.jobstore import JobStore, now

ModelHook = Callable[[str, Path], None]  # (model name, adapter directory): a model became servable
MAX_RESTARTS = 3  # times a job resumes after its worker was killed from outside (OOM killer, kill -9)
STOP_SECONDS = 120.0  # how long a stopping worker may take to save its last step before it is killed


def cut_metrics(path: Path, step: int) -> int:
    """Cut `metrics.jsonl` to the lines up to `step`, as `rft train --resume` from `step` will (0: remove it),
    before the worker starts, so the runner never reads lines the worker is about to drop; returns its size."""
    if not path.exists():
        return 0
    lines = [ln for ln in path.read_bytes().splitlines(keepends=True) if ln.endswith(b"\n")]  # a killed
    # worker may have left a last line half written: it is dropped, as its step is redone
    keep = sum(len(ln) for ln in lines if ln.strip() and json.loads(ln).get("step", 0) <= step) if step else 0
    os.truncate(path, keep)
    return keep


class JobRunner:
    """The queue's one consumer: `start()` it, `cancel/pause/resume` jobs, `close()` it with the server."""

    def __init__(self, store: JobStore, *, max_running: int = 1, poll: float = 0.5,
                 on_model: ModelHook | None = None) -> None:
        self.store, self.max_running, self.poll = store, max_running, poll
        self.on_model = on_model or (lambda name, path: None)
        self.workers: dict[str, subprocess.Popen] = {}
        self.requested: dict[str, str] = {}  # job id -> "cancel" | "pause", sent to its worker
        self._lock = threading.RLock()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rft-job-runner", daemon=True)

    def start(self) -> JobRunner:
        """Queue again the jobs a stopped server left running; serve every model already made; run."""
        for job in self.store.jobs_with_status("running"):
            self.store.update_job(job["id"], status="queued")
            self.store.add_event(job["id"], "The server stopped while the job was running; it resumes from its "
                                 "last checkpoint", level="warn")
        for job in self.store.jobs_with_status("running", "queued", "paused", "succeeded", "cancelled", "failed"):
            for ckpt in self.store.list_checkpoints(job["id"])[0]:
                self.on_model(ckpt["fine_tuned_model_checkpoint"], Path(ckpt["rft"]["adapter"]))
            if job["status"] == "succeeded":
                self.on_model(job["fine_tuned_model"], Path(self.store.get_private(job["id"])["final_adapter"]))
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop the workers (each saves its last completed step) and the thread; jobs stay "running"."""
        self._closing.set()
        if self._thread.is_alive():
            self._thread.join(STOP_SECONDS + 5)

    def _loop(self) -> None:
        while not self._closing.wait(self.poll):
            try:
                self.tick()
            except Exception as exc:  # noqa: BLE001 - the runner outlives one bad tick; say what happened
                print(f"rft serve: job runner: {exc!r}", file=sys.stderr, flush=True)
        with self._lock:  # the workers die with this thread (parent-death signal): stop them cleanly first
            for proc in self.workers.values():
                os.killpg(proc.pid, signal.SIGINT)
            for proc in self.workers.values():
                try:
                    proc.wait(STOP_SECONDS)
                except subprocess.TimeoutExpired:
                    proc.kill()

    def tick(self) -> None:
        """One pass: validate new jobs, follow and reap workers, start queued jobs while there is room."""
        with self._lock:
            for job in self.store.jobs_with_status("validating_files"):
                self._validate(job)
            for job_id, proc in list(self.workers.items()):
                self.follow(job_id)
                if proc.poll() is not None:
                    self.follow(job_id)
                    del self.workers[job_id]
                    self._ended(job_id, proc.returncode)
            for job in self.store.jobs_with_status("queued"):
                if len(self.workers) >= self.max_running or self._closing.is_set():
                    break
                self._launch(job["id"])

    def _validate(self, job: dict[str, Any]) -> None:
        job_id = job["id"]
        self.store.add_event(job_id, f"Validating training file: {job['training_file']}"
                             + (f" and validation file: {job['validation_file']}" if job["validation_file"] else ""))
        try:
            cfg = load_config(self.store.get_private(job_id)["config"])
            if cfg.task.pairs:  # a dpo job: its preference files
                load_pair_splits(cfg)
            else:
                load_checked_task(cfg)
        except (ConfigError, ValueError) as exc:
            self._finish(job_id, "failed", error={"code": "invalid_training_file", "message": str(exc),
                                                  "param": "training_file"})
            return
        self.store.update_job(job_id, status="queued")
        self.store.add_event(job_id, "Files validated, moving job to queued state")

    def _launch(self, job_id: str) -> None:
        private = self.store.get_private(job_id)
        run_dir = Path(private["run_dir"])
        found = checkpoint.list_checkpoints(run_dir)
        step = int(found[-1].name.split("-")[1]) if found else 0
        cmd = [sys.executable, "-m", "rft.serve.job_worker", str(os.getpid()), "train", private["config"],
               *(["--resume"] if found else [])]
        # Read on from where the events stopped, unless the cut removed lines already read: a server killed after
        # the worker wrote a step but before its line became an event must still turn that line into one.
        private |= {"metrics_offset": min(private["metrics_offset"], cut_metrics(run_dir / "metrics.jsonl", step))}
        with (self.store.job_dir(job_id) / "worker.log").open("ab") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        self.workers[job_id] = proc
        private["pid"] = proc.pid
        self.store.update_job(job_id, status="running", private=private)
        message = f"Resumed from the checkpoint of step {step}" if found else "Fine-tuning job started"
        self.store.add_event(job_id, message)

    def follow(self, job_id: str) -> None:
        """New metrics lines become events (committed with the offset read up to); new checkpoints are recorded."""
        private = self.store.get_private(job_id)
        run_dir, offset = Path(private["run_dir"]), private["metrics_offset"]
        path = run_dir / "metrics.jsonl"
        if path.exists():
            with path.open("rb") as fh:
                fh.seek(offset)
                chunk = fh.read()
            complete = chunk[: chunk.rfind(b"\n") + 1]
            if complete:
                with self.store.transaction() as db:
                    for line in complete.decode().splitlines():
                        if line.strip():
                            for message, data, level in events_for(json.loads(line), private["total_steps"]):
                                self.store.add_event(job_id, message, level=level, data=data, db=db)
                    private["metrics_offset"] = offset + len(complete)
                    db.execute("UPDATE jobs SET private = ? WHERE id = ?", (json.dumps(private), job_id))
        for ckpt_dir in checkpoint.list_checkpoints(run_dir):
            self._record_checkpoint(job_id, private, ckpt_dir)

    def _record_checkpoint(self, job_id: str, private: dict[str, Any], ckpt_dir: Path) -> None:
        step = int(ckpt_dir.name.split("-")[1])
        ckpt = checkpoint_object(job_id, private["model_name"], step, ckpt_dir / "adapter",
                                 self.store.step_metrics(job_id, step))
        if self.store.add_checkpoint(ckpt):
            self.store.add_event(job_id, f"Checkpoint created at step {step}: {ckpt['fine_tuned_model_checkpoint']}")
            self.on_model(ckpt["fine_tuned_model_checkpoint"], ckpt_dir / "adapter")

    def _ended(self, job_id: str, code: int) -> None:
        """Record how a worker ended: asked to stop, finished, failed, or stopped from outside (resumed)."""
        asked = self.requested.pop(job_id, None)
        private = self.store.get_private(job_id)
        if code == 0:  # it finished before a cancel or pause reached it
            self._succeeded(job_id, private)
        elif asked == "cancel":
            self._finish(job_id, "cancelled")
        elif asked == "pause":
            self.store.update_job(job_id, status="paused")
            self.store.add_event(job_id, "Job paused: the last completed step is saved; resume continues from it")
        elif code < 0 and private.get("restarts", 0) < MAX_RESTARTS:
            private["restarts"] = private.get("restarts", 0) + 1
            self.store.update_job(job_id, status="queued", private=private)
            self.store.add_event(job_id, f"The worker was stopped by signal {-code}; the job resumes from its "
                                 "last checkpoint", level="warn")
        else:
            self._finish(job_id, "failed", error={"code": "training_failed", "param": None,
                                                  "message": _log_error(self.store.job_dir(job_id) / "worker.log")})

    def _succeeded(self, job_id: str, private: dict[str, Any]) -> None:
        run_dir = Path(private["run_dir"])
        final = checkpoint.list_checkpoints(run_dir)[-1] / "adapter"
        summary = json.loads((run_dir / "summary.json").read_text())
        private["final_adapter"] = str(final)
        rows = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines() if ln.strip()]
        per_step = private["prompts_per_step"] * private["group_size"]
        tokens = round(sum(r["completion_length"] * per_step for r in rows if "completion_length" in r))
        results = self.store.add_file("step_metrics.csv", "fine-tune-results", results_csv(rows))
        self.store.update_job(job_id, private=private, trained_tokens=tokens, result_files=[results["id"]])
        self.on_model(private["model_name"], final)
        self.store.add_event(job_id, f"New fine-tuned model created: {private['model_name']}",
                             data={"rft_summary": summary})
        self._finish(job_id, "succeeded", fine_tuned_model=private["model_name"])

    def _finish(self, job_id: str, status: str, **fields: Any) -> None:
        self.store.update_job(job_id, status=status, finished_at=now(), estimated_finish=None, **fields)
        messages = {"succeeded": "The job has successfully completed", "cancelled": "Job was cancelled",
                    "failed": f"The job failed: {fields.get('error', {}).get('message', '')}"}
        self.store.add_event(job_id, messages[status], level="error" if status == "failed" else "info")

    def stop(self, job_id: str, action: str) -> dict[str, Any]:
        """Cancel or pause a job now (a queued one) or through its worker (a running one); returns the job."""
        with self._lock:
            proc = self.workers.get(job_id)
            if proc is not None and job_id not in self.requested:
                self.requested[job_id] = action
                os.killpg(proc.pid, signal.SIGTERM if action == "cancel" else signal.SIGINT)
            elif proc is None and action == "cancel":
                self._finish(job_id, "cancelled")
            elif proc is None:
                self.store.update_job(job_id, status="paused")
                self.store.add_event(job_id, "Job paused")
            return self.store.get_job(job_id)

    def resume(self, job_id: str) -> dict[str, Any]:
        with self._lock:
            self.store.add_event(job_id, "Job resumed: queued to continue from its last checkpoint")
            return self.store.update_job(job_id, status="queued")


def _log_error(log: Path) -> str:
    """The worker's own error line (`error: ...` or the exception), else its last lines."""
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()] if log.exists() else []
    flagged = [ln for ln in lines if ln.startswith("error:") or "Error" in ln.split(":")[0]]
    return (flagged[-1] if flagged else " | ".join(lines[-3:])) or "the worker exited without output"
