"""PPO with a learned critic, top to bottom (Schulman et al. 2017; the RLHF form of Ouyang et al. 2022).

Each step: take B training prompts, sample G completions per prompt and grade them; score the
batch once without gradient (log-probs, entropy and values under the sampling policy, log-probs
under the reference = adapter disabled); turn the grader's score on the last token minus
`kl_coef` x the per-token k1 KL into per-token rewards; GAE(gamma, lambda) gives advantages
(whitened over the batch) and the critic's returns; then `epochs` passes over shuffled mini-batches
of whole groups, each an optimizer update on the clipped surrogate + `vf_coef` x the clipped value
loss. With `kl_penalty: loss` the KL is a k3 term in the policy loss instead of the reward.

The critic is a linear value head on the policy's last hidden state, sharing its LoRA backbone: one
forward gives both the log-probs and the values, where a separate critic adapter would double every
forward and backward (the cost that dominates on a CPU), and the head adds H + 1 parameters. Its
gradient reaches the shared LoRA weights scaled by `vf_coef`. During `critic_warmup_steps` only the
head is fitted, on the rollout's hidden states, so the policy does not move until its baseline does.
The run lifecycle (resume, evaluation, checkpoints with the critic and its optimizer) is `rft.run`.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import torch

from rft.advantages import gae, kl_penalised_rewards
from rft.config import ConfigError, RunConfig
from rft.distributed import all_reduce_grads, global_counts, global_whiten, step_rollout, world_size
from rft.logprobs import grouped_forward
from rft.losses import BatchCounts, approx_kl, explained_variance, grpo_loss, value_loss
from rft.policy import Policy, build_optimizer, optimizer_step, policy_from_config
from rft.rollout import MicroBatch, Rollout, micro_batches, training_params
from rft.run import load_checked_task, open_run, seed_everything
from rft.sampling import build_sampler
from rft.sampling.base import Sampler

Batch = dict[str, torch.Tensor]  # name -> (B*G, T) or (B*G, T, H), group-major rows


class ValueHead(torch.nn.Module):
    """V(s_t) = w . h_t + b on the last hidden state (B*G, T, H) -> (B*G, T), in float32.

    Zero-initialised: the first values are 0 and the first value gradients leave the backbone alone.
    """

    def __init__(self, width: int) -> None:
        super().__init__()
        self.score = torch.nn.Linear(width, 1)
        torch.nn.init.zeros_(self.score.weight)
        torch.nn.init.zeros_(self.score.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.score(hidden.float()).squeeze(-1)


def hidden_width(cfg: RunConfig) -> int:
    """The width H of the model's last hidden state, read from its config before any weights load."""
    from transformers import AutoConfig

    from rft.models import resolve_model

    try:
        config = AutoConfig.from_pretrained(resolve_model(cfg.model.name))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"model.name {cfg.model.name!r}: cannot read its config ({exc})") from exc
    width = getattr(config.get_text_config(), "hidden_size", None)
    if not isinstance(width, int):
        raise ConfigError(f"model.name {cfg.model.name!r} ({config.model_type}) has no hidden_size: a language "
                          "model's last hidden state is what algorithm.name ppo puts its value head on")
    return width


def score_rollout(policy: Policy, head: ValueHead, micro: list[MicroBatch], cfg: RunConfig) -> Batch:
    """Rollout-time quantities, without gradient: old log-probs, entropy, hidden states, values, reference."""
    algo, model, G, temp = cfg.algorithm, policy.model, cfg.algorithm.group_size, cfg.sampler.temperature
    parts: dict[str, list[torch.Tensor]] = {"old": [], "entropy": [], "hidden": [], "ref": []}
    with torch.no_grad():
        for tensors, _, _ in micro:
            logprobs, hidden, entropy = grouped_forward(model, *tensors, G, temp, hidden=True, entropy=True)
            parts["old"].append(logprobs)
            parts["entropy"].append(entropy)
            parts["hidden"].append(hidden.float())
            if algo.kl_coef > 0:
                with model.disable_adapter():
                    parts["ref"].append(grouped_forward(model, *tensors, G, temp)[0])
        out = {key: torch.cat(value) for key, value in parts.items() if value}
        out["values"] = head(out["hidden"])  # (B*G, T)
    out["present"] = torch.cat([tensors[3] for tensors, _, _ in micro]).float()  # (B*G, T): real tokens
    return out


def gae_targets(batch: Rollout, scored: Batch, cfg: RunConfig) -> tuple[Batch, dict[str, float]]:
    """Per-token rewards -> GAE advantages (whitened if asked) and returns, with their metrics."""
    algo, present = cfg.algorithm, scored["present"]
    lengths = present.sum(1)  # (B*G,)
    in_reward = algo.kl_coef if algo.kl_penalty == "reward" else 0.0
    rewards = kl_penalised_rewards(batch.rewards(present.device), lengths, present, scored["old"],
                                   scored.get("ref"), in_reward)  # (B*G, T)
    advantages, returns = gae(rewards, scored["values"], present, gamma=algo.gamma, lam=algo.lam)
    if algo.whiten_advantages:
        advantages = global_whiten(advantages, present)  # over every rank's tokens
    count = present.sum().clamp(min=1.0)
    metrics = {
        "returns_mean": float((returns * present).sum() / count),
        "values_mean": float((scored["values"] * present).sum() / count),
        "explained_variance": explained_variance(scored["values"], returns, present),
        "entropy": float((scored["entropy"] * present).sum() / count),
    }
    if "ref" in scored:
        metrics["kl_to_ref"] = float(((scored["old"] - scored["ref"]) * present).sum() / count)
    return {**scored, "advantages": advantages, "returns": returns}, metrics


def micro_losses(
    policy: Policy, head: ValueHead, tensors: tuple[torch.Tensor, ...], mask: torch.Tensor, data: Batch,
    rows: torch.Tensor, counts: BatchCounts, cfg: RunConfig, warmup: bool,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss of one micro-batch (a share of its mini-batch's), and its metrics."""
    algo = cfg.algorithm
    vf_clip = algo.value_clip
    if warmup:  # the head alone, on the rollout's hidden states: the policy stays where it is
        values = head(data["hidden"][rows])
        loss, metrics = value_loss(values, data["values"][rows], data["returns"][rows], mask, clip_range=vf_clip,
                                   counts=counts)
        return loss, metrics
    logprobs, hidden, _ = grouped_forward(policy.model, *tensors, algo.group_size, cfg.sampler.temperature,
                                          hidden=True)
    in_loss = algo.kl_penalty == "loss" and algo.kl_coef > 0
    pg, metrics = grpo_loss(
        logprobs, data["old"][rows], data["ref"][rows] if in_loss else None, data["advantages"][rows], mask,
        epsilon=algo.epsilon, epsilon_high=algo.epsilon_high, beta=algo.kl_coef if in_loss else 0.0,
        aggregation=algo.aggregation, max_tokens=cfg.sampler.max_new_tokens, counts=counts,
    )
    vf, vf_metrics = value_loss(head(hidden), data["values"][rows], data["returns"][rows], mask,
                                clip_range=vf_clip, counts=counts)
    metrics = {"policy_loss": metrics.pop("loss"), **metrics, **vf_metrics,
               "approx_kl": approx_kl(logprobs.detach(), data["old"][rows], mask)}
    return pg + algo.vf_coef * vf, metrics


def ppo_update(
    policy: Policy, head: ValueHead, optimizers: dict[str, tuple[Any, Any]], batch: Rollout, data: Batch,
    cfg: RunConfig, sampler: Sampler, warmup: bool,
) -> dict[str, float]:
    """`epochs` passes over shuffled mini-batches of whole groups; one optimizer update per mini-batch."""
    start = time.perf_counter()
    algo, G = cfg.algorithm, cfg.algorithm.group_size
    length = data["present"].shape[1]
    per_mini = algo.mini_batch_size // G // world_size()  # this rank's groups per mini-batch
    sums: dict[str, float] = {}
    updates = 0
    for _ in range(algo.epochs):
        order = torch.randperm(len(batch.groups)).tolist()  # seeded: a resumed run shuffles the same way
        for lo in range(0, len(order), per_mini):
            chosen = order[lo : lo + per_mini]
            rows = torch.tensor([b * G + g for b in chosen for g in range(G)], device=policy.device)
            micro = micro_batches([batch.groups[b] for b in chosen], cfg, policy.pad_id, policy.device, length)
            counts = global_counts(BatchCounts.of(torch.cat([mask for _, mask, _ in micro])))
            for tensors, mask, part in micro:
                loss, metrics = micro_losses(policy, head, tensors, mask, data, rows[part], counts, cfg, warmup)
                loss.backward()
                for key, value in metrics.items():  # losses are shares of the mini-batch's: summed
                    share = 1.0 if key.endswith("_loss") else 1.0 / len(micro)
                    sums[key] = sums.get(key, 0.0) + value * share
            all_reduce_grads(list(head.parameters()))
            sums["critic_grad_norm"] = sums.get("critic_grad_norm", 0.0) + float(
                torch.nn.utils.clip_grad_norm_(head.parameters(), cfg.train.max_grad_norm))
            critic_opt, critic_sched = optimizers["critic"]
            critic_opt.step()
            critic_sched.step()
            critic_opt.zero_grad(set_to_none=True)
            if not warmup:
                policy_opt, policy_sched = optimizers["policy"]
                sums["grad_norm"] = sums.get("grad_norm", 0.0) + optimizer_step(
                    policy, policy_opt, policy_sched, cfg.train.max_grad_norm)
                sampler.sync(policy)
            updates += 1
    return {key: value / updates for key, value in sums.items()} | {"seconds/training": time.perf_counter() - start}


def train(cfg: RunConfig, *, resume: bool = False, show_progress: bool = True) -> dict[str, Any]:
    """Run PPO as configured; returns the before/after/best held-out results."""
    task = load_checked_task(cfg)
    width = hidden_width(cfg)  # before the weights load: a model without hidden states fails here
    seed_everything(cfg)
    policy = policy_from_config(cfg)
    algo, G = cfg.algorithm, cfg.algorithm.group_size
    head = ValueHead(width).to(policy.device)
    per_step = algo.epochs * -(-cfg.train.prompts_per_step // (algo.mini_batch_size // G))  # updates per step
    optimizers = {
        "policy": build_optimizer(policy.trainable_parameters(), cfg.train,
                                  (cfg.train.steps - algo.critic_warmup_steps) * per_step),
        "critic": build_optimizer(list(head.parameters()), dataclasses.replace(cfg.train, lr=algo.value_lr),
                                  cfg.train.steps * per_step),
    }
    sampler = build_sampler(cfg.sampler, policy)
    params = training_params(cfg)
    with open_run(cfg, task, policy, optimizers, modules={"critic": head}, resume=resume,
                  show_progress=show_progress) as run:
        run.evaluate_before(sampler)
        for step in run.remaining_steps():
            batch = step_rollout(sampler, task, cfg, params, step)  # this rank's B x G, graded
            micro = micro_batches(batch.groups, cfg, policy.pad_id, policy.device)
            data, gae_metrics = gae_targets(batch, score_rollout(policy, head, micro, cfg), cfg)  # (B*G, T) each
            warmup = step <= algo.critic_warmup_steps
            update = ppo_update(policy, head, optimizers, batch, data, cfg, sampler, warmup)
            lr = optimizers["policy"][1].get_last_lr()[0]
            run.end_step(step, batch.metrics | gae_metrics | update | {"lr": lr, "critic_warmup": float(warmup)},
                         sampler)
    return run.finish()
