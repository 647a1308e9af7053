"""The server sampler against a real `rft serve` subprocess on 127.0.0.1: adapter pushes, ids, log-probs.

A tiny Llama with a LoRA adapter whose B matrices are random (so the adapter changes what it says) is
served base-only; the sampler pushes the adapter by path and must then sample exactly what the
in-process transformers sampler samples, with log-probs equal to the trainer's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import torch

from rft.config import LoraConfig, SamplerConfig
from rft.logprobs import grouped_completion_logprobs, pack_groups
from rft.policy import Policy, load_policy
from rft.sampling.base import SamplingParams
from rft.sampling.hf import HFSampler
from rft.sampling.server import ServerError, ServerSampler
from tests.rft.test_train_e2e import config
from tests.tiny_chat import build_chat_model, start_rft_serve

PROMPTS = [[{"role": "user", "content": "Say apple"}], [{"role": "user", "content": "The capital of France is"}]]
GREEDY = SamplingParams(n=2, temperature=0, max_new_tokens=8)


def randomise_lora(policy: Policy, seed: int) -> None:
    """Give every LoRA B matrix random weights (fresh LoRA is the identity) and count it as an update."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in policy.model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    policy.version += 1


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    model_dir = build_chat_model(tmp_path_factory.mktemp("tiny") / "model")
    proc, base_url = start_rft_serve(model_dir, name="tiny")
    try:
        yield SimpleNamespace(model_dir=model_dir, base_url=base_url, adapters=tmp_path_factory.mktemp("adapters"))
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def policy(served: SimpleNamespace) -> Policy:
    lora = LoraConfig(rank=4, alpha=8.0, target_modules=["q_proj", "v_proj", "up_proj"])
    policy = load_policy(str(served.model_dir), device="cpu", lora=lora)
    randomise_lora(policy, seed=0)
    return policy


@pytest.fixture(scope="module")
def sampler(served: SimpleNamespace, policy: Policy) -> ServerSampler:
    cfg = SamplerConfig(backend="server", base_url=served.base_url, adapter_dir=str(served.adapters))
    return ServerSampler(policy, cfg)


def served_models(base_url: str) -> list[str]:
    return [m["id"] for m in httpx.get(base_url + "/models").json()["data"]]


def ids(groups: list) -> list[list[list[int]]]:
    return [[c.token_ids for c in group] for group in groups]


def test_greedy_samples_equal_the_in_process_sampler_and_follow_each_sync(
    served: SimpleNamespace, policy: Policy, sampler: ServerSampler
) -> None:
    first = sampler.current
    assert served_models(served.base_url) == ["tiny", first.name]
    remote = sampler.generate(PROMPTS, GREEDY)
    local = HFSampler(policy).generate(PROMPTS, GREEDY)
    assert ids(remote) == ids(local)
    assert [[c.text for c in g] for g in remote] == [[c.text for c in g] for g in local]
    assert all(c.policy_version == policy.version for g in remote for c in g)

    randomise_lora(policy, seed=1)
    sampler.sync(policy)
    assert served_models(served.base_url) == ["tiny", sampler.current.name]  # the old version was unloaded
    assert not first.path.exists() and sampler.current.path.exists()
    after = sampler.generate(PROMPTS, GREEDY)
    assert ids(after) == ids(HFSampler(policy).generate(PROMPTS, GREEDY))
    assert ids(after) != ids(remote)  # the new adapter says something else
    sampler.sync(policy)  # same version: nothing is pushed
    assert served_models(served.base_url) == ["tiny", sampler.current.name]


def test_sampled_logprobs_match_the_trainer_and_seeded_calls_repeat(policy: Policy, sampler: ServerSampler) -> None:
    params = SamplingParams(n=3, temperature=0.8, max_new_tokens=8, seed=5, logprobs=True)
    groups = sampler.generate(PROMPTS, params)
    assert ids(groups) == ids(sampler.generate(PROMPTS, params))
    flat = [c for g in groups for c in g]
    width = max(len(c.token_ids) for c in flat)
    tensors = pack_groups([g[0].prompt_ids for g in groups], [c.token_ids for c in flat], 3, policy.pad_id, width,
                          policy.device)
    with torch.no_grad():
        trainer = grouped_completion_logprobs(policy.model, *tensors, 3, temperature=0.8)  # (B*G, T)
    for row, c in enumerate(flat):
        assert len(c.logprobs) == len(c.token_ids)
        assert c.logprobs == pytest.approx(trainer[row, : len(c.token_ids)].tolist(), abs=1e-4)


@pytest.mark.parametrize(("path", "body", "status", "message"), [
    ("/completions", {"prompt": [1, 2], "logprobs": 2}, 400, "logprobs: only 0"),
    ("/completions", {"prompt": [], "max_tokens": 2}, 400, "prompt must not be empty"),
    ("/completions", {"prompt": [1], "best_of": 2}, 400, "best_of: unsupported field"),
    ("/completions", {"model": "nope", "prompt": [1]}, 404, "model 'nope' is not served here"),
    ("/load_lora_adapter", {"lora_name": "x", "lora_path": "/nonexistent"}, 400, "not a peft adapter"),
    ("/unload_lora_adapter", {"lora_name": "never-loaded"}, 404, "no adapter 'never-loaded'"),
])
def test_bad_requests_are_named(served: SimpleNamespace, path: str, body: dict, status: int, message: str) -> None:
    response = httpx.post(served.base_url + path, json=body)
    assert response.status_code == status
    assert message in response.json()["error"]["message"]


def test_text_prompts_batch_and_usage(served: SimpleNamespace) -> None:
    body = {"model": "tiny", "prompt": ["Say apple", "Paris"], "n": 2, "max_tokens": 3, "temperature": 0,
            "logprobs": 0, "return_token_ids": True}
    answer = httpx.post(served.base_url + "/completions", json=body).json()
    assert answer["object"] == "text_completion" and [c["index"] for c in answer["choices"]] == [0, 1, 2, 3]
    first = answer["choices"][0]
    assert len(first["token_ids"]) == len(first["logprobs"]["token_logprobs"]) <= 3
    assert answer["choices"][0]["token_ids"] == answer["choices"][1]["token_ids"]  # greedy: same twice
    generated = sum(len(c["token_ids"]) for c in answer["choices"])
    assert answer["usage"]["completion_tokens"] == generated


def test_sampler_errors_name_the_server(tmp_path: Path, policy: Policy) -> None:
    cfg = SamplerConfig(backend="server", base_url="http://127.0.0.1:9/v1", adapter_dir=str(tmp_path))
    with pytest.raises(ServerError, match="127.0.0.1:9"):
        ServerSampler(policy, cfg, timeout=5)


def test_grpo_through_the_server_logs_the_sampler_gap(served: SimpleNamespace, tmp_path: Path) -> None:
    from rft.recipes.grpo import train

    out = tmp_path / "run"
    cfg = config(served.model_dir, out, steps=2, **{"sampler.backend": "server", "sampler.base_url": served.base_url,
                                                     "sampler.adapter_dir": str(tmp_path / "adapters"),
                                                     "algorithm.tis_cap": "2.0", "algorithm.num_iterations": "1"})
    train(cfg, show_progress=False)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if "reward_mean" in x]
    assert [r["step"] for r in rows] == [1, 2]
    for row in rows:  # the same transformers code on both sides: only merged-LoRA round-off separates them
        assert row["sampler_logprob_diff"] < 1e-4
        assert row["tis_weight_mean"] == pytest.approx(1.0, abs=1e-3)
