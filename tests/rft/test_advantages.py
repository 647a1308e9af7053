"""Group advantages against hand-derived numbers and a naive loop over groups."""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from rft.advantages import (
    ADVANTAGE_ESTIMATORS,
    group_advantages,
    kl_penalised_rewards,
    masked_whiten,
    reinforce_pp_advantages,
    rloo_advantages,
)


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
    """The registry takes token rewards (N, T): outcome estimators sum each row and broadcast back."""
    rewards = torch.tensor([0.0, 1.0, 1.0, 1.0, 0.0, 0.25])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0], [1.0, 1.0], [1.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    token_rewards = torch.zeros(6, 2)
    token_rewards[:, 0] = rewards  # the score anywhere in the row: only the row sum matters
    got, got_metrics = ADVANTAGE_ESTIMATORS[name](token_rewards, mask, group_size=3)
    want, want_metrics = group_advantages(rewards, group_size=3, scale_by_std=scale_by_std)
    assert torch.equal(got, want.unsqueeze(1) * mask)
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


def test_hand_derived_rloo() -> None:
    """G = 3, rewards [1, 0, 0]: baselines are the means of the other two, [0, 1/2, 1/2].

    A = [1 - 0, 0 - 1/2, 0 - 1/2] = [1, -1/2, -1/2] (= 3/2 x the mean-centred [2/3, -1/3, -1/3]).
    Second group [0.5, 0.5, 0.5]: every baseline is 0.5, A = 0.
    """
    adv, metrics = rloo_advantages(torch.tensor([1.0, 0.0, 0.0, 0.5, 0.5, 0.5]), group_size=3)
    assert adv.tolist() == pytest.approx([1.0, -0.5, -0.5, 0.0, 0.0, 0.0])
    assert metrics["zero_signal_groups"] == 1.0


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("group_size", [2, 4])
def test_rloo_matches_naive_leave_one_out_loop(seed: int, group_size: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    rewards = torch.rand(3 * group_size, generator=gen, dtype=torch.float64)
    want = []
    for b in range(3):
        group = rewards[b * group_size : (b + 1) * group_size].tolist()
        for i, r in enumerate(group):
            others = [x for j, x in enumerate(group) if j != i]
            want.append(r - sum(others) / len(others))
    adv, _ = ADVANTAGE_ESTIMATORS["rloo"](rewards.unsqueeze(1), torch.ones(3 * group_size, 1), group_size=group_size)
    assert adv.squeeze(1).tolist() == pytest.approx(want, rel=1e-12)


def test_rloo_needs_two_samples() -> None:
    with pytest.raises(ValueError, match="group_size must be an integer >= 2"):
        rloo_advantages(torch.ones(3), group_size=1)


def test_hand_derived_kl_penalised_rewards() -> None:
    """Two completions of lengths 3 and 1 (T = 3), scores 1 and 0.5, kl_coef 0.1.

    k1 KL per real token = logprobs - ref = [0.5, -0.5, 1.0] and [2.0, pad, pad].
    Row 0: [-0.05, 0.05, 1 - 0.1] ; row 1: [0.5 - 0.2, 0, 0] (padding gets no KL).
    """
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    logprobs = torch.tensor([[-1.0, -2.0, -0.5], [-0.5, 9.0, 9.0]])
    ref = torch.tensor([[-1.5, -1.5, -1.5], [-2.5, 0.0, 0.0]])
    rewards = kl_penalised_rewards(torch.tensor([1.0, 0.5]), torch.tensor([3, 1]), mask, logprobs, ref, 0.1)
    torch.testing.assert_close(rewards, torch.tensor([[-0.05, 0.05, 0.9], [0.3, 0.0, 0.0]]))
    plain = kl_penalised_rewards(torch.tensor([1.0, 0.5]), torch.tensor([3, 0]), mask, None, None, 0.0)
    assert plain.tolist() == [[0.0, 0.0, 1.0], [0.5, 0.0, 0.0]]  # an empty completion keeps its score
    with pytest.raises(ValueError, match="needs logprobs and ref_logprobs"):
        kl_penalised_rewards(torch.tensor([1.0, 0.5]), torch.tensor([3, 1]), mask, None, None, 0.1)


def test_hand_derived_reinforce_pp() -> None:
    """Token rewards [[0, 0, 1], [-1, pad, pad]] (real tokens 4).

    Rewards-to-go: [1, 1, 1] and [-1]; mean over the 4 real tokens = 2/4 = 0.5; population variance
    = (3 x 0.25 + 2.25) / 4 = 0.75, so A = (x - 0.5) / sqrt(0.75): [0.5773.., x3] and [-1.7320..].
    """
    rewards = torch.tensor([[0.0, 0.0, 1.0], [-1.0, 7.0, 7.0]], dtype=torch.float64)
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
    adv, metrics = reinforce_pp_advantages(rewards, mask, eps=0.0)
    s = math.sqrt(0.75)
    torch.testing.assert_close(adv, torch.tensor([[0.5 / s] * 3, [-1.5 / s, 0.0, 0.0]], dtype=torch.float64))
    assert metrics["return_mean"] == pytest.approx(0.5)
    assert metrics["advantage_std_before_norm"] == pytest.approx(s)


@pytest.mark.parametrize("seed", range(3))
def test_reinforce_pp_matches_naive_loop(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    rewards = torch.randn(5, 6, generator=gen, dtype=torch.float64)
    lengths = [6, 1, 3, 0, 4]
    mask = (torch.arange(6).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)).double()
    to_go = []
    for i, n in enumerate(lengths):
        to_go.append([sum(rewards[i, s].item() for s in range(t, n)) for t in range(n)])
    flat = [x for row in to_go for x in row]
    mean = statistics.fmean(flat)
    std = statistics.pstdev(flat)
    adv, _ = ADVANTAGE_ESTIMATORS["reinforce_pp"](rewards, mask, group_size=1)
    for i, n in enumerate(lengths):
        assert adv[i, :n].tolist() == pytest.approx([(x - mean) / std for x in to_go[i]], rel=1e-6)
        assert adv[i, n:].abs().sum() == 0


def test_masked_whiten_keeps_the_mean_when_asked() -> None:
    """x = [1, 3, pad]: mean 2, population std 1 -> [-1, 1, 0]; without the shift: [1, 3, 0]."""
    x = torch.tensor([[1.0, 3.0, 100.0]], dtype=torch.float64)
    mask = torch.tensor([[1.0, 1.0, 0.0]], dtype=torch.float64)
    assert masked_whiten(x, mask, eps=0.0).tolist() == [[-1.0, 1.0, 0.0]]
    assert masked_whiten(x, mask, shift_mean=False, eps=0.0).tolist() == [[1.0, 3.0, 0.0]]
