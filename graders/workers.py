"""Worker subprocesses for CPU-bound graders: the process engine behind `graders.runner`.

Each worker is a plain `python -c` child (not multiprocessing's spawn/fork), so the caller's
`__main__` is never re-imported and no threads of the parent (torch, the runner's event loop) are
forked. Samples go out in small chunks to amortise the round trip, results come back one by one, so
each sample's time limit still starts when the worker reaches it. A sample over the limit gets its
worker killed and replaced; the rest of that worker's chunk is handed to the others.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Mapping, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any

from graders.base import Grade, Grader, GraderInputError, Sample

Outcome = tuple[Grade, float]  # the grade and the seconds spent grading


class SampleInputError(GraderInputError):
    """A `GraderInputError` raised while grading sample `index` (so callers can name the input line)."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(f"sample {index}: {message}")
        self.index = index
        self.reason = message


class LoadError(Exception):
    """A worker process could not load the grader (e.g. its module is not importable there)."""


def grade_one(grader: Grader, sample: Sample, item: Mapping[str, Any]) -> tuple[str, Any, float]:
    """Run one grade: ("ok", Grade, s), or ("input", message, s) for a misconfiguration.

    An unexpected exception becomes an error `Grade` for this sample only, so a batch never dies.
    """
    start = time.perf_counter()
    try:
        return "ok", grader.grade(sample, item), time.perf_counter() - start
    except GraderInputError as exc:
        return "input", str(exc), time.perf_counter() - start
    except Exception as exc:  # noqa: BLE001 - one bad sample must not kill the batch; it is counted
        return "ok", Grade.from_exception(exc), time.perf_counter() - start


def worker_main(fd: int) -> None:
    """Worker loop: load the grader it is sent (acknowledged), grade chunks, send each result back."""
    conn = Connection(fd)
    grader: Any = None
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg[0] == "grader":
            try:
                grader, problem = pickle.loads(msg[1]), None
            except Exception as exc:  # noqa: BLE001 - reported to the parent, which falls back to threads
                problem = f"{type(exc).__name__}: {exc}"
            conn.send(("loaded", problem))
            continue
        for index, sample, item in msg[1]:
            status, value, seconds = grade_one(grader, sample, item)
            try:
                conn.send(("result", index, status, value, seconds))
            except (pickle.PicklingError, TypeError, AttributeError) as exc:
                conn.send(("result", index, "ok", Grade.failure(f"grade could not be sent back: {exc}"), seconds))


class Worker:
    """One grading subprocess, the socket to it, and the samples it has been handed."""

    def __init__(self) -> None:
        mine, theirs = socket.socketpair()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p or os.getcwd() for p in sys.path)}
        code = f"from graders.workers import worker_main; worker_main({theirs.fileno()})"
        self.proc = subprocess.Popen([sys.executable, "-c", code], pass_fds=[theirs.fileno()], env=env)
        theirs.close()
        self.conn = Connection(mine.detach())
        self.grader_key: str | None = None
        self.queue: deque[int] = deque()
        self.started = 0.0  # when the sample at the head of `queue` started

    def load(self, key: str, payload: bytes) -> None:
        """Send the grader; the worker is loading until it acknowledges (its boot time is not timed)."""
        self.conn.send(("grader", payload))
        self.grader_key = key

    def loaded(self) -> None:
        """Read the load acknowledgement; raise `LoadError` when the grader could not be loaded."""
        try:
            _, problem = self.conn.recv()
        except (EOFError, OSError):
            self.kill()
            problem = f"worker exited with code {self.proc.returncode} while starting"
        if problem is not None:
            self.grader_key = None
            raise LoadError(problem)

    def assign(self, chunk: list[int], samples: Sequence[Sample], items: Sequence[Any]) -> None:
        self.conn.send(("grade", [(i, samples[i], items[i]) for i in chunk]))
        self.queue.extend(chunk)
        self.started = time.perf_counter()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.conn.close()


class ProcessEngine:
    """A fixed number of reusable workers; `run` grades a batch on them with per-sample time limits."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.procs: list[Worker] = []

    def run(
        self, payload: bytes, samples: Sequence[Sample], items: Sequence[Any], limit: float | None
    ) -> list[Outcome]:
        """Grade with the pickled grader `payload`; raises `LoadError` if workers cannot load it."""
        key = hashlib.sha1(payload).hexdigest()
        while len(self.procs) < min(self.workers, len(samples)):
            self.procs.append(Worker())
        outcomes: list[Outcome | None] = [None] * len(samples)
        pending: deque[int] = deque(range(len(samples)))
        busy: dict[Connection, Worker] = {}
        loading: dict[Connection, Worker] = {}
        try:
            while pending or busy or loading:
                self._dispatch(key, payload, samples, items, pending, busy, loading)
                wait_s = None
                if limit is not None and busy:
                    wait_s = max(0.0, min(w.started for w in busy.values()) + limit - time.perf_counter())
                for conn in wait([*busy, *loading], wait_s):
                    if conn in loading:
                        loading.pop(conn).loaded()
                    elif not self._collect(busy[conn], outcomes, pending):
                        del busy[conn]
                if limit is not None:
                    self._expire(busy, outcomes, pending, limit)
        finally:
            for worker in [*busy.values(), *loading.values()]:
                self._replace(worker)
        return [o for o in outcomes if o is not None]

    def _dispatch(self, key: str, payload: bytes, samples: Sequence[Sample], items: Sequence[Any],
                  pending: deque[int], busy: dict, loading: dict) -> None:
        """Give idle workers the grader (once) or their next chunk of samples."""
        chunk = max(1, min(16, len(pending) // (2 * len(self.procs) or 1)))
        for worker in self.procs:
            if not pending or worker.conn in busy or worker.conn in loading:
                continue
            if worker.grader_key != key:
                worker.load(key, payload)
                loading[worker.conn] = worker
                continue
            worker.assign([pending.popleft() for _ in range(min(chunk, len(pending)))], samples, items)
            busy[worker.conn] = worker

    def _collect(self, worker: Worker, outcomes: list[Outcome | None], pending: deque[int]) -> bool:
        """Read every result the worker has ready; return whether it still has samples to grade."""
        while worker.queue and worker.conn.poll():
            try:
                _, index, status, value, seconds = worker.conn.recv()
            except (EOFError, OSError):
                worker.kill()
                died = Grade.failure(f"grader process died (exit code {worker.proc.returncode})")
                outcomes[worker.queue.popleft()] = (died, 0.0)
                self._requeue_and_replace(worker, pending)
                return False
            worker.queue.popleft()
            worker.started = time.perf_counter()
            if status == "input":
                raise SampleInputError(index, value)
            outcomes[index] = (value, seconds)
        return bool(worker.queue)

    def _expire(self, busy: dict, outcomes: list[Outcome | None], pending: deque[int], limit: float) -> None:
        now = time.perf_counter()
        for conn, worker in list(busy.items()):
            if now - worker.started >= limit:
                del busy[conn]
                outcomes[worker.queue.popleft()] = (Grade.failure("timeout", time_limit_s=limit), limit)
                self._requeue_and_replace(worker, pending)

    def _requeue_and_replace(self, worker: Worker, pending: deque[int]) -> None:
        pending.extendleft(reversed(worker.queue))
        worker.queue.clear()
        self._replace(worker)

    def _replace(self, worker: Worker) -> None:
        worker.kill()
        self.procs[self.procs.index(worker)] = Worker()

    def close(self) -> None:
        for worker in self.procs:
            worker.kill()
        self.procs.clear()
