"""Sandbox overhead per execution against a bare interpreter, and trivial executions per second.

    python bench/sandbox_bench.py [--runs 40] [--jobs 200] [--workers 2] [--packages]

Targets (issue 3): under 30 ms overhead over `python -c pass`, at least 40 trivial executions per second
on 2 cores. Runs alternate between the sandbox and its peers so machine load hits all alike. The
`python -I -S -c pass` peer is printed too: the sandbox starts `python -I -S` (no site import), so
against `python -c pass` alone it would look cheaper than it is. CPU per execution (this process, its
children, the sandbox's fork server and the run itself) is printed because it, unlike wall time, barely
depends on other load: 2 cores / CPU per execution bounds what an idle 2-core machine can reach.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from graders.sandbox import Limits, Sandbox  # noqa: E402

PEERS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "python -I -S -c pass": [sys.executable, "-I", "-S", "-c", "pass"],
}


def _cpu() -> float:
    """CPU seconds of this process, its reaped children and its live children (the sandbox's fork server)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime + _live_children_cpu()


def _live_children_cpu() -> float:
    total, me, tick = 0.0, os.getpid(), os.sysconf("SC_CLK_TCK")
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me:  # fields after the command: state, ppid, ..., utime (12), stime (13)
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _measure(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one call, serial, so the CPU is this call's alone.

    A sandboxed run is a child of the fork server, not of this process: its own CPU comes from its result.
    """
    cpu, start = _cpu(), time.perf_counter()
    out = fn()
    run_cpu = getattr(out, "cpu_s", 0.0)
    return time.perf_counter() - start, _cpu() - cpu + run_cpu


def _sandboxed(sandbox: Sandbox) -> Callable[[], object]:
    def run() -> object:
        result = sandbox.run("pass")
        assert result.ok, result
        return result

    return run


def overhead(sandbox: Sandbox, runs: int) -> dict[str, list[tuple[float, float]]]:
    """Per-execution (wall, CPU), interleaved: the sandbox, then each peer, `runs` times."""
    calls = {"sandbox": _sandboxed(sandbox)}
    calls.update({name: (lambda argv=argv: subprocess.run(argv, check=True)) for name, argv in PEERS.items()})
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in calls}
    for _ in range(runs):
        for name, call in calls.items():
            times[name].append(_measure(call))
    return times


def rate(call: Callable[[], object], jobs: int, workers: int) -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda _: call(), range(jobs)))
    return jobs / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--packages", action="store_true", help="show the python-grader packages, as PythonGrader does"
    )
    args = parser.parse_args()
    sandbox = Sandbox(Limits(wall_s=10.0), packages=args.packages)
    info = sandbox.info
    print(
        f"isolation={info.mode} drops_uid={info.drops_uid} packages={args.packages} cpus={os.cpu_count()} "
        f"load={os.getloadavg()}"
    )
    sandbox.run("pass")
    times = overhead(sandbox, args.runs)
    wall = {name: statistics.median(w for w, _ in ts) * 1000 for name, ts in times.items()}
    # a mean, not a median: the fork server's CPU is read from /proc in 10 ms ticks
    cpu = {name: statistics.mean(c for _, c in ts) * 1000 for name, ts in times.items()}
    for name in PEERS:
        print(
            f"sandbox {wall['sandbox']:.1f} ms vs {name} {wall[name]:.1f} ms wall per execution: "
            f"overhead {wall['sandbox'] - wall[name]:+.1f} ms, ratio {wall['sandbox'] / wall[name]:.2f}x"
        )
    for name in cpu:
        print(
            f"mean CPU per execution, {name}: {cpu[name]:.1f} ms (2 cores / CPU = {2000 / cpu[name]:.0f}/s)"
        )
    ours = rate(_sandboxed(sandbox), args.jobs, args.workers)
    bare = rate(lambda: subprocess.run(PEERS["python -c pass"], check=True), args.jobs, args.workers)
    print(
        f"{ours:.1f} sandboxed executions/s vs {bare:.1f} bare `python -c pass`/s on {args.workers} workers "
        f"(ratio {ours / bare:.2f}x; target >= 40/s)"
    )


if __name__ == "__main__":
    main()
