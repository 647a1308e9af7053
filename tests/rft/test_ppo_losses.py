"""PPO's pure pieces: GAE against a hand-unrolled recursion, the clipped value loss, explained variance, approx KL."""

from __future__ import annotations

import math

import pytest
import torch

from rft.advantages import gae
from rft.losses import BatchCounts, approx_kl, explained_variance, value_loss


def test_gae_by_hand_for_three_tokens() -> None:
    """gamma 0.9, lam 0.5 (gamma*lam = 0.45), terminal after the last real token.

    Row 0, r = [0, 0, 1], V = [0.5, 0.25, 0.75]:
      d2 = 1 - 0.75 = 0.25; d1 = 0 + 0.9*0.75 - 0.25 = 0.425; d0 = 0 + 0.9*0.25 - 0.5 = -0.275
      A2 = d2 = 0.25; A1 = d1 + 0.45 d2 = 0.5375; A0 = d0 + 0.45 d1 + 0.45^2 d2 = -0.033125
      returns = A + V = [0.466875, 0.7875, 1.0]
    Row 1, length 2, r = [0, 1, pad], V = [0.5, 0.2, garbage]:
      d1 = 1 - 0.2 = 0.8 (terminal: the padded value is not bootstrapped); d0 = 0.9*0.2 - 0.5 = -0.32
      A = [-0.32 + 0.45*0.8, 0.8, 0] = [0.04, 0.8, 0]; returns = [0.54, 1.0, 0]
    """
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 5.0]], dtype=torch.float64)
    values = torch.tensor([[0.5, 0.25, 0.75], [0.5, 0.2, 9.0]], dtype=torch.float64)
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]], dtype=torch.float64)
    advantages, returns = gae(rewards, values, mask, gamma=0.9, lam=0.5)
    want_adv = torch.tensor([[-0.033125, 0.5375, 0.25], [0.04, 0.8, 0.0]], dtype=torch.float64)
    want_ret = torch.tensor([[0.466875, 0.7875, 1.0], [0.54, 1.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(advantages, want_adv)
    torch.testing.assert_close(returns, want_ret)


def naive_gae(rewards: list[float], values: list[float], gamma: float, lam: float) -> list[float]:
    """A_t = sum_l (gamma lam)^l delta_{t+l} written as the sum itself (eq. 16), not the recursion."""
    n = len(rewards)
    deltas = [rewards[t] + gamma * (values[t + 1] if t + 1 < n else 0.0) - values[t] for t in range(n)]
    return [sum((gamma * lam) ** (k - t) * deltas[k] for k in range(t, n)) for t in range(n)]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize(("gamma", "lam"), [(1.0, 0.95), (0.9, 0.0), (1.0, 1.0), (0.5, 0.7)])
def test_gae_matches_the_sum_over_deltas(seed: int, gamma: float, lam: float) -> None:
    gen = torch.Generator().manual_seed(seed)
    rewards = torch.randn(4, 5, generator=gen, dtype=torch.float64)
    values = torch.randn(4, 5, generator=gen, dtype=torch.float64)
    lengths = [5, 3, 0, 1]
    mask = (torch.arange(5).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)).double()
    advantages, returns = gae(rewards, values, mask, gamma=gamma, lam=lam)
    for i, n in enumerate(lengths):
        want = naive_gae(rewards[i, :n].tolist(), values[i, :n].tolist(), gamma, lam)
        assert advantages[i, :n].tolist() == pytest.approx(want, rel=1e-9, abs=1e-12)
        assert returns[i, :n].tolist() == pytest.approx([a + v for a, v in zip(want, values[i, :n].tolist())])
        assert advantages[i, n:].abs().sum() == 0 and returns[i, n:].abs().sum() == 0


def test_gae_with_lambda_one_and_no_discount_is_return_minus_value() -> None:
    """gamma = lam = 1: A_t = sum_{s >= t} r_s - V_t (Monte Carlo), so returns are rewards-to-go."""
    rewards = torch.tensor([[0.0, 0.5, 1.0]])
    values = torch.tensor([[0.3, 0.1, 0.7]])
    advantages, returns = gae(rewards, values, torch.ones(1, 3), gamma=1.0, lam=1.0)
    torch.testing.assert_close(returns, torch.tensor([[1.5, 1.5, 1.0]]))
    torch.testing.assert_close(advantages, torch.tensor([[1.2, 1.4, 0.3]]))


@pytest.mark.parametrize(("gamma", "lam"), [(1.5, 0.9), (1.0, -0.1)])
def test_gae_rejects_settings_outside_the_unit_interval(gamma: float, lam: float) -> None:
    with pytest.raises(ValueError, match=r"gamma and lam must be in \[0, 1\]"):
        gae(torch.zeros(1, 2), torch.zeros(1, 2), torch.ones(1, 2), gamma=gamma, lam=lam)


def test_value_loss_by_hand() -> None:
    """V = [0.5, 1.0], V_old = [0.2, 0.9], R = [1, 0], clip 0.2, token mean over 2 tokens.

    Token 0: plain (0.5 - 1)^2 = 0.25; clipped V = 0.2 + 0.2 = 0.4, (0.4 - 1)^2 = 0.36: the max is
    the clipped one (counted in value_clip_frac, and its gradient is 0: the clamp is saturated).
    Token 1: plain (1 - 0)^2 = 1 = clipped (0.9 + 0.1 = 1.0). Loss = 0.5 * (0.36 + 1) / 2 = 0.34.
    Gradient: token 0 none; token 1 0.5 * 2 (V - R) / 2 = 0.5.
    """
    values = torch.tensor([[0.5, 1.0]], dtype=torch.float64, requires_grad=True)
    old = torch.tensor([[0.2, 0.9]], dtype=torch.float64)
    returns = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    mask = torch.ones(1, 2, dtype=torch.float64)
    loss, metrics = value_loss(values, old, returns, mask, clip_range=0.2)
    assert loss.item() == pytest.approx(0.34)
    assert metrics == pytest.approx({"value_loss": 0.34, "value_clip_frac": 0.5, "value_mean": 0.75})
    loss.backward()
    torch.testing.assert_close(values.grad, torch.tensor([[0.0, 0.5]], dtype=torch.float64))
    plain, _ = value_loss(values, old, returns, mask, clip_range=None)
    assert plain.item() == pytest.approx(0.5 * (0.25 + 1.0) / 2)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("clip_range", [None, 0.1])
def test_value_loss_matches_naive_loop_and_splits_over_micro_batches(seed: int, clip_range: float | None) -> None:
    gen = torch.Generator().manual_seed(seed)
    values, old, returns = (torch.randn(6, 4, generator=gen, dtype=torch.float64) for _ in range(3))
    mask = (torch.arange(4).unsqueeze(0) < torch.tensor([4, 1, 0, 3, 2, 4]).unsqueeze(1)).double()
    total, count, clipped = 0.0, 0, 0
    for i in range(6):
        for t in range(4):
            if mask[i, t] == 0:
                continue
            v, o, r = values[i, t].item(), old[i, t].item(), returns[i, t].item()
            plain = (v - r) ** 2
            vc = o + min(max(v - o, -clip_range), clip_range) if clip_range else v
            total += max(plain, (vc - r) ** 2)
            clipped += (vc - r) ** 2 > plain
            count += 1
    loss, metrics = value_loss(values, old, returns, mask, clip_range=clip_range)
    assert loss.item() == pytest.approx(0.5 * total / count, rel=1e-12)
    assert metrics["value_clip_frac"] == pytest.approx(clipped / count)
    counts = BatchCounts.of(mask)
    halves = sum(value_loss(values[s], old[s], returns[s], mask[s], clip_range=clip_range, counts=counts)[0]
                 for s in (slice(0, 3), slice(3, 6)))
    assert halves.item() == pytest.approx(loss.item(), rel=1e-12)


def test_explained_variance_by_hand() -> None:
    """R = [1, 0, 1, 0] (variance 1/4), V = [1, 0, .5, .5]: residuals [0, 0, .5, -.5], variance 1/8: EV = 1/2."""
    returns = torch.tensor([[1.0, 0.0], [1.0, 0.0], [7.0, 7.0]])
    values = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    assert explained_variance(values, returns, mask) == pytest.approx(0.5)
    assert explained_variance(values, torch.ones(3, 2), mask) == 0.0  # constant returns: nothing to explain


def test_approx_kl_by_hand() -> None:
    """log ratio [ln 2, 0, pad]: k3 = (2 - 1) - ln 2 and 0, mean over 2 real tokens = (1 - ln 2) / 2."""
    old = torch.tensor([[-1.0, -2.0, 0.0]])
    logprobs = torch.tensor([[-1.0 + math.log(2), -2.0, 50.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    assert approx_kl(logprobs, old, mask) == pytest.approx((1 - math.log(2)) / 2)
