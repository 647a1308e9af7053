"""Group-relative advantages: how much better each sample is than its siblings for the same prompt.

GRPO (Shao et al. 2024, "DeepSeekMath", sec. 4.1.2, outcome supervision) replaces PPO's value network
with the statistics of the G rewards sampled for one prompt: A_i = (r_i - mean(r)) / std(r).
Dr. GRPO (Liu et al. 2025, "Understanding R1-Zero-Like Training: A Critical Perspective") drops the
division by the std because it up-weights prompts that are nearly always solved or nearly always failed.

RLOO (Ahmadian et al. 2024, "Back to Basics", sec. 3.3) uses the mean of the *other* G - 1 samples
as each sample's baseline, which keeps the estimator unbiased. REINFORCE++ (Hu et al. 2025,
arXiv 2501.03262) puts a per-token KL penalty into the reward, sums it to a reward-to-go per token,
and normalises over the whole batch instead of per prompt. PPO's GAE (Schulman et al. 2016) needs a
critic and lives here too, as a pure function of rewards and values. SCoRe's per-attempt reward shaping
(`score_rewards`, Kumar et al. 2024) feeds `group_advantages`.

Shapes: B prompts, G samples per prompt, N = B*G completions (group-major: row b*G + g is sample g of
prompt b), T completion tokens (right-padded). `ADVANTAGE_ESTIMATORS` maps config names to estimators
with one signature, `(token_rewards (N, T), mask (N, T), *, group_size) -> (advantages (N, T), metrics)`:
outcome estimators (grpo, dr_grpo, rloo) score each completion by the sum of its token rewards, which
is the grader's score when no KL is put into the reward.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

AdvantageEstimator = Callable[..., tuple[Tensor, dict[str, float]]]


def _grouped(rewards: Tensor, group_size: int) -> Tensor:
    """Check the layout and view rewards (B*G,) as (B, G); raises the errors a user can act on."""
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 2:
        # One sample per prompt gives advantage 0 everywhere: training would silently do nothing.
        raise ValueError(
            f"group_size must be an integer >= 2 (samples per prompt), got {group_size!r}: "
            "group-relative advantages need at least two samples of the same prompt"
        )
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be 1-D with shape (B*G,), got shape {tuple(rewards.shape)}")
    if rewards.numel() == 0 or rewards.numel() % group_size:
        raise ValueError(
            f"rewards has {rewards.numel()} elements, which is not a positive multiple of "
            f"group_size={group_size}; expected B*G rewards laid out group-major"
        )
    if not rewards.is_floating_point():
        rewards = rewards.to(torch.get_default_dtype())
    return rewards.reshape(-1, group_size)  # (B, G): row b holds the G samples of prompt b


def group_advantages(
    rewards: Tensor, *, group_size: int, scale_by_std: bool = True, eps: float = 1e-6
) -> tuple[Tensor, dict[str, float]]:
    """Advantages (B*G,) = (r - group mean) [/ (group std + eps)] for rewards (B*G,), group-major.

    `rewards[b * G + g]` is the reward of sample g of prompt b. The std is the *unbiased* sample
    std (Bessel's correction, divisor G - 1): the GRPO paper writes `std(r)` without naming the
    estimator, and its public reference implementations (TRL's GRPOTrainer, verl's GRPO estimator)
    both use `torch.std`'s unbiased default, so we match them. With `scale_by_std=False` this is
    Dr. GRPO's mean-centred advantage. The result carries no gradient (rewards are constants).

    Metrics: "zero_signal_groups" counts groups whose rewards are all equal (their advantages are
    all 0, so they contribute no policy gradient), "zero_signal_frac" is that count over B, and
    "reward_std_within_group" is the mean over groups of the unbiased within-group std.

    >>> adv, m = group_advantages(torch.tensor([0.0, 1.0, 2.0, 1.0, 1.0, 1.0]), group_size=3, eps=0.0)
    >>> adv.tolist(), m["zero_signal_groups"]
    ([-1.0, 0.0, 1.0, 0.0, 0.0, 0.0], 1.0)
    """
    grouped = _grouped(rewards, group_size).detach()  # (B, G)
    mean = grouped.mean(dim=1, keepdim=True)  # (B, 1)
    std = grouped.std(dim=1, keepdim=True, correction=1)  # (B, 1), unbiased
    centred = grouped - mean  # (B, G)
    advantages = centred / (std + eps) if scale_by_std else centred
    zero_signal = grouped.amax(dim=1) == grouped.amin(dim=1)  # (B,)
    # All-equal groups carry no signal: force exact zeros (the float mean may be off by an ulp,
    # and eps=0 would give 0/0 = NaN).
    advantages = advantages.masked_fill(zero_signal.unsqueeze(1), 0.0)
    metrics = {
        "zero_signal_groups": float(zero_signal.sum().item()),
        "zero_signal_frac": float(zero_signal.float().mean().item()),
        "reward_std_within_group": float(std.mean().item()),
    }
    return advantages.reshape(-1), metrics  # (B*G,), same group-major order as rewards


def grpo_advantages(
    rewards: Tensor, *, group_size: int, eps: float = 1e-6
) -> tuple[Tensor, dict[str, float]]:
    """GRPO's std-scaled group advantage (Shao et al. 2024, sec. 4.1.2); rewards (B*G,) -> (B*G,)."""
    return group_advantages(rewards, group_size=group_size, scale_by_std=True, eps=eps)


def dr_grpo_advantages(rewards: Tensor, *, group_size: int) -> tuple[Tensor, dict[str, float]]:
    """Dr. GRPO's mean-centred group advantage (Liu et al. 2025); rewards (B*G,) -> (B*G,)."""
    return group_advantages(rewards, group_size=group_size, scale_by_std=False)


def rloo_advantages(rewards: Tensor, *, group_size: int) -> tuple[Tensor, dict[str, float]]:
    """RLOO (Ahmadian et al. 2024, sec. 3.3): A_i = r_i - 1/(G-1) sum_{j != i} r_j; rewards (B*G,) -> (B*G,).

    The leave-one-out mean equals (G r_i - sum_j r_j) / (G - 1), so A_i = G/(G-1) (r_i - mean(r)):
    Dr. GRPO's mean-centred advantage scaled by G/(G-1), with a baseline independent of r_i.
    """
    centred, metrics = group_advantages(rewards, group_size=group_size, scale_by_std=False)
    return centred * (group_size / (group_size - 1)), metrics


def kl_penalised_rewards(
    scores: Tensor, lengths: Tensor, mask: Tensor, logprobs: Tensor | None, ref_logprobs: Tensor | None,
    kl_coef: float,
) -> Tensor:
    """Per-token rewards (N, T): the grader's score on the last token, minus kl_coef * KL at every real token.

    The RLHF reward of Ziegler et al. 2019 (eq. 2), Stiennon et al. 2020 (eq. 1) and Ouyang et al. 2022
    (eq. 2), spread over tokens as REINFORCE++ (Hu et al. 2025) and PPO-RLHF implementations do:
    r_t = [t = last] * score - kl_coef * (logprobs_t - ref_logprobs_t), the k1 estimate of
    KL(pi_old || pi_ref) at token t. scores: (N,). lengths: (N,) completion lengths; the score sits at
    column max(length - 1, 0), so even an empty completion keeps its score in the row sum.
    mask: (N, T) 1 on real tokens. logprobs, ref_logprobs: (N, T) under the sampling and reference
    policies (constants); both may be None when kl_coef == 0.
    """
    if kl_coef < 0:
        raise ValueError(f"kl_coef must be >= 0, got {kl_coef}")
    if scores.shape != mask.shape[:1] or lengths.shape != scores.shape:
        raise ValueError(f"scores and lengths must have shape (N,) = ({mask.shape[0]},), got "
                         f"{tuple(scores.shape)} and {tuple(lengths.shape)}")
    rewards = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)  # (N, T)
    last = (lengths.long() - 1).clamp(min=0).unsqueeze(1)  # (N, 1)
    rewards.scatter_(1, last, scores.float().unsqueeze(1))
    if kl_coef > 0:
        if logprobs is None or ref_logprobs is None:
            raise ValueError(f"kl_coef={kl_coef} > 0 needs logprobs and ref_logprobs")
        kl = (logprobs.detach() - ref_logprobs.detach()).float() * mask  # (N, T), k1
        rewards = rewards - kl_coef * kl
    return rewards


def _masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def masked_whiten(x: Tensor, mask: Tensor, *, shift_mean: bool = True, eps: float = 1e-8) -> Tensor:
    """(x - mean) / std over the real tokens of the whole batch; x, mask (N, T) -> (N, T), 0 at padding.

    The std is the population std (divisor: the number of real tokens), as in OpenRLHF and TRL's
    `masked_whiten`; with `shift_mean=False` only the scale changes (TRL whitens rewards this way).
    """
    mask = mask.to(x.dtype)
    mean = _masked_mean(x, mask)
    var = _masked_mean((x - mean) ** 2, mask)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * mask


def reinforce_pp_advantages(
    token_rewards: Tensor, mask: Tensor, *, group_size: int = 1, eps: float = 1e-8
) -> tuple[Tensor, dict[str, float]]:
    """REINFORCE++ (Hu et al. 2025): reward-to-go per token, normalised over every real token of the batch.

    A_t = sum_{s >= t} r_s (gamma = 1; with `kl_penalised_rewards` this is score - beta * sum_{s >= t}
    KL(s)), then A_norm = (A - mean_batch(A)) / std_batch(A) over all real tokens of all N completions
    (global normalisation, no per-prompt baseline). token_rewards, mask: (N, T) -> advantages (N, T).
    `group_size` is accepted for the registry's signature and does not enter the estimate.
    """
    mask = mask.to(token_rewards.dtype)
    to_go = (token_rewards * mask).flip(1).cumsum(1).flip(1)  # (N, T): sum over s >= t
    advantages = masked_whiten(to_go, mask, eps=eps)
    metrics = {"return_mean": float(_masked_mean(to_go, mask).item()),
               "advantage_std_before_norm": float(_masked_mean((to_go - _masked_mean(to_go, mask)) ** 2,
                                                                mask).sqrt().item())}
    return advantages, metrics


def gae(
    rewards: Tensor, values: Tensor, mask: Tensor, *, gamma: float, lam: float
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016, eqs. 11-16) over right-padded tokens.

    delta_t = r_t + gamma V_{t+1} - V_t and A_t = sum_l (gamma lam)^l delta_{t+l} (eq. 16), computed
    by the recursion A_t = delta_t + gamma lam A_{t+1}; the state after a completion's last token is
    terminal (V = 0, A = 0). rewards, values, mask: (N, T). Returns advantages (N, T) and the critic's
    targets, returns = A + V (N, T), both 0 at padding. Constants: nothing here carries gradient.
    """
    if not (0.0 <= gamma <= 1.0 and 0.0 <= lam <= 1.0):
        raise ValueError(f"gamma and lam must be in [0, 1], got {gamma} and {lam}")
    mask = mask.to(values.dtype)
    rewards, values = rewards.detach() * mask, values.detach() * mask
    advantages = torch.zeros_like(values)  # (N, T)
    next_value = torch.zeros_like(values[:, 0])  # (N,)
    running = torch.zeros_like(values[:, 0])  # (N,)
    for t in reversed(range(values.shape[1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        # Padding (mask 0) resets the recursion, so the last real token sees a terminal next state.
        running = (delta + gamma * lam * running) * mask[:, t]
        advantages[:, t] = running
        next_value = values[:, t]
    return advantages, (advantages + values) * mask


def _outcome(estimator: Callable[..., tuple[Tensor, dict[str, float]]]) -> AdvantageEstimator:
    """A sequence-level estimator on the registry's token signature: sum the token rewards, broadcast back."""

    def token_level(token_rewards: Tensor, mask: Tensor, *, group_size: int) -> tuple[Tensor, dict[str, float]]:
        advantages, metrics = estimator(token_rewards.sum(dim=1), group_size=group_size)  # (N,)
        return advantages.unsqueeze(1) * mask.to(advantages.dtype), metrics  # (N, T)

    token_level.__doc__ = estimator.__doc__
    return token_level


ADVANTAGE_ESTIMATORS: dict[str, AdvantageEstimator] = {
    "grpo": _outcome(grpo_advantages),
    "dr_grpo": _outcome(dr_grpo_advantages),
    "rloo": _outcome(rloo_advantages),
    "reinforce_pp": reinforce_pp_advantages,
}


def score_rewards(first: Tensor, second: Tensor, *, stage: int, alpha: float) -> tuple[Tensor, Tensor]:
    """SCoRe's per-attempt training rewards (Kumar et al. 2024, sec. 5): (B*G,) for attempt 1, (B*G,) for attempt 2.

    first, second: (B*G,) grader scores of each first attempt and of the second attempt that answered
    it (row-aligned, group-major). Stage I (eq. 3) rewards only attempt 2; attempt 1 gets 0 and is held
    to the reference by the loss's KL. Stage II (eq. 4) rewards both, and attempt 2 gets the bonus
    alpha * (r2 - r1) (sec. 5.2): with alpha > 1 fixing a wrong answer (r2 - r1 = 1) earns 1 + alpha,
    breaking a right one earns -alpha, and repeating earns r2, so a model that only repeats gains
    nothing over one that corrects. The bonus is credited to attempt 2 alone: carried back to attempt 1
    as part of its return it would pay (1 - alpha) r1, rewarding a deliberately wrong first answer.

    >>> score_rewards(torch.tensor([0.0, 1.0, 1.0]), torch.tensor([1.0, 0.0, 1.0]), stage=2, alpha=10.0)
    (tensor([0., 1., 1.]), tensor([ 11., -10.,   1.]))
    """
    if first.shape != second.shape or first.dim() != 1:
        raise ValueError(f"first and second must share one (B*G,) shape, got {tuple(first.shape)}, "
                         f"{tuple(second.shape)}")
    if stage == 1:
        return torch.zeros_like(first), second.clone()
    if stage == 2:
        return first.clone(), second + alpha * (second - first)
    raise ValueError(f"SCoRe has stages 1 and 2, got {stage}")
