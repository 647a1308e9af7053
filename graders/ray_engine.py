"""Grading on a Ray cluster: the `ray` engine of `graders.runner` (`grading.backend: ray` in a run config).

The same contract as the local process engine (`graders.workers.ProcessEngine`), with Ray actors in
place of subprocesses: one actor per CPU of the cluster (or `workers`), each holding the unpickled
grader and grading one sample at a time, so a sample's time limit starts when its actor gets it.
Actors are pinned round-robin to the nodes, as many per node as it has CPUs, and reserve no CPU:
like each rank's local process pool, the engines of several trainer ranks share the CPUs rather
than wait forever for CPUs another engine holds. A
sample over the limit gets its actor killed (`ray.kill`, which ends the process and whatever it was
running) and replaced; an actor that dies mid-sample becomes that sample's counted error. Grades come
back in input order. Sandboxed code runs inside the actor's process on whichever node Ray placed it,
under the sandbox's own limits, and a judge's HTTP calls go out from there.

Every node must be able to import `graders` and the grader's own module (install the package on the
cluster's image, or start a local cluster from this environment: its PYTHONPATH is passed on).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
import time
from collections import deque
from collections.abc import Mapping, Sequence
from itertools import zip_longest
from typing import Any

from graders.base import Grade, Sample
from graders.workers import LoadError, Outcome, SampleInputError, grade_one


class GradeActor:
    """The remote half: holds one grader (keyed by the hash of its pickle) and grades samples with it."""

    def __init__(self) -> None:
        self.key: str | None = None
        self.grader: Any = None

    def load(self, key: str, payload: bytes) -> str | None:
        """Unpickle the grader; return why it cannot be loaded here, or None."""
        try:
            self.grader, self.key = pickle.loads(payload), key
        except Exception as exc:  # noqa: BLE001 - reported to the caller, which falls back to threads
            return f"{type(exc).__name__}: {exc}"
        return None

    def grade(self, sample: Sample, item: Mapping[str, Any]) -> tuple[str, Any, float]:
        return grade_one(self.grader, sample, item)


class RayEngine:
    """Actors on a Ray cluster (joined, or started locally), reused between calls like the process pool."""

    def __init__(self, address: str = "", workers: int | None = None) -> None:
        import ray

        if not ray.is_initialized():
            env = {"PYTHONPATH": os.pathsep.join(p or os.getcwd() for p in sys.path)}
            ray.init(address=address or None, include_dashboard=False, log_to_driver=False,
                     runtime_env=None if address else {"env_vars": env})
        self.ray = ray
        self.slots = _cpu_slots(ray.nodes())
        self.size = workers or len(self.slots)
        self.actor_class = ray.remote(num_cpus=0, max_restarts=0)(GradeActor)
        self.actors: list[Any] = []
        self.keys: dict[Any, str] = {}  # actor -> key of the grader it holds

    def _load(self, key: str, payload: bytes, count: int) -> None:
        """Start actors up to `count` and give each the grader (boot and load time are not timed)."""
        while len(self.actors) < count:
            self.actors.append(self._start(len(self.actors)))
        stale = [a for a in self.actors if self.keys.get(a) != key]
        for actor, problem in zip(stale, self.ray.get([a.load.remote(key, payload) for a in stale])):
            if problem is not None:
                raise LoadError(problem)
            self.keys[actor] = key

    def run(self, payload: bytes, samples: Sequence[Sample], items: Sequence[Any], limit: float | None) -> list[Outcome]:
        """Grade with the pickled grader `payload`; raises `LoadError` if the actors cannot load it."""
        key = hashlib.sha1(payload).hexdigest()
        self._load(key, payload, min(self.size, len(samples)))
        outcomes: list[Outcome | None] = [None] * len(samples)
        pending: deque[int] = deque(range(len(samples)))
        running: dict[Any, tuple[int, Any, float]] = {}  # ref -> (sample index, actor, start)
        idle = deque(self.actors)
        try:
            while pending or running:
                while pending and idle:
                    i, actor = pending.popleft(), idle.popleft()
                    running[actor.grade.remote(samples[i], items[i])] = (i, actor, time.perf_counter())
                wait_s = None
                if limit is not None:
                    wait_s = max(0.0, min(start for _, _, start in running.values()) + limit - time.perf_counter())
                ready, _ = self.ray.wait(list(running), num_returns=1, timeout=wait_s)
                for ref in ready:
                    i, actor, _ = running.pop(ref)
                    outcomes[i], alive = self._collect(ref, i)
                    idle.append(actor if alive else self._replace(actor, key, payload))
                if limit is not None:
                    self._expire(running, outcomes, idle, limit, key, payload)
        finally:
            for _, actor, _ in running.values():  # a raised SampleInputError leaves these mid-sample
                self._replace(actor, key, payload)
        return [o for o in outcomes if o is not None]

    def _collect(self, ref: Any, index: int) -> tuple[Outcome, bool]:
        """The outcome of a finished call, and whether its actor is still alive."""
        try:
            status, value, seconds = self.ray.get(ref)
        except self.ray.exceptions.RayActorError as exc:
            return (Grade.failure(f"grader process died ({type(exc).__name__})"), 0.0), False
        if status == "input":
            raise SampleInputError(index, value)
        return (value, seconds), True

    def _expire(self, running: dict, outcomes: list, idle: deque, limit: float, key: str, payload: bytes) -> None:
        now = time.perf_counter()
        late = [ref for ref, (_, _, start) in running.items() if now - start >= limit]
        if not late:
            return
        finished, _ = self.ray.wait(late, num_returns=len(late), timeout=0)  # done in time, not yet collected
        for ref in set(late) - set(finished):
            i, actor, _ = running.pop(ref)
            outcomes[i] = (Grade.failure("timeout", time_limit_s=limit), limit)
            idle.append(self._replace(actor, key, payload))

    def _replace(self, actor: Any, key: str, payload: bytes) -> Any:
        """Kill `actor` (and whatever it runs) and start a fresh one holding the same grader."""
        self.ray.kill(actor, no_restart=True)
        self.keys.pop(actor, None)
        slot = self.actors.index(actor)
        fresh = self.actors[slot] = self._start(slot)
        self.ray.get(fresh.load.remote(key, payload))
        self.keys[fresh] = key
        return fresh

    def _start(self, slot: int) -> Any:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        node = self.slots[slot % len(self.slots)]
        return self.actor_class.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=True)).remote()

    def close(self) -> None:
        if self.ray.is_initialized():  # after ray.shutdown() the actors are gone already
            for actor in self.actors:
                self.ray.kill(actor, no_restart=True)
        self.actors.clear()
        self.keys.clear()


def _cpu_slots(nodes: list[dict[str, Any]]) -> list[str]:
    """One node id per CPU of the live nodes, round-robin over nodes (a, b, a, b, a, ...)."""
    per_node = [[n["NodeID"]] * int(n["Resources"].get("CPU", 0)) for n in nodes if n.get("Alive")]
    slots = [node for column in zip_longest(*per_node) for node in column if node is not None]
    if not slots:
        raise RuntimeError("the Ray cluster has no live node with a CPU to grade on")
    return slots
