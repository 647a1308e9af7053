"""SCoRe, top to bottom: train the model to correct its own first answer (two attempts per prompt).

Kumar et al. 2024, "Training Language Models to Self-Correct via Reinforcement Learning" (arXiv
2409.12917), sec. 5. Each step takes B training prompts, samples G first attempts per prompt, then
one second attempt after each (the conversation continues with the first attempt and the
`algorithm.instruction` turn; `rft.self_correction`), grades both, and takes one optimizer step on
the sum of the two attempts' losses (`rft.losses.score_loss`):

- Stage I (the first `stage1_steps` steps, eq. 3): maximise the reward of attempt 2 while a strong
  k3 KL (beta2) keeps attempt 1 at the reference policy (the base model: adapter disabled), plus
  beta1 x KL on attempt 2. Attempt 1 barely moves, so attempt 2 must learn to improve on answers
  like the base model's instead of the two attempts collapsing onto one.
- Stage II (eq. 4): maximise the reward of both attempts, with attempt 2's reward shaped to
  r2 + alpha (r2 - r1) (`rft.advantages.score_rewards`), beta1 x KL on both.

Estimator: the paper uses REINFORCE; here each attempt's advantage is its training reward minus the
mean of the G rewards of the same prompt's attempts (a group baseline, Dr. GRPO's mean-centred
advantage). The baseline cuts REINFORCE's variance at a cost of a (G - 1)/G scale and no bias worth
the name, with no critic. The rewards are not divided by the group's std (GRPO): that would cancel
the shaping in every group whose first attempts scored alike, and it is exactly there (all wrong, or
all right) that alpha must make fixing pay more than repeating. One update per batch, so the
surrogate's ratio is 1 and the gradient is REINFORCE's. The run lifecycle (resume across the stage
boundary included, since the stage is a function of the step) is `rft.run`; held-out evaluation is
two-turn (`evaluate_two_turns`) and `best/` keeps the best Accuracy@t2.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import torch

from graders.base import pass_threshold
from rft.advantages import group_advantages, score_rewards
from rft.config import RunConfig
from rft.logprobs import grouped_completion_logprobs
from rft.losses import BatchCounts, score_loss
from rft.policy import Policy, build_optimizer, optimizer_step, policy_from_config
from rft.rollout import MicroBatch, micro_batches, step_items, training_params
from rft.run import load_checked_task, open_run, seed_everything
from rft.sampling import build_sampler
from rft.sampling.base import Completion, Sampler
from rft.self_correction import TwoAttempts, evaluate_two_turns, two_attempt_rollout

__all__ = ["attempt_advantages", "score_update", "train"]


def attempt_advantages(
    batch: TwoAttempts, stage: int, cfg: RunConfig, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    """Advantages (B*G,) of attempt 1 and of attempt 2: shaped rewards minus their group's mean."""
    algo = cfg.algorithm
    first, second = score_rewards(batch.first.rewards(device), batch.second.rewards(device), stage=stage,
                                  alpha=algo.alpha)  # (B*G,) each
    adv1, _ = group_advantages(first, group_size=algo.group_size, scale_by_std=False)
    adv2, metrics = group_advantages(second, group_size=algo.group_size, scale_by_std=False)
    return adv1, adv2, {"shaped_reward_t2": float(second.mean().item()),
                        "zero_signal_groups_t2": metrics["zero_signal_groups"]}


def _attempt_loss(
    policy: Policy, micro: list[MicroBatch], group_size: int, advantages: torch.Tensor, attempt: int, stage: int,
    cfg: RunConfig,
) -> dict[str, float]:
    """Backward the loss of one attempt's batch, micro-batch by micro-batch; returns its averaged metrics."""
    algo, model, temperature = cfg.algorithm, policy.model, cfg.sampler.temperature
    counts = BatchCounts.of(torch.cat([mask for _, mask, _ in micro]))  # over the attempt's B*G rows
    ref = None
    if (algo.beta2 if attempt == 1 and stage == 1 else algo.beta1) > 0:
        with torch.no_grad(), model.disable_adapter():
            ref = [grouped_completion_logprobs(model, *t, group_size, temperature=temperature) for t, _, _ in micro]
    totals: dict[str, float] = {}
    for i, (tensors, mask, rows) in enumerate(micro):
        logprobs = grouped_completion_logprobs(model, *tensors, group_size, temperature=temperature)  # (n, T)
        loss, metrics = score_loss(logprobs, ref[i] if ref else None, advantages[rows], mask, attempt=attempt,
                                   stage=stage, beta1=algo.beta1, beta2=algo.beta2, aggregation=algo.aggregation,
                                   max_tokens=cfg.sampler.max_new_tokens, counts=counts)
        loss.backward()
        for key in ("loss", "kl"):
            if key in metrics:  # the loss adds up over micro-batches; the KL is averaged
                totals[key] = totals.get(key, 0.0) + metrics[key] / (1 if key == "loss" else len(micro))
    return {f"{key}_t{attempt}": value for key, value in totals.items()}


def score_update(
    policy: Policy, optimizer: Any, scheduler: Any, groups: tuple[list[list[Completion]], list[list[Completion]]],
    advantages: tuple[torch.Tensor, torch.Tensor], stage: int, cfg: RunConfig, sampler: Sampler,
) -> dict[str, float]:
    """One optimizer step on attempt 1's loss plus attempt 2's (gradients accumulated over micro-batches).

    groups: attempt 1 as B groups of G, attempt 2 as B*G groups of one (each has its own conversation).
    advantages: (B*G,) each, row-aligned with the flattened groups.
    """
    start = time.perf_counter()
    metrics: dict[str, float] = {}
    for attempt, (attempt_groups, adv) in enumerate(zip(groups, advantages), start=1):
        size = cfg.algorithm.group_size if attempt == 1 else 1
        micro = micro_batches(attempt_groups, cfg, policy.pad_id, policy.device, group_size=size)
        metrics |= _attempt_loss(policy, micro, size, adv, attempt, stage, cfg)
    metrics["loss"] = metrics["loss_t1"] + metrics["loss_t2"]
    metrics["grad_norm"] = optimizer_step(policy, optimizer, scheduler, cfg.train.max_grad_norm)
    sampler.sync(policy)
    return metrics | {"seconds/training": time.perf_counter() - start}


def train(cfg: RunConfig, *, resume: bool = False, show_progress: bool = True) -> dict[str, Any]:
    """Run SCoRe's stage I then stage II as configured; returns the before/after/best two-turn results."""
    task = load_checked_task(cfg)
    seed_everything(cfg)
    algo = cfg.algorithm
    policy = policy_from_config(cfg)
    optimizer, scheduler = build_optimizer(policy.trainable_parameters(), cfg.train, cfg.train.steps)
    sampler = build_sampler(cfg.sampler, policy)
    params, threshold = training_params(cfg), pass_threshold(task.grader)
    evaluator = functools.partial(evaluate_two_turns, instruction=algo.instruction)
    with open_run(cfg, task, policy, {"policy": (optimizer, scheduler)}, resume=resume,
                  show_progress=show_progress, evaluator=evaluator) as run:
        run.evaluate_before(sampler)
        for step in run.remaining_steps():
            stage = algo.stage(step)
            items = step_items(task.train, step - 1, cfg.train.prompts_per_step, cfg.train.seed)
            batch = two_attempt_rollout(sampler, task, items, params, algo.instruction)  # B x G, then B*G x 1
            adv1, adv2, adv_metrics = attempt_advantages(batch, stage, cfg, policy.device)
            update = score_update(policy, optimizer, scheduler, (batch.first.groups, batch.second.groups),
                                  (adv1, adv2), stage, cfg, sampler)
            metrics = batch.metrics(threshold) | adv_metrics | update
            metrics |= {"stage": float(stage), "reward_mean": batch.second.metrics["reward_mean"],
                        "accuracy": batch.second.metrics["accuracy"], "lr": scheduler.get_last_lr()[0]}
            run.end_step(step, metrics, sampler)
    return run.finish()
