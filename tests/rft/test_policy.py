"""The shared policy loader, device choice, optimizer step and version counter."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rft.config import LoraConfig, TrainConfig
from rft.policy import build_optimizer, load_policy, optimizer_step, resolve_device
from tests.tiny_chat import build_chat_model


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_chat_model(tmp_path_factory.mktemp("tiny") / "model")


def test_device_auto_is_cpu_here_and_cuda_is_refused_without_it() -> None:
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="model.device: 'cuda:0' asks for CUDA"):
            resolve_device("cuda:0")
    with pytest.raises(ValueError, match="is not a torch device"):
        resolve_device("gpu-please")


def test_fresh_lora_trains_and_a_saved_adapter_loads_back(tiny_model: Path, tmp_path: Path) -> None:
    lora = LoraConfig(rank=2, target_modules=["q_proj", "v_proj"])
    policy = load_policy(str(tiny_model), lora=lora, device="cpu")
    assert policy.device == torch.device("cpu") and policy.pad_id == policy.tokenizer.pad_token_id
    params = policy.trainable_parameters()
    assert params and all("lora" in n for n, p in policy.model.named_parameters() if p.requires_grad)
    optimizer, scheduler = build_optimizer(params, TrainConfig(lr=0.1, warmup_steps=0), total_updates=4)
    ids = torch.tensor([[1, 2, 3, 4]])
    policy.model(input_ids=ids, labels=ids).loss.backward()
    norm = optimizer_step(policy, optimizer, scheduler, max_grad_norm=1.0)
    assert norm > 0 and policy.version == 1 and all(p.grad is None for p in params)
    assert scheduler.get_last_lr()[0] == pytest.approx(0.1 * (1 - 0.9 / 3))  # linear: update 1 of 4
    policy.model.save_pretrained(tmp_path / "adapter")

    served = load_policy(str(tiny_model), adapter=tmp_path / "adapter", device="cpu")
    with torch.no_grad():
        torch.testing.assert_close(served.model(input_ids=ids).logits, policy.model(input_ids=ids).logits)
    with pytest.raises(FileNotFoundError, match="no adapter_config.json"):
        load_policy(str(tiny_model), adapter=tmp_path)
    with pytest.raises(ValueError, match="either a saved adapter or a fresh LoRA"):
        load_policy(str(tiny_model), adapter=tmp_path / "adapter", lora=lora)
    with pytest.raises(ValueError, match="model.dtype: 'float33'"):
        load_policy(str(tiny_model), dtype="float33")
