"""The sampler contract: B prompts (chat messages) in, B x n completions out, and a weight sync hook.

Backends (transformers in-process; vLLM holding its own copy of the weights) return token ids as
well as text so the trainer scores exactly the tokens that were sampled, and optionally the
sampler's own per-token log-probs. Every recipe calls `sync(policy)` after each optimizer update;
`policy.version` tells a backend with its own weights whether it is stale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from tasks.base import Messages

if TYPE_CHECKING:
    from rft.policy import Policy


@dataclass(frozen=True)
class SamplingParams:
    n: int = 1  # completions per prompt (G)
    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0
    max_new_tokens: int = 64
    seed: int | None = None  # seeds this call's generator when set, leaving the training stream alone
    logprobs: bool = False  # also return each sampled token's log-prob under the sampling distribution


@dataclass
class Completion:
    """One sampled completion.

    prompt_ids: the prompt's token ids (no padding). token_ids: the completion's ids, ending with
    EOS when the model stopped by itself. truncated: it hit max_new_tokens without EOS.
    logprobs: (len(token_ids),) log-probs of the sampled tokens at the sampling temperature, when
    asked for. policy_version: the `Policy.version` whose weights sampled it.
    """

    prompt_ids: list[int]
    token_ids: list[int]
    text: str
    truncated: bool
    logprobs: list[float] | None = None
    policy_version: int = 0


class Sampler(Protocol):
    def generate(self, prompts: list[Messages], params: SamplingParams) -> list[list[Completion]]:
        """Sample `params.n` completions for each prompt; result[b][g] is sample g of prompt b."""
        ...

    def sync(self, policy: Policy) -> None:
        """Bring the sampler's weights to `policy` (called after every optimizer update)."""
        ...
