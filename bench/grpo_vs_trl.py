"""Seconds per GRPO step: this project's recipe against TRL's GRPOTrainer, in one process.

    python bench/grpo_vs_trl.py                # 4 steps each side, B=4 prompts x G=8, 32 new tokens
    python bench/grpo_vs_trl.py --quick        # 2 steps each side (smoke test)

Both sides train the packaged default model (SmolLM2-135M-Instruct, fp32, CPU) with LoRA on
q/k/v/o, see the same prompts of the built-in `arithmetic` task in the same order, and are rewarded by
the same grader through `rft.rewards.grade_texts`. One step = sample B x G completions, grade them,
one optimizer step on the whole batch (no gradient accumulation, no KL term, one iteration).
The first step of each side is warm-up and left out of the mean; wall time is reported separately.
Target (issue 9, after issue 6's 0.8x): ours at most 0.5x TRL's seconds per step.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
TARGET_RATIO = 0.5


@dataclass
class SideResult:
    """Timings of one trainer: per-step seconds (step 1 included), wall time and completion lengths."""

    name: str
    step_seconds: list[float]
    wall_seconds: float
    completion_lengths: list[float] = field(default_factory=list)
    load: tuple[float, float] = (0.0, 0.0)  # 1-minute load average before and after: other work skews timings
    phases: dict[str, float] = field(default_factory=dict)  # mean seconds per phase after warm-up (ours only)

    @property
    def per_step(self) -> float:
        """Mean over steps after the first (warm-up); the only step when there is one."""
        timed = self.step_seconds[1:] or self.step_seconds
        return statistics.fmean(timed)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps per side (first is warm-up)")
    parser.add_argument("--group-size", type=int, default=8, help="G: completions per prompt")
    parser.add_argument("--prompts", type=int, default=4, help="B: prompts per step")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="completion length cap")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads for both sides")
    parser.add_argument("--lr", type=float, default=2e-4, help="learning rate for both sides")
    parser.add_argument("--seed", type=int, default=0, help="seed for data order, sampling and LoRA init")
    parser.add_argument("--only", choices=("ours", "trl"), help="run one side only (e.g. to profile it)")
    parser.add_argument("--trl-first", action="store_true", help="run TRL before ours (to check order effects)")
    parser.add_argument("--trl-gradient-checkpointing", action="store_true",
                        help="keep TRL's default gradient checkpointing (ours never checkpoints)")
    parser.add_argument("--quick", action="store_true", help="smoke test: 2 steps per side")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps = 2
    if args.steps < 1 or args.group_size < 2 or args.prompts < 1 or args.max_new_tokens < 1:
        parser.error("--steps, --prompts and --max-new-tokens must be >= 1 and --group-size >= 2")
    return args


def run_ours(args: argparse.Namespace, task: Any, out: Path) -> SideResult:
    """`rft.recipes.grpo.train`, timed from the per-step seconds it writes to metrics.jsonl."""
    from rft.config import load_config
    from rft.metrics import read_metrics
    from rft.recipes.grpo import train

    batch = args.prompts * args.group_size
    cfg = load_config(None, [
        "--model.name", "default", "--model.dtype", "float32",
        "--lora.rank", "16", "--lora.alpha", "32", "--lora.dropout", "0",
        "--lora.target_modules", f"[{','.join(LORA_TARGETS)}]",
        "--task.name", task.name,
        "--sampler.temperature", "1.0", "--sampler.top_p", "1.0",
        "--sampler.max_new_tokens", str(args.max_new_tokens),
        "--algorithm.group_size", str(args.group_size), "--algorithm.beta", "0",
        "--algorithm.aggregation", "token_mean", "--algorithm.num_iterations", "1",
        "--train.steps", str(args.steps), "--train.prompts_per_step", str(args.prompts),
        "--train.micro_batch_size", str(batch), "--train.lr", str(args.lr),
        "--train.seed", str(args.seed), "--train.threads", str(args.threads),
        "--train.output_dir", str(out), "--train.checkpoint_interval", str(args.steps + 1),
        # Evaluation is not part of a step: one greedy held-out item before and after training.
        "--eval.limit", "1", "--eval.interval", str(args.steps + 1),
        "--eval.max_new_tokens", str(args.max_new_tokens),
    ])
    start = time.perf_counter()
    train(cfg, resume=False, show_progress=False)
    wall = time.perf_counter() - start
    rows = [r for r in read_metrics(out / "metrics.jsonl") if "seconds/training" in r]
    keys = ("seconds/sampling", "seconds/grading", "seconds/training")
    seconds = [sum(r[k] for k in keys) for r in rows]
    timed = rows[1:] or rows
    phases = {k.split("/")[1]: statistics.fmean(r[k] for r in timed) for k in keys}
    return SideResult("ours", seconds, wall, [r["completion_length"] for r in rows], phases=phases)


def trl_dataset(task: Any, args: argparse.Namespace) -> Any:
    """The prompts ours sees, in its order (`step_items`), with the item fields the grader reads."""
    from datasets import Dataset

    from rft.recipes.grpo import step_items

    rows = []
    for step in range(args.steps):
        for item in step_items(task.train, step, args.prompts, args.seed):
            rows.append({"prompt": task.messages(item), **dict(item)})
    return Dataset.from_list(rows)


def grader_reward(task: Any) -> Any:
    """A TRL reward function that grades with the task's grader exactly as our recipe does."""
    from rft.rewards import grade_texts

    fields = list(task.train[0])

    def reward(prompts: list[Any], completions: list[Any], **columns: Any) -> list[float]:
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        items: list[Mapping[str, Any]] = [{k: columns[k][i] for k in fields} for i in range(len(texts))]
        grades, _ = grade_texts(task.grader, texts, items)
        return [g.score for g in grades]

    reward.__name__ = f"{task.name}_grader"
    return reward


def run_trl(args: argparse.Namespace, task: Any, out: Path) -> SideResult:
    """TRL's GRPOTrainer on the same model, LoRA, prompts, reward and batch shape."""
    import torch
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from rft.models import resolve_model

    begun: list[float] = []
    ended: list[float] = []
    lengths: list[float] = []

    class StepTimer(TrainerCallback):
        """Generation, reward and update all happen between on_step_begin and on_step_end."""

        def on_step_begin(self, *_: Any, **__: Any) -> None:
            begun.append(time.perf_counter())

        def on_step_end(self, *_: Any, **__: Any) -> None:
            ended.append(time.perf_counter())

        def on_log(self, *_: Any, logs: dict[str, float] | None = None, **__: Any) -> None:
            if logs and "completions/mean_length" in logs:
                lengths.append(float(logs["completions/mean_length"]))

    config = GRPOConfig(
        output_dir=str(out), max_steps=args.steps, seed=args.seed,
        per_device_train_batch_size=args.prompts * args.group_size, gradient_accumulation_steps=1,
        num_generations=args.group_size, max_completion_length=args.max_new_tokens,
        temperature=1.0, top_p=1.0, top_k=0, beta=0.0, num_iterations=1,
        loss_type="bnpo",  # token mean over the batch, as our "token_mean"
        scale_rewards="group", learning_rate=args.lr, lr_scheduler_type="constant", weight_decay=0.0,
        max_grad_norm=1.0, use_cpu=True, bf16=False, fp16=False,
        gradient_checkpointing=args.trl_gradient_checkpointing, shuffle_dataset=False,
        logging_steps=1, report_to="none", save_strategy="no", disable_tqdm=True,
        model_init_kwargs={"dtype": torch.float32},
    )
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=list(LORA_TARGETS), task_type="CAUSAL_LM")
    start = time.perf_counter()
    trainer = GRPOTrainer(
        model=resolve_model("default"), reward_funcs=grader_reward(task), args=config,
        train_dataset=trl_dataset(task, args), peft_config=lora, callbacks=[StepTimer()],
    )
    trainer.train()
    wall = time.perf_counter() - start
    return SideResult("TRL", [e - b for b, e in zip(begun, ended)], wall, lengths)


def report(args: argparse.Namespace, results: list[SideResult]) -> str:
    """The settings, one row per side, and the ours/TRL ratio against the target."""
    import torch
    import trl

    lines = [
        f"GRPO step time, SmolLM2-135M-Instruct fp32 CPU, torch {torch.__version__} ({args.threads} threads), "
        f"TRL {trl.__version__}",
        f"B={args.prompts} prompts x G={args.group_size}, max_new_tokens={args.max_new_tokens}, "
        f"LoRA r16 a32 on {','.join(LORA_TARGETS)}, beta=0, temperature=1.0, lr={args.lr}, "
        f"{args.steps} steps (step 1 = warm-up), TRL gradient checkpointing "
        f"{'on' if args.trl_gradient_checkpointing else 'off'}",
        f"{'side':<6} {'s/step':>8} {'steps (s)':<40} {'mean len':>9} {'wall s':>8} {'load 1m':>11}",
    ]
    for r in results:
        steps = " ".join(f"{s:.2f}" for s in r.step_seconds)
        length = statistics.fmean(r.completion_lengths) if r.completion_lengths else float("nan")
        load = f"{r.load[0]:.1f}->{r.load[1]:.1f}"
        lines.append(f"{r.name:<6} {r.per_step:>8.2f} {steps:<40} {length:>9.1f} {r.wall_seconds:>8.1f} {load:>11}")
    for r in results:
        if r.phases:
            lines.append(f"{r.name} per step after warm-up: " + ", ".join(f"{k} {v:.2f} s" for k, v in r.phases.items()))
    by_name = {r.name: r for r in results}
    if len(by_name) == 2:
        ratio = by_name["ours"].per_step / by_name["TRL"].per_step
        verdict = "meets" if ratio <= TARGET_RATIO else "misses"
        lines.append(f"ratio ours/TRL (s/step): {ratio:.3f}  ({verdict} the <= {TARGET_RATIO} target)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    import torch

    from tasks.base import load_task

    torch.set_num_threads(args.threads)
    task = load_task("arithmetic")
    runners = {"ours": run_ours, "trl": run_trl}
    sides = [args.only] if args.only else ["trl", "ours"] if args.trl_first else ["ours", "trl"]
    results = []
    with tempfile.TemporaryDirectory(prefix="grpo-vs-trl-") as tmp:
        for side in sides:
            before = os.getloadavg()[0]
            result = runners[side](args, task, Path(tmp) / side)
            result.load = (before, os.getloadavg()[0])
            results.append(result)
    print(report(args, results))


if __name__ == "__main__":
    main()
