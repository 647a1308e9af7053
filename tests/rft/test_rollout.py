"""rollout(): B prompts x n samples graded in one call, group-major, with its metrics."""

from __future__ import annotations


import pytest
import torch

from graders.string import StringCheckGrader
from rft.models import load_model
from rft.policy import Policy
from rft.rollout import rollout
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
