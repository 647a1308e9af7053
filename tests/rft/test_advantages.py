"""Group advantages against hand-derived numbers and a naive loop over groups."""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from rft.advantages import ADVANTAGE_ESTIMATORS, group_advantages


def test_hand_derived_grpo_with_an_all_equal_group() -> None:
    """Two prompts x G=4.

    Group 0 rewards [1, 0, 0, 1]: mean 1/2, unbiased std = sqrt(4 * (1/2)^2 / 3) = sqrt(1/3),
    so A = +-(1/2) / sqrt(1/3) = +-sqrt(3)/2. Group 1 rewards all 0.5: std 0, A = 0, counted.
    """
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.5, 0.5, 0.5, 0.5])
    adv, metrics = group_advantages(rewards, group_size=4, eps=0.0)
    a = math.sqrt(3) / 2
    assert adv.tolist() == pytest.approx([a, -a, -a, a, 0, 0, 0, 0], rel=1e-6)
    assert metrics == pytest.approx(
        {"zero_signal_groups": 1.0, "zero_signal_frac": 0.5, "reward_std_within_group": math.sqrt(1 / 3) / 2}
    )


def test_std_is_unbiased_and_eps_is_added_to_it() -> None:
    """Rewards [0, 1, 2]: mean 1, unbiased std 1 (biased would be sqrt(2/3) and give +-1.2247).

    With eps = 0.25 the scale is 1 / (1 + 0.25) = 0.8.
    """
    adv, metrics = group_advantages(torch.tensor([0.0, 1.0, 2.0]), group_size=3, eps=0.25)
    assert adv.tolist() == pytest.approx([-0.8, 0.0, 0.8])
    assert metrics["reward_std_within_group"] == pytest.approx(1.0)
    assert metrics["zero_signal_groups"] == 0.0


def test_dr_grpo_is_mean_centred_only() -> None:
    """scale_by_std=False: [1, 0, 0, 1] -> [1/2, -1/2, -1/2, 1/2]; [3, 5] -> [-1, 1]."""
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 3.0, 5.0, 5.0, 3.0])
    adv, _ = group_advantages(rewards, group_size=4, scale_by_std=False)
    assert adv.tolist() == pytest.approx([0.5, -0.5, -0.5, 0.5, -1.0, 1.0, 1.0, -1.0])
    adv, _ = group_advantages(torch.tensor([3.0, 5.0]), group_size=2, scale_by_std=False)
    assert adv.tolist() == pytest.approx([-1.0, 1.0])


def test_layout_is_group_major() -> None:
    """[0, 1 | 10, 30]: groups are consecutive runs of G, not strided (which would pair 0 with 10)."""
    adv, _ = group_advantages(torch.tensor([0.0, 1.0, 10.0, 30.0]), group_size=2, scale_by_std=False)
    assert adv.tolist() == pytest.approx([-0.5, 0.5, -10.0, 10.0])


def test_all_equal_groups_are_exact_zeros() -> None:
    """0.1 * 3 / 3 is not exactly 0.1 in floating point; zero-signal groups must still give exact 0."""
    adv, metrics = group_advantages(torch.tensor([0.1, 0.1, 0.1, 0.7, 0.7, 0.7]), group_size=3)
    assert adv.tolist() == [0.0] * 6
    assert metrics["zero_signal_groups"] == 2.0
    assert metrics["zero_signal_frac"] == 1.0


def test_integer_rewards_are_accepted() -> None:
    adv, _ = group_advantages(torch.tensor([0, 1, 1, 1]), group_size=2, scale_by_std=False)
    assert adv.tolist() == [-0.5, 0.5, 0.0, 0.0]


def naive_group_advantages(
    rewards: list[float], group_size: int, scale_by_std: bool, eps: float
) -> list[float]:
    """Group by group with the statistics module (`stdev` is the unbiased sample std)."""
    out = []
    for start in range(0, len(rewards), group_size):
        group = rewards[start : start + group_size]
        mean, std = statistics.fmean(group), statistics.stdev(group)
        out += [(r - mean) / (std + eps) if scale_by_std else r - mean for r in group]
    return out


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("group_size", [2, 5])
@pytest.mark.parametrize("scale_by_std", [True, False])
def test_matches_naive_loop(seed: int, group_size: int, scale_by_std: bool) -> None:
    gen = torch.Generator().manual_seed(seed)
    rewards = torch.randint(0, 3, (4 * group_size,), generator=gen).double() / 2  # ties happen
    rewards[:group_size] = 1.0  # one zero-signal group
    adv, metrics = group_advantages(rewards, group_size=group_size, scale_by_std=scale_by_std)
    want = naive_group_advantages(rewards.tolist(), group_size, scale_by_std, eps=1e-6)
    assert adv.tolist() == pytest.approx(want, rel=1e-9, abs=1e-12)
    groups = rewards.view(4, group_size).tolist()
    zero = sum(len(set(g)) == 1 for g in groups)
    assert metrics["zero_signal_groups"] == zero >= 1
    mean_std = statistics.fmean(map(statistics.stdev, groups))
    assert metrics["reward_std_within_group"] == pytest.approx(mean_std)


@pytest.mark.parametrize(("name", "scale_by_std"), [("grpo", True), ("dr_grpo", False)])
def test_registry_names(name: str, scale_by_std: bool) -> None:
    rewards = torch.tensor([0.0, 1.0, 1.0, 1.0, 0.0, 0.25])
    got, got_metrics = ADVANTAGE_ESTIMATORS[name](rewards, group_size=3)
    want, want_metrics = group_advantages(rewards, group_size=3, scale_by_std=scale_by_std)
    assert torch.equal(got, want)
    assert got_metrics == want_metrics


@pytest.mark.parametrize(
    ("rewards", "group_size", "message"),
    [
        (torch.ones(4), 1, "group_size must be an integer >= 2"),
        (torch.ones(4), 0, "group_size must be an integer >= 2"),
        (torch.ones(4), 2.0, "group_size must be an integer >= 2"),
        (torch.ones(5), 2, "5 elements, which is not a positive multiple of group_size=2"),
        (torch.ones(0), 2, "0 elements"),
        (torch.ones(2, 2), 2, r"must be 1-D with shape \(B\*G,\)"),
    ],
)
def test_misuse_raises_value_error(rewards: torch.Tensor, group_size: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        group_advantages(rewards, group_size=group_size)
