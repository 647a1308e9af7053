"""Online DPO, top to bottom (Guo et al. 2024, "Direct Language Model Alignment from Online AI Feedback").

Each step samples G >= 2 completions for each of B training prompts from the current policy, grades
them with the task's grader or with `algorithm.judge` (a `score_model` judge or a constitution: the
paper's AI feedback; held-out accuracy stays the task grader's), pairs each prompt's
best completion against its worst (`rft.pairing.best_vs_worst`: ties and ungraded groups are dropped and
counted), and takes one DPO step on those fresh pairs with `rft.recipes.dpo.dpo_update`. The pairs are
on-policy, so unlike offline DPO the preferences follow the policy as it moves. The reference is the
model with its adapter disabled, scored once per pair; the sampled token ids are scored as they are.
A step whose groups all tie takes no optimizer step (its `pairs/kept` is 0).
"""

from __future__ import annotations

from typing import Any

from graders.base import GraderInputError
from rft import distributed
from rft.config import ConfigError, RunConfig
from rft.pairing import best_vs_worst, load_ranker, ranked_by
from rft.policy import build_optimizer, policy_from_config
from rft.recipes.dpo import PairTokens, dpo_update, pairs_per_pass, reference_logprobs
from rft.rollout import Rollout, training_params
from rft.run import load_checked_task, open_run, seed_everything
from rft.sampling import build_sampler, release_memory


def sampled_pairs(batch: Rollout, cfg: RunConfig) -> tuple[PairTokens, dict[str, float]]:
    """The best-vs-worst pair of each group of `batch`, as the sampled token ids, and the pairing counts."""
    choices, counts = best_vs_worst(batch, cfg.algorithm.min_margin, skip_truncated=cfg.algorithm.mask_truncated)
    groups = batch.groups
    tokens = PairTokens([groups[c.group][c.chosen].prompt_ids for c in choices],
                        [groups[c.group][c.chosen].token_ids for c in choices],
                        [groups[c.group][c.rejected].token_ids for c in choices])
    return tokens, counts


def train(cfg: RunConfig, *, resume: bool = False, show_progress: bool = True) -> dict[str, Any]:
    """Run online DPO on `task.name` as configured; returns the before/after/best held-out results."""
    if distributed.world_size() > 1:
        raise ConfigError("online DPO runs in one process: its loss is normalised by this process's pairs")
    task = load_checked_task(cfg)
    try:
        ranking = ranked_by(task, load_ranker(cfg.algorithm.judge))  # the task itself unless a judge ranks
    except GraderInputError as exc:
        raise ConfigError(f"algorithm.judge: {exc}") from exc
    seed_everything(cfg)
    policy = policy_from_config(cfg)
    optimizer, scheduler = build_optimizer(policy.trainable_parameters(), cfg.train, cfg.train.steps)
    sampler = build_sampler(cfg.sampler, policy)
    params = training_params(cfg)
    with open_run(cfg, task, policy, {"policy": (optimizer, scheduler)}, resume=resume,
                  show_progress=show_progress) as run:
        run.evaluate_before(sampler)
        for step in run.remaining_steps():
            batch = distributed.step_rollout(sampler, ranking, cfg, params, step)  # B x G, graded
            release_memory(sampler)
            tokens, counts = sampled_pairs(batch, cfg)
            update: dict[str, float] = {}
            if len(tokens):
                ref = reference_logprobs(policy, tokens, pairs_per_pass(cfg))  # (n, 2), once per pair
                update = dpo_update(policy, optimizer, scheduler, tokens, ref, cfg, sampler)
            run.end_step(step, batch.metrics | counts | update | {"lr": scheduler.get_last_lr()[0]}, sampler)
    return run.finish()
