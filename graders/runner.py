"""Grade many samples at once: in parallel, with a per-sample time limit, never losing a sample.

Two engines, both kept alive between calls because the trainer grades every step:
- `async`: one event loop thread; graders with `agrade` (model judges) run natively, other IO-bound
  graders run on a thread pool. A timed-out thread cannot be killed, so it is only abandoned.
- `process`: spawned worker processes for CPU-bound graders (the default for graders without
  `agrade`). A sample over the limit gets its worker killed and replaced. The grader must be
  picklable; when it is not, the batch runs on threads and `BatchResult.fallback` says why.

An unexpected exception becomes `Grade(error="ExcType: message")` for that sample only;
`GraderInputError` (a misconfiguration) is re-raised as `SampleInputError` naming the sample index.

>>> from graders.string import ExactMatchGrader
>>> result = grade_batch(ExactMatchGrader(), ["4", "five"], [{"answer": "4"}, {"answer": "5"}], mode="thread")
>>> [g.score for g in result.grades], result.errors, result.timeouts
([1.0, 0.0], 0, 0)
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import os
import pickle
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from graders.base import Grade, Grader, GraderInputError, Sample
from graders.multi import is_io_bound

MODES = ("auto", "async", "thread", "process")


class SampleInputError(GraderInputError):
    """A `GraderInputError` raised while grading sample `index` (so callers can name the input line)."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(f"sample {index}: {message}")
        self.index = index
        self.reason = message


@dataclass(frozen=True)
class LatencyStats:
    """Seconds spent grading one sample: mean, median and max over the batch."""

    mean: float
    p50: float
    max: float
    count: int

    @classmethod
    def of(cls, seconds: Sequence[float]) -> LatencyStats:
        return cls(statistics.fmean(seconds), statistics.median(seconds), max(seconds), len(seconds))


@dataclass
class BatchResult:
    """Grades in input order, counts of errors (timeouts included) and timeouts, latency per grader."""

    grades: list[Grade]
    errors: int
    timeouts: int
    latency: dict[str, LatencyStats] = field(default_factory=dict)
    mode: str = "async"
    fallback: str | None = None

    @property
    def scores(self) -> list[float]:
        return [g.score for g in self.grades]

    @property
    def mean_score(self) -> float:
        return statistics.fmean(self.scores) if self.grades else 0.0

    def sub_means(self) -> dict[str, float]:
        """Mean score of every named sub-grader (for composed graders), keyed by its name."""
        by_name: dict[str, list[float]] = {}
        for grade in self.grades:
            for key, sub in grade.sub_grades.items():
                by_name.setdefault(key, []).append(sub.score)
        return {key: statistics.fmean(v) for key, v in by_name.items()}


def _grade_one(grader: Grader, sample: Sample, item: Mapping[str, Any]) -> tuple[str, Any, float]:
    """Run one grade, turning exceptions into ("input", msg) or an error Grade; shared by both engines."""
    start = time.perf_counter()
    try:
        return "ok", grader.grade(sample, item), time.perf_counter() - start
    except GraderInputError as exc:
        return "input", str(exc), time.perf_counter() - start
    except Exception as exc:  # noqa: BLE001 - one bad sample must not kill the batch; it is counted
        return "ok", Grade.failure(f"{type(exc).__name__}: {exc}"), time.perf_counter() - start


def _worker_main(fd: int) -> None:
    """Worker process loop: load the grader it is sent (acknowledged), grade samples, send results back."""
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
        _, index, sample, item = msg
        status, value, seconds = _grade_one(grader, sample, item)
        try:
            conn.send(("result", index, status, value, seconds))
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            conn.send(("result", index, "ok", Grade.failure(f"grade could not be sent back: {exc}"), seconds))


class _LoadError(Exception):
    """A worker process could not load the grader (e.g. its module is not importable there)."""


class _Worker:
    """One grading subprocess and the socket to it.

    A plain `python -c` child (not multiprocessing's spawn/fork) so the caller's `__main__` is never
    re-imported and no threads of the parent (torch, the event loop) are forked.
    """

    def __init__(self) -> None:
        mine, theirs = socket.socketpair()
        paths = [p or os.getcwd() for p in sys.path]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
        code = f"from graders.runner import _worker_main; _worker_main({theirs.fileno()})"
        self.proc = subprocess.Popen([sys.executable, "-c", code], pass_fds=[theirs.fileno()], env=env)
        theirs.close()
        self.conn = Connection(mine.detach())
        self.grader_key: str | None = None
        self.index: int | None = None
        self.started = 0.0

    def load(self, key: str, payload: bytes) -> None:
        """Send the grader; the worker is `loading` until it acknowledges (its boot time is not timed)."""
        self.conn.send(("grader", payload))
        self.grader_key = key

    def loaded(self) -> None:
        """Read the load acknowledgement; raise `_LoadError` when the grader could not be loaded."""
        try:
            _, problem = self.conn.recv()
        except (EOFError, OSError):
            self.kill()
            problem = f"worker exited with code {self.proc.returncode} while starting"
        if problem is not None:
            self.grader_key = None
            raise _LoadError(problem)

    def assign(self, index: int, sample: Sample, item: Any) -> None:
        self.conn.send(("grade", index, sample, item))
        self.index, self.started = index, time.perf_counter()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.conn.close()


class GradingPool:
    """Reusable engines for `grade_batch`: an event loop + threads, and worker processes."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1
        self._procs: list[_Worker] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._threads = ThreadPoolExecutor(max(64, 4 * self.workers), thread_name_prefix="rft-grade")
        self._lock = threading.Lock()

    def run(
        self,
        grader: Grader,
        samples: Sequence[Any],
        items: Sequence[Mapping[str, Any]],
        time_limit: float | None = 30.0,
        mode: str = "auto",
    ) -> BatchResult:
        """Grade `samples[i]` against `items[i]` for all i; see the module docstring."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if len(samples) != len(items):
            raise ValueError(f"got {len(samples)} samples but {len(items)} items")
        coerced = []
        for i, (sample, item) in enumerate(zip(samples, items)):
            if not isinstance(item, Mapping):
                raise SampleInputError(i, f"item must be a mapping of fields, got {type(item).__name__}")
            try:
                coerced.append(Sample.coerce(sample))
            except GraderInputError as exc:
                raise SampleInputError(i, str(exc)) from exc
        fallback = None
        if mode == "auto":
            mode = "async" if is_io_bound(grader) else "process"
        if mode == "process":
            payload, fallback = _pickled(grader)
            mode = "process" if fallback is None else "thread"
        with self._lock:
            if mode == "process":
                try:
                    outcomes = self._run_processes(payload, coerced, items, time_limit)
                except _LoadError as exc:
                    fallback, mode = f"worker processes cannot load the grader ({exc}); graded on threads", "thread"
            if mode != "process":
                outcomes = self._run_async(grader, coerced, items, time_limit, native=mode == "async")
        return _result(grader, outcomes, mode, fallback)

    def _run_async(
        self, grader: Grader, samples: list[Sample], items: Sequence[Any], limit: float | None, native: bool
    ) -> list[tuple[Grade, float]]:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            threading.Thread(target=self._loop.run_forever, daemon=True, name="rft-grade-loop").start()
        coro = self._gather(grader, samples, items, limit, native)
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    async def _gather(
        self, grader: Grader, samples: list[Sample], items: Sequence[Any], limit: float | None, native: bool
    ) -> list[tuple[Grade, float]]:
        gate = asyncio.Semaphore(self.workers if not native else max(self.workers, 32))
        loop = asyncio.get_running_loop()
        use_native = native and hasattr(grader, "agrade")

        async def one(i: int) -> tuple[Grade, float]:
            async with gate:
                start = time.perf_counter()
                try:
                    if use_native:
                        job = grader.agrade(samples[i], items[i])  # type: ignore[attr-defined]
                    else:
                        job = loop.run_in_executor(self._threads, _grade_one, grader, samples[i], items[i])
                    outcome = await asyncio.wait_for(job, limit)
                except asyncio.TimeoutError:
                    return Grade.failure("timeout", time_limit_s=limit), float(limit or 0.0)
                except GraderInputError as exc:
                    raise SampleInputError(i, str(exc)) from exc
                except Exception as exc:  # noqa: BLE001 - counted as this sample's error
                    return Grade.failure(f"{type(exc).__name__}: {exc}"), time.perf_counter() - start
                if use_native:
                    return outcome, time.perf_counter() - start
                status, value, seconds = outcome
                if status == "input":
                    raise SampleInputError(i, value)
                return value, seconds

        return list(await asyncio.gather(*(one(i) for i in range(len(samples)))))

    def _run_processes(
        self, payload: bytes, samples: list[Sample], items: Sequence[Any], limit: float | None
    ) -> list[tuple[Grade, float]]:
        key = hashlib.sha1(payload).hexdigest()
        while len(self._procs) < min(self.workers, len(samples)):
            self._procs.append(_Worker())
        outcomes: list[tuple[Grade, float] | None] = [None] * len(samples)
        pending, busy, loading = deque(range(len(samples))), {}, {}
        try:
            while pending or busy or loading:
                for worker in self._procs:
                    if not pending or worker.conn in busy or worker.conn in loading:
                        continue
                    if worker.grader_key != key:
                        worker.load(key, payload)
                        loading[worker.conn] = worker
                        continue
                    index = pending.popleft()
                    worker.assign(index, samples[index], items[index])
                    busy[worker.conn] = worker
                wait_s = None
                if limit is not None and busy:
                    wait_s = max(0.0, min(w.started for w in busy.values()) + limit - time.perf_counter())
                for conn in wait([*busy, *loading], wait_s):
                    if conn in loading:
                        loading.pop(conn).loaded()
                    else:
                        self._collect(busy.pop(conn), outcomes)
                now = time.perf_counter()
                for conn, worker in list(busy.items()):
                    if limit is not None and now - worker.started >= limit:
                        del busy[conn]
                        outcomes[worker.index] = (Grade.failure("timeout", time_limit_s=limit), limit)
                        self._replace(worker)
        finally:
            for worker in [*busy.values(), *loading.values()]:
                self._replace(worker)
        return [o for o in outcomes if o is not None]

    def _collect(self, worker: _Worker, outcomes: list[tuple[Grade, float] | None]) -> None:
        try:
            _, index, status, value, seconds = worker.conn.recv()
        except (EOFError, OSError):
            worker.kill()
            code = worker.proc.returncode
            outcomes[worker.index] = (Grade.failure(f"grader process died (exit code {code})"), 0.0)
            self._replace(worker)
            return
        if status == "input":
            raise SampleInputError(index, value)
        outcomes[index] = (value, seconds)

    def _replace(self, worker: _Worker) -> None:
        worker.kill()
        self._procs[self._procs.index(worker)] = _Worker()

    def worker_pids(self) -> list[int]:
        """Process ids of the live grading workers (they persist between calls)."""
        return [w.proc.pid for w in self._procs]

    def close(self) -> None:
        """Stop the worker processes, the event loop and the threads."""
        for worker in self._procs:
            worker.kill()
        self._procs.clear()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._loop = None
        self._threads.shutdown(wait=False, cancel_futures=True)


def _pickled(grader: Grader) -> tuple[bytes, str | None]:
    """The grader pickled for worker processes, or why it cannot be (then threads are used)."""
    name = getattr(grader, "name", type(grader).__name__)
    if type(grader).__module__ == "__main__":
        return b"", f"grader {name!r} is defined in __main__, which worker processes cannot import; graded on threads"
    try:
        return pickle.dumps(grader), None
    except Exception as exc:  # noqa: BLE001 - any pickling failure means: use threads
        return b"", f"grader {name!r} is not picklable ({type(exc).__name__}: {exc}); graded on threads"


def _result(grader: Grader, outcomes: list[tuple[Grade, float]], mode: str, fallback: str | None) -> BatchResult:
    grades = [g for g, _ in outcomes]
    name = getattr(grader, "name", type(grader).__name__)
    per: dict[str, list[float]] = {name: [s for _, s in outcomes]} if outcomes else {}
    for grade in grades:
        for key, seconds in (grade.details.get("latency_s") or {}).items():
            per.setdefault(f"{name}.{key}", []).append(seconds)
    return BatchResult(
        grades=grades,
        errors=sum(g.error is not None for g in grades),
        timeouts=sum(g.error == "timeout" for g in grades),
        latency={k: LatencyStats.of(v) for k, v in per.items()},
        mode=mode,
        fallback=fallback,
    )


_POOLS: dict[int | None, GradingPool] = {}


def grade_batch(
    grader: Grader,
    samples: Sequence[Any],
    items: Sequence[Mapping[str, Any]],
    *,
    time_limit: float | None = 30.0,
    workers: int | None = None,
    mode: str = "auto",
) -> BatchResult:
    """Grade a batch on a shared, reused `GradingPool` (one per `workers` value)."""
    pool = _POOLS.get(workers)
    if pool is None:
        pool = _POOLS[workers] = GradingPool(workers)
    return pool.run(grader, samples, items, time_limit, mode)


@atexit.register
def _close_pools() -> None:
    for pool in _POOLS.values():
        pool.close()
    _POOLS.clear()
