# python examples/rlhf/make_pairs.py --n 200 --out runs/rlhf/pairs.jsonl
"""Preference pairs from a task's reference answers: the reference is chosen, a sampled wrong answer rejected.

A stand-in for `rft prefs` (pairs ranked by the task's grader over the policy's own samples) that needs no
model: each pair takes one train item, its reference answer as `chosen` and, as `rejected`, one of three
wrong answers drawn with a fixed seed: the number off by 1 to 10, the number with its digits reversed, or
the question restated ("53 + 12 =", the answer a GRPO run once learned to hack the math grader with).
Every rejected answer is checked wrong by the task's own grader. Lines are in the common
prompt/chosen/rejected shape with the item's fields kept (`tasks.preferences.Pair.to_dict`).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

from graders.base import Sample
from tasks.base import Task, load_task
from tasks.preferences import Pair


def wrong_answer(item: dict[str, Any], rng: random.Random) -> str:
    """One wrong answer to an arithmetic item: off by a little, digits reversed, or the question restated."""
    answer = int(item["answer"])
    kind = rng.choice(("off_by", "reversed", "restated"))
    if kind == "reversed" and len(str(abs(answer))) > 1 and str(abs(answer)) != str(abs(answer))[::-1]:
        return ("-" if answer < 0 else "") + str(abs(answer))[::-1]
    if kind == "restated":
        return f"{item['expression']} ="
    return str(answer + rng.choice((-1, 1)) * rng.randint(1, 10))


def make_pairs(task: Task, n: int, seed: int) -> list[Pair]:
    """`n` pairs from the first `n` train items, each rejected answer graded wrong by `task.grader`."""
    if n > len(task.train):
        raise ValueError(f"--n {n}: task {task.name!r} has only {len(task.train)} train items")
    rng = random.Random(seed)
    pairs = []
    for item in task.train[:n]:
        rejected = wrong_answer(dict(item), rng)
        while task.grader.grade(Sample(rejected), item).score >= 1.0:
            rejected = wrong_answer(dict(item), rng)
        pairs.append(Pair(task.messages(item), task.reference(item), rejected, item=dict(item)))
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="arithmetic", help="a task whose items have expression and answer")
    parser.add_argument("--n", type=int, default=200, help="pairs to write (one per train item)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the wrong answers")
    parser.add_argument("--out", type=Path, required=True, help="the JSONL file to write")
    args = parser.parse_args()
    pairs = make_pairs(load_task(args.task), args.n, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(p.to_dict()) + "\n" for p in pairs))
    print(f"wrote {len(pairs)} pairs to {args.out}")


if __name__ == "__main__":
    main()
