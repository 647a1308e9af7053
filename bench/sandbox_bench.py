"""Sandbox overhead per execution against a bare interpreter, and trivial executions per second.

    python bench/sandbox_bench.py [--runs 40] [--jobs 200]

Targets (issue 3): under 30 ms overhead over `python -c pass`, at least 40 trivial executions per second
on 2 cores. Runs alternate between the sandbox and its peers so machine load hits both alike; the
medians are printed with the `python -I -S -c pass` peer too, since the sandbox itself starts
`python -I -S` (no site import) and would look cheaper than it is against `python -c pass` alone.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from graders.sandbox import Limits, Sandbox  # noqa: E402

PEERS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "python -I -S -c pass": [sys.executable, "-I", "-S", "-c", "pass"],
}


def _timed(fn: object) -> float:
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - start


def overhead(sandbox: Sandbox, runs: int) -> dict[str, list[float]]:
    """Per-execution wall times, interleaved: sandbox, then each peer, `runs` times."""
    times: dict[str, list[float]] = {"sandbox": [], **{name: [] for name in PEERS}}
    for _ in range(runs):
        result_box: list[object] = []
        times["sandbox"].append(_timed(lambda: result_box.append(sandbox.run("pass"))))
        assert result_box[0].ok, result_box[0]  # type: ignore[attr-defined]
        for name, argv in PEERS.items():
            times[name].append(_timed(lambda: subprocess.run(argv, check=True)))
    return times


def throughput(sandbox: Sandbox, jobs: int, workers: int) -> float:
    start = time.perf_counter()
    results = sandbox.run_many([("pass", "")] * jobs, workers=workers)
    elapsed = time.perf_counter() - start
    assert all(r.ok for r in results), [r for r in results if not r.ok][:1]
    return jobs / elapsed


def bare_throughput(jobs: int, workers: int) -> float:
    from concurrent.futures import ThreadPoolExecutor

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda _: subprocess.run(PEERS["python -c pass"], check=True), range(jobs)))
    return jobs / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    sandbox = Sandbox(Limits(wall_s=10.0))
    print(
        f"isolation={sandbox.info.mode} drops_uid={sandbox.info.drops_uid} cpus={os.cpu_count()} load={os.getloadavg()}"
    )
    sandbox.run("pass")
    times = overhead(sandbox, args.runs)
    median = {name: statistics.median(ts) * 1000 for name, ts in times.items()}
    for name in PEERS:
        print(
            f"sandbox {median['sandbox']:.1f} ms vs {name} {median[name]:.1f} ms per execution: "
            f"overhead {median['sandbox'] - median[name]:+.1f} ms, ratio {median['sandbox'] / median[name]:.2f}x"
        )
    rate, bare = throughput(sandbox, args.jobs, args.workers), bare_throughput(args.jobs, args.workers)
    print(
        f"{rate:.1f} sandboxed executions/s vs {bare:.1f} bare `python -c pass`/s on {args.workers} workers "
        f"(ratio {rate / bare:.2f}x; target >= 40/s)"
    )


if __name__ == "__main__":
    main()
