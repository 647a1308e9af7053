"""Per-token log-probabilities of sampled completions under the current (or reference) policy."""

from __future__ import annotations

from typing import Any

import torch


def pack(
    prompt_ids: list[list[int]], completion_ids: list[list[int]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Lay out N prompt+completion pairs as one batch.

    Prompts are left-padded to P and completions right-padded to T, so every completion starts at
    column P. Returns input_ids (N, P+T), attention_mask (N, P+T) and completion_mask (N, T).
    """
    width = max(len(p) for p in prompt_ids)
    length = max(1, max(len(c) for c in completion_ids))
    rows, attn, cmask = [], [], []
    for p, c in zip(prompt_ids, completion_ids):
        rows.append([pad_id] * (width - len(p)) + p + c + [pad_id] * (length - len(c)))
        attn.append([0] * (width - len(p)) + [1] * (len(p) + len(c)) + [0] * (length - len(c)))
        cmask.append([1.0] * len(c) + [0.0] * (length - len(c)))
    return torch.tensor(rows), torch.tensor(attn), torch.tensor(cmask)


def completion_logprobs(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, length: int) -> torch.Tensor:
    """Log-probs (N, T) of the last `length` tokens of each row, given everything before them.

    input_ids, attention_mask: (N, P+T) from `pack`. Positions follow the attention mask, as in
    generation with left padding, so scores match what the sampler saw.
    """
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # (N, P+T)
    # Only the logits that predict completion tokens are materialised: (N, T+1, V) instead of (N, P+T, V).
    logits = model(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, logits_to_keep=length + 1
    ).logits[:, :-1, :].float()  # (N, T, V): logits at column P-1+t predict token P+t
    targets = input_ids[:, -length:]  # (N, T)
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (N, T)
    return picked - torch.logsumexp(logits, dim=-1)  # (N, T)
