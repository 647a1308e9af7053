"""DPO on a file of preference pairs, top to bottom (Rafailov et al. 2023, "Direct Preference Optimization").

Each step takes B pairs (`train.prompts_per_step`) of `task.pairs`, scores the chosen and the rejected
reply under the policy, and takes one optimizer step on the configured preference loss
(`rft.preference_losses`: sigmoid eq. 7, conservative, IPO). The reference is the same model with the
LoRA adapter disabled; it never changes, so its log-probs are computed once per pair before training.
A pair is a group of two completions of one prompt, so the prompt runs once per pair
(`rft.logprobs.pack_groups`, `grouped_completion_logprobs(..., group_size=2)`). Log-probs are of the raw
model (temperature 1), the distribution DPO's implicit reward is defined on.

Held-out evaluation measures pairwise accuracy on held-out pairs (`task.pairs_test`, or `task.pairs_held_out`
of `task.pairs`), with the implicit reward margin and loss; when `task.name` is set (the pairs came from a
task, e.g. `rft prefs`) it also measures that task's held-out accuracy, by which `best/` is kept.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rft import distributed
from rft.config import ConfigError, RunConfig
from rft.eval import Z95, EvalResult, Interval, evaluate, wilson
from rft.logprobs import grouped_completion_logprobs, pack_groups
from rft.pairing import load_pair_splits
from rft.policy import Policy, build_optimizer, optimizer_step, policy_from_config
from rft.preference_losses import pair_credit, preference_loss
from rft.rollout import step_items
from rft.run import Evaluator, load_checked_task, open_run, seed_everything
from rft.sampling import build_sampler
from rft.sampling.base import Sampler
from rft.sampling.tokens import encode_prompts, eos_token_ids
from tasks.base import Task
from tasks.preferences import Pair


@dataclass
class PairTokens:
    """N pairs as token ids: prompts[i] answered by chosen[i] (preferred) and rejected[i]."""

    prompts: list[list[int]]
    chosen: list[list[int]]
    rejected: list[list[int]]

    def __len__(self) -> int:
        return len(self.prompts)


def reply_end_id(policy: Policy) -> int:
    """The id that ends an assistant turn, appended to every reply (sampled replies end with it too)."""
    ids = eos_token_ids(policy.model, policy.tokenizer)
    return policy.tokenizer.eos_token_id if policy.tokenizer.eos_token_id in ids else min(ids)


def encode_pairs(policy: Policy, pairs: Sequence[Pair]) -> PairTokens:
    """Prompts through the chat template; replies as the tokens the model would emit, ending the turn."""
    tokenizer, end = policy.tokenizer, reply_end_id(policy)

    def reply(text: str) -> list[int]:
        return list(tokenizer(text, add_special_tokens=False)["input_ids"]) + [end]

    return PairTokens(encode_prompts(tokenizer, [p.messages for p in pairs]), [reply(p.chosen) for p in pairs],
                      [reply(p.rejected) for p in pairs])


def sequence_logprobs(model: Any, tokens: PairTokens, rows: Sequence[int], pad_id: int, device: torch.device
                      ) -> torch.Tensor:
    """(n, 2) summed log-probs of the chosen (column 0) and rejected (column 1) reply of pairs `rows`."""
    replies = [reply for i in rows for reply in (tokens.chosen[i], tokens.rejected[i])]
    packed = pack_groups([tokens.prompts[i] for i in rows], replies, 2, pad_id, device=device)
    logprobs = grouped_completion_logprobs(model, *packed, group_size=2)  # (2n, T)
    return (logprobs * packed[3]).sum(-1).view(-1, 2)  # padding masked out; rows pair up (chosen, rejected)


def chunks(n: int, size: int) -> list[list[int]]:
    return [list(range(lo, min(n, lo + size))) for lo in range(0, n, size)]


def reference_logprobs(policy: Policy, tokens: PairTokens, pairs_per_pass: int) -> torch.Tensor:
    """(N, 2) log-probs of every pair under the reference: the model with its adapter disabled."""
    if len(tokens) == 0:
        return torch.zeros(0, 2, device=policy.device)
    with torch.no_grad(), policy.model.disable_adapter():
        return torch.cat([sequence_logprobs(policy.model, tokens, rows, policy.pad_id, policy.device)
                          for rows in chunks(len(tokens), pairs_per_pass)])


def pairs_per_pass(cfg: RunConfig) -> int:
    """Pairs per forward/backward: `train.micro_batch_size` completions, two per pair."""
    return max(1, cfg.train.micro_batch_size // 2)


def dpo_update(policy: Policy, optimizer: Any, scheduler: Any, tokens: PairTokens, ref: torch.Tensor,
               cfg: RunConfig, sampler: Sampler) -> dict[str, float]:
    """One optimizer step on all N pairs of `tokens`, accumulating over micro-batches; ref: (N, 2).

    Each micro-batch's loss is its pairs' sum over the batch's N, so the accumulated gradient is the
    batch mean's whatever `train.micro_batch_size` is.
    """
    start, algo, n = time.perf_counter(), cfg.algorithm, len(tokens)
    totals: dict[str, float] = {}
    for rows in chunks(n, pairs_per_pass(cfg)):
        scores = sequence_logprobs(policy.model, tokens, rows, policy.pad_id, policy.device)  # (n_micro, 2)
        lengths = torch.tensor([len(tokens.chosen[i]) for i in rows], dtype=scores.dtype, device=scores.device)
        loss, metrics = preference_loss(scores[:, 0], scores[:, 1], ref[rows, 0], ref[rows, 1], beta=algo.beta,
                                        loss_type=algo.loss, label_smoothing=algo.label_smoothing,
                                        nll_coef=algo.nll_coef, chosen_lengths=lengths, total_pairs=n)
        loss.backward()
        for key, value in metrics.items():
            totals[key] = totals.get(key, 0.0) + value * len(rows) / n
    totals["grad_norm"] = optimizer_step(policy, optimizer, scheduler, cfg.train.max_grad_norm)
    sampler.sync(policy)
    return totals | {"pairs": float(n), "seconds/training": time.perf_counter() - start}


def _normal(values: torch.Tensor) -> Interval:
    """Mean of `values` with a normal-approximation 95% interval (unbounded, unlike `rft.eval.mean_interval`)."""
    mean = float(values.mean())
    half = Z95 * float(values.std()) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return Interval(mean, mean - half, mean + half)


def pair_evaluator(policy: Policy, pairs: Sequence[Pair], ref: torch.Tensor, cfg: RunConfig) -> Evaluator:
    """Held-out pairwise accuracy (ties count half; Wilson 95% CI) and margin, beside the task's accuracy when
    there is a task.

    Without a task the pairwise accuracy is the run's accuracy (it keeps `best/`), and each held-out pair
    is written with its implicit rewards to the step's eval file.
    """
    tokens, beta = encode_pairs(policy, pairs), cfg.algorithm.beta

    def run(sampler: Sampler, task: Task | None, eval_cfg: Any, *, out_path: Path | None, seed: int) -> EvalResult:
        start = time.perf_counter()
        with torch.no_grad():
            scores = torch.cat([sequence_logprobs(policy.model, tokens, rows, policy.pad_id, policy.device)
                                for rows in chunks(len(tokens), pairs_per_pass(cfg))])  # (N, 2)
        rewards = beta * (scores - ref)  # (N, 2) implicit rewards of chosen, rejected
        right = pair_credit(rewards[:, 0] - rewards[:, 1])  # (N,) 1, 1/2 on a tie, 0
        extra = {"pair_accuracy": wilson(float(right.sum()), len(pairs)),
                 "pair_margin": _normal(rewards[:, 0] - rewards[:, 1])}
        if task is not None:
            result = evaluate(sampler, task, eval_cfg, out_path=out_path, seed=seed)
            result.extra |= extra
            return result
        if out_path is not None:
            out_path.parent.mkdir(parents=True, exist_ok=True)
            out_path.write_text("".join(json.dumps({"where": p.where, "reward_chosen": float(r[0]), "reward_rejected":
                                                    float(r[1]), "credit": float(ok)}) + "\n"
                                        for p, r, ok in zip(pairs, rewards, right)))
        accuracy = extra["pair_accuracy"]
        return EvalResult(len(pairs), 1, accuracy, accuracy, None, extra=extra, seconds=time.perf_counter() - start)

    return run


def train(cfg: RunConfig, *, resume: bool = False, show_progress: bool = True) -> dict[str, Any]:
    """Run DPO on `task.pairs` as configured; returns the before/after/best held-out results."""
    if distributed.world_size() > 1:
        raise ConfigError("DPO runs in one process: its loss is normalised by this process's pairs")
    task = load_checked_task(cfg) if cfg.task.name else None
    train_pairs, test_pairs = load_pair_splits(cfg)
    seed_everything(cfg)
    policy = policy_from_config(cfg)
    optimizer, scheduler = build_optimizer(policy.trainable_parameters(), cfg.train, cfg.train.steps)
    sampler = build_sampler(cfg.sampler, policy)
    tokens = encode_pairs(policy, train_pairs)
    ref = reference_logprobs(policy, tokens, pairs_per_pass(cfg))  # (N, 2), once per pair
    evaluator = pair_evaluator(policy, test_pairs, reference_logprobs(
        policy, encode_pairs(policy, test_pairs), pairs_per_pass(cfg)), cfg)
    with open_run(cfg, task, policy, {"policy": (optimizer, scheduler)}, resume=resume, show_progress=show_progress,
                  evaluator=evaluator) as run:
        run.evaluate_before(sampler)
        for step in run.remaining_steps():
            rows = step_items(range(len(train_pairs)), step - 1, cfg.train.prompts_per_step, cfg.train.seed)
            batch = PairTokens(*([part[i] for i in rows] for part in (tokens.prompts, tokens.chosen, tokens.rejected)))
            update = dpo_update(policy, optimizer, scheduler, batch, ref[rows], cfg, sampler)
            run.end_step(step, update | {"lr": scheduler.get_last_lr()[0]}, sampler)
    return run.finish()
