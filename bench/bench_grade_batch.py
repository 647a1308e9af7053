"""Runner overhead and speed-up against a plain in-process loop over the same samples.

Run: python bench/bench_grade_batch.py [--n 256] [--workers 2]

For a cheap grader (exact match) the question is how much the runner adds per call, since the
trainer grades every step; for a CPU-heavy one (ROUGE-L on long texts) how much the process pool
gains. Pools are warmed up first, as they are after the first training step. Each column prints
the best of 3 wall times and (xR) = loop time / that time, so R > 1 means faster than the plain loop.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

from graders.runner import GradingPool
from graders.similarity import TextSimilarityGrader
from graders.string import ExactMatchGrader


def best_of(repeats: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=256, help="samples per batch")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    rng = random.Random(0)
    words = [f"w{i}" for i in range(300)]
    cases = {
        "exact_match": (ExactMatchGrader(), [str(rng.randrange(10)) for _ in range(args.n)], "answer", 1),
        "rouge_l_long": (
            TextSimilarityGrader(reference="{{item.answer}}", evaluation_metric="rouge_l"),
            [" ".join(rng.choices(words, k=120)) for _ in range(args.n)],
            "answer",
            120,
        ),
    }
    pool = GradingPool(args.workers)
    try:
        for name, (grader, samples, field, k) in cases.items():
            items = [{field: " ".join(rng.choices(words, k=k)) if k > 1 else str(rng.randrange(10))}
                     for _ in samples]
            serial = best_of(3, lambda: [grader.grade(s, it) for s, it in zip(samples, items)])
            row = [f"{name:<13} n={args.n}  loop {serial * 1e3:8.1f} ms"]
            for mode in ("auto", "thread", "process"):
                pool.run(grader, samples[:4], items[:4], mode=mode)  # warm up: start workers, load grader
                took = best_of(3, lambda: pool.run(grader, samples, items, mode=mode))
                row.append(f"{mode} {took * 1e3:7.1f} ms (x{serial / took:5.2f})")
            print("   ".join(row))
    finally:
        pool.close()


if __name__ == "__main__":
    main()
