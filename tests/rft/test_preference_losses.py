"""Preference losses against numbers derived by hand for one pair, against a naive loop, and their gradients."""

from __future__ import annotations

import math

import pytest
import torch

from rft.algorithms import DPOConfig
from rft.preference_losses import PREFERENCE_LOSSES, preference_loss


def one_pair() -> tuple[torch.Tensor, ...]:
    """log pi(y_w) = -3, log pi(y_l) = -5, log ref(y_w) = -4, log ref(y_l) = -4.5.

    chosen log-ratio 1.0, rejected -0.5, so h = 1.5; with beta = 0.2, beta h = 0.3.
    """
    tensors = [torch.tensor([v], dtype=torch.float64) for v in (-3.0, -5.0, -4.0, -4.5)]
    tensors[0].requires_grad_()
    return tuple(tensors)


def test_sigmoid_loss_of_one_pair_by_hand() -> None:
    """-log sigmoid(0.3) = log(1 + e^-0.3) = log(1.7408182) = 0.5543552; d/d log pi(y_w) = -beta sigmoid(-0.3)
    = -0.2 x 0.4255575 = -0.0851115. Rewards: chosen 0.2 x 1.0, rejected 0.2 x -0.5, margin 0.3."""
    pc, pr, rc, rr = one_pair()
    loss, metrics = preference_loss(pc, pr, rc, rr, beta=0.2)
    assert loss.item() == pytest.approx(0.5543552, abs=1e-7)
    loss.backward()
    assert pc.grad.item() == pytest.approx(-0.0851115, abs=1e-7)
    assert metrics == pytest.approx({"loss": 0.5543552, "rewards/chosen": 0.2, "rewards/rejected": -0.1,
                                     "rewards/margin": 0.3, "rewards/accuracy": 1.0}, abs=1e-7)


def test_conservative_and_ipo_of_one_pair_by_hand() -> None:
    """cDPO, eps = 0.1: 0.9 log(1 + e^-0.3) + 0.1 log(1 + e^0.3) = 0.9 x 0.5543552 + 0.1 x 0.8543552 = 0.5843552.
    IPO, tau = 0.2: (h - 1/(2 tau))^2 = (1.5 - 2.5)^2 = 1; its gradient 2 (h - 2.5) = -2 per unit of log pi(y_w)."""
    loss, _ = preference_loss(*one_pair(), beta=0.2, loss_type="conservative", label_smoothing=0.1)
    assert loss.item() == pytest.approx(0.5843552, abs=1e-7)
    pc, pr, rc, rr = one_pair()
    loss, metrics = preference_loss(pc, pr, rc, rr, beta=0.2, loss_type="ipo")
    loss.backward()
    assert (loss.item(), pc.grad.item(), metrics["rewards/margin"]) == pytest.approx((1.0, -2.0, 0.3))


def naive(pc: list[float], pr: list[float], rc: list[float], rr: list[float], beta: float, kind: str, eps: float
          ) -> float:
    """The per-pair formulas in plain floats, one pair at a time."""
    total = 0.0
    for a, b, c, d in zip(pc, pr, rc, rr):
        h = (a - c) - (b - d)
        log_sig = -math.log1p(math.exp(-beta * h))  # log sigmoid(beta h)
        log_sig_neg = -math.log1p(math.exp(beta * h))
        total += {"sigmoid": -log_sig, "conservative": -(1 - eps) * log_sig - eps * log_sig_neg,
                  "ipo": (h - 1 / (2 * beta)) ** 2}[kind]
    return total / len(pc)


@pytest.mark.parametrize("kind", sorted(PREFERENCE_LOSSES))
def test_matches_a_naive_loop_and_micro_batches_add_up(kind: str) -> None:
    gen = torch.Generator().manual_seed(3)
    pc, pr, rc, rr = (torch.randn(7, generator=gen, dtype=torch.float64) * 4 - 10 for _ in range(4))
    eps = 0.2 if kind == "conservative" else 0.0
    loss, metrics = preference_loss(pc, pr, rc, rr, beta=0.3, loss_type=kind, label_smoothing=eps)
    assert loss.item() == pytest.approx(naive(*(t.tolist() for t in (pc, pr, rc, rr)), 0.3, kind, eps), rel=1e-12)
    assert metrics["rewards/accuracy"] == pytest.approx(float(((pc - rc) > (pr - rr)).double().mean()))
    tied = preference_loss(pc, pr, pc, pr, beta=0.3, loss_type=kind, label_smoothing=eps)[1]  # policy = reference
    assert (tied["rewards/accuracy"], tied["rewards/margin"]) == (0.5, 0.0)  # every pair a tie: half credit each
    parts = [preference_loss(pc[s], pr[s], rc[s], rr[s], beta=0.3, loss_type=kind, label_smoothing=eps,
                             total_pairs=7)[0] for s in (slice(0, 3), slice(3, 7))]
    assert (parts[0] + parts[1]).item() == pytest.approx(loss.item(), rel=1e-12)


def test_reference_gets_no_gradient_and_bad_inputs_are_named() -> None:
    pc, pr, rc, rr = one_pair()
    rc.requires_grad_()
    preference_loss(pc, pr, rc, rr, beta=0.2)[0].backward()
    assert rc.grad is None
    with pytest.raises(ValueError, match="must all have shape"):
        preference_loss(pc, pr.repeat(2), rc, rr, beta=0.2)
    with pytest.raises(ValueError, match="unknown preference loss 'hinge'"):
        preference_loss(pc, pr, rc, rr, beta=0.2, loss_type="hinge")


def test_config_offers_exactly_the_registered_losses() -> None:
    import dataclasses

    field = next(f for f in dataclasses.fields(DPOConfig) if f.name == "loss")
    assert sorted(field.metadata["choices"]) == sorted(PREFERENCE_LOSSES)


def test_rpo_adds_the_chosen_replys_per_token_nll() -> None:
    """The one pair with a 4-token chosen reply: NLL per token = 3 / 4 = 0.75, so with nll_coef 1 the loss is
    0.5543552 + 0.75 = 1.3043552 and d/d log pi(y_w) = -0.0851115 - 1/4 = -0.3351115."""
    pc, pr, rc, rr = one_pair()
    lengths = torch.tensor([4.0], dtype=torch.float64)
    loss, metrics = preference_loss(pc, pr, rc, rr, beta=0.2, nll_coef=1.0, chosen_lengths=lengths)
    loss.backward()
    assert (loss.item(), pc.grad.item(), metrics["nll"]) == pytest.approx((1.3043552, -0.3351115, 0.75), abs=1e-7)
    with pytest.raises(ValueError, match="nll_coef needs chosen_lengths"):
        preference_loss(pc, pr, rc, rr, beta=0.2, nll_coef=1.0)
