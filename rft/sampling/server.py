"""Server backend: rollouts from any OpenAI-compatible server over HTTP, the adapter pushed by path.

Works with `vllm serve MODEL --enable-lora` (started with `VLLM_ALLOW_RUNTIME_LORA_UPDATING=1`) and with
`rft serve`; both answer `/v1/completions` with token ids in (`prompt` as ids) and out
(`return_token_ids`), sampled-token log-probs (`logprobs`), and load adapters at run time. After every
optimizer update `sync` writes the adapter under `sampler.adapter_dir`, asks the server to load it
(`POST /v1/load_lora_adapter` with a fresh name) and unloads the previous version
(`POST /v1/unload_lora_adapter`); requests then name the new adapter as their `model`. The server
must see `adapter_dir` at the same path (the same machine, or a shared filesystem for rollout machines).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import httpx

from rft.sampling.adapters import AdapterVersion, AdapterWriter, has_lora
from rft.sampling.base import Completion, Messages, SamplingParams
from rft.sampling.tokens import encode_prompts, eos_token_ids, request_seeds, to_completion

if TYPE_CHECKING:
    from rft.config import SamplerConfig
    from rft.policy import Policy


class ServerError(RuntimeError):
    """The server answered a request with an error (its message included)."""


class ServerSampler:
    """Samples from the server at `config.base_url`, serving the policy's adapter by name."""

    def __init__(self, policy: Policy, config: SamplerConfig, *, timeout: float = 600.0) -> None:
        self.policy, self.tokenizer = policy, policy.tokenizer
        self.eos_ids = eos_token_ids(policy.model, policy.tokenizer)
        self.client = httpx.Client(base_url=config.base_url.rstrip("/") + "/", timeout=timeout)
        models = self._call("GET", "models")["data"]
        if not models:
            raise ServerError(f"{config.base_url}/models lists no model")
        self.model = self.base_model = models[0]["id"]
        self.writer = AdapterWriter(config.adapter_dir) if has_lora(policy.model) else None
        self.current: AdapterVersion | None = None
        self.sync(policy)

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            response = self.client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise ServerError(f"{method} {self.client.base_url}{path}: {exc!r}") from exc
        if response.status_code >= 400:
            raise ServerError(f"{method} {self.client.base_url}{path}: HTTP {response.status_code}: {response.text}")
        return response.json() if "json" in response.headers.get("content-type", "") else response.text

    def sync(self, policy: Policy) -> None:
        """Push `policy`'s adapter as a new named LoRA when its version moved; unload the previous one."""
        self.policy = policy
        if self.writer is None or (self.current is not None and self.current.version == policy.version):
            return
        new = self.writer.write(policy.model, policy.version)
        self._call("POST", "load_lora_adapter", {"lora_name": new.name, "lora_path": str(new.path)})
        if self.current is not None:
            self._call("POST", "unload_lora_adapter", {"lora_name": self.current.name})
            self.writer.remove(self.current)
        self.current, self.model = new, new.name

    def generate(self, prompts: list[Messages], params: SamplingParams) -> list[list[Completion]]:
        """One request per prompt (each with its own seed), sent concurrently so the server batches them."""
        prompt_ids = encode_prompts(self.tokenizer, prompts)
        bodies = [self._body(p, params, seed) for p, seed in zip(prompt_ids, request_seeds(params, len(prompts)))]
        version = self.current.version if self.current else self.policy.version
        with ThreadPoolExecutor(max_workers=min(len(bodies), 16)) as pool:
            answers = list(pool.map(lambda body: self._call("POST", "completions", body), bodies))
        return [self._group(p, answer, params, version) for p, answer in zip(prompt_ids, answers)]

    def _body(self, prompt: list[int], params: SamplingParams, seed: int) -> dict[str, Any]:
        greedy = params.temperature <= 0
        body: dict[str, Any] = {
            # vLLM refuses n > 1 with greedy decoding; the n greedy samples are one sample repeated (`_group`).
            "model": self.model, "prompt": prompt, "n": 1 if greedy else params.n, "max_tokens": params.max_new_tokens,
            "temperature": 0.0 if greedy else params.temperature, "top_p": 1.0 if greedy else params.top_p,
            "seed": seed, "return_token_ids": True, "stop_token_ids": sorted(self.eos_ids),
        }
        if params.logprobs:
            body["logprobs"] = 0  # the sampled token's log-prob only, no alternatives
        return body

    def _group(self, prompt: list[int], answer: dict[str, Any], params: SamplingParams, version: int) -> list[Completion]:
        choices = sorted(answer["choices"], key=lambda c: c["index"])
        if params.temperature <= 0:
            choices = choices * params.n
        if len(choices) != params.n or any(c.get("token_ids") is None for c in choices):
            raise ServerError(f"{self.client.base_url}/completions returned {len(choices)} choices (asked for "
                              f"{params.n}) or no token_ids: the server must support return_token_ids")
        out = []
        for choice in choices:
            logprobs = choice["logprobs"]["token_logprobs"] if params.logprobs else None
            out.append(to_completion(self.tokenizer, self.eos_ids, prompt, choice["token_ids"], params.max_new_tokens,
                                     version, logprobs))
        return out
