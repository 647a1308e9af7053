"""grpo_loss against numbers derived by hand, against a naive per-token loop, and its gradients."""

from __future__ import annotations

import math

import pytest
import torch

from rft.losses import AGGREGATIONS, grpo_loss

LN2 = math.log(2.0)


def _hand_batch() -> dict[str, torch.Tensor]:
    """2 sequences x 3 tokens; the last token of sequence 1 is padding filled with garbage.

    Ratios (exp(logp - old)): seq 0 = [1.5, 0.5, 1.1] with A = +1, seq 1 = [0.5, 1.5, pad] with A = -2.
    Reference gaps (ref - logp): seq 0 = [0, ln2, -ln2], seq 1 = [ln2, 0, pad].
    """
    old = torch.tensor([[-1.0, -2.0, -0.5], [-1.5, -0.7, -50.0]], dtype=torch.float64)
    ratio = torch.tensor([[1.5, 0.5, 1.1], [0.5, 1.5, 1.0]], dtype=torch.float64)
    logprobs = old + ratio.log()
    logprobs[1, 2] = 50.0  # padding: exp(50 - -50) would overflow if it were not masked out
    gap = torch.tensor([[0.0, LN2, -LN2], [LN2, 0.0, 0.0]], dtype=torch.float64)
    ref = logprobs + gap
    ref[1, 2] = -1e4
    return {
        "logprobs": logprobs.requires_grad_(),
        "old_logprobs": old,
        "ref_logprobs": ref,
        "advantages": torch.tensor([1.0, -2.0], dtype=torch.float64),
        "mask": torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.float64),
    }


# Per-token surrogate -min(r*A, clip(r, 0.8, 1.28)*A), epsilon=0.2, epsilon_high=0.28:
#   seq 0 (A=+1): r=1.5 -> -min(1.5, 1.28) = -1.28 (clipped high); r=0.5 -> -min(0.5, 0.8) = -0.5;
#                 r=1.1 -> -1.1.
#   seq 1 (A=-2): r=0.5 -> -min(-1.0, -1.6) = 1.6 (clipped low); r=1.5 -> -min(-3.0, -2.56) = 3.0.
# k3(gap) = e^gap - gap - 1: k3(0) = 0, k3(ln2) = 1 - ln2, k3(-ln2) = ln2 - 1/2.
# With beta = 0.1: seq 0 sum = -2.88 + 0.1 * ((1 - ln2) + (ln2 - 1/2)) = -2.83,
#                  seq 1 sum = 4.6 + 0.1 * (1 - ln2).
SEQ0_SUM = -2.83
SEQ1_SUM = 4.6 + 0.1 * (1 - LN2)
HAND_EXPECTED = {
    "token_mean": (SEQ0_SUM + SEQ1_SUM) / 5,  # 5 real tokens
    "seq_mean": (SEQ0_SUM / 3 + SEQ1_SUM / 2) / 2,  # each sequence over its own length
    "seq_mean_token_sum_norm": (SEQ0_SUM + SEQ1_SUM) / (2 * 4),  # N * max_tokens, max_tokens = 4
}


@pytest.mark.parametrize("aggregation", sorted(HAND_EXPECTED))
def test_hand_derived_loss_and_metrics(aggregation: str) -> None:
    batch = _hand_batch()
    loss, metrics = grpo_loss(
        **batch, epsilon=0.2, epsilon_high=0.28, beta=0.1, aggregation=aggregation, max_tokens=4
    )
    assert loss.item() == pytest.approx(HAND_EXPECTED[aggregation], rel=1e-12)
    assert metrics["loss"] == pytest.approx(HAND_EXPECTED[aggregation], rel=1e-12)
    # One clip-high (seq 0 tok 0) and one clip-low (seq 1 tok 0) out of 5 real tokens.
    assert metrics["clip_ratio_high"] == pytest.approx(0.2)
    assert metrics["clip_ratio_low"] == pytest.approx(0.2)
    assert metrics["clip_ratio"] == pytest.approx(0.4)
    assert metrics["ratio_mean"] == pytest.approx((1.5 + 0.5 + 1.1 + 0.5 + 1.5) / 5)
    assert metrics["kl"] == pytest.approx((1.5 - LN2) / 5)  # (1-ln2) + (ln2-1/2) + (1-ln2) over 5


def test_hand_derived_symmetric_clip_moves_only_the_upper_bound() -> None:
    """Without epsilon_high the upper clip is 1.2: seq 0 tok 0 becomes -1.2 instead of -1.28.

    seq 1 tok 1 (r=1.5, A=-2) stays unclipped: -min(-3.0, -2.4) = 3.0. No KL (beta=0, no ref).
    token_mean = (-1.2 - 0.5 - 1.1 + 1.6 + 3.0) / 5 = 1.8 / 5.
    """
    batch = _hand_batch()
    batch["ref_logprobs"] = None
    loss, metrics = grpo_loss(**batch, epsilon=0.2, aggregation="token_mean")
    assert loss.item() == pytest.approx(1.8 / 5, rel=1e-12)
    assert metrics["clip_ratio"] == pytest.approx(0.4)
    assert "kl" not in metrics


def test_hand_derived_gradients() -> None:
    """d loss / d logp per token for token_mean (normaliser 5), epsilon_high=0.28, beta=0.1.

    Surrogate: unclipped -> d(-r*A)/dlogp = -r*A; clipped -> 0. KL: d k3/dlogp = 1 - e^gap.
      seq 0 tok 0: clipped, gap 0          -> 0
      seq 0 tok 1: -0.5*1 + 0.1*(1 - 2)     -> -0.6
      seq 0 tok 2: -1.1*1 + 0.1*(1 - 1/2)   -> -1.05
      seq 1 tok 0: clipped, 0.1*(1 - 2)     -> -0.1
      seq 1 tok 1: -1.5*-2 + 0.1*(1 - 1)    -> 3.0
      seq 1 tok 2: padding                  -> 0
    """
    batch = _hand_batch()
    loss, _ = grpo_loss(**batch, epsilon=0.2, epsilon_high=0.28, beta=0.1, aggregation="token_mean")
    loss.backward()
    expected = torch.tensor([[0.0, -0.6, -1.05], [-0.1, 3.0, 0.0]], dtype=torch.float64) / 5
    torch.testing.assert_close(batch["logprobs"].grad, expected, rtol=1e-12, atol=1e-12)


def naive_grpo_loss(
    logprobs: list[list[float]],
    old: list[list[float]],
    ref: list[list[float]] | None,
    adv: list[float],
    mask: list[list[float]],
    *,
    epsilon: float,
    epsilon_high: float | None,
    beta: float,
    aggregation: str,
    max_tokens: int | None,
) -> tuple[float, dict[str, float]]:
    """The same objective written token by token in plain Python, as in the papers' sums."""
    high = epsilon if epsilon_high is None else epsilon_high
    seq_sums, seq_lens = [], []
    tokens = clip_low = clip_high = 0
    ratio_sum = kl_sum = 0.0
    for i, row in enumerate(logprobs):
        total, length = 0.0, 0
        for t, lp in enumerate(row):
            if not mask[i][t]:
                continue
            ratio = math.exp(lp - old[i][t])
            clipped_ratio = min(max(ratio, 1 - epsilon), 1 + high)
            loss = -min(ratio * adv[i], clipped_ratio * adv[i])
            clip_low += ratio < 1 - epsilon and adv[i] < 0
            clip_high += ratio > 1 + high and adv[i] > 0
            if ref is not None:
                gap = ref[i][t] - lp
                kl = math.exp(gap) - gap - 1
                kl_sum += kl
                loss += beta * kl
            total += loss
            length += 1
            ratio_sum += ratio
        seq_sums.append(total)
        seq_lens.append(length)
        tokens += length
    if aggregation == "token_mean":
        value = sum(seq_sums) / max(tokens, 1)
    elif aggregation == "seq_mean":
        means = [s / n for s, n in zip(seq_sums, seq_lens) if n > 0]
        value = sum(means) / len(means) if means else 0.0
    else:
        value = sum(seq_sums) / (len(logprobs) * max_tokens)
    metrics = {
        "loss": value,
        "ratio_mean": ratio_sum / max(tokens, 1),
        "clip_ratio_low": clip_low / max(tokens, 1),
        "clip_ratio_high": clip_high / max(tokens, 1),
        "clip_ratio": (clip_low + clip_high) / max(tokens, 1),
    }
    if ref is not None:
        metrics["kl"] = kl_sum / max(tokens, 1)
    return value, metrics


def _random_batch(seed: int, n: int = 6, t: int = 7) -> dict[str, torch.Tensor]:
    """Log-probs whose ratios straddle both clip bounds; right-padded masks incl. an empty row."""
    gen = torch.Generator().manual_seed(seed)
    old = -torch.rand(n, t, generator=gen, dtype=torch.float64) * 3
    logprobs = old + torch.randn(n, t, generator=gen, dtype=torch.float64) * 0.3
    ref = logprobs + torch.randn(n, t, generator=gen, dtype=torch.float64) * 0.5
    lengths = torch.randint(1, t + 1, (n,), generator=gen)
    lengths[seed % n] = 0  # a fully masked (e.g. truncated) completion
    mask = (torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)).to(torch.float64)
    advantages = torch.randn(n, generator=gen, dtype=torch.float64)
    return {
        "logprobs": logprobs,
        "old_logprobs": old,
        "ref_logprobs": ref,
        "advantages": advantages,
        "mask": mask,
    }


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("aggregation", sorted(AGGREGATIONS))
@pytest.mark.parametrize("epsilon_high", [None, 0.28])
@pytest.mark.parametrize(("beta", "with_ref"), [(0.0, False), (0.0, True), (0.04, True)])
def test_matches_naive_loop(
    seed: int, aggregation: str, epsilon_high: float | None, beta: float, with_ref: bool
) -> None:
    batch = _random_batch(seed)
    if not with_ref:
        batch["ref_logprobs"] = None
    options = {
        "epsilon": 0.2,
        "epsilon_high": epsilon_high,
        "beta": beta,
        "aggregation": aggregation,
        "max_tokens": 9,
    }
    loss, metrics = grpo_loss(**batch, **options)
    as_lists = {k: (v.tolist() if v is not None else None) for k, v in batch.items()}
    want_loss, want_metrics = naive_grpo_loss(
        as_lists["logprobs"], as_lists["old_logprobs"], as_lists["ref_logprobs"],
        as_lists["advantages"], as_lists["mask"], **options,
    )
    assert loss.item() == pytest.approx(want_loss, rel=1e-9, abs=1e-12)
    assert metrics == pytest.approx(want_metrics, rel=1e-9, abs=1e-12)
    assert 0 < want_metrics["clip_ratio"] < 1  # the random batch really exercises clipping


@pytest.mark.parametrize(
    ("aggregation", "normaliser"),
    [
        # lengths (3, 1, 0, 2): 6 real tokens; 3 non-empty sequences; N * max_tokens = 4 * 5.
        ("token_mean", lambda n_i: 6.0),
        ("seq_mean", lambda n_i: 3.0 * n_i),
        ("seq_mean_token_sum_norm", lambda n_i: 4.0 * 5),
    ],
)
def test_gradient_at_ratio_one_is_minus_advantage_over_normaliser(aggregation: str, normaliser) -> None:
    """At ratio 1 (single update, old = logp.detach()) the surrogate's gradient is -A_i / normaliser."""
    lengths = [3, 1, 0, 2]
    mask = (torch.arange(3).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)).double()
    logprobs = torch.randn(4, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    logprobs.requires_grad_()
    advantages = torch.tensor([0.5, -1.5, 2.0, 1.0], dtype=torch.float64)
    loss, metrics = grpo_loss(
        logprobs, logprobs, None, advantages, mask, aggregation=aggregation, max_tokens=5
    )
    loss.backward()
    expected = torch.zeros(4, 3, dtype=torch.float64)
    for i, n_i in enumerate(lengths):
        expected[i, :n_i] = -advantages[i] / normaliser(n_i)
    torch.testing.assert_close(logprobs.grad, expected, rtol=1e-12, atol=1e-12)
    assert metrics["ratio_mean"] == pytest.approx(1.0)
    assert metrics["clip_ratio"] == 0.0


@pytest.mark.parametrize("aggregation", sorted(AGGREGATIONS))
def test_autograd_gradient_matches_finite_differences(aggregation: str) -> None:
    batch = _random_batch(seed=7, n=3, t=4)
    rest = {k: v for k, v in batch.items() if k != "logprobs"}

    def fn(logprobs: torch.Tensor) -> torch.Tensor:
        options = {"epsilon_high": 0.28, "beta": 0.05, "aggregation": aggregation, "max_tokens": 4}
        return grpo_loss(logprobs, **rest, **options)[0]

    assert torch.autograd.gradcheck(fn, (batch["logprobs"].clone().requires_grad_(),))


@pytest.mark.parametrize("aggregation", sorted(AGGREGATIONS))
def test_fully_masked_rows_and_batches_stay_finite(aggregation: str) -> None:
    """Empty rows are ignored; an all-empty micro-batch gives loss 0 with zero (not NaN) gradients."""
    batch = _hand_batch()
    with_empty = {k: torch.cat([v, v[:1]]) if k != "logprobs" else v for k, v in batch.items()}
    logprobs = torch.cat([batch["logprobs"].detach(), torch.full((1, 3), float("inf"))]).requires_grad_()
    with_empty["logprobs"] = logprobs
    with_empty["mask"][2] = 0.0
    options = {"epsilon_high": 0.28, "beta": 0.1, "aggregation": aggregation, "max_tokens": 4}
    loss, metrics = grpo_loss(**with_empty, **options)
    loss.backward()
    assert torch.isfinite(logprobs.grad).all()
    assert (logprobs.grad[2] == 0).all()
    if aggregation != "seq_mean_token_sum_norm":  # its normaliser N * max_tokens counts the empty row
        assert loss.item() == pytest.approx(HAND_EXPECTED[aggregation], rel=1e-12)

    empty = _hand_batch()
    empty["mask"] = torch.zeros(2, 3, dtype=torch.float64)
    loss, metrics = grpo_loss(**empty, beta=0.1, aggregation=aggregation, max_tokens=4)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(empty["logprobs"].grad, torch.zeros(2, 3, dtype=torch.float64))
    assert all(math.isfinite(v) for v in metrics.values())


def test_bool_mask_and_float32_inputs() -> None:
    batch = {k: (v.detach().float() if v.is_floating_point() else v) for k, v in _hand_batch().items()}
    batch["mask"] = batch["mask"].bool()
    loss, _ = grpo_loss(**batch, epsilon_high=0.28, beta=0.1, aggregation="seq_mean")
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(HAND_EXPECTED["seq_mean"], rel=1e-6)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"beta": 0.1, "ref_logprobs": None}, "ref_logprobs is needed"),
        ({"aggregation": "sum"}, "'seq_mean', 'seq_mean_token_sum_norm', 'token_mean'"),
        ({"aggregation": "seq_mean_token_sum_norm", "max_tokens": None}, "needs max_tokens"),
        ({"max_tokens": 2}, "smaller than the completion length T=3"),
        ({"mask": torch.ones(2, 4)}, "mask must have the shape of logprobs"),
        ({"advantages": torch.ones(2, 1)}, r"advantages must have shape \(N,\)"),
        ({"epsilon": -0.1}, "must be >= 0"),
    ],
)
def test_misuse_raises_value_error(change: dict, message: str) -> None:
    batch = _hand_batch()
    options = {"beta": 0.0, "aggregation": "token_mean", "max_tokens": 4}
    options.update({k: v for k, v in change.items() if k not in batch})
    batch.update({k: v for k, v in change.items() if k in batch})
    with pytest.raises(ValueError, match=message):
        grpo_loss(**batch, **options)


@pytest.mark.parametrize("aggregation", sorted(AGGREGATIONS))
def test_micro_batches_with_whole_batch_counts_sum_to_the_full_batch_loss(aggregation: str) -> None:
    """Gradient accumulation: split 4 ragged sequences 1+3; with the full batch's `BatchCounts` the two
    micro-batch losses (and gradients) add up to the one-batch loss. Normalising by each micro-batch's
    own counts (the old behaviour) does not, for token_mean: micro-batch 1 has 1 token, 2 has 7."""
    from rft.losses import BatchCounts

    torch.manual_seed(0)
    old = torch.randn(4, 3, dtype=torch.float64)
    logprobs = (old + 0.3 * torch.randn(4, 3, dtype=torch.float64)).requires_grad_()
    adv = torch.tensor([1.0, -0.5, 2.0, -1.5], dtype=torch.float64)
    mask = torch.tensor([[1, 0, 0], [1, 1, 1], [1, 1, 0], [1, 1, 0]], dtype=torch.float64)
    kw = {"aggregation": aggregation, "max_tokens": 3, "epsilon": 0.2}
    full, _ = grpo_loss(logprobs, old, None, adv, mask, **kw)
    (full_grad,) = torch.autograd.grad(full, logprobs)
    counts = BatchCounts.of(mask)
    assert counts == BatchCounts(sequences=4, present=4, tokens=8.0)
    parts = [grpo_loss(logprobs[s], old[s], None, adv[s], mask[s], counts=counts, **kw)[0]
             for s in (slice(0, 1), slice(1, 4))]
    (split_grad,) = torch.autograd.grad(sum(parts), logprobs)
    torch.testing.assert_close(sum(parts).detach(), full.detach())
    torch.testing.assert_close(split_grad, full_grad)
    own = [grpo_loss(logprobs[s], old[s], None, adv[s], mask[s], **kw)[0] for s in (slice(0, 1), slice(1, 4))]
    weighted = own[0] * 1 / 4 + own[1] * 3 / 4  # the old per-row weighting of per-micro-batch means
    if aggregation == "token_mean":
        assert not torch.allclose(weighted, full)


def test_per_token_advantages_weigh_each_token() -> None:
    """(N, T) advantages: the broadcast of (N,) gives the same loss; at ratio 1 with token_mean the
    gradient of token t is -A_t / (real tokens), here 5, so A = 2 on token (0, 1) gives -0.4 there."""
    batch = _hand_batch()
    sequence, _ = grpo_loss(**batch, aggregation="token_mean")
    batch["advantages"] = batch["advantages"].unsqueeze(1).expand(2, 3)
    per_token, _ = grpo_loss(**batch, aggregation="token_mean")
    assert per_token.item() == pytest.approx(sequence.item(), rel=1e-12)
    logprobs = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    advantages = torch.tensor([[0.0, 2.0, 0.0], [-1.0, 0.0, 0.0]], dtype=torch.float64)
    loss, _ = grpo_loss(logprobs, logprobs, None, advantages, batch["mask"], aggregation="token_mean")
    loss.backward()
    torch.testing.assert_close(logprobs.grad, torch.tensor([[0.0, -0.4, 0.0], [0.2, 0.0, 0.0]], dtype=torch.float64))


def test_hand_derived_truncated_importance_sampling_weights() -> None:
    """TIS (Yao et al. 2025) weighs each surrogate term by min(pi_old / pi_sampler, C); the KL term is not.

    Sampler log-probs are old - ln w with w = [2, 0.5, 1] (seq 0) and [4, 1] (seq 1), C = 3, so the
    weights are [2, 0.5, 1] and [3, 1]. Surrogate terms (see above): seq 0 [-1.28, -0.5, -1.1] ->
    weighted -2.56 - 0.25 - 1.1 = -3.91; seq 1 [1.6, 3.0] -> 4.8 + 3.0 = 7.8. The k3 terms with
    beta = 0.1 add 0.1 * (1/2) + 0.1 * (1 - ln2). token_mean over 5 real tokens.
    |old - sampler| = [ln2, ln2, 0, 2 ln2, 0]: mean 4 ln2 / 5; mean weight (2 + .5 + 1 + 3 + 1) / 5 = 1.5.
    """
    batch = _hand_batch()
    w = torch.tensor([[2.0, 0.5, 1.0], [4.0, 1.0, 1.0]], dtype=torch.float64)
    sampler = batch["old_logprobs"] - w.log()
    sampler[1, 2] = 80.0  # padding: exp(-50 - 80) or its inverse must not leak in
    loss, metrics = grpo_loss(**batch, sampler_logprobs=sampler, tis_cap=3.0, epsilon=0.2, epsilon_high=0.28,
                              beta=0.1, aggregation="token_mean")
    expected = (-3.91 + 7.8 + 0.1 * 0.5 + 0.1 * (1 - LN2)) / 5
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    assert metrics["tis_weight_mean"] == pytest.approx(1.5, rel=1e-12)
    assert metrics["sampler_logprob_diff"] == pytest.approx(4 * LN2 / 5, rel=1e-12)
    loss.backward()
    # d loss / d logp at seq 1 token 0 (clipped low) is 0; at seq 0 token 1 (r = 0.5, unclipped): -w * A * r / 5.
    assert batch["logprobs"].grad[1, 0].item() == pytest.approx(0.1 * -(2 - 1) / 5, rel=1e-9)  # only k3: -(e^gap - 1)
    assert batch["logprobs"].grad[0, 1].item() == pytest.approx(-0.5 * 1.0 * 0.5 / 5 - 0.1 * (2 - 1) / 5, rel=1e-9)


def test_sampler_gap_without_cap_leaves_the_loss_alone() -> None:
    batch = _hand_batch()
    plain, _ = grpo_loss(**batch, aggregation="token_mean")
    shifted, metrics = grpo_loss(**batch, sampler_logprobs=batch["old_logprobs"] - 0.25, aggregation="token_mean")
    assert shifted.item() == plain.item()
    assert metrics["sampler_logprob_diff"] == pytest.approx(0.25, rel=1e-12)
    assert "tis_weight_mean" not in metrics
    with pytest.raises(ValueError, match="sampler_logprobs is needed"):
        grpo_loss(**batch, tis_cap=2.0)
