"""The fine-tuning API's state in one SQLite file: uploaded files, jobs, their events and checkpoints.

Everything the API answers is read from here, so files, jobs, events and checkpoints survive a
restart of `rft serve --state-dir DIR` (the database is `DIR/state.sqlite3`, uploads `DIR/files/`,
each job's data, config, run and log `DIR/jobs/<job id>/`). Objects are stored as the JSON OpenAI
returns for them (`data`), beside the columns that are filtered or ordered on; `private` holds what
the job runner needs and clients never see. Lists are newest first and paged by `after`, the id of
the last object of the previous page, as OpenAI pages them.
"""

from __future__ import annotations

import fcntl
import json
import secrets
import sqlite3
import string
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL,
    purpose TEXT NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL,
    status TEXT NOT NULL, data TEXT NOT NULL, private TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL,
    job_id TEXT NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoints (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL,
    job_id TEXT NOT NULL, step INTEGER NOT NULL, data TEXT NOT NULL, UNIQUE (job_id, step));
CREATE INDEX IF NOT EXISTS events_by_job ON events (job_id, seq);
"""
_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str) -> str:
    """An OpenAI-style object id, e.g. `ftjob-3fJ9...` (24 random letters and digits)."""
    return prefix + "-" + "".join(secrets.choice(_ALPHABET) for _ in range(24))


def now() -> int:
    return int(time.time())


class JobStore:
    """SQLite-backed storage; safe to share between the request threads and the job runner's thread."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()  # workers get absolute paths, whatever their working directory
        (self.root / "files").mkdir(parents=True, exist_ok=True)
        (self.root / "jobs").mkdir(parents=True, exist_ok=True)
        self._owner = (self.root / "lock").open("w")  # held while this process lives; the OS drops it on death
        try:
            fcntl.flock(self._owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"{self.root} is in use by another rft serve (choose another --state-dir)") from None
        self._db = sqlite3.connect(self.root / "state.sqlite3", check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        self._lock = threading.RLock()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic write: an event and the metrics offset it was read up to commit together."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _rows(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _page(self, table: str, where: str, args: tuple[Any, ...], after: str | None, limit: int,
              ascending: bool = False) -> tuple[list[dict[str, Any]], bool]:
        """Objects of `table` matching `where`, newest first (or oldest first), after the object `after`."""
        if after:
            found = self._rows(f"SELECT seq FROM {table} WHERE id = ?", (after,))
            if found:
                where += f" AND seq {'>' if ascending else '<'} ?"
                args = (*args, found[0][0])
        order = "ASC" if ascending else "DESC"
        rows = self._rows(f"SELECT data FROM {table} WHERE {where} ORDER BY seq {order} LIMIT ?", (*args, limit + 1))
        return [json.loads(r[0]) for r in rows[:limit]], len(rows) > limit

    # files

    def file_path(self, file_id: str) -> Path:
        return self.root / "files" / file_id

    def add_file(self, filename: str, purpose: str, content: bytes) -> dict[str, Any]:
        obj = {"id": new_id("file"), "object": "file", "bytes": len(content), "created_at": now(),
               "filename": filename, "purpose": purpose, "status": "processed", "expires_at": None,
               "status_details": None}
        self.file_path(obj["id"]).write_bytes(content)
        with self.transaction() as db:
            db.execute("INSERT INTO files (id, purpose, data) VALUES (?, ?, ?)", (obj["id"], purpose, json.dumps(obj)))
        return obj

    def get_file(self, file_id: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT data FROM files WHERE id = ?", (file_id,))
        return json.loads(rows[0][0]) if rows else None

    def list_files(self, purpose: str | None, after: str | None, limit: int, ascending: bool
                   ) -> tuple[list[dict[str, Any]], bool]:
        where, args = ("purpose = ?", (purpose,)) if purpose else ("1 = 1", ())
        return self._page("files", where, args, after, limit, ascending)

    def delete_file(self, file_id: str) -> bool:
        with self.transaction() as db:
            deleted = db.execute("DELETE FROM files WHERE id = ?", (file_id,)).rowcount > 0
        self.file_path(file_id).unlink(missing_ok=True)
        return deleted

    # jobs

    def job_dir(self, job_id: str) -> Path:
        return self.root / "jobs" / job_id

    def add_job(self, job: dict[str, Any], private: dict[str, Any]) -> None:
        """Store a new job with its first event, in one transaction (the runner may pick it up at once)."""
        with self.transaction() as db:
            db.execute("INSERT INTO jobs (id, status, data, private) VALUES (?, ?, ?, ?)",
                       (job["id"], job["status"], json.dumps(job), json.dumps(private)))
            self.add_event(job["id"], f"Created fine-tuning job: {job['id']}", db=db)

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT data FROM jobs WHERE id = ?", (job_id,))
        return json.loads(rows[0][0]) if rows else None

    def get_private(self, job_id: str) -> dict[str, Any]:
        return json.loads(self._rows("SELECT private FROM jobs WHERE id = ?", (job_id,))[0][0])

    def update_job(self, job_id: str, private: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
        """Set public fields (and replace the private ones when given); returns the job."""
        with self.transaction() as db:
            job = json.loads(db.execute("SELECT data FROM jobs WHERE id = ?", (job_id,)).fetchone()[0])
            job.update(fields)
            db.execute("UPDATE jobs SET status = ?, data = ? WHERE id = ?", (job["status"], json.dumps(job), job_id))
            if private is not None:
                db.execute("UPDATE jobs SET private = ? WHERE id = ?", (json.dumps(private), job_id))
        return job

    def jobs_with_status(self, *statuses: str) -> list[dict[str, Any]]:
        """Jobs in any of `statuses`, oldest first (the queue order)."""
        marks = ",".join("?" * len(statuses))
        rows = self._rows(f"SELECT data FROM jobs WHERE status IN ({marks}) ORDER BY seq", statuses)
        return [json.loads(r[0]) for r in rows]

    def list_jobs(self, after: str | None, limit: int, metadata: dict[str, str]) -> tuple[list[dict[str, Any]], bool]:
        where, args = "1 = 1", ()
        for key, value in metadata.items():
            where += " AND json_extract(data, ?) = ?"
            args = (*args, f'$.metadata."{key}"', value)
        return self._page("jobs", where, args, after, limit)

    # events and checkpoints

    def add_event(self, job_id: str, message: str, *, level: str = "info", data: dict[str, Any] | None = None,
                  db: sqlite3.Connection | None = None) -> dict[str, Any]:
        event = {"id": new_id("ftevent"), "object": "fine_tuning.job.event", "created_at": now(), "level": level,
                 "message": message, "data": data or {}, "type": "metrics" if data and "step" in data else "message"}
        sql, args = "INSERT INTO events (id, job_id, data) VALUES (?, ?, ?)", (event["id"], job_id, json.dumps(event))
        if db is not None:
            db.execute(sql, args)
        else:
            with self.transaction() as tx:
                tx.execute(sql, args)
        return event

    def list_events(self, job_id: str, after: str | None, limit: int) -> tuple[list[dict[str, Any]], bool]:
        return self._page("events", "job_id = ?", (job_id,), after, limit)

    def step_metrics(self, job_id: str, step: int) -> dict[str, Any]:
        """The metrics events' data of one step merged (train and valid), the latest run of that step winning."""
        rows = self._rows("SELECT data FROM events WHERE job_id = ? AND json_extract(data, '$.data.step') = ? "
                          "ORDER BY seq", (job_id, step))
        merged: dict[str, Any] = {}
        for row in rows:
            merged |= json.loads(row[0])["data"]
        return merged

    def add_checkpoint(self, checkpoint: dict[str, Any]) -> bool:
        """Record a checkpoint; False when this job already has one at that step (a resumed run re-saved it)."""
        with self.transaction() as db:
            cur = db.execute("INSERT OR IGNORE INTO checkpoints (id, job_id, step, data) VALUES (?, ?, ?, ?)",
                             (checkpoint["id"], checkpoint["fine_tuning_job_id"], checkpoint["step_number"],
                              json.dumps(checkpoint)))
        return cur.rowcount > 0

    def list_checkpoints(self, job_id: str, after: str | None = None, limit: int = 10_000
                         ) -> tuple[list[dict[str, Any]], bool]:
        return self._page("checkpoints", "job_id = ?", (job_id,), after, limit)

    def close(self) -> None:
        with self._lock:
            self._db.close()
        self._owner.close()
