"""grade_batch / GradingPool on real threads, a real event loop and real worker subprocesses."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from graders.base import Grade, GraderInputError, Sample
from graders.multi import MultiGrader
from graders.runner import GradingPool, LatencyStats, SampleInputError, grade_batch
from graders.string import ExactMatchGrader


class Scripted:
    """Does what the sample text says: 'sleep:S', 'raise', 'misuse', 'exit', or scores it as a float."""

    name = "scripted"

    def grade(self, sample: Sample, item: Mapping[str, Any]) -> Grade:
        text = sample.output_text
        if text.startswith("sleep:"):
            time.sleep(float(text[6:]))
            return Grade(1.0, {"pid": os.getpid()})
        if text == "raise":
            raise RuntimeError("grader bug")
        if text == "misuse":
            raise GraderInputError("item field 'x' is missing")
        if text == "exit":
            os._exit(3)
        return Grade(float(text), {"pid": os.getpid()})


class AsyncJudge:
    """A grader with native `agrade`; 'slow' answers never finish within the limit."""

    name = "judge"

    def grade(self, sample: Sample, item: Mapping[str, Any]) -> Grade:
        raise AssertionError("the runner must prefer agrade")

    async def agrade(self, sample: Sample, item: Mapping[str, Any]) -> Grade:
        await asyncio.sleep(30 if sample.output_text == "slow" else 0.01)
        return Grade(1.0 if sample.output_text == item["answer"] else 0.0)


def _rebuild_in_parent_only() -> ExactMatchGrader:
    if sys.argv[0] == "-c":  # inside a grading worker (started as `python -c ...`)
        raise RuntimeError("needs the parent's state")
    return ParentOnly()


class ParentOnly(ExactMatchGrader):
    """Pickles fine but cannot be rebuilt in a worker, like a grader holding a parent-only resource."""

    def __reduce__(self) -> tuple:
        return _rebuild_in_parent_only, ()


@pytest.fixture(scope="module")
def pool() -> Iterator[GradingPool]:
    shared = GradingPool(workers=2)
    yield shared
    shared.close()


@pytest.mark.parametrize("mode", ["process", "thread", "async", "inline"])
def test_results_in_input_order_match_a_plain_loop(pool: GradingPool, mode: str) -> None:
    grader = ExactMatchGrader()
    samples = [str(i % 7) for i in range(40)]
    items = [{"answer": str(i % 5)} for i in range(40)]
    result = pool.run(grader, samples, items, time_limit=10, mode=mode)
    assert result.scores == [grader.grade(s, it).score for s, it in zip(samples, items)]
    assert result.mode == mode
    assert (result.errors, result.timeouts, result.fallback) == (0, 0, None)
    assert result.mean_score == pytest.approx(sum(result.scores) / 40)
    stats = result.latency["exact_match"]
    assert stats.count == 40 and 0.0 <= stats.p50 <= stats.max


@pytest.mark.parametrize("mode", ["process", "thread"])
def test_timeouts_exceptions_and_good_samples_in_one_batch(pool: GradingPool, mode: str) -> None:
    samples = ["0.25", "sleep:30", "raise", "1.0"]
    result = pool.run(Scripted(), samples, [{}] * 4, time_limit=1.0, mode=mode)
    assert [g.score for g in result.grades] == [0.25, 0.0, 0.0, 1.0]
    assert [g.error for g in result.grades] == [None, "timeout", "RuntimeError: grader bug", None]
    assert (result.errors, result.timeouts) == (2, 1)


def test_process_pool_is_reused_and_recovers_from_timeouts_and_crashes(pool: GradingPool) -> None:
    first = pool.run(Scripted(), ["0.5"] * 6, [{}] * 6, mode="process")
    workers = set(pool.worker_pids())
    second = pool.run(Scripted(), ["0.5"] * 6, [{}] * 6, mode="process")
    assert set(pool.worker_pids()) == workers  # the same processes serve every call
    graded_by = {g.details["pid"] for g in [*first.grades, *second.grades]}
    assert graded_by <= workers and os.getpid() not in graded_by
    crashed = pool.run(Scripted(), ["exit", "0.5", "sleep:0.1"], [{}] * 3, mode="process")
    assert crashed.grades[0].error == "grader process died (exit code 3)"
    assert [g.score for g in crashed.grades[1:]] == [0.5, 1.0]
    after = pool.run(Scripted(), ["0.75"] * 4, [{}] * 4, mode="process")  # replaced workers still serve
    assert after.scores == [0.75] * 4


def test_samples_queued_behind_a_hung_or_crashed_one_are_still_graded(pool: GradingPool) -> None:
    """Samples go to workers in chunks; a killed worker's unfinished chunk is handed to the others."""
    samples = [str(i / 20) for i in range(20)]
    samples[3], samples[12] = "sleep:30", "exit"
    result = pool.run(Scripted(), samples, [{}] * 20, time_limit=1.0, mode="process")
    expected = [i / 20 for i in range(20)]
    expected[3] = expected[12] = 0.0
    assert result.scores == expected
    assert (result.grades[3].error, result.grades[12].error) == ("timeout", "grader process died (exit code 3)")
    assert (result.errors, result.timeouts) == (2, 1)


@pytest.mark.parametrize("mode", ["process", "thread", "inline"])
def test_misconfiguration_is_raised_with_the_sample_index(pool: GradingPool, mode: str) -> None:
    with pytest.raises(SampleInputError, match="sample 2: item field 'x' is missing") as info:
        pool.run(Scripted(), ["0.5", "0.5", "misuse", "0.5"], [{}] * 4, mode=mode)
    assert info.value.index == 2
    assert pool.run(Scripted(), ["0.5"] * 3, [{}] * 3, mode=mode).scores == [0.5] * 3


def test_async_graders_use_agrade_with_a_time_limit(pool: GradingPool) -> None:
    items = [{"answer": "a"}, {"answer": "b"}, {"answer": "c"}]
    result = pool.run(AsyncJudge(), ["a", "slow", "x"], items, time_limit=0.5)
    assert result.mode == "async"
    assert [(g.score, g.error) for g in result.grades] == [(1.0, None), (0.0, "timeout"), (0.0, None)]


def test_unpicklable_grader_falls_back_to_threads_with_a_reason(pool: GradingPool) -> None:
    grader = ExactMatchGrader()
    grader.hook = lambda text: text  # lambdas cannot be pickled
    result = pool.run(grader, ["1"], [{"answer": "1"}], mode="process")
    assert result.mode == "thread"
    assert "is not picklable" in result.fallback
    assert result.scores == [1.0]


def test_grader_that_workers_cannot_load_falls_back_to_threads(pool: GradingPool) -> None:
    result = pool.run(ParentOnly(), ["1", "2"], [{"answer": "1"}] * 2, mode="process")
    assert result.mode == "thread"
    assert "cannot load the grader (RuntimeError: needs the parent's state)" in result.fallback
    assert result.scores == [1.0, 0.0]
    assert pool.run(ExactMatchGrader(), ["1"], [{"answer": "1"}], mode="process").mode == "process"


def test_multi_grader_reports_latency_per_sub_grader(pool: GradingPool) -> None:
    grader = MultiGrader("m", {"em": ExactMatchGrader(), "loose": ExactMatchGrader(normalize=True)})
    result = pool.run(grader, ["Paris", "paris!"], [{"answer": "Paris"}] * 2, mode="process")
    assert set(result.latency) == {"m", "m.em", "m.loose"}
    assert result.sub_means() == {"em": 1.0, "loose": 1.0}


@pytest.mark.parametrize(
    ("samples", "items", "error", "message"),
    [
        (["a", "b"], [{}], ValueError, "got 2 samples but 1 items"),
        (["a", 7], [{}, {}], SampleInputError, "sample 1: a sample must be a string"),
        (["a"], ["not a dict"], SampleInputError, "sample 0: item must be a mapping"),
    ],
)
def test_bad_batches(pool: GradingPool, samples: list, items: list, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        pool.run(ExactMatchGrader(), samples, items)


@pytest.mark.parametrize(
    ("grader", "mode"),
    [
        (ExactMatchGrader(), "inline"),  # cheap string checks skip the pools
        (MultiGrader("m", {"a": ExactMatchGrader()}), "inline"),
        (MultiGrader("m", {"a": ExactMatchGrader(), "s": Scripted()}), "process"),
        (Scripted(), "process"),  # CPU-bound by default
        (AsyncJudge(), "async"),
        (MultiGrader("m", {"a": ExactMatchGrader(), "j": AsyncJudge()}), "async"),
    ],
)
def test_auto_mode_choice(pool: GradingPool, grader: Any, mode: str) -> None:
    assert pool.run(grader, ["1"], [{"answer": "1"}], mode="auto").mode == mode


def test_grade_batch_shares_one_pool_per_worker_count() -> None:
    result = grade_batch(ExactMatchGrader(), ["4", "5"], [{"answer": "4"}] * 2, workers=1, mode="thread")
    assert result.scores == [1.0, 0.0]
    assert isinstance(result.latency["exact_match"], LatencyStats)
    with pytest.raises(ValueError, match="mode must be one of"):
        grade_batch(ExactMatchGrader(), [], [], mode="fast")
