"""transformers backend: one batched, left-padded `generate` call for all B x G samples."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch

from rft.models import new_cache
from rft.sampling.base import Completion, Messages, SamplingParams
from rft.sampling.tokens import encode_prompts, eos_token_ids, to_completion
from rft.sharding import is_sharded

if TYPE_CHECKING:
    from rft.config import SamplerConfig
    from rft.policy import Policy


@contextmanager
def merged_lora(model: Any) -> Iterator[None]:
    """Generate with each LoRA delta folded into its base weight, then restore the exact originals.

    Unmerged, every adapted projection runs two extra small matmuls per token, which on a CPU is
    about 40% of generation time (py-spy on SmolLM2-135M). The merged weights are fresh tensors, so
    restoring is exact (no merge/unmerge round-off drift in the frozen reference weights). A sharded
    model (`rft.sharding`) generates unmerged: a rank holds only a shard of each base weight.
    """
    if not hasattr(model, "disable_adapter") or is_sharded(model):
        yield
        return
    from peft.tuners.lora import LoraLayer

    saved: list[tuple[torch.nn.Parameter, torch.Tensor]] = []
    try:
        for module in model.modules():
            if isinstance(module, LoraLayer) and not module.merged and not module.disable_adapters:
                weight = module.get_base_layer().weight
                delta = sum(module.get_delta_weight(name) for name in module.active_adapters if name in module.lora_A)
                saved.append((weight, weight.data))
                weight.data = weight.data + delta
        with model.disable_adapter():
            yield
    finally:
        for weight, original in saved:
            weight.data = original


class HFSampler:
    """Samples from the (LoRA-wrapped) training model itself, so `sync` only records the version."""

    def __init__(self, policy: Policy, config: SamplerConfig | None = None) -> None:
        self.policy = policy
        self.model, self.tokenizer = policy.model, policy.tokenizer
        self.eos_ids = eos_token_ids(policy.model, policy.tokenizer)

    def sync(self, policy: Policy) -> None:
        if policy.model is not self.model:
            raise ValueError("HFSampler samples from the model it was built with; build a new one for another")
        self.policy = policy

    def encode(self, prompts: list[Messages]) -> list[list[int]]:
        """Prompt token ids through the tokenizer's chat template, ready for the assistant turn."""
        return encode_prompts(self.tokenizer, prompts)

    def generate(self, prompts: list[Messages], params: SamplingParams) -> list[list[Completion]]:
        return self.generate_ids(self.encode(prompts), params)

    @torch.no_grad()
    def generate_ids(self, prompt_ids: list[list[int]], params: SamplingParams) -> list[list[Completion]]:
        """`generate` for prompts already tokenized (a completions endpoint's `prompt` as ids)."""
        pad = self.tokenizer.pad_token_id
        width = max(len(p) for p in prompt_ids)
        device = self.policy.device
        # Left padding keeps every prompt's last token at the same position for generation.
        input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompt_ids], device=device)  # (B, P)
        attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompt_ids], device=device)
        greedy = params.temperature <= 0
        # A sharded model's forward is a collective: a rank done early keeps stepping until every rank is.
        kwargs: dict[str, Any] = {"do_sample": not greedy, "max_new_tokens": params.max_new_tokens,
                                  "synced_gpus": is_sharded(self.model)}
        if not greedy:
            kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=0)
        if params.logprobs:
            # `scores` are the logits after the temperature / top-p warpers: the sampling distribution.
            kwargs.update(output_scores=True, return_dict_in_generate=True)
        was_training = self.model.training
        self.model.eval()
        cuda = [device] if device.type == "cuda" else []
        # A seeded call (evaluation) must not reset the global stream the training rollouts draw from.
        with torch.random.fork_rng(devices=cuda, enabled=params.seed is not None):
            if params.seed is not None:
                torch.manual_seed(params.seed)
            try:
                with merged_lora(self.model):
                    share = self._shared_prefill(input_ids, attention, params.n)
                    out = self.model.generate(
                        input_ids=input_ids.repeat_interleave(params.n, dim=0),  # (B*G, P), group-major
                        attention_mask=attention.repeat_interleave(params.n, dim=0),
                        pad_token_id=pad,
                        eos_token_id=sorted(self.eos_ids),
                        **kwargs,
                        **share,
                    )  # (B*G, P + C)
            finally:
                self.model.train(was_training)
        sequences = out.sequences if params.logprobs else out  # (B*G, P + C)
        new = sequences[:, width:]  # (B*G, C)
        token_logprobs = _sampled_logprobs(out.scores, new).tolist() if params.logprobs else None
        new_ids = new.tolist()
        results: list[list[Completion]] = []
        for b, p in enumerate(prompt_ids):
            group = []
            for g in range(params.n):
                row = b * params.n + g
                group.append(to_completion(self.tokenizer, self.eos_ids, p, new_ids[row], params.max_new_tokens,
                                           self.policy.version, token_logprobs[row] if token_logprobs else None))
            results.append(group)
        return results

    def _shared_prefill(self, input_ids: torch.Tensor, attention: torch.Tensor, n: int) -> dict[str, Any]:
        """Run each prompt once (all but its last token) and hand generate a cache repeated n times.

        The G samples of a prompt share its prefix, so prefilling B rows instead of B*G saves most of
        the prompt compute; generate then only runs the last prompt token and the new tokens.
        """
        if n < 2 or input_ids.shape[1] < 2:
            return {}
        cache_kw = new_cache(self.model)
        position_ids = (attention.cumsum(-1) - 1).clamp(min=0)
        self.model(input_ids=input_ids[:, :-1], attention_mask=attention[:, :-1],
                   position_ids=position_ids[:, :-1], use_cache=True, **cache_kw)
        next(iter(cache_kw.values())).batch_repeat_interleave(n)  # (B, H, P-1, D) -> (B*G, H, P-1, D)
        return cache_kw


def _sampled_logprobs(scores: tuple[torch.Tensor, ...], new: torch.Tensor) -> torch.Tensor:
    """Log-probs (B*G, C) of the generated tokens `new` (B*G, C) under the per-step `scores` (C x (B*G, V))."""
    steps = torch.stack(scores, dim=1).float()  # (B*G, C, V)
    picked = steps.gather(-1, new[:, : steps.shape[1]].unsqueeze(-1)).squeeze(-1)  # (B*G, C)
    return picked - torch.logsumexp(steps, dim=-1)
