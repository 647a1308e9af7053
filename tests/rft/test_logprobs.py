"""Grouped (shared-prompt KV cache) log-probs equal the naive per-row computation, values and gradients."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from rft.logprobs import grouped_completion_logprobs, pack_groups

PAD = 0


def tiny_lora_model() -> torch.nn.Module:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, pad_token_id=PAD)
    model = get_peft_model(LlamaForCausalLM(config), LoraConfig(r=4, target_modules=["q_proj", "v_proj", "down_proj"]))
    for name, p in model.named_parameters():  # non-zero B so the adapter matters
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)
    return model


def naive_logprobs(model: torch.nn.Module, prompt: list[int], completion: list[int]) -> torch.Tensor:
    """One unpadded row at a time: log p(c_t | prompt, c_<t) straight from the full logits."""
    ids = torch.tensor([prompt + completion])
    logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)  # (P+T, V)
    return torch.stack([logp[len(prompt) - 1 + t, tok] for t, tok in enumerate(completion)])


PROMPTS = [[5, 6, 7, 8, 9], [10, 11]]  # different lengths: the second is left-padded
COMPLETIONS = [[12, 13, 14], [15], [16, 17, 18, 19], [20, 21]]  # G = 2, ragged: right-padded


@pytest.mark.parametrize("group_size", [2])
def test_grouped_logprobs_match_naive_rows(group_size: int) -> None:
    model = tiny_lora_model()
    tensors = pack_groups(PROMPTS, COMPLETIONS, group_size, PAD)
    got = grouped_completion_logprobs(model, *tensors, group_size)  # (4, 4)
    assert got.shape == (4, 4)
    for row, completion in enumerate(COMPLETIONS):
        expected = naive_logprobs(model, PROMPTS[row // group_size], completion)
        torch.testing.assert_close(got[row, : len(completion)], expected, atol=1e-5, rtol=1e-5)


def test_grouped_logprobs_gradients_match_naive_rows() -> None:
    model = tiny_lora_model()
    tensors = pack_groups(PROMPTS, COMPLETIONS, 2, PAD)
    mask = tensors[3].float()
    (grouped_completion_logprobs(model, *tensors, 2) * mask).sum().backward()
    grouped = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    sum(naive_logprobs(model, PROMPTS[i // 2], c).sum() for i, c in enumerate(COMPLETIONS)).backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(grouped[name], p.grad, atol=1e-4, rtol=1e-4, msg=name)


def test_pack_groups_layout_and_errors() -> None:
    prompt_ids, prompt_mask, completion_ids, completion_mask = pack_groups(PROMPTS, COMPLETIONS, 2, PAD)
    assert prompt_ids.tolist() == [[5, 6, 7, 8, 9], [PAD, PAD, PAD, 10, 11]]
    assert prompt_mask.tolist() == [[1] * 5, [0, 0, 0, 1, 1]]
    assert completion_ids.tolist()[1] == [15, PAD, PAD, PAD]
    assert completion_mask.tolist()[1] == [1, 0, 0, 0]
    with pytest.raises(ValueError, match="3 completions for 2 prompts"):
        pack_groups(PROMPTS, COMPLETIONS[:3], 2, PAD)


def test_temperature_divides_the_logits_before_the_log_softmax() -> None:
    """At T the log-probs are log_softmax(logits / T): checked against the naive rows' raw logits."""
    model = tiny_lora_model()
    tensors = pack_groups(PROMPTS, COMPLETIONS, 2, PAD)
    with torch.no_grad():
        scaled = grouped_completion_logprobs(model, *tensors, 2, temperature=0.5)
        for row, (prompt, completion) in enumerate(zip([p for p in PROMPTS for _ in range(2)], COMPLETIONS)):
            ids = torch.tensor([prompt + completion])
            logits = model(input_ids=ids).logits[0].float() / 0.5
            logp = torch.log_softmax(logits, dim=-1)
            expected = torch.stack([logp[len(prompt) - 1 + t, tok] for t, tok in enumerate(completion)])
            torch.testing.assert_close(scaled[row, : len(completion)], expected, atol=1e-5, rtol=1e-5)
        plain = grouped_completion_logprobs(model, *tensors, 2)
    assert not torch.allclose(scaled * tensors[3], plain * tensors[3])
    with pytest.raises(ValueError, match="temperature must be > 0"):
        grouped_completion_logprobs(model, *tensors, 2, temperature=0.0)
