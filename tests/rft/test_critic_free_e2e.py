"""RLOO and REINFORCE++ run the GRPO recipe with their own estimator: a few steps on a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rft.recipes.grpo import train
from tests.rft.test_train_e2e import config, lora_weights
from tests.tiny_chat import build_chat_model


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_chat_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.mark.parametrize(("name", "extra", "metric"), [
    ("rloo", {"algorithm.kl_coef": "0.05"}, "zero_signal_groups"),
    ("reinforce_pp", {}, "advantage_std_before_norm"),
])
def test_steps_train_the_adapter_with_the_named_estimator(
    tiny_model: Path, tmp_path: Path, name: str, extra: dict[str, str], metric: str
) -> None:
    out = tmp_path / name
    cfg = config(tiny_model, out, steps=2, **{"algorithm.name": name, **extra})
    assert cfg.algorithm.advantage == name and cfg.algorithm.kl_coef > 0
    summary = train(cfg, show_progress=False)
    trained = lora_weights(out / "checkpoint-000002" / "adapter")
    assert all(v.abs().sum() > 0 for k, v in trained.items() if "lora_B" in k)  # every B moved off 0
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if "reward_mean" in x]
    assert [r["step"] for r in rows] == [1, 2]
    assert metric in rows[-1] and rows[-1]["grad_norm"] > 0 and "kl" in rows[-1]
    assert json.loads((out / "config.json").read_text())["algorithm"]["name"] == name
    assert summary["after"] is not None
