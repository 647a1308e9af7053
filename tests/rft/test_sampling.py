"""The transformers sampler: shared-prefix groups, truncation flags, EOS handling, seeded calls."""

from __future__ import annotations


import pytest
import torch

from rft.models import load_model
from rft.sampling.base import SamplingParams
from rft.policy import Policy
from rft.sampling.hf import HFSampler
from tests.tiny_chat import build_chat_model

PROMPTS = [[{"role": "user", "content": "Say apple"}], [{"role": "user", "content": "The capital of France is"}]]


@pytest.fixture(scope="module")
def sampler(tmp_path_factory: pytest.TempPathFactory) -> HFSampler:
    path = build_chat_model(tmp_path_factory.mktemp("tiny") / "model")
    model, tokenizer = load_model(str(path))
    return HFSampler(Policy(model, tokenizer))


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


def test_merged_lora_matches_the_adapter_and_restores_exact_weights() -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    from rft.sampling.hf import merged_lora

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=40, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2)
    model = get_peft_model(LlamaForCausalLM(config), LoraConfig(r=4, target_modules=["q_proj", "v_proj", "up_proj"]))
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)
    ids = torch.tensor([[3, 5, 7, 9, 11]])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        adapted = model(input_ids=ids).logits
        with model.disable_adapter():
            base = model(input_ids=ids).logits
        with merged_lora(model):
            merged = model(input_ids=ids).logits
    assert not torch.allclose(adapted, base, atol=1e-3)  # the adapter matters
    torch.testing.assert_close(merged, adapted, atol=1e-5, rtol=1e-5)
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]), name


def test_sampler_logprobs_equal_the_trainers_at_the_sampling_temperature(sampler: HFSampler) -> None:
    """The sampler's own per-token log-probs (T = 0.7) are what the trainer scores at T = 0.7, not at T = 1."""
    from rft.logprobs import grouped_completion_logprobs, pack_groups

    groups = sampler.generate(PROMPTS, SamplingParams(n=3, temperature=0.7, max_new_tokens=6, seed=3, logprobs=True))
    flat = [c for g in groups for c in g]
    assert all(c.logprobs is not None and len(c.logprobs) == len(c.token_ids) for c in flat)
    tensors = pack_groups([g[0].prompt_ids for g in groups], [c.token_ids for c in flat], 3,
                          sampler.tokenizer.pad_token_id)
    with torch.no_grad():
        at_t = grouped_completion_logprobs(sampler.model, *tensors, 3, temperature=0.7)
        at_1 = grouped_completion_logprobs(sampler.model, *tensors, 3)
    for row, c in enumerate(flat):
        n = len(c.token_ids)
        torch.testing.assert_close(torch.tensor(c.logprobs), at_t[row, :n], atol=1e-4, rtol=1e-4)
    assert any(not torch.allclose(torch.tensor(c.logprobs), at_1[r, : len(c.token_ids)], atol=1e-3)
               for r, c in enumerate(flat))


def test_sync_records_the_policy_version_on_completions(sampler: HFSampler) -> None:
    from rft.policy import Policy

    policy = Policy(sampler.model, sampler.tokenizer, version=5)
    sampler.sync(policy)
    (group,) = sampler.generate(PROMPTS[:1], SamplingParams(n=2, temperature=0, max_new_tokens=3))
    assert [c.policy_version for c in group] == [5, 5]
    with pytest.raises(ValueError, match="build a new one"):
        sampler.sync(Policy(torch.nn.Linear(1, 1), sampler.tokenizer))
    sampler.sync(Policy(sampler.model, sampler.tokenizer))
