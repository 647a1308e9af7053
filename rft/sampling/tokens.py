"""Token-level helpers every backend shares, so prompts, stop tokens and texts are the same whichever samples.

The trainer scores exactly the ids a sampler returns, so all backends render prompts through the policy
tokenizer's chat template, stop at the same ids and cut completions the same way.
"""

from __future__ import annotations

from typing import Any

import torch

from rft.sampling.base import Completion, Messages, SamplingParams


def encode_prompts(tokenizer: Any, prompts: list[Messages]) -> list[list[int]]:
    """Prompt token ids through the tokenizer's chat template, ready for the assistant turn."""
    out = []
    for messages in prompts:
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        out.append(list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids))
    return out


def eos_token_ids(model: Any, tokenizer: Any) -> set[int]:
    """Every id that ends an assistant turn: the config's EOS ids and the tokenizer's EOS."""
    ids: set[int] = set()
    configured = model.generation_config.eos_token_id
    if configured is not None:
        ids.update(configured if isinstance(configured, list) else [configured])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>") if "<|im_end|>" in tokenizer.get_vocab() else None
    if im_end is not None:
        ids.add(im_end)
    return ids


def to_completion(
    tokenizer: Any, eos_ids: set[int], prompt: list[int], ids: list[int], limit: int, version: int,
    logprobs: list[float] | None = None,
) -> Completion:
    """A completion cut after its first stop id (kept) or at `limit` tokens (then marked truncated)."""
    stop = next((i for i, t in enumerate(ids) if t in eos_ids), None)
    tokens = ids[: stop + 1] if stop is not None else ids[:limit]
    text = tokenizer.decode(tokens, skip_special_tokens=True)
    return Completion(prompt_ids=prompt, token_ids=tokens, text=text, truncated=stop is None,
                      logprobs=None if logprobs is None else logprobs[: len(tokens)], policy_version=version)


def request_seeds(params: SamplingParams, count: int) -> list[int]:
    """One seed per request: `params.seed + b` for a seeded call, else drawn from torch's (seeded) stream."""
    if params.seed is not None:
        return [params.seed + b for b in range(count)]
    return torch.randint(0, 2**31 - 1, (count,)).tolist()
