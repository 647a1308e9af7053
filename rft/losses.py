"""Policy and value losses: the clipped surrogate with an optional k3 KL penalty, PPO's clipped value loss,
and SCoRe's per-attempt loss (`score_loss`).

`grpo_loss` is a pure function `(tensors, floats) -> (loss, metrics)`. Shapes: N sequences in the
micro-batch, T completion tokens (right-padded). How per-token losses are reduced to a scalar is a
named, pure aggregation function in `AGGREGATIONS`, since the papers disagree on it:

- "seq_mean":  GRPO (Shao et al. 2024, eq. 3): 1/G sum_i 1/|o_i| sum_t; short answers weigh more per token.
- "token_mean": DAPO (Yu et al. 2025, sec. 3.3, token-level loss): sum over all tokens / total tokens.
- "seq_mean_token_sum_norm": Dr. GRPO (Liu et al. 2025): sum over all tokens / (N * max_tokens), a
  constant normaliser, so neither the answer length nor the batch's token count rescales the gradient.

When the tokens were sampled by another engine (vLLM, a rollout server), its log-probs differ from the
trainer's by kernel numerics; `grpo_loss` can weigh each token's surrogate by the truncated importance
weight min(pi_old / pi_sampler, C) (`tis_weights`, Yao et al. 2025) and reports the gap either way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class BatchCounts:
    """Counts over the whole optimizer batch, so losses of its micro-batches add up to the full-batch loss.

    Gradient accumulation runs the loss on micro-batches and sums their gradients; normalising each
    micro-batch by its own token count would weigh a token by the size of the micro-batch it landed
    in. Passing the whole batch's counts makes `micro_batch_size` change nothing but memory.
    sequences: every sequence N in the batch. present: sequences with at least one real token.
    tokens: real (unmasked) tokens.
    """

    sequences: int
    present: int
    tokens: float

    @classmethod
    def of(cls, mask: Tensor) -> BatchCounts:
        """The counts of one (N, T) mask; for a batch split in micro-batches, pass the full mask."""
        real = mask.bool()
        return cls(int(mask.shape[0]), int(real.any(dim=1).sum().item()), float(real.sum().item()))


Aggregation = Callable[[Tensor, Tensor, int | None, BatchCounts], Tensor]


def _seq_mean(per_token: Tensor, mask: Tensor, max_tokens: int | None, counts: BatchCounts) -> Tensor:
    """GRPO eq. 3: mean over each sequence's own tokens, then mean over the sequences that have any.

    A fully masked sequence (padding row, truncated completion) is left out of the outer mean, as it
    is absent from the objective; an all-masked batch gives 0 (still connected to the graph).
    """
    per_seq = (per_token * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)  # (N,); 0 for empty rows
    return per_seq.sum() / max(counts.present, 1)


def _token_mean(per_token: Tensor, mask: Tensor, max_tokens: int | None, counts: BatchCounts) -> Tensor:
    """DAPO's token-level loss: every real token in the whole batch weighs the same."""
    return (per_token * mask).sum() / max(counts.tokens, 1.0)


def _seq_mean_token_sum_norm(per_token: Tensor, mask: Tensor, max_tokens: int | None, counts: BatchCounts) -> Tensor:
    """Dr. GRPO: sum over all real tokens divided by the constant N * max_tokens."""
    if max_tokens is None:
        raise ValueError(
            "aggregation 'seq_mean_token_sum_norm' (Dr. GRPO) needs max_tokens, the generation budget "
            "(max new tokens) used as its constant normaliser"
        )
    return (per_token * mask).sum() / (counts.sequences * max_tokens)


AGGREGATIONS: dict[str, Aggregation] = {
    "seq_mean": _seq_mean,
    "token_mean": _token_mean,
    "seq_mean_token_sum_norm": _seq_mean_token_sum_norm,
}


def _check_inputs(
    logprobs: Tensor,
    old_logprobs: Tensor,
    ref_logprobs: Tensor | None,
    advantages: Tensor,
    mask: Tensor,
    aggregation: str,
    max_tokens: int | None,
) -> None:
    """Raise ValueError naming the offending argument before any arithmetic can broadcast silently."""
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {aggregation!r}; choose one of {sorted(AGGREGATIONS)}")
    if logprobs.dim() != 2:
        raise ValueError(f"logprobs must have shape (N, T), got {tuple(logprobs.shape)}")
    named = {"old_logprobs": old_logprobs, "mask": mask, "ref_logprobs": ref_logprobs}
    for name, tensor in named.items():
        if tensor is not None and tensor.shape != logprobs.shape:
            raise ValueError(
                f"{name} must have the shape of logprobs {tuple(logprobs.shape)}, got {tuple(tensor.shape)}"
            )
    if advantages.shape not in (logprobs.shape[:1], logprobs.shape):
        raise ValueError(
            f"advantages must have shape (N,) = ({logprobs.shape[0]},) or (N, T) = {tuple(logprobs.shape)}, "
            f"got {tuple(advantages.shape)}"
        )
    if max_tokens is not None and max_tokens < logprobs.shape[1]:
        raise ValueError(
            f"max_tokens={max_tokens} is smaller than the completion length T={logprobs.shape[1]}; "
            "it must be the generation budget the completions were sampled with"
        )


def tis_weights(old_logprobs: Tensor, sampler_logprobs: Tensor, cap: float) -> Tensor:
    """Truncated importance sampling weights (N, T): min(pi_old / pi_sampler, cap), a constant.

    Yao et al. 2025, "Your efficient RL framework secretly brings you off-policy RL training" (TIS):
    the sampler's distribution differs from the trainer's at the same weights, so the policy gradient
    is reweighted per token towards the trainer's old policy; truncating at `cap` bounds the variance.
    old_logprobs, sampler_logprobs: (N, T) log-probs of the sampled tokens under each.
    """
    if cap <= 0:
        raise ValueError(f"tis cap must be > 0, got {cap}")
    return torch.exp(old_logprobs.detach() - sampler_logprobs.detach()).clamp(max=cap)


def grpo_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    ref_logprobs: Tensor | None,
    advantages: Tensor,
    mask: Tensor,
    *,
    sampler_logprobs: Tensor | None = None,
    tis_cap: float | None = None,
    epsilon: float = 0.2,
    epsilon_high: float | None = None,
    beta: float = 0.0,
    aggregation: str = "token_mean",
    max_tokens: int | None = None,
    counts: BatchCounts | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """Clipped-surrogate policy loss (+ beta * k3 KL to a reference policy), reduced by `aggregation`.

    Args:
        logprobs: (N, T) log-probs of the sampled tokens under the policy being trained (with grad).
        old_logprobs: (N, T) the same under the policy that sampled them; a constant (detached here,
            so passing `logprobs` itself for a single update gives ratio 1 and the right gradient).
        ref_logprobs: (N, T) the same under the frozen reference policy, or None; a constant.
        advantages: (N,) one advantage per sequence, broadcast over its tokens (outcome supervision),
            or (N, T) one per token (REINFORCE++'s reward-to-go, PPO's GAE).
        mask: (N, T) 1 on real completion tokens, 0 on padding and on masked (e.g. truncated)
            completions; bool or float. Values of the other tensors at masked positions are ignored.
        epsilon: lower clip range, ratio >= 1 - epsilon (and upper too unless epsilon_high is set).
        epsilon_high: DAPO's decoupled upper clip range, ratio <= 1 + epsilon_high.
        beta: weight of the k3 KL penalty; needs ref_logprobs when > 0.
        aggregation: a key of `AGGREGATIONS`.
        max_tokens: the generation budget; required by "seq_mean_token_sum_norm".
        counts: the whole batch's counts when this is one micro-batch of it (default: this mask's),
            so that the micro-batch losses sum to the loss of the whole batch.
        sampler_logprobs: (N, T) the same under the engine that sampled them (vLLM, a server), or None.
        tis_cap: with sampler_logprobs, weigh each token's surrogate by `tis_weights(old, sampler, cap)`;
            None leaves the loss unweighted.

    Returns the scalar loss and python-float metrics: "loss", "ratio_mean", "clip_ratio" (fraction of
    real tokens whose clipped term was the active one), "clip_ratio_low", "clip_ratio_high", "kl"
    (mean k3 over real tokens) when ref_logprobs is given, and with sampler_logprobs
    "sampler_logprob_diff" (mean |old - sampler| over real tokens) and "tis_weight_mean" when weighted.
    """
    _check_inputs(logprobs, old_logprobs, ref_logprobs, advantages, mask, aggregation, max_tokens)
    if sampler_logprobs is not None and sampler_logprobs.shape != logprobs.shape:
        raise ValueError(f"sampler_logprobs must have the shape of logprobs {tuple(logprobs.shape)}, "
                         f"got {tuple(sampler_logprobs.shape)}")
    if tis_cap is not None and sampler_logprobs is None:
        raise ValueError(f"tis_cap={tis_cap} weighs tokens by pi_old / pi_sampler, so sampler_logprobs is needed")
    if beta < 0 or epsilon < 0 or (epsilon_high is not None and epsilon_high < 0):
        raise ValueError(f"beta, epsilon, epsilon_high must be >= 0, got {beta}, {epsilon}, {epsilon_high}")
    if beta > 0 and ref_logprobs is None:
        raise ValueError(
            f"beta={beta} > 0 adds a KL penalty to the reference policy, so ref_logprobs is needed"
        )
    real = mask.bool()  # (N, T)
    weights = real.to(logprobs.dtype)  # (N, T)
    upper = epsilon if epsilon_high is None else epsilon_high
    adv = advantages.detach().to(logprobs.dtype)
    adv = adv.unsqueeze(1) if adv.dim() == 1 else adv  # (N, 1) broadcast over tokens, or (N, T)

    # Zero the log-ratio on masked positions before exp(): padding may hold any value, and an inf
    # there would turn into NaN gradients even though the position is multiplied by 0 later.
    log_ratio = torch.where(real, logprobs - old_logprobs.detach(), 0.0)  # (N, T)
    ratio = torch.exp(log_ratio)  # (N, T)
    # PPO (Schulman et al. 2017, eq. 7) / GRPO eq. 3, with DAPO's clip-higher (Yu et al. 2025, eq. 10).
    unclipped = ratio * adv  # (N, T)
    clipped = torch.clamp(ratio, 1.0 - epsilon, 1.0 + upper) * adv  # (N, T)
    per_token = -torch.minimum(unclipped, clipped)  # (N, T)
    extra: dict[str, float] = {}
    if sampler_logprobs is not None:
        gap = torch.where(real, old_logprobs.detach() - sampler_logprobs.detach(), 0.0)  # (N, T)
        extra["sampler_logprob_diff"] = float((gap.abs().sum() / weights.sum().clamp(min=1.0)).item())
        if tis_cap is not None:
            tis = torch.where(real, tis_weights(old_logprobs, sampler_logprobs, tis_cap), 0.0)  # (N, T)
            per_token = per_token * tis
            extra["tis_weight_mean"] = float((tis.sum() / weights.sum().clamp(min=1.0)).item())

    kl = None
    if ref_logprobs is not None:
        # k3 estimator of KL(pi || pi_ref) (Schulman 2020, "Approximating KL Divergence"; GRPO eq. 4):
        # exp(ref - logp) - (ref - logp) - 1, unbiased and always >= 0.
        ref_gap = torch.where(real, ref_logprobs.detach() - logprobs, 0.0)  # (N, T)
        kl = torch.exp(ref_gap) - ref_gap - 1.0  # (N, T)
        if beta > 0:
            per_token = per_token + beta * kl

    loss = AGGREGATIONS[aggregation](per_token, weights, max_tokens, counts or BatchCounts.of(mask))
    return loss, _metrics(loss, ratio, adv, kl, weights, epsilon, upper) | extra


@torch.no_grad()
def _metrics(
    loss: Tensor, ratio: Tensor, adv: Tensor, kl: Tensor | None, weights: Tensor, low: float, high: float
) -> dict[str, float]:
    """Token-level diagnostics over real tokens; a clip counts only where it removed the gradient."""
    count = weights.sum().clamp(min=1.0)
    # The clipped term is the active (smaller) one only when the ratio left the trust region in the
    # direction the advantage pushes it: below 1 - eps for A < 0, above 1 + eps_high for A > 0.
    clip_low = ((ratio < 1.0 - low) & (adv < 0)).to(weights.dtype) * weights
    clip_high = ((ratio > 1.0 + high) & (adv > 0)).to(weights.dtype) * weights
    metrics = {
        "loss": float(loss.item()),
        "ratio_mean": float(((ratio * weights).sum() / count).item()),
        "clip_ratio_low": float((clip_low.sum() / count).item()),
        "clip_ratio_high": float((clip_high.sum() / count).item()),
        "clip_ratio": float(((clip_low + clip_high).sum() / count).item()),
    }
    if kl is not None:
        metrics["kl"] = float(((kl * weights).sum() / count).item())
    return metrics


def value_loss(
    values: Tensor,
    old_values: Tensor,
    returns: Tensor,
    mask: Tensor,
    *,
    clip_range: float | None = 0.2,
    counts: BatchCounts | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """PPO's clipped value loss, token-mean over the whole batch: 1/2 max((V - R)^2, (V_clip - R)^2).

    V_clip = V_old + clip(V - V_old, -clip_range, clip_range) keeps the critic near the values the
    advantages were computed with (OpenAI baselines' PPO2, used for RLHF by Ziegler et al. 2019 and
    Ouyang et al. 2022; Huang et al. 2022, "The 37 implementation details of PPO", detail 9).
    values: (N, T) under the critic being trained (with grad). old_values: (N, T) at rollout time
    (constant). returns: (N, T) GAE targets (constant). mask: (N, T) 1 on real tokens.
    clip_range None: the plain squared error. counts: the whole batch's (see `BatchCounts`).

    Metrics: "value_loss", "value_clip_frac" (real tokens where the clipped term was the larger one,
    so the gradient was removed) and "value_mean".
    """
    if not values.shape == old_values.shape == returns.shape == mask.shape:
        raise ValueError(f"values, old_values, returns and mask must share one (N, T) shape, got "
                         f"{[tuple(t.shape) for t in (values, old_values, returns, mask)]}")
    if clip_range is not None and clip_range <= 0:
        raise ValueError(f"clip_range must be > 0 (or None for no clipping), got {clip_range}")
    weights = mask.to(values.dtype)  # (N, T)
    old, target = old_values.detach(), returns.detach()
    plain = (values - target) ** 2  # (N, T)
    if clip_range is None:
        per_token, clipped_more = plain, torch.zeros_like(plain, dtype=torch.bool)
    else:
        clipped = (old + torch.clamp(values - old, -clip_range, clip_range) - target) ** 2  # (N, T)
        per_token, clipped_more = torch.maximum(plain, clipped), clipped > plain
    loss = 0.5 * _token_mean(per_token, weights, None, counts or BatchCounts.of(mask))
    with torch.no_grad():
        count = weights.sum().clamp(min=1.0)
        metrics = {
            "value_loss": float(loss.item()),
            "value_clip_frac": float(((clipped_more.to(weights.dtype) * weights).sum() / count).item()),
            "value_mean": float(((values * weights).sum() / count).item()),
        }
    return loss, metrics


@torch.no_grad()
def explained_variance(values: Tensor, returns: Tensor, mask: Tensor) -> float:
    """1 - Var(R - V) / Var(R) over real tokens: 1 is a perfect critic, 0 no better than a constant.

    values, returns, mask: (N, T). Returns 0.0 when the returns have no variance (nothing to explain).
    """
    weights = mask.to(values.dtype)
    count = weights.sum().clamp(min=1.0)

    def var(x: Tensor) -> Tensor:
        mean = (x * weights).sum() / count
        return (((x - mean) ** 2) * weights).sum() / count

    target_var = var(returns)
    if target_var.item() == 0.0:
        return 0.0
    return float((1.0 - var(returns - values) / target_var).item())


@torch.no_grad()
def approx_kl(logprobs: Tensor, old_logprobs: Tensor, mask: Tensor) -> float:
    """Mean k3 estimate of KL(pi_old || pi) over real tokens: (r - 1) - log r, r = pi / pi_old.

    Schulman 2020, "Approximating KL Divergence"; how far one PPO epoch moved the policy from the
    one that sampled. logprobs, old_logprobs, mask: (N, T).
    """
    real = mask.bool()
    log_ratio = torch.where(real, logprobs - old_logprobs, 0.0)  # (N, T)
    k3 = torch.exp(log_ratio) - 1.0 - log_ratio
    return float((k3.sum() / real.sum().clamp(min=1)).item())


def score_loss(
    logprobs: Tensor,
    ref_logprobs: Tensor | None,
    advantages: Tensor,
    mask: Tensor,
    *,
    attempt: int,
    stage: int,
    beta1: float,
    beta2: float,
    aggregation: str = "token_mean",
    max_tokens: int | None = None,
    counts: BatchCounts | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """SCoRe's loss on one attempt (Kumar et al. 2024, sec. 5): REINFORCE with a baseline, plus k3 KL.

    Per real token: -A * log pi(token) + beta * k3(pi, pi_ref), reduced by `aggregation`; the two
    attempts' losses are summed. SCoRe samples and updates once per batch, so this is `grpo_loss` with
    the sampling policy equal to the current one (ratio 1: the clip never acts and the gradient is
    REINFORCE's -A grad log pi). beta is beta2 on attempt 1 in stage I (eq. 3: keep the first attempt
    where the base model puts it, so the policy cannot help attempt 2 by moving attempt 1) and
    its advantage is ignored there (stage I has no reward on attempt 1); beta1 everywhere else
    (eq. 4). The k3 estimator: Schulman 2020; GRPO eq. 4.

    logprobs: (N, T) of the attempt's tokens (with grad). ref_logprobs: (N, T) under the reference
    (adapter disabled), or None when beta is 0. advantages: (N,) or (N, T). mask: (N, T). counts: the
    attempt's whole batch (`BatchCounts`). Metrics as `grpo_loss`'s ("kl" when ref_logprobs is given).
    """
    if attempt not in (1, 2) or stage not in (1, 2):
        raise ValueError(f"attempt and stage must be 1 or 2, got attempt {attempt}, stage {stage}")
    held = attempt == 1 and stage == 1
    beta = beta2 if held else beta1
    adv = torch.zeros_like(advantages) if held else advantages
    return grpo_loss(logprobs, logprobs, ref_logprobs, adv, mask, beta=beta, aggregation=aggregation,
                     max_tokens=max_tokens, counts=counts)
