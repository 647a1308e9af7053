"""Scale-out, side by side: seconds per GRPO step on 1 rank vs N ranks, and code grading on the local
process pool vs a Ray cluster.

    python bench/scale_out.py                       # both parts: 3 steps of the default job, 96 code samples
    python bench/scale_out.py --only grading        # grading throughput only (no model)
    python bench/scale_out.py --steps 2 --samples 32 --threads 1
    python bench/scale_out.py --only sharding       # N ranks data-parallel vs N ranks FSDP-sharded

Training: `rft train examples/arithmetic.yaml --train.steps 3` (B=4 prompts x G=8, default model) once
as one process and once as `--nproc N` (torchrun, gloo, each rank 4/N prompts), each rank with
`--train.threads` torch threads; s/step is the mean of `seconds/step` in metrics.jsonl over steps 2..S
(step 1 warms up), which excludes model loading and evaluation. Grading: the code grader on `--samples`
distinct programs (half wrong; one in sixteen loops forever and is killed by the sandbox at 2 s),
graded in rounds by `graders.runner.GradingPool` in `process` mode (this machine's cores) and with
`ray_address` set (a local `ray.init(num_cpus=CORES)` cluster); after an untimed warm-up round each
engine grades the same fresh programs, alternating, and the best round counts. The 1-minute load
average is printed with every number: on a shared machine other jobs change both several-fold.
Sharding: the same job on N ranks with `train.sharding` none and fsdp, each rank started through this
script (`--rank`), which records its peak resident memory (`getrusage` max RSS, loading included) and
the median of its resident memory sampled once a second (what it holds for most of the run).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def load() -> str:
    return f"load {os.getloadavg()[0]:.1f}"


PHASES = ("seconds/step", "seconds/sampling", "seconds/grading", "seconds/training")


def seconds_per_step(nproc: int, steps: int, threads: int, out: Path, sharding: str | None = None
                     ) -> dict[str, float]:
    """Mean seconds per step, and per phase (the slowest rank's), of steps 2..steps of the default job;
    with `sharding`, on `nproc` ranks started through this script's `--rank`, with that `train.sharding`."""
    job = ["train", str(ROOT / "examples" / "arithmetic.yaml"), "--quiet", "--train.steps", str(steps),
           "--train.threads", str(threads), "--train.output_dir", str(out), "--eval.limit", "4",
           "--eval.batch_size", "4"]
    args = [sys.executable, "-m", "rft", *job, f"--nproc={nproc}"]
    if sharding is not None:
        args = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
                __file__, "--rank", *job, "--train.sharding", sharding]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads)}
    subprocess.run(args, check=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    timed = [r for r in rows if "seconds/step" in r and r["step"] > 1]
    return {key: sum(r[key] for r in timed) / len(timed) for key in PHASES}


def rank_main(argv: list[str]) -> None:
    """One rank of `rft` (`argv` its arguments) that writes its memory to OUTPUT_DIR/memory-RANK.json at exit:
    the peak resident size and the median of one sample a second (what it holds for most of the run)."""
    import atexit
    import resource
    import statistics
    import threading

    from rft.cli import app

    out = Path(argv[argv.index("--train.output_dir") + 1])
    samples: list[int] = []

    def sample() -> None:
        while True:
            samples.append(int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE"))
            time.sleep(1.0)

    def record() -> None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
        (out / f"memory-{os.environ['RANK']}.json").write_text(json.dumps(
            {"peak_gb": peak / 2**30, "median_gb": statistics.median(samples) / 2**30}))

    threading.Thread(target=sample, daemon=True).start()
    atexit.register(record)
    app(argv, standalone_mode=False)


def sharding_part(args: argparse.Namespace) -> None:
    """s/step and memory per rank of `--nproc` ranks, data-parallel and sharded."""
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("none", "fsdp"):
            print(f"{args.nproc} ranks, train.sharding {mode} ({load()})", flush=True)
            out = Path(tmp) / mode
            times = seconds_per_step(args.nproc, args.steps, args.threads, out, sharding=mode)
            memory = [json.loads((out / f"memory-{r}.json").read_text()) for r in range(args.nproc)]
            phases = "  ".join(f"{key.split('/')[1]} {times[key]:.1f}" for key in PHASES)
            ranks = "  ".join(f"rank {r}: peak {m['peak_gb']:.2f} GB, median {m['median_gb']:.2f} GB"
                              for r, m in enumerate(memory))
            print(f"  s/step (steps 2..{args.steps}): {phases}\n  {ranks}  ({load()})", flush=True)


def programs(count: int, salt: int) -> list[str]:
    """Distinct programs (the grader caches by source): correct, wrong, and one in sixteen never ends."""
    out = []
    for i in range(count):
        body = "while True:\n        pass" if i % 16 == 15 else ("return a + b" if i % 2 else "return a - b")
        out.append(f"```python\n# sample {salt}-{i}\ndef add(a, b):\n    {body}\n```")
    return out


def grading(samples: int, rounds: int, cores: int) -> dict[str, float]:
    """Samples per second (best round) of the process pool and of Ray on the same code-grading batches."""
    import ray

    from graders.code import CodeGrader
    from graders.runner import GradingPool
    from graders.sandbox import Limits

    item = {"entry_point": "add", "tests": [{"args": [1, 2], "expected": 3}, {"args": [5, 7], "expected": 12}]}
    grader = CodeGrader(limits=Limits(wall_s=2.0, memory_mb=256))
    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
    pools = {"process pool": GradingPool(workers=cores), "ray": GradingPool(workers=cores, ray_address="")}
    mode = {"process pool": "process", "ray": "auto"}  # auto is ray on a pool with ray_address
    correct = sum(1 for i in range(samples) if i % 2 and i % 16 != 15)
    best = {name: 0.0 for name in pools}
    try:
        for name, pool in pools.items():  # warm-up: worker boot, actor start, grader load
            pool.run(grader, programs(2 * cores, -1), [item] * 2 * cores, time_limit=30, mode=mode[name])
        for r in range(rounds):
            for name, pool in pools.items():
                batch = programs(samples, r * 10 + (name == "ray"))
                start = time.perf_counter()
                result = pool.run(grader, batch, [item] * samples, time_limit=30, mode=mode[name])
                rate = samples / (time.perf_counter() - start)
                assert result.mode in ("process", "ray") and result.fallback is None, result.fallback
                assert result.scores.count(1.0) == correct, result.scores
                print(f"  round {r + 1} {name:>12}: {rate:6.1f} samples/s  ({load()})", flush=True)
                best[name] = max(best[name], rate)
    finally:
        for pool in pools.values():
            pool.close()
        ray.shutdown()
    return best


def main() -> None:
    if sys.argv[1:2] == ["--rank"]:  # one rank of the sharding part, started by torchrun
        rank_main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("training", "grading", "sharding"))
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    parser.add_argument("--samples", type=int, default=96)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    if args.only == "sharding":
        sharding_part(args)
        return
    if args.only != "grading":
        times = {}
        with tempfile.TemporaryDirectory() as tmp:
            for n in (1, args.nproc):
                print(f"training on {n} rank(s) ({load()})", flush=True)
                times[n] = seconds_per_step(n, args.steps, args.threads, Path(tmp) / f"n{n}")
        print(f"\nseconds per step, steps 2..{args.steps}, B=4 x G=8, {args.threads} thread(s) per rank ({load()})")
        for key in PHASES:
            one, many = times[1][key], times[args.nproc][key]
            print(f"  {key:<18} 1 rank: {one:6.1f}   {args.nproc} ranks: {many:6.1f}   speed-up {one / many:.2f}x")
    if args.only != "training":
        print(f"\ncode grading, {args.samples} samples per round, {args.cores} cores ({load()})")
        best = grading(args.samples, args.rounds, args.cores)
        print(f"  process pool: {best['process pool']:.1f} samples/s   ray: {best['ray']:.1f} samples/s   "
              f"ray/pool {best['ray'] / best['process pool']:.2f}")


if __name__ == "__main__":
    main()
