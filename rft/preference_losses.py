"""Preference losses on chosen/rejected pairs: DPO's sigmoid loss, conservative (label-smoothed) DPO and IPO.

Every loss reads the same four sequence log-probs per pair, (N,) each: the policy's and the reference's
log-prob of the chosen reply (sum over its tokens) and of the rejected reply. With
h = (log pi(y_w|x) - log ref(y_w|x)) - (log pi(y_l|x) - log ref(y_l|x)), the implicit reward margin
divided by beta, each entry of `PREFERENCE_LOSSES` maps (h, beta, label_smoothing) to per-pair losses (N,):

- "sigmoid": DPO, Rafailov et al. 2023, "Direct Preference Optimization", eq. 7: -log sigmoid(beta h).
- "conservative": cDPO (Mitchell 2023, "A note on DPO with noisy preferences"): the labels are flipped with
  probability eps, so the loss is the expected eq. 7 loss, -(1 - eps) log sigmoid(beta h) - eps log sigmoid(-beta h).
- "ipo": IPO, Azar et al. 2023, "A General Theoretical Paradigm to Understand Learning from Human
  Preferences", eq. 17: (h - 1 / (2 tau))^2, with tau = beta. It regresses the margin to a finite target,
  so it cannot push h to infinity on deterministic preferences as eq. 7 can.

With `nll_coef` > 0, the chosen replies' negative log-likelihood per token is added to every loss, weighted by
it: RPO, the DPO+NLL objective of Pang et al. 2024 ("Iterative Reasoning Preference Optimization", sec. 2),
which they found crucial on math: pairwise losses alone can lower the likelihood of the chosen replies along
with the rejected ones (both log-ratios fall, the rejected one faster) and move the mass elsewhere.

`preference_loss` is pure `(tensors, floats) -> (loss, metrics)`; its metrics follow TRL's names:
rewards/chosen = beta (log pi - log ref) of the chosen reply, rewards/rejected likewise, rewards/margin their
difference, rewards/accuracy the fraction of pairs whose chosen reward is the larger (a tie counts half, so
the untrained policy, equal to the reference, scores chance).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

PairLoss = Callable[[Tensor, float, float], Tensor]  # (h (N,), beta, label_smoothing) -> losses (N,)


def _sigmoid(h: Tensor, beta: float, label_smoothing: float) -> Tensor:
    """Rafailov et al. 2023, eq. 7."""
    return -F.logsigmoid(beta * h)


def _conservative(h: Tensor, beta: float, label_smoothing: float) -> Tensor:
    """Eq. 7 averaged over a label flipped with probability `label_smoothing` (cDPO)."""
    return -(1 - label_smoothing) * F.logsigmoid(beta * h) - label_smoothing * F.logsigmoid(-beta * h)


def _ipo(h: Tensor, beta: float, label_smoothing: float) -> Tensor:
    """Azar et al. 2023, eq. 17, with tau = beta."""
    return (h - 1 / (2 * beta)) ** 2


def pair_credit(margin: Tensor) -> Tensor:
    """(N,) 1 where the chosen reply's implicit reward is the larger, 1/2 on a tie, else 0."""
    return (margin > 0).float() + 0.5 * (margin == 0).float()


PREFERENCE_LOSSES: dict[str, PairLoss] = {"sigmoid": _sigmoid, "conservative": _conservative, "ipo": _ipo}


def preference_loss(
    policy_chosen: Tensor,
    policy_rejected: Tensor,
    ref_chosen: Tensor,
    ref_rejected: Tensor,
    *,
    beta: float,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
    nll_coef: float = 0.0,
    chosen_lengths: Tensor | None = None,
    total_pairs: int | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """The `loss_type` loss of N pairs, summed and divided by `total_pairs` (default N), with its metrics.

    policy_chosen, policy_rejected: (N,) sequence log-probs under the policy (with gradient).
    ref_chosen, ref_rejected: (N,) the same under the reference (constants).
    chosen_lengths: (N,) tokens of each chosen reply, for the per-token NLL that `nll_coef` weighs.
    `total_pairs`: the pairs of the whole optimizer batch, so the losses of its micro-batches add up to
    the batch mean. Metrics are means over these N pairs.
    """
    if loss_type not in PREFERENCE_LOSSES:
        raise ValueError(f"unknown preference loss {loss_type!r}; choose one of {sorted(PREFERENCE_LOSSES)}")
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    shapes = [tuple(t.shape) for t in (policy_chosen, policy_rejected, ref_chosen, ref_rejected)]
    if len(shapes[0]) != 1 or len(set(shapes)) != 1:
        raise ValueError(f"the four log-prob tensors must all have shape (N,), got {shapes}")
    chosen = policy_chosen - ref_chosen.detach()  # (N,) log pi/ref of y_w
    rejected = policy_rejected - ref_rejected.detach()  # (N,)
    h = chosen - rejected  # (N,)
    losses = PREFERENCE_LOSSES[loss_type](h, beta, label_smoothing)  # (N,)
    nll = torch.zeros_like(losses)
    if nll_coef:
        if chosen_lengths is None or chosen_lengths.shape != policy_chosen.shape:
            raise ValueError(f"nll_coef needs chosen_lengths of shape (N,) = {shapes[0]}")
        nll = -policy_chosen / chosen_lengths.clamp(min=1)  # (N,) per-token NLL of the chosen reply
        losses = losses + nll_coef * nll
    loss = losses.sum() / (total_pairs or shapes[0][0])
    with torch.no_grad():
        metrics = {
            "loss": float(losses.mean()),
            **({"nll": float(nll.mean())} if nll_coef else {}),
            "rewards/chosen": float(beta * chosen.mean()),
            "rewards/rejected": float(beta * rejected.mean()),
            "rewards/margin": float(beta * h.mean()),
            "rewards/accuracy": float(pair_credit(h).mean()),
        }
    return loss, metrics
