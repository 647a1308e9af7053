"""Bradley-Terry reward model on preference pairs, top to bottom (Ouyang et al. 2022, sec. 3.5, eq. 1).

Pairs come from `task.pairs` (`tasks.preferences.load_pairs`), split once with a fixed seed into
train and held-out (`task.pairs_test`, or `task.pairs_held_out` of them, as for DPO). Each step takes B = `train.prompts_per_step` train pairs
(a seeded shuffle per epoch, so a resumed run sees the same ones), scores chosen and rejected replies
in micro-batches of `train.micro_batch_size` pairs, and takes one optimizer step on
`bradley_terry_loss` over the LoRA weights and the scalar head together. Held-out evaluation is
pairwise accuracy (share of pairs with r_chosen > r_rejected, a tie counting half) with a 95% Wilson
interval; its mean
score is the model's mean probability of the right order, sigmoid(r_chosen - r_rejected), and
`eval/margin` the mean held-out margin r_chosen - r_rejected with a 95% interval.

The run lifecycle (metrics.jsonl, evaluation and `best/`, checkpoints, resume, summary.json) is
`rft.run`; the reward model stands in for the policy, so `best/adapter` and the final
`<output_dir>/reward_model` are loadable reward-model directories (`{"type": "reward_model", "path": ...}`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from rft.config import ConfigError, EvalConfig, RunConfig
from rft.distributed import world_size
from rft.eval import Z95, EvalResult, Interval, mean_interval, wilson
from rft.pairing import load_pair_splits
from rft.policy import Policy, build_optimizer, optimizer_step
from rft.reward_model import RewardModel, bradley_terry_loss, build_reward_model, ordered
from rft.rollout import step_items
from rft.run import Evaluator, load_checked_task, open_run, seed_everything
from tasks.base import Task
from tasks.preferences import Pair


def pair_rewards(model: RewardModel, pairs: Sequence[Pair]) -> tuple[torch.Tensor, torch.Tensor]:
    """Rewards (N,) of the chosen and (N,) of the rejected replies, from one forward over the 2N sequences."""
    sequences = [model.encode(p.messages, p.chosen) for p in pairs] + [model.encode(p.messages, p.rejected) for p in pairs]
    rewards = model(sequences)  # (2N,): chosen first
    return rewards[: len(pairs)], rewards[len(pairs) :]


def update(policy: Policy, optimizer: Any, scheduler: Any, pairs: Sequence[Pair], cfg: RunConfig) -> dict[str, float]:
    """One optimizer step on the mean loss over `pairs`, accumulated over micro-batches of pairs."""
    start = time.perf_counter()
    size = cfg.train.micro_batch_size
    sums: dict[str, float] = {}
    for lo in range(0, len(pairs), size):
        chunk = pairs[lo : lo + size]
        loss, metrics = bradley_terry_loss(*pair_rewards(policy.model, chunk))
        share = len(chunk) / len(pairs)  # the micro-batch's part of the step's mean
        (loss * share).backward()
        for key, value in metrics.items():
            sums[key] = sums.get(key, 0.0) + value * share
    grad_norm = optimizer_step(policy, optimizer, scheduler, cfg.train.max_grad_norm)
    metrics = {("pairwise_accuracy" if k == "accuracy" else k): v for k, v in sums.items()}
    return metrics | {"grad_norm": grad_norm, "pairs": float(len(pairs)), "seconds/training": time.perf_counter() - start}


def margin_interval(margins: torch.Tensor) -> Interval:
    """Mean held-out margin r_chosen - r_rejected (N,) with a normal 95% interval (unbounded, unlike a score's)."""
    mean = float(margins.mean())
    half = Z95 * float(margins.std()) / math.sqrt(len(margins)) if len(margins) > 1 else 0.0
    return Interval(mean, mean - half, mean + half)


def pairwise_evaluator(model: RewardModel, pairs: Sequence[Pair], batch_size: int) -> Evaluator:
    """Held-out pairwise accuracy (Wilson 95%) as the run's evaluation; each pair's rewards go to the step's JSONL."""

    def evaluate(sampler: Any, task: Task, cfg: EvalConfig, *, out_path: Path | None = None, seed: int = 0
                 ) -> EvalResult:
        start = time.perf_counter()
        chosen_pairs = list(pairs[: cfg.limit] if cfg.limit else pairs)
        model.eval()
        chosen = model.score([p.messages for p in chosen_pairs], [p.chosen for p in chosen_pairs], batch_size)
        rejected = model.score([p.messages for p in chosen_pairs], [p.rejected for p in chosen_pairs], batch_size)
        model.train()
        margins = chosen - rejected  # (N,)
        result = EvalResult(len(margins), 1, mean_interval(torch.sigmoid(margins).tolist()),
                            wilson(float(ordered(margins).sum()), len(margins)), None,
                            extra={"margin": margin_interval(margins)})
        result.seconds = time.perf_counter() - start
        if out_path is not None:
            out_path.parent.mkdir(parents=True, exist_ok=True)
            with out_path.open("w") as fh:
                for pair, c, r in zip(chosen_pairs, chosen.tolist(), rejected.tolist()):
                    fh.write(json.dumps({"where": pair.where, "prompt": pair.messages[-1]["content"],
                                         "chosen": pair.chosen, "rejected": pair.rejected, "reward_chosen": c,
                                         "reward_rejected": r, "ordered": 1.0 if c > r else 0.5 if c == r else 0.0}
                                        ) + "\n")
        return result

    return evaluate


def train(cfg: RunConfig, *, resume: bool = False, show_progress: bool = True) -> dict[str, Any]:
    """Train the reward model as configured; returns the before/after/best held-out pairwise accuracy."""
    if world_size() > 1:
        raise ConfigError("algorithm.name reward_model trains on one process (run it without --nproc)")
    train_pairs, test_pairs = load_pair_splits(cfg)
    task = load_checked_task(cfg)
    seed_everything(cfg)
    model = build_reward_model(cfg)
    policy = Policy(model, model.tokenizer)  # the run checkpoints its trainable weights: LoRA and head
    optimizer, scheduler = build_optimizer(policy.trainable_parameters(), cfg.train, cfg.train.steps)
    evaluator = pairwise_evaluator(model, test_pairs, cfg.eval.batch_size)
    with open_run(cfg, task, policy, {"policy": (optimizer, scheduler)}, resume=resume, show_progress=show_progress,
                  evaluator=evaluator) as run:
        run.evaluate_before(None)  # no sampler: the evaluation scores fixed pairs
        for step in run.remaining_steps():
            pairs = step_items(train_pairs, step - 1, cfg.train.prompts_per_step, cfg.train.seed)
            metrics = update(policy, optimizer, scheduler, pairs, cfg)
            run.end_step(step, metrics | {"lr": scheduler.get_last_lr()[0]}, None)
    if run.logger is not None:
        model.save_pretrained(Path(cfg.train.output_dir) / "reward_model")
    return run.finish()
