"""SCoRe's pure parts against numbers derived by hand: reward shaping, the per-attempt loss, the paired CI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from graders.string import ExactMatchGrader
from rft.advantages import score_rewards
from rft.config import EvalConfig
from rft.losses import score_loss
from rft.sampling.base import Completion, SamplingParams
from rft.self_correction import (
    Transitions,
    evaluate_two_turns,
    paired_difference,
    second_turn,
    self_correction_stats,
    two_attempt_rollout,
)
from tasks.base import Task


def test_score_rewards_by_hand() -> None:
    first, second = torch.tensor([0.0, 0.0, 1.0, 1.0, 0.5]), torch.tensor([0.0, 1.0, 0.0, 1.0, 1.0])
    # Stage I: attempt 1 unrewarded, attempt 2 its own score.
    r1, r2 = score_rewards(first, second, stage=1, alpha=10.0)
    assert r1.tolist() == [0.0] * 5 and r2.tolist() == second.tolist()
    # Stage II, alpha 10: r2 + 10 (r2 - r1): stay wrong 0, fix 1 + 10, break 0 - 10, stay right 1, 0.5 -> 1: 1 + 5.
    r1, r2 = score_rewards(first, second, stage=2, alpha=10.0)
    assert r1.tolist() == first.tolist() and r2.tolist() == [0.0, 11.0, -10.0, 1.0, 6.0]
    # alpha 0 is plain reward on both attempts.
    assert score_rewards(first, second, stage=2, alpha=0.0)[1].tolist() == second.tolist()


@pytest.mark.parametrize(("args", "message"), [
    ((torch.zeros(3), torch.zeros(2), 1), "share one"),
    ((torch.zeros(2, 2), torch.zeros(2, 2), 1), "share one"),
    ((torch.zeros(2), torch.zeros(2), 3), "stages 1 and 2"),
])
def test_score_rewards_rejects_bad_input(args: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        score_rewards(args[0], args[1], stage=args[2], alpha=1.0)


def _case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    logprobs = torch.tensor([[-0.5, -1.0, -2.0], [-0.2, -0.3, 0.0]], requires_grad=True)  # (N=2, T=3)
    ref = torch.tensor([[-0.5, -2.0, -1.0], [-0.2, -0.3, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])  # 5 real tokens
    advantages = torch.tensor([2.0, -1.0])
    return logprobs, ref, advantages, mask


def test_stage_one_first_attempt_is_beta2_kl_only_by_hand() -> None:
    """k3 = exp(ref - lp) - (ref - lp) - 1 per real token:
    row 0: gaps 0, -1, +1 -> 0, e^-1 + 1 - 1 = 0.367879, e - 1 - 1 = 0.718282; row 1: 0, 0 (t=2 masked).
    Token mean over 5 real tokens: 1.086161 / 5 = 0.217232; stage I attempt 1 ignores the advantage,
    so the loss is beta2 x 0.217232 = 0.0217232 with beta2 = 0.1.
    d/d lp of beta2 k3 / 5 = beta2 (1 - exp(ref - lp)) / 5: row 0 t=1: 0.1 (1 - e^-1) / 5 = 0.0126424,
    row 0 t=2: 0.1 (1 - e) / 5 = -0.0343656; 0 where lp = ref.
    """
    logprobs, ref, advantages, mask = _case()
    loss, metrics = score_loss(logprobs, ref, advantages, mask, attempt=1, stage=1, beta1=0.01, beta2=0.1)
    assert loss.item() == pytest.approx(0.0217232, abs=1e-6)
    assert metrics["kl"] == pytest.approx(0.217232, abs=1e-6)
    loss.backward()
    expected = torch.tensor([[0.0, 0.0126424, -0.0343656], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(logprobs.grad, expected, atol=1e-6, rtol=0)


def test_rewarded_attempt_is_reinforce_plus_beta1_kl_by_hand() -> None:
    """Stage II (or attempt 2): gradient per real token = (-A + beta1 (1 - exp(ref - lp))) / 5.
    row 0 (A = 2): -0.4, -0.4 + 0.01 (1 - e^-1)/5 = -0.3987358, -0.4 + 0.01 (1 - e)/5 = -0.4034366;
    row 1 (A = -1): 0.2, 0.2, 0 (masked). The loss value is -mean(A) over tokens + beta1 KL:
    -(3 x 2 - 2 x 1) / 5 + 0.01 x 0.217232 = -0.8 + 0.00217232.
    """
    for attempt, stage in ((2, 1), (1, 2), (2, 2)):
        logprobs, ref, advantages, mask = _case()
        loss, _ = score_loss(logprobs, ref, advantages, mask, attempt=attempt, stage=stage, beta1=0.01, beta2=0.1)
        assert loss.item() == pytest.approx(-0.8 + 0.00217232, abs=1e-6)
        loss.backward()
        expected = torch.tensor([[-0.4, -0.3987358, -0.4034366], [0.2, 0.2, 0.0]])
        torch.testing.assert_close(logprobs.grad, expected, atol=1e-6, rtol=0)


def _naive_loss(lp: torch.Tensor, ref: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor, beta: float,
                rewarded: bool) -> torch.Tensor:
    """The SCoRe per-attempt objective token by token: sum of -A ratio + beta k3 over real tokens / their count."""
    total, count = torch.zeros(()), 0
    for i in range(lp.shape[0]):
        for t in range(lp.shape[1]):
            if mask[i, t] == 0:
                continue
            ratio = torch.exp(lp[i, t] - lp[i, t].detach())  # 1, with REINFORCE's gradient
            gap = ref[i, t] - lp[i, t]
            total = total - (adv[i] if rewarded else 0.0) * ratio + beta * (torch.exp(gap) - gap - 1)
            count += 1
    return total / count


@pytest.mark.parametrize(("attempt", "stage"), [(1, 1), (2, 1), (1, 2), (2, 2)])
def test_score_loss_matches_a_naive_loop(attempt: int, stage: int) -> None:
    torch.manual_seed(attempt * 10 + stage)
    lp = (-torch.rand(4, 6) * 3).requires_grad_()
    ref = -torch.rand(4, 6) * 3
    adv = torch.randn(4)
    mask = (torch.rand(4, 6) > 0.3).float()
    loss, _ = score_loss(lp, ref, adv, mask, attempt=attempt, stage=stage, beta1=0.05, beta2=0.3)
    (grad,) = torch.autograd.grad(loss, lp)
    lp2 = lp.detach().clone().requires_grad_()
    held = attempt == 1 and stage == 1
    naive = _naive_loss(lp2, ref, adv, mask, 0.3 if held else 0.05, rewarded=not held)
    (naive_grad,) = torch.autograd.grad(naive, lp2)
    assert loss.item() == pytest.approx(naive.item(), abs=1e-5)
    torch.testing.assert_close(grad, naive_grad, atol=1e-6, rtol=1e-5)


def test_score_loss_rejects_unknown_attempt_or_stage() -> None:
    logprobs, ref, advantages, mask = _case()
    with pytest.raises(ValueError, match="attempt and stage must be 1 or 2"):
        score_loss(logprobs, ref, advantages, mask, attempt=3, stage=1, beta1=0.0, beta2=0.0)


def test_paired_difference_by_hand() -> None:
    """Tables from the worked examples of Fagerland, Lydersen and Laake's `contingencytables` (ch. 8):
    Bentur et al. 2009 (rows t1 right/wrong, columns t2 right/wrong) [[1, 1], [7, 12]], n = 21:
    p1 = 2/21 = 0.095238, Wilson [0.026519, 0.289141]; p2 = 8/21 = 0.380952, Wilson [0.207510, 0.591213];
    ad - bc = 12 - 7 = 5 <= n/2 = 10.5, so phi = 0 and
    low = 0.285714 - sqrt(0.173442^2 + 0.193903^2) = 0.025559, high = 0.285714 + sqrt(0.210261^2 + 0.068719^2)
    = 0.506920.
    Cavo et al. 2012 [[59, 6], [16, 80]], n = 161: p1 = 65/161 = 0.403727 [0.331037, 0.480904], p2 = 75/161
    = 0.465839 [0.390481, 0.542789]; ad - bc = 4624 > 80.5, phi = (4624 - 80.5) / sqrt(65*96*75*86)
    = 0.716174; D = 10/161 = 0.062112, interval [0.004625, 0.118621].
    """
    bentur = paired_difference(Transitions(both=1, broken=1, fixed=7, neither=12))
    assert (bentur.value, bentur.low, bentur.high) == pytest.approx((0.285714, 0.025559, 0.506920), abs=1e-6)
    cavo = paired_difference(Transitions(both=59, broken=6, fixed=16, neither=80))
    assert (cavo.value, cavo.low, cavo.high) == pytest.approx((0.062112, 0.004625, 0.118621), abs=1e-6)
    # Mirrored tables give mirrored intervals.
    flipped = paired_difference(Transitions(both=1, broken=7, fixed=1, neither=12))
    assert (flipped.value, flipped.low, flipped.high) == pytest.approx((-0.285714, -0.506920, -0.025559), abs=1e-6)


def test_paired_difference_edge_cases() -> None:
    none = paired_difference(Transitions(0, 0, 0, 0))
    assert (none.value, none.low, none.high) == (0.0, 0.0, 0.0)
    # Every answer right twice: an empty margin sets phi to 0; D = 0 and the interval is Wilson's gap below 1
    # on each side: sqrt((1 - l)^2 + 0) with l = Wilson low of 10/10 = 0.722467.
    same = paired_difference(Transitions(10, 0, 0, 0))
    assert same.value == 0.0 and same.low == pytest.approx(-0.277533, abs=1e-6) and same.high == pytest.approx(
        0.277533, abs=1e-6)


def test_transitions_and_the_five_statistics() -> None:
    first = [True, True, False, False, False, True, False, False]
    second = [True, False, True, True, False, True, False, True]
    t = Transitions.of(first, second)
    assert (t.both, t.broken, t.fixed, t.neither, t.n) == (2, 1, 3, 2, 8)
    stats = self_correction_stats(t)
    assert stats["accuracy_t1"].value == 3 / 8 and stats["accuracy_t2"].value == 5 / 8
    assert stats["delta_t1_t2"].value == pytest.approx(2 / 8)
    assert stats["delta_i_to_c"].value == 3 / 8 and stats["delta_c_to_i"].value == 1 / 8
    # Wilson for 1/8, z^2 = 3.841459: centre (0.125 + z^2/16) / (1 + z^2/8) = 0.365091 / 1.480182 = 0.246653,
    # half = z sqrt(0.125 * 0.875 / 8 + z^2/256) / 1.480182 = 1.959964 x 0.169345 / 1.480182 = 0.224235
    # -> [0.022418, 0.470888].
    assert stats["delta_c_to_i"].low == pytest.approx(0.022418, abs=1e-5)
    assert stats["delta_c_to_i"].high == pytest.approx(0.470888, abs=1e-5)
    with pytest.raises(ValueError, match="3 first attempts but 2"):
        Transitions.of([True] * 3, [True] * 2)


class ScriptedSampler:
    """A deterministic stand-in for a model: attempt 1 answers `item.first`, attempt 2 `item.second`.

    It reads the conversation it is given, so the test checks which conversation each attempt saw.
    """

    def __init__(self, items: list[dict]) -> None:
        self.by_question = {f"Q{i['id']}": i for i in items}
        self.seen: list[list[dict]] = []

    def generate(self, prompts: list[list[dict]], params: SamplingParams) -> list[list[Completion]]:
        out = []
        for messages in prompts:
            self.seen.append(messages)
            item = self.by_question[messages[0]["content"]]
            text = item["second"] if len(messages) > 1 else item["first"]
            out.append([Completion([1, 2], [3], f"{text}", False) for _ in range(params.n)])
        return out

    def sync(self, policy: object) -> None:
        pass


def scripted_task() -> Task:
    # ids 0-4: (first, second) = right/right, right/wrong, wrong/right, wrong/right, wrong/wrong.
    plan = [("7", "7"), ("7", "8"), ("8", "7"), ("6", "7"), ("5", "4")]
    items = [{"id": i, "answer": "7", "first": a, "second": b} for i, (a, b) in enumerate(plan)]
    return Task(name="scripted", train=items, test=items, prompt=lambda item: f"Q{item['id']}",
                grader=ExactMatchGrader(reference="{{item.answer}}"), reference=lambda item: item["answer"])


def test_two_attempt_rollout_aligns_each_second_attempt_with_its_first() -> None:
    task = scripted_task()
    sampler = ScriptedSampler(list(task.train))
    both = two_attempt_rollout(sampler, task, task.train[:2], SamplingParams(n=3), "Fix it")
    assert [len(g) for g in both.first.groups] == [3, 3] and [len(g) for g in both.second.groups] == [1] * 6
    assert [g.score for g in both.first.grades] == [1.0] * 6
    assert [g.score for g in both.second.grades] == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    assert sampler.seen[2] == second_turn([{"role": "user", "content": "Q0"}], "7", "Fix it")
    assert sampler.seen[2] == [{"role": "user", "content": "Q0"}, {"role": "assistant", "content": "7"},
                               {"role": "user", "content": "Fix it"}]
    metrics = both.metrics(1.0)
    assert metrics["t1/accuracy"] == 1.0 and metrics["t2/accuracy"] == 0.5
    assert metrics["delta"] == -0.5 and metrics["delta_c_to_i"] == 0.5 and metrics["delta_i_to_c"] == 0.0


def test_two_turn_evaluation_reports_and_writes_both_attempts(tmp_path: Path) -> None:
    task = scripted_task()
    out = tmp_path / "eval.jsonl"
    result = evaluate_two_turns(ScriptedSampler(list(task.test)), task, EvalConfig(batch_size=2),
                                instruction="Fix it", out_path=out)
    extra = result.extra
    assert extra["accuracy_t1"].value == 2 / 5 and extra["accuracy_t2"].value == 3 / 5
    assert result.accuracy == extra["accuracy_t2"]
    assert extra["delta_i_to_c"].value == 2 / 5 and extra["delta_c_to_i"].value == 1 / 5
    assert extra["delta_t1_t2"].value == pytest.approx(1 / 5)
    assert extra["delta_t1_t2"].low < 0 < extra["delta_t1_t2"].high  # five problems decide nothing
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [(x["attempt_1"]["output_text"], x["attempt_2"]["output_text"]) for x in lines] == [
        ("7", "7"), ("7", "8"), ("8", "7"), ("6", "7"), ("5", "4")]
    assert [x["attempt_2"]["passed"] for x in lines] == [True, False, True, True, False]
    assert lines[0]["prompt"] == "Q0" and lines[0]["instruction"] == "Fix it" and lines[0]["reference"] == "7"
    with pytest.raises(ValueError, match="eval.samples must be 1"):
        evaluate_two_turns(ScriptedSampler(list(task.test)), task, EvalConfig(samples=2), instruction="x")
    assert result.mean_score.value == pytest.approx(3 / 5) and result.grader_errors == 0
