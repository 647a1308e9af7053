"""The `Sampler` interface: B prompts (chat messages) in, B x n completions out.

Backends (transformers now; vLLM with LoRA adapters fits the same shape) return token ids as well
as text so the trainer can score exactly the tokens that were sampled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from tasks.base import Messages


@dataclass(frozen=True)
class SamplingParams:
    n: int = 1  # completions per prompt (G)
    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0
    max_new_tokens: int = 64
    seed: int | None = None  # seeds the torch generator for this call when set


@dataclass
class Completion:
    """One sampled completion.

    prompt_ids: the prompt's token ids (no padding). token_ids: the completion's ids, ending with
    EOS when the model stopped by itself. truncated: it hit max_new_tokens without EOS.
    """

    prompt_ids: list[int]
    token_ids: list[int]
    text: str
    truncated: bool


class Sampler(Protocol):
    def generate(self, prompts: list[Messages], params: SamplingParams) -> list[list[Completion]]:
        """Sample `params.n` completions for each prompt; result[b][g] is sample g of prompt b."""
        ...

    def set_policy(self, model: Any) -> None:
        """Point the sampler at updated policy weights (no-op when it shares the training model)."""
        ...
