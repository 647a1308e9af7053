"""Critic-free clipped policy gradient, top to bottom: GRPO, RLOO and REINFORCE++.

GRPO (Shao et al. 2024, "DeepSeekMath", sec. 4), RLOO (Ahmadian et al. 2024) and REINFORCE++
(Hu et al. 2025) differ only in their advantage estimator (`rft.advantages`) and in where the KL to
the reference goes, so `algorithm.name` grpo, rloo and reinforce_pp all run this loop. Each step:
take B training prompts, sample G completions per prompt, grade them, turn the rewards (minus
`kl_coef` x the per-token KL, when set) into advantages, and take one optimizer step (or
`num_iterations` steps on the same batch) on the clipped surrogate loss, optionally with a k3 KL
penalty (`beta`) to the reference policy, which is the same model with the LoRA adapter disabled.
Log-probs are scored at the sampling temperature, so the ratio compares the distribution the tokens
were drawn from. The run lifecycle (resume, held-out evaluation with best-keeping, checkpoints,
interrupt, summary) is `rft.run`.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from rft.advantages import ADVANTAGE_ESTIMATORS, kl_penalised_rewards
from rft.config import RunConfig
from rft.distributed import global_counts, rank, step_rollout
from rft.logprobs import grouped_completion_logprobs
from rft.losses import BatchCounts, grpo_loss
from rft.policy import Policy, build_optimizer, optimizer_step, policy_from_config
from rft.rollout import MicroBatch, Rollout, dynamic_rollout, micro_batches, step_items, training_params
from rft.run import load_checked_task, open_run, seed_everything
from rft.sampling import build_sampler, release_memory
from rft.sampling.base import Completion, Sampler

__all__ = ["policy_update", "step_items", "train"]

Scores = list[torch.Tensor] | None  # one (n_micro, T) tensor per micro-batch, or not computed


def frozen_logprobs(policy: Policy, micro: list[MicroBatch], cfg: RunConfig) -> tuple[Scores, Scores]:
    """Log-probs under the sampling policy (old) and the reference (adapter disabled), where needed."""
    algo, model = cfg.algorithm, policy.model

    def score(tensors: tuple[torch.Tensor, ...]) -> torch.Tensor:  # (n_micro, T)
        return grouped_completion_logprobs(model, *tensors, algo.group_size, temperature=cfg.sampler.temperature)

    with torch.no_grad():
        old = [score(t) for t, _, _ in micro] if algo.num_iterations > 1 or algo.kl_coef > 0 else None
        ref = None
        if algo.beta > 0 or algo.kl_coef > 0:
            with model.disable_adapter():
                ref = [score(t) for t, _, _ in micro]
    return old, ref


def estimate_advantages(
    batch: Rollout, micro: list[MicroBatch], old: Scores, ref: Scores, cfg: RunConfig, device: torch.device
) -> tuple[torch.Tensor, dict[str, float]]:
    """Advantages (B*G, T): the configured estimator on the per-token (KL-penalised) rewards."""
    present = torch.cat([tensors[3] for tensors, _, _ in micro]).float()  # (B*G, T): real tokens
    lengths = torch.tensor([len(c.token_ids) for c in batch.completions], device=device)  # (B*G,)
    rewards = kl_penalised_rewards(batch.rewards(device), lengths, present, torch.cat(old) if old else None,
                                   torch.cat(ref) if ref else None, cfg.algorithm.kl_coef)  # (B*G, T)
    return ADVANTAGE_ESTIMATORS[cfg.algorithm.advantage](rewards, present, group_size=cfg.algorithm.group_size)


def sampler_logprobs(groups: list[list[Completion]], micro: list[MicroBatch]) -> Scores:
    """The sampler's log-probs of the sampled tokens, one (n_micro, T) tensor per micro-batch (0 on
    padding), or None when the backend did not return them."""
    flat = [c for group in groups for c in group]
    if any(c.logprobs is None for c in flat):
        return None
    out = []
    for _, mask, rows in micro:
        width = mask.shape[1]
        padded = [c.logprobs + [0.0] * (width - len(c.logprobs)) for c in flat[rows]]
        out.append(torch.tensor(padded, dtype=torch.float32, device=mask.device))  # (n_micro, T)
    return out


def policy_update(
    policy: Policy, optimizer: Any, scheduler: Any, groups: list[list[Completion]], advantages: torch.Tensor,
    cfg: RunConfig, sampler: Sampler, old: Scores = None, ref: Scores = None,
) -> dict[str, float]:
    """`num_iterations` optimizer updates on the B groups of G rollouts, accumulating over micro-batches.

    advantages: (B*G,) or (B*G, T). old, ref: `frozen_logprobs` when already computed (else scored
    here). Every micro-batch's loss is normalised by the whole batch's counts, so the accumulated
    gradient equals the full batch's for every aggregation, whatever `micro_batch_size` is.
    """
    start = time.perf_counter()
    algo, model = cfg.algorithm, policy.model
    micro = micro_batches(groups, cfg, policy.pad_id, policy.device)
    counts = global_counts(BatchCounts.of(torch.cat([mask for _, mask, _ in micro])))  # all ranks' B*G rows
    if old is None and ref is None:
        old, ref = frozen_logprobs(policy, micro, cfg)
    sampled = sampler_logprobs(groups, micro)
    totals: dict[str, float] = {}
    for _ in range(algo.num_iterations):
        for i, (tensors, mask, rows) in enumerate(micro):
            logprobs = grouped_completion_logprobs(model, *tensors, algo.group_size,
                                                   temperature=cfg.sampler.temperature)  # (n_micro, T)
            loss, metrics = grpo_loss(
                logprobs, old[i] if old else logprobs, ref[i] if ref else None, advantages[rows], mask,
                sampler_logprobs=sampled[i] if sampled else None, tis_cap=algo.tis_cap, epsilon=algo.epsilon, epsilon_high=algo.epsilon_high, beta=algo.beta,
                aggregation=algo.aggregation, max_tokens=cfg.sampler.max_new_tokens, counts=counts,
            )
            loss.backward()
            for key, value in metrics.items():
                totals[key] = totals.get(key, 0.0) + value / (len(micro) * algo.num_iterations)
        totals["grad_norm"] = optimizer_step(policy, optimizer, scheduler, cfg.train.max_grad_norm)
        synced = time.perf_counter()
        sampler.sync(policy)
        totals["seconds/sync"] = totals.get("seconds/sync", 0.0) + time.perf_counter() - synced
    # Per-micro-batch losses are shares of the batch loss: their sum is the batch's loss.
    totals["loss"] *= len(micro)
    return totals | {"seconds/training": time.perf_counter() - start}


def train(cfg: RunConfig, *, resume: bool = False, show_progress: bool = True) -> dict[str, Any]:
    """Run GRPO, RLOO or REINFORCE++ as configured; returns the before/after/best held-out results."""
    task = load_checked_task(cfg)
    seed_everything(cfg)
    policy = policy_from_config(cfg)
    optimizer, scheduler = build_optimizer(policy.trainable_parameters(), cfg.train,
                                           cfg.train.steps * cfg.algorithm.num_iterations)
    sampler = build_sampler(cfg.sampler, policy)
    params = training_params(cfg)
    with open_run(cfg, task, policy, {"policy": (optimizer, scheduler)}, resume=resume,
                  show_progress=show_progress) as run:
        run.evaluate_before(sampler)
        for step in run.remaining_steps():
            batch = step_rollout(sampler, task, cfg, params, step)  # this rank's B x G, graded
            if cfg.algorithm.dynamic_sampling:  # only groups with signal, refilled while `sampling_tries` allow
                batch = dynamic_rollout(sampler, task, batch, params, step=step, tries=cfg.algorithm.sampling_tries,
                                        seed=cfg.train.seed, rank=rank())
            release_memory(sampler)  # a vLLM engine sharing the GPU sleeps until the next sync
            micro = micro_batches(batch.groups, cfg, policy.pad_id, policy.device)
            old, ref = frozen_logprobs(policy, micro, cfg)
            advantages, adv_metrics = estimate_advantages(batch, micro, old, ref, cfg, policy.device)  # (B*G, T)
            update = policy_update(policy, optimizer, scheduler, batch.groups, advantages, cfg, sampler, old, ref)
            run.end_step(step, batch.metrics | adv_metrics | update | {"lr": scheduler.get_last_lr()[0]}, sampler)
    return run.finish()
