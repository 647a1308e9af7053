"""Does training help on more than one task? Each built-in task's example config, trained and evaluated in turn.

    python bench/learning.py                                   # every task below, its example config as is
    python bench/learning.py --only arithmetic arithmetic+dynamic   # dynamic sampling's effect, side by side
    python bench/learning.py --steps 2 --eval-limit 16         # smoke test

Each entry runs `rft train <config>` as its own process (the user's command, so wall time includes model
loading and every evaluation) and reads its `summary.json`: held-out accuracy before and after with Wilson
95% intervals, the gain, whether the gain clears the bar (the after-interval's lower bound above the base
model's point estimate), mean seconds per step, wall time and the alarms the run raised (`rft.alarms`).
`arithmetic+dynamic` is the default run with DAPO dynamic sampling on, so the pair shows its effect on
accuracy and on seconds per step in one run of this script.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rft.eval import Interval  # after the path line, so a checkout runs without installing

EXAMPLES = ROOT / "examples"
RUNS: dict[str, tuple[Path, list[str]]] = {
    "arithmetic": (EXAMPLES / "arithmetic.yaml", []),
    "arithmetic+dynamic": (EXAMPLES / "arithmetic.yaml", ["--algorithm.dynamic_sampling", "true"]),
    "word_problems": (EXAMPLES / "word_problems.yaml", []),
    "countdown": (EXAMPLES / "countdown.yaml", []),
    "json_extract": (EXAMPLES / "json_extract.yaml", []),
}
STEP_PHASES = ("seconds/sampling", "seconds/grading", "seconds/training")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=sorted(RUNS), default=[k for k in RUNS if "+" not in k],
                        help="runs, in this order (default: every task's example config)")
    parser.add_argument("--steps", type=int, help="override train.steps (and eval.interval) for every run")
    parser.add_argument("--eval-limit", type=int, help="override eval.limit (held-out items) for every run")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-learning", help="run directories go here")
    args = parser.parse_args(argv)
    if (args.steps is not None and args.steps < 1) or (args.eval_limit is not None and args.eval_limit < 1):
        parser.error("--steps and --eval-limit must be >= 1")
    return args


def command(name: str, args: argparse.Namespace) -> list[str]:
    config, extra = RUNS[name]
    cmd = [sys.executable, "-m", "rft.cli", "train", str(config), *extra, "--train.output_dir", str(args.out / name),
           "--train.threads", str(args.threads)]
    if args.steps is not None:
        cmd += ["--train.steps", str(args.steps), "--eval.interval", str(args.steps)]
    if args.eval_limit is not None:
        cmd += ["--eval.limit", str(args.eval_limit)]
    return cmd


def run_one(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Train one entry in a child process; its summary, step times, wall time and load."""
    out = args.out / name
    log = out.parent / f"{name}.log"
    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with log.open("w") as fh:
        done = subprocess.run(command(name, args), cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        return {"run": name, "error": f"exit {done.returncode}; see {log}", "wall_seconds": wall}
    summary = json.loads((out / "summary.json").read_text())
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    steps = [r for r in rows if "seconds/training" in r]
    return {
        "run": name, "before": summary["before"]["accuracy"], "after": summary["after"]["accuracy"],
        "seconds_per_step": statistics.fmean(sum(r[k] for k in STEP_PHASES) for r in steps) if steps else 0.0,
        "wall_seconds": wall, "load_1m": os.getloadavg()[0], "alarms": [a["name"] for a in summary["alarms"]],
    }


def pct(interval: dict[str, float]) -> str:
    return str(Interval(**interval))


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "held-out accuracy (greedy), Wilson 95% CI; clears = after's lower bound above the base model's value",
        f"{'run':<19} {'before':>22} {'after':>22} {'gain':>6} {'clears':>6} {'s/step':>7} {'wall min':>8} "
        f"{'load':>5}  alarms",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"{r['run']:<19} failed: {r['error']}")
            continue
        gain = 100 * (r["after"]["value"] - r["before"]["value"])
        clears = "yes" if r["after"]["low"] > r["before"]["value"] and gain >= 10 else "no"
        lines.append(f"{r['run']:<19} {pct(r['before']):>22} {pct(r['after']):>22} {gain:>+6.1f} {clears:>6} "
                     f"{r['seconds_per_step']:>7.1f} {r['wall_seconds'] / 60:>8.1f} {r['load_1m']:>5.1f}  "
                     f"{', '.join(r['alarms']) or '-'}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    results = []
    for name in args.only:
        print(f"{name}: {' '.join(command(name, args)[2:])}", flush=True)
        results.append(run_one(name, args))
    print(table(results))
    (args.out / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
