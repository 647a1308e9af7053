"""Group-relative advantages: how much better each sample is than its siblings for the same prompt.

GRPO (Shao et al. 2024, "DeepSeekMath", sec. 4.1.2, outcome supervision) replaces PPO's value network
with the statistics of the G rewards sampled for one prompt: A_i = (r_i - mean(r)) / std(r).
Dr. GRPO (Liu et al. 2025, "Understanding R1-Zero-Like Training: A Critical Perspective") drops the
division by the std because it up-weights prompts that are nearly always solved or nearly always failed.

Every estimator here is a pure function of the rewards; `ADVANTAGE_ESTIMATORS` maps config names to them.
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


ADVANTAGE_ESTIMATORS: dict[str, AdvantageEstimator] = {
    "grpo": grpo_advantages,
    "dr_grpo": dr_grpo_advantages,
}
