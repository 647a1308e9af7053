"""The Ray engine of the grading runner, on a real local Ray cluster, against the local process pool."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

ray = pytest.importorskip("ray", reason="ray is an optional extra: pip install -e '.[ray]'")

from graders.code import CodeGrader
from graders.ray_engine import _cpu_slots
from graders.runner import GradingPool
from graders.sandbox import Limits
from tests.graders.test_code import CALLS, fenced
from tests.graders.test_runner import Scripted

# Starting a Ray cluster takes 10-30 s on a busy 2-core machine: the tests that use one are slow.


def test_actors_go_round_robin_over_the_nodes_one_per_cpu() -> None:
    nodes = [{"NodeID": "a", "Alive": True, "Resources": {"CPU": 3.0}},
             {"NodeID": "dead", "Alive": False, "Resources": {"CPU": 8.0}},
             {"NodeID": "gpu", "Alive": True, "Resources": {"GPU": 1.0}},
             {"NodeID": "b", "Alive": True, "Resources": {"CPU": 1.0}}]
    assert _cpu_slots(nodes) == ["a", "b", "a", "a"]
    with pytest.raises(RuntimeError, match="no live node with a CPU"):
        _cpu_slots(nodes[1:3])


@pytest.fixture(scope="module")
def pools() -> Iterator[tuple[GradingPool, GradingPool]]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    local, remote = GradingPool(workers=2), GradingPool(workers=2, ray_address="")
    yield local, remote
    local.close()
    remote.close()
    ray.shutdown()


@pytest.mark.slow
def test_code_grades_match_the_process_pool_including_a_sandbox_kill(pools: tuple[GradingPool, GradingPool]) -> None:
    grader = CodeGrader(limits=Limits(wall_s=2.0, memory_mb=256))
    responses = [
        fenced("def add(a, b):\n    return a + b"),
        fenced("def add(a, b):\n    return a + b if a > 0 else 99"),
        fenced("def add(a, b):\n    while True:\n        pass"),  # the sandbox kills it at 2 s
        fenced("def add(a, b):\n    return a +"),
        fenced("def add(a, b):\n    return b + a"),
    ]
    local, remote = (pool.run(grader, responses, [CALLS] * 5, time_limit=20) for pool in pools)
    assert (local.mode, remote.mode, local.fallback, remote.fallback) == ("process", "ray", None, None)
    assert [g.score for g in remote.grades] == [g.score for g in local.grades] == [1.0, 2 / 3, 0.0, 0.0, 1.0]
    assert [g.error for g in remote.grades] == [g.error for g in local.grades]
    assert remote.grades[2].details["status"] == "timeout"  # killed by the sandbox, inside a Ray actor
    assert (remote.errors, remote.timeouts) == (local.errors, local.timeouts)


@pytest.mark.slow
def test_time_limit_errors_and_order_match_the_process_pool(pools: tuple[GradingPool, GradingPool]) -> None:
    """A grader hung past the limit gets its actor killed; an exception and a dead actor are counted errors."""
    samples = [str(i / 10) for i in range(10)]
    samples[2], samples[5], samples[7] = "sleep:60", "raise", "exit"
    local, remote = (pool.run(Scripted(), samples, [{}] * 10, time_limit=2.0) for pool in pools)
    expected = [0.0 if i in (2, 5, 7) else i / 10 for i in range(10)]
    assert remote.scores == local.scores == expected
    assert remote.grades[2].error == local.grades[2].error == "timeout"
    assert remote.grades[5].error == local.grades[5].error == "RuntimeError: grader bug"
    assert remote.grades[7].error.startswith("grader process died")
    assert (remote.errors, remote.timeouts) == (local.errors, local.timeouts) == (3, 1)
    graded_on = {g.details["pid"] for g in remote.grades if "pid" in g.details}
    assert graded_on and os.getpid() not in graded_on
    again = pools[1].run(Scripted(), ["0.5"] * 4, [{}] * 4)
    assert again.scores == [0.5] * 4  # replaced actors still serve


@pytest.mark.slow
def test_cheap_graders_stay_inline(pools: tuple[GradingPool, GradingPool]) -> None:
    from graders.string import ExactMatchGrader

    result = pools[1].run(ExactMatchGrader(), ["4", "5"], [{"answer": "4"}] * 2)
    assert (result.mode, result.scores) == ("inline", [1.0, 0.0])


@pytest.mark.slow
def test_a_run_config_with_grading_backend_ray_grades_on_the_cluster(pools: tuple[GradingPool, GradingPool]) -> None:
    from rft.config import load_config
    from rft.rewards import grade_texts, use_grading

    cfg = load_config(None, ["--grading.backend", "ray"])
    use_grading(cfg.grading.backend, cfg.grading.address)
    try:
        grades, metrics = grade_texts(Scripted(), ["0.5", "sleep:60", "1.0"], [{}] * 3, time_limit=2.0)
    finally:
        use_grading("local")
    assert [g.score for g in grades] == [0.5, 0.0, 1.0]
    assert (metrics["grader_errors"], metrics["grader_timeouts"], metrics["reward_mean"]) == (1.0, 1.0, 0.5)
    assert os.getpid() not in {g.details["pid"] for g in grades if "pid" in g.details}
