"""The transformers sampler: shared-prefix groups, truncation flags, EOS handling, seeded calls."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rft.models import load_model
from rft.sampling.base import SamplingParams
from rft.sampling.hf import HFSampler
from tests.tiny_chat import build_chat_model

PROMPTS = [[{"role": "user", "content": "Say apple"}], [{"role": "user", "content": "The capital of France is"}]]


@pytest.fixture(scope="module")
def sampler(tmp_path_factory: pytest.TempPathFactory) -> HFSampler:
    path = build_chat_model(tmp_path_factory.mktemp("tiny") / "model")
    model, tokenizer = load_model(str(path))
    return HFSampler(model, tokenizer)


def test_group_with_shared_prefill_matches_single_greedy_runs(sampler: HFSampler) -> None:
    grouped = sampler.generate(PROMPTS, SamplingParams(n=3, temperature=0, max_new_tokens=8))
    for prompt, group in zip(PROMPTS, grouped):
        (single,) = sampler.generate([prompt], SamplingParams(n=1, temperature=0, max_new_tokens=8))[0:1]
        assert len(group) == 3
        for completion in group:  # greedy: every sample of the group equals the unshared run
            assert completion.token_ids == single[0].token_ids
            assert completion.prompt_ids == single[0].prompt_ids


def test_truncation_and_eos(sampler: HFSampler) -> None:
    eos = next(iter(sampler.eos_ids))
    for group in sampler.generate(PROMPTS, SamplingParams(n=2, temperature=1.0, max_new_tokens=5, seed=1)):
        for c in group:
            assert len(c.token_ids) <= 5
            assert c.truncated == (eos not in c.token_ids)
            if not c.truncated:
                assert c.token_ids[-1] == eos and c.token_ids.count(eos) == 1


def test_seeded_calls_repeat_and_leave_the_global_stream_alone(sampler: HFSampler) -> None:
    params = SamplingParams(n=4, temperature=1.0, max_new_tokens=6, seed=7)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = [[c.token_ids for c in g] for g in sampler.generate(PROMPTS, params)]
    assert torch.equal(torch.get_rng_state(), before)
    again = [[c.token_ids for c in g] for g in sampler.generate(PROMPTS, params)]
    assert first == again
