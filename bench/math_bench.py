"""Accuracy and speed of `graders.math` next to Hugging Face's math-verify, in the same process.

    python bench/math_bench.py [--repeat 1] [--only ours]

Both graders see every (reference, response) pair of our labelled set (`tests/data/math_labelled.jsonl`)
and of the peer suites imported as data (`tests/data/peer_math/*.jsonl`, core labels only); a verdict
is correct when "grader says equal" matches the label. Printed per source: accuracy, false positives
(said equal, label says not), false negatives and verifications per second on one core, then the
speed ratio. Our grader runs sequentially (its sympy worker only works while the caller waits);
math-verify runs in this process with its default settings, `verify(parse(gold), parse(response))`.
For our own set the reference is given to math-verify wrapped in `$...$`, the form its parser expects;
peer references are passed as their suites wrote them.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graders.math import grade_answer
from graders.math.sympy_worker import warm_up

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
Judge = Callable[[str, str], bool]


@dataclass
class Case:
    reference: str
    response: str
    label: bool
    wrap: bool  # give math-verify `$reference$` (our own set's bare references)


def load_sources() -> dict[str, list[Case]]:
    """Our labelled set and each peer suite's core cases, by source name."""
    sources = {
        "rft (own set)": [
            Case(r["reference"], r["response"], r["label"], True)
            for r in map(json.loads, (DATA / "math_labelled.jsonl").read_text().splitlines())
        ]
    }
    for path in sorted((DATA / "peer_math").glob("*.jsonl")):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        sources[path.stem] = [Case(r["gold"], r["response"], r["expected"], False) for r in rows if r["core"]]
    return sources


def ours(case: Case) -> bool:
    return grade_answer(case.response, case.reference).score == 1.0


def math_verify(case: Case) -> bool:
    from math_verify import parse, verify

    reference = f"${case.reference}$" if case.wrap else case.reference
    return bool(verify(parse(reference), parse(case.response)))


def run(judge: Callable[[Case], bool], cases: list[Case], repeat: int) -> dict[str, Any]:
    """Accuracy, false positives, false negatives and verifications per second over `repeat` passes."""
    verdicts: list[bool] = []
    start = time.perf_counter()
    for _ in range(repeat):
        verdicts = [judge(case) for case in cases]
    seconds = time.perf_counter() - start
    false_pos = sum(v and not c.label for v, c in zip(verdicts, cases))
    false_neg = sum(c.label and not v for v, c in zip(verdicts, cases))
    return {
        "accuracy": 1 - (false_pos + false_neg) / len(cases),
        "fp": false_pos,
        "fn": false_neg,
        "per_second": len(cases) * repeat / seconds,
        "seconds": seconds,
    }


def _row(name: str, n: int, a: dict[str, Any], b: dict[str, Any] | None) -> str:
    cells = f"{name:<16}{n:>5}  {a['accuracy']:>7.1%}{a['fp']:>5}{a['fn']:>5}{a['per_second']:>9.0f}"
    if b is not None:
        ratio = a["per_second"] / b["per_second"]
        cells += f"  {b['accuracy']:>7.1%}{b['fp']:>5}{b['fn']:>5}{b['per_second']:>9.1f}{ratio:>9.1f}x"
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--only", choices=["ours"], help="skip math-verify")
    args = parser.parse_args()
    sources = load_sources()
    warm_up()
    for case in next(iter(sources.values()))[:5]:
        ours(case)
        if args.only is None:
            math_verify(case)
    head = f"{'source':<16}{'n':>5}  {'ours acc':>7}{'FP':>5}{'FN':>5}{'verif/s':>9}"
    if args.only is None:
        head += f"  {'mv acc':>7}{'FP':>5}{'FN':>5}{'verif/s':>9}{'speed':>10}"
    print(head)
    totals: list[dict[str, Any]] = [{"n": 0, "fp": 0, "fn": 0, "seconds": 0.0} for _ in range(2)]
    for name, cases in sources.items():
        results = [run(ours, cases, args.repeat)]
        if args.only is None:
            results.append(run(math_verify, cases, args.repeat))
        print(_row(name, len(cases), results[0], results[1] if len(results) > 1 else None))
        for total, result in zip(totals, results):
            total["n"] += len(cases) * args.repeat
            total["fp"] += result["fp"]
            total["fn"] += result["fn"]
            total["seconds"] += result["seconds"]
    overall = [
        {
            "accuracy": 1 - (t["fp"] + t["fn"]) / (t["n"] / args.repeat),
            "fp": t["fp"],
            "fn": t["fn"],
            "per_second": t["n"] / t["seconds"],
        }
        for t in totals[: 1 if args.only else 2]
    ]
    n = totals[0]["n"] // args.repeat
    print(_row("OVERALL", n, overall[0], overall[1] if len(overall) > 1 else None))


if __name__ == "__main__":
    main()
