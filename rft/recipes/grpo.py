"""GRPO with LoRA, top to bottom (Shao et al. 2024, "DeepSeekMath", sec. 4).

Each step: take B training prompts, sample G completions per prompt, grade them, turn rewards into
group-normalised advantages, and take one optimizer step (or `num_iterations` steps on the same
batch) on the clipped surrogate loss, optionally with a k3 KL penalty to the reference policy,
which is the same model with the LoRA adapter disabled. Log-probs are scored at the sampling
temperature, so the ratio compares the distribution the tokens were drawn from. The run lifecycle
(resume, held-out evaluation with best-keeping, checkpoints, interrupt, summary) is `rft.run`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from rft.advantages import ADVANTAGE_ESTIMATORS
from rft.config import RunConfig
from rft.logprobs import grouped_completion_logprobs, pack_groups
from rft.losses import BatchCounts, grpo_loss
from rft.policy import Policy, build_optimizer, optimizer_step, policy_from_config
from rft.rollout import rollout
from rft.run import load_checked_task, open_run, seed_everything
from rft.sampling import build_sampler
from rft.sampling.base import Completion, Sampler, SamplingParams


def step_items(items: Sequence[Mapping[str, Any]], step: int, count: int, seed: int) -> list[Mapping[str, Any]]:
    """The prompts of one step: a fixed-seed shuffle per epoch, so a resumed run sees the same data."""
    out = []
    for k in range(step * count, (step + 1) * count):
        epoch, pos = divmod(k, len(items))
        order = list(range(len(items)))
        random.Random(seed * 100_003 + epoch).shuffle(order)
        out.append(items[order[pos]])
    return out


def micro_batches(
    groups: list[list[Completion]], cfg: RunConfig, pad_id: int, device: torch.device
) -> list[tuple[tuple[torch.Tensor, ...], torch.Tensor, slice]]:
    """Whole groups per micro-batch (micro_batch_size // G of them), so each prompt is run once.

    Each entry: the packed tensors, the loss mask (n_micro, T) and the rows of the batch it covers.
    """
    G = cfg.algorithm.group_size
    length = max(1, max(len(c.token_ids) for g in groups for c in g))
    per_micro = max(1, cfg.train.micro_batch_size // G)
    out = []
    for lo in range(0, len(groups), per_micro):
        chunk = groups[lo : lo + per_micro]
        flat = [c for g in chunk for c in g]
        tensors = pack_groups([g[0].prompt_ids for g in chunk], [c.token_ids for c in flat], G, pad_id, length, device)
        mask = tensors[3].float()  # (n_micro, T)
        if cfg.algorithm.mask_truncated:
            kept = torch.tensor([not c.truncated for c in flat], dtype=mask.dtype, device=device)  # (n_micro,)
            mask = mask * kept.unsqueeze(1)
        out.append((tensors, mask, slice(lo * G, lo * G + len(flat))))
    return out


def policy_update(
    policy: Policy, optimizer: Any, scheduler: Any, groups: list[list[Completion]], advantages: torch.Tensor,
    cfg: RunConfig, sampler: Sampler,
) -> dict[str, float]:
    """`num_iterations` optimizer updates on the B groups of G rollouts, accumulating over micro-batches.

    Every micro-batch's loss is normalised by the whole batch's counts, so the accumulated gradient
    equals the full batch's for every aggregation, whatever `micro_batch_size` is.
    """
    start = time.perf_counter()
    algo, model, T = cfg.algorithm, policy.model, cfg.sampler.temperature
    micro = micro_batches(groups, cfg, policy.pad_id, policy.device)
    counts = BatchCounts.of(torch.cat([mask for _, mask, _ in micro]))  # over all B*G rows

    def score(tensors: tuple[torch.Tensor, ...]) -> torch.Tensor:  # (n_micro, T)
        return grouped_completion_logprobs(model, *tensors, algo.group_size, temperature=T)

    with torch.no_grad():
        old = [score(t) for t, _, _ in micro] if algo.num_iterations > 1 else None
        ref = None
        if algo.beta > 0:
            with model.disable_adapter():
                ref = [score(t) for t, _, _ in micro]
    totals: dict[str, float] = {}
    for _ in range(algo.num_iterations):
        for i, (tensors, mask, rows) in enumerate(micro):
            logprobs = score(tensors)
            loss, metrics = grpo_loss(
                logprobs, old[i] if old else logprobs, ref[i] if ref else None, advantages[rows], mask,
                epsilon=algo.epsilon, epsilon_high=algo.epsilon_high, beta=algo.beta,
                aggregation=algo.aggregation, max_tokens=cfg.sampler.max_new_tokens, counts=counts,
            )
            loss.backward()
            for key, value in metrics.items():
                totals[key] = totals.get(key, 0.0) + value / (len(micro) * algo.num_iterations)
        totals["grad_norm"] = optimizer_step(policy, optimizer, scheduler, cfg.train.max_grad_norm)
        sampler.sync(policy)
    # Per-micro-batch losses are shares of the batch loss: their sum is the batch's loss.
    totals["loss"] *= len(micro)
    return totals | {"seconds/training": time.perf_counter() - start}


def train(cfg: RunConfig, *, resume: bool = False, show_progress: bool = True) -> dict[str, Any]:
    """Run GRPO as configured; returns the before/after/best held-out results."""
    task = load_checked_task(cfg)
    seed_everything(cfg)
    policy = policy_from_config(cfg)
    optimizer, scheduler = build_optimizer(policy.trainable_parameters(), cfg.train,
                                           cfg.train.steps * cfg.algorithm.num_iterations)
    sampler = build_sampler(cfg.sampler, policy)
    G = cfg.algorithm.group_size
    params = SamplingParams(n=G, temperature=cfg.sampler.temperature, top_p=cfg.sampler.top_p,
                            max_new_tokens=cfg.sampler.max_new_tokens)
    with open_run(cfg, task, policy, {"policy": (optimizer, scheduler)}, resume=resume,
                  show_progress=show_progress) as run:
        run.evaluate_before(sampler)
        for step in run.remaining_steps():
            items = step_items(task.train, step - 1, cfg.train.prompts_per_step, cfg.train.seed)
            batch = rollout(sampler, task, items, params)  # B x G, graded
            advantages, adv_metrics = ADVANTAGE_ESTIMATORS[cfg.algorithm.advantage](
                batch.rewards(policy.device), group_size=G)  # (B*G,)
            update = policy_update(policy, optimizer, scheduler, batch.groups, advantages, cfg, sampler)
            run.end_step(step, batch.metrics | adv_metrics | update | {"lr": scheduler.get_last_lr()[0]}, sampler)
    return run.finish()
