"""GRPO, PPO, RLOO and REINFORCE++ on the default task, one after another, under one sampling budget.

    python bench/algorithms.py                                   # the examples as they are: 30 steps each
    python bench/algorithms.py --steps 2 --eval-limit 16         # smoke test
    python bench/algorithms.py --only ppo rloo --out runs/bench  # a subset

Each algorithm trains its example config (`examples/arithmetic.yaml` for GRPO, `examples/<name>.yaml`
for the others: the default model, SmolLM2-135M-Instruct, on 2-digit addition) through its
`rft.recipes.RECIPES` entry point in this process. Every run samples the same number of completions
(steps x prompts_per_step x group_size; the script refuses to run otherwise) and is evaluated on the
same held-out items, greedily, before and after. Prints held-out accuracy with Wilson 95% intervals
and mean seconds per step (sampling + grading + training, without evaluation) for each.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rft.eval import Interval  # after the path line, so a checkout runs without installing

EXAMPLES = {
    "grpo": ROOT / "examples" / "arithmetic.yaml",
    "ppo": ROOT / "examples" / "ppo.yaml",
    "rloo": ROOT / "examples" / "rloo.yaml",
    "reinforce_pp": ROOT / "examples" / "reinforce_pp.yaml",
}
STEP_PHASES = ("seconds/sampling", "seconds/grading", "seconds/training")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=sorted(EXAMPLES), default=list(EXAMPLES),
                        help="algorithms to run, in this order (default: all four)")
    parser.add_argument("--steps", type=int, help="override train.steps for every algorithm")
    parser.add_argument("--eval-limit", type=int, help="override eval.limit (held-out items) for every algorithm")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-algorithms", help="run directories go here")
    args = parser.parse_args(argv)
    if (args.steps is not None and args.steps < 1) or (args.eval_limit is not None and args.eval_limit < 1):
        parser.error("--steps and --eval-limit must be >= 1")
    return args


def configs(args: argparse.Namespace) -> dict[str, Any]:
    """Each algorithm's example config with the shared overrides; fails unless the budgets match."""
    from rft.config import load_config

    out = {}
    for name in args.only:
        extra = ["--train.output_dir", str(args.out / name), "--train.threads", str(args.threads),
                 "--train.checkpoint_interval", "1000"]
        if args.steps is not None:
            extra += ["--train.steps", str(args.steps), "--eval.interval", str(args.steps)]
        if args.eval_limit is not None:
            extra += ["--eval.limit", str(args.eval_limit)]
        out[name] = load_config(EXAMPLES[name], extra)
    budgets = {name: budget(cfg) for name, cfg in out.items()}
    if len(set(budgets.values())) > 1:
        raise SystemExit(f"sampled-completion budgets differ: {budgets}; fix the examples so they match")
    return out


def budget(cfg: Any) -> int:
    """Completions sampled in the whole run: steps x B x G."""
    return cfg.train.steps * cfg.train.prompts_per_step * cfg.algorithm.group_size


def run_one(name: str, cfg: Any) -> dict[str, Any]:
    """Train with the algorithm's recipe; before/after accuracy, seconds per step and wall time."""
    from rft.metrics import read_metrics
    from rft.recipes import RECIPES

    module, attr = RECIPES[cfg.algorithm.name].split(":")
    start = time.perf_counter()
    summary = getattr(importlib.import_module(module), attr)(cfg, show_progress=False)
    wall = time.perf_counter() - start
    rows = [r for r in read_metrics(Path(cfg.train.output_dir) / "metrics.jsonl") if "seconds/training" in r]
    return {
        "algorithm": name, "completions": budget(cfg), "steps": cfg.train.steps,
        "before": summary["before"]["accuracy"], "after": summary["after"]["accuracy"],
        "seconds_per_step": statistics.fmean(sum(r[k] for k in STEP_PHASES) for r in rows),
        "wall_seconds": wall, "load_1m": os.getloadavg()[0],
    }


def pct(interval: dict[str, float]) -> str:
    return str(Interval(**interval))


def table(results: list[dict[str, Any]], eval_items: int) -> str:
    lines = [
        f"held-out accuracy on {eval_items} items (greedy), Wilson 95% CI; s/step = sampling + grading + training",
        f"{'algorithm':<13} {'completions':>11} {'before':>22} {'after':>22} {'gain':>7} {'s/step':>7} "
        f"{'wall s':>7} {'load':>5}",
    ]
    for r in results:
        gain = 100 * (r["after"]["value"] - r["before"]["value"])
        lines.append(f"{r['algorithm']:<13} {r['completions']:>11} {pct(r['before']):>22} {pct(r['after']):>22} "
                     f"{gain:>+6.1f} {r['seconds_per_step']:>7.1f} {r['wall_seconds']:>7.0f} {r['load_1m']:>5.1f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    cfgs = configs(args)
    first = next(iter(cfgs.values()))
    print(f"{len(cfgs)} algorithms, {budget(first)} sampled completions each, model {first.model.name}, "
          f"task {first.task.name} {first.task.options}", flush=True)
    results = []
    for name, cfg in cfgs.items():
        results.append(run_one(name, cfg))
        r = results[-1]
        print(f"{name}: {pct(r['before'])} -> {pct(r['after'])}, {r['seconds_per_step']:.1f} s/step", flush=True)
    report = table(results, first.eval.limit)
    print(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
