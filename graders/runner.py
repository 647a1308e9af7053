"""Grade many samples at once: in parallel, with a per-sample time limit, never losing a sample.

Two engines, both kept alive between calls because the trainer grades every step:
- `async`: one event loop thread; graders with `agrade` (model judges) run natively, other IO-bound
  graders run on a thread pool. A timed-out thread cannot be killed, so it is only abandoned.
- `process`: worker subprocesses (`graders.workers`) for CPU-bound graders, the default for graders
  without `agrade`. A sample over the limit gets its worker killed and replaced. The grader must be
  picklable and loadable in a fresh interpreter; when it is not, the batch runs on threads and
  `BatchResult.fallback` says why.

Graders marked `cheap` (string checks: microseconds each) run `inline` in the calling thread, where
a pool would only add overhead and no time limit is needed.

Graders that score many samples in one call (a reward model: one forward per batch) define
`grade_many(samples, items) -> list[Grade]` and `batch_size`; they run `batched` in the calling
thread, `batch_size` samples a call. A call that raises gives every sample of its batch an error
grade (counted); `GraderInputError` stops the run as for any grader. No time limit applies.

A pool built with `ray_address` (`grading.backend: ray`) sends what would go to the process or async
engine to actors on a Ray cluster instead (`graders.ray_engine`), with the same time limits, error
counting and input order; `""` starts a local Ray, "auto" or "ray://host:10001" joins a cluster.

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
import os
import pickle
import statistics
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from graders.base import Grade, Grader, GraderInputError, Sample
from graders.multi import is_io_bound
from graders.workers import LoadError, ProcessEngine, SampleInputError, grade_one

MODES = ("auto", "inline", "batched", "async", "thread", "process", "ray")


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


class GradingPool:
    """Reusable engines for `grade_batch`: an event loop + threads, worker processes, and Ray actors."""

    def __init__(self, workers: int | None = None, *, ray_address: str | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1
        self._procs = ProcessEngine(self.workers)
        self.ray_address = ray_address  # None: grade on this machine
        self._ray: Any = None
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
        if mode == "auto" and hasattr(grader, "grade_many"):
            mode = "batched"
        if mode == "auto":
            mode = "async" if is_io_bound(grader) else "inline" if getattr(grader, "cheap", False) else "process"
            if self.ray_address is not None and mode != "inline":
                mode = "ray"
        if mode in ("process", "ray"):
            payload, fallback = _pickled(grader)
            mode = mode if fallback is None else "thread"
        with self._lock:
            if mode in ("process", "ray"):
                try:
                    outcomes = self._engine(mode).run(payload, coerced, items, time_limit)
                except LoadError as exc:
                    fallback, mode = f"{mode} workers cannot load the grader ({exc}); graded on threads", "thread"
            if mode == "inline":
                outcomes = [_inline(grader, i, s, items[i]) for i, s in enumerate(coerced)]
            elif mode == "batched":
                outcomes = _batched(grader, coerced, items)
            elif mode not in ("process", "ray"):
                outcomes = self._run_async(grader, coerced, items, time_limit, native=mode == "async")
        return _result(grader, outcomes, mode, fallback)

    def _engine(self, mode: str) -> Any:
        if mode == "process":
            return self._procs
        if self._ray is None:
            from graders.ray_engine import RayEngine

            self._ray = RayEngine(self.ray_address or "")
        return self._ray

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
                        job = loop.run_in_executor(self._threads, grade_one, grader, samples[i], items[i])
                    outcome = await asyncio.wait_for(job, limit)
                except asyncio.TimeoutError:
                    return Grade.failure("timeout", time_limit_s=limit), float(limit or 0.0)
                except GraderInputError as exc:
                    raise SampleInputError(i, str(exc)) from exc
                except Exception as exc:  # noqa: BLE001 - counted as this sample's error
                    return Grade.from_exception(exc), time.perf_counter() - start
                if use_native:
                    return outcome, time.perf_counter() - start
                status, value, seconds = outcome
                if status == "input":
                    raise SampleInputError(i, value)
                return value, seconds

        return list(await asyncio.gather(*(one(i) for i in range(len(samples)))))

    def worker_pids(self) -> list[int]:
        """Process ids of the live grading workers (they persist between calls)."""
        return [w.proc.pid for w in self._procs.procs]

    def close(self) -> None:
        """Stop the worker processes, the event loop and the threads."""
        self._procs.close()
        if self._ray is not None:
            self._ray.close()
            self._ray = None
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._loop = None
        self._threads.shutdown(wait=False, cancel_futures=True)


def _inline(grader: Grader, index: int, sample: Sample, item: Mapping[str, Any]) -> tuple[Grade, float]:
    status, value, seconds = grade_one(grader, sample, item)
    if status == "input":
        raise SampleInputError(index, value)
    return value, seconds


def _batched(grader: Any, samples: list[Sample], items: Sequence[Mapping[str, Any]]) -> list[tuple[Grade, float]]:
    """`grader.grade_many` on `grader.batch_size` samples at a time; a failed call is an error for each of its samples."""
    size = max(1, int(getattr(grader, "batch_size", len(samples)) or len(samples)))
    outcomes: list[tuple[Grade, float]] = []
    for lo in range(0, len(samples), size):
        chunk, start = samples[lo : lo + size], time.perf_counter()
        try:
            grades = list(grader.grade_many(chunk, list(items[lo : lo + size])))
            if len(grades) != len(chunk):
                raise RuntimeError(f"grade_many returned {len(grades)} grades for {len(chunk)} samples")
        except GraderInputError as exc:
            raise SampleInputError(lo, str(exc)) from exc
        except Exception as exc:  # noqa: BLE001 - counted as the error of every sample in this batch
            grades = [Grade.from_exception(exc) for _ in chunk]
        seconds = (time.perf_counter() - start) / len(chunk)
        outcomes += [(grade, seconds) for grade in grades]
    return outcomes


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
        latency = grade.details.get("latency_s")
        if isinstance(latency, dict):  # a composed grader's per-sub-grader seconds (a judge's is one float)
            for key, seconds in latency.items():
                per.setdefault(f"{name}.{key}", []).append(seconds)
    return BatchResult(
        grades=grades,
        errors=sum(g.error is not None for g in grades),
        timeouts=sum(g.error == "timeout" for g in grades),
        latency={k: LatencyStats.of(v) for k, v in per.items()},
        mode=mode,
        fallback=fallback,
    )


_POOLS: dict[tuple[int | None, str | None], GradingPool] = {}
_POOLS_LOCK = threading.Lock()


def grade_batch(
    grader: Grader,
    samples: Sequence[Any],
    items: Sequence[Mapping[str, Any]],
    *,
    time_limit: float | None = 30.0,
    workers: int | None = None,
    mode: str = "auto",
    ray_address: str | None = None,
) -> BatchResult:
    """Grade a batch on a shared, reused `GradingPool` (one per `workers` and `ray_address` value)."""
    with _POOLS_LOCK:
        pool = _POOLS.get((workers, ray_address))
        if pool is None:
            pool = _POOLS[(workers, ray_address)] = GradingPool(workers, ray_address=ray_address)
    return pool.run(grader, samples, items, time_limit, mode)


@atexit.register
def _close_pools() -> None:
    for pool in _POOLS.values():
        pool.close()
    _POOLS.clear()
