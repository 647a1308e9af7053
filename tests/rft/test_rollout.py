"""rollout(): B prompts x n samples graded in one call, group-major, with its metrics."""

from __future__ import annotations

import pytest
import torch

from graders.base import Grade
from graders.string import StringCheckGrader
from rft.models import load_model
from rft.policy import Policy
from rft.rollout import dynamic_rollout, refill_items, rollout, signal_groups
from rft.sampling.base import SamplingParams
from rft.sampling.hf import HFSampler
from tasks.base import Task
from tests.tiny_chat import build_chat_model


@pytest.fixture(scope="module")
def sampler(tmp_path_factory: pytest.TempPathFactory) -> HFSampler:
    path = build_chat_model(tmp_path_factory.mktemp("tiny") / "model")
    return HFSampler(Policy(*load_model(str(path))))


def task() -> Task:
    items = [{"word": w} for w in ("a", "b", "c")]
    grader = StringCheckGrader(input="{{sample.output_text}}", reference="{{item.word}}", operation="like")
    return Task(name="t", train=items, test=items, prompt=lambda i: f"Say {i['word']}", grader=grader)


def test_rollout_layout_rewards_and_metrics(sampler: HFSampler) -> None:
    params = SamplingParams(n=2, temperature=1.0, max_new_tokens=4, seed=0)
    out = rollout(sampler, task(), task().train, params, batch_size=2)
    assert len(out.groups) == 3 and all(len(g) == 2 for g in out.groups)
    assert len(out.completions) == 6 and len(out.grades) == 6
    rewards = out.rewards()
    assert rewards.shape == (6,) and rewards.dtype == torch.float32
    assert [[g.score for g in row] for row in out.grade_rows()] == rewards.view(3, 2).tolist()
    # Grades follow the sample: sample g of prompt b is graded against item b.
    for item, group, row in zip(out.items, out.groups, out.grade_rows()):
        for c, g in zip(group, row):
            assert g.score == float(item["word"] in c.text)
    for key in ("reward_mean", "accuracy", "grader_errors", "completion_length", "truncation_rate",
                "seconds/sampling", "seconds/grading"):
        assert key in out.metrics, key
    again = rollout(sampler, task(), task().train, params, batch_size=2)
    assert [c.token_ids for c in again.completions] == [c.token_ids for c in out.completions]
    varied = rollout(sampler, task(), task().train, params, batch_size=2, seed_per_batch=True)
    assert [c.token_ids for c in varied.completions[:4]] == [c.token_ids for c in out.completions[:4]]
    with pytest.raises(ValueError, match="at least one item"):
        rollout(sampler, task(), [], params)


class KindGrader:
    """Scores by the item's kind: "always" 1, "never" 0, "mixed" the parity of the sample's length (varied)."""

    name = "kind"
    pass_threshold = 1.0

    def grade(self, sample, item) -> Grade:
        if item["kind"] == "mixed":
            return Grade(float(len(sample.output_text) % 2))
        return Grade(float(item["kind"] == "always"))


def kinds_task(kinds: list[str]) -> Task:
    items = [{"word": f"w{i}", "kind": k} for i, k in enumerate(kinds)]
    return Task(name="kinds", train=items, test=items, prompt=lambda i: f"Say {i['word']}", grader=KindGrader())


def test_dynamic_sampling_keeps_only_groups_with_signal_and_refills(sampler: HFSampler) -> None:
    task_ = kinds_task(["always", "never"] + ["mixed"] * 6)
    params = SamplingParams(n=4, temperature=1.0, max_new_tokens=6)
    torch.manual_seed(0)
    out = dynamic_rollout(sampler, task_, rollout(sampler, task_, task_.train[:2], params), params, step=1, tries=6,
                          seed=0)
    assert out.metrics["dynamic/tries"] >= 2  # the step's own two prompts had no signal at all
    assert 1 <= len(out.groups) <= 2 and len(out.grades) == 4 * len(out.groups)
    assert all(item["kind"] == "mixed" for item in out.items)
    assert [b for b in range(len(out.groups))] == signal_groups(out)
    assert out.metrics["dynamic/groups_kept"] == len(out.groups)
    assert out.metrics["dynamic/prompts_sampled"] == 2 * out.metrics["dynamic/tries"]
    assert out.metrics["accuracy"] == 0.5  # of the step's own prompts: "always" x4 and "never" x4
    torch.manual_seed(0)
    again = dynamic_rollout(sampler, task_, rollout(sampler, task_, task_.train[:2], params), params, step=1, tries=6,
                            seed=0)
    assert [c.token_ids for c in again.completions] == [c.token_ids for c in out.completions]
    assert refill_items(task_.train, 1, 1, 2, 0) == refill_items(task_.train, 1, 1, 2, 0)
    assert refill_items(task_.train, 2, 1, 8, 0) != refill_items(task_.train, 1, 1, 8, 0)
    assert refill_items(task_.train, 1, 1, 8, 0, rank=1) != refill_items(task_.train, 1, 1, 8, 0)


def test_dynamic_sampling_without_any_signal_trains_on_the_steps_own_batch(sampler: HFSampler) -> None:
    task_ = kinds_task(["always", "never", "always"])
    params = SamplingParams(n=2, temperature=1.0, max_new_tokens=4)
    out = dynamic_rollout(sampler, task_, rollout(sampler, task_, task_.train[:2], params), params, step=3, tries=3,
                          seed=0)
    assert out.items == task_.train[:2] and signal_groups(out) == []
    assert (out.metrics["dynamic/tries"], out.metrics["dynamic/groups_kept"]) == (3.0, 0.0)
