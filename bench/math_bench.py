"""Accuracy and speed of `graders.math` next to Hugging Face's math-verify, in the same process.

    python bench/math_bench.py [--data tests/data/math_labelled.jsonl] [--repeat 1]

Both graders see every (reference, full response) pair of the labelled set; a prediction is correct
when "grader says equal" matches the human label. Speed is verifications per second on one core:
our grader runs sequentially (its sympy worker process only works while the caller waits), and
math-verify runs in this process. The reference is given to math-verify wrapped in `$...$`, the
form its parser expects.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from graders.math import grade_answer
from graders.math.sympy_worker import warm_up

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "math_labelled.jsonl"


def ours(reference: str, response: str) -> bool:
    return grade_answer(response, reference).score == 1.0


def math_verify(reference: str, response: str) -> bool:
    from math_verify import parse, verify

    return bool(verify(parse(f"${reference}$"), parse(response)))


def run(
    name: str, judge: Callable[[str, str], bool], rows: list[dict[str, Any]], repeat: int
) -> dict[str, Any]:
    """Accuracy per category and overall, and verifications per second over `repeat` passes."""
    for row in rows[:5]:
        judge(row["reference"], row["response"])
    per_category: dict[str, list[bool]] = defaultdict(list)
    start = time.perf_counter()
    for _ in range(repeat):
        per_category.clear()
        for row in rows:
            per_category[row["category"]].append(judge(row["reference"], row["response"]) == row["label"])
    seconds = time.perf_counter() - start
    hits = [h for v in per_category.values() for h in v]
    return {
        "name": name,
        "accuracy": sum(hits) / len(hits),
        "per_second": len(rows) * repeat / seconds,
        "categories": {c: sum(v) / len(v) for c, v in per_category.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    rows = [json.loads(line) for line in args.data.read_text().splitlines() if line.strip()]
    warm_up()
    results = [
        run("rft graders.math", ours, rows, args.repeat),
        run("math-verify", math_verify, rows, args.repeat),
    ]
    print(f"{len(rows)} labelled pairs, {sum(r['label'] for r in rows)} positive, one core\n")
    print(f"{'category':<22}" + "".join(f"{r['name']:>20}" for r in results))
    for category in sorted(results[0]["categories"]):
        print(f"{category:<22}" + "".join(f"{r['categories'][category]:>20.1%}" for r in results))
    print(f"{'ACCURACY':<22}" + "".join(f"{r['accuracy']:>20.1%}" for r in results))
    print(f"{'verifications/s':<22}" + "".join(f"{r['per_second']:>20.1f}" for r in results))
    ours_result, peer = results
    print(
        f"\nratio ours / math-verify: accuracy {ours_result['accuracy'] / peer['accuracy']:.3f}x, "
        f"speed {ours_result['per_second'] / peer['per_second']:.2f}x"
    )


if __name__ == "__main__":
    main()
