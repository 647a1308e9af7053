"""End to end: PPO steps on a tiny random Llama built in the test; the critic is trained, saved and resumed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rft.recipes.ppo import train
from rft.config import load_config
from rft.rollout import step_items
from tests.rft.test_train_e2e import echo_task, lora_weights
from tests.tiny_chat import build_chat_model

PPO = {"algorithm.name": "ppo", "algorithm.group_size": "3", "algorithm.mini_batch_size": "3",
       "algorithm.epochs": "2", "algorithm.kl_coef": "0.05", "algorithm.value_lr": "0.01"}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_chat_model(tmp_path_factory.mktemp("tiny") / "model")


def ppo_config(model: Path, out: Path, steps: int, **extra: str):
    """The GRPO end-to-end settings (tests/rft/test_train_e2e.py) with a PPO section."""
    base = {"model.name": str(model), "task.name": "tests.rft.test_train_e2e:echo_task", "train.steps": str(steps),
            "train.output_dir": str(out), "train.prompts_per_step": "2", "train.micro_batch_size": "3",
            "train.checkpoint_interval": "2", "train.lr": "0.01", "sampler.max_new_tokens": "6",
            "eval.max_new_tokens": "6", "eval.interval": "2", "lora.rank": "4", **PPO, **extra}
    return load_config(None, [x for k, v in base.items() for x in (f"--{k}", v)])


@pytest.mark.parametrize("kl_penalty", ["reward", "loss"])
def test_ppo_steps_change_every_lora_and_value_head_parameter(tiny_model: Path, tmp_path: Path, kl_penalty: str) -> None:
    out = tmp_path / "run"
    summary = train(ppo_config(tiny_model, out, steps=3, **{"algorithm.kl_penalty": kl_penalty}), show_progress=False)

    trained = lora_weights(out / "checkpoint-000003" / "adapter")
    assert len([k for k in trained if "lora_B" in k]) == 2 * 7
    for key, value in trained.items():  # B starts at 0; A must have moved from its seeded init
        assert value.abs().sum() > 0, key
    torch.manual_seed(0)
    import peft
    from transformers import AutoModelForCausalLM

    init = peft.get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model), peft.LoraConfig(
        r=4, lora_alpha=32, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    init_a = {k: v for k, v in init.state_dict().items() if "lora_A" in k}
    for key in (k for k in trained if "lora_A" in k):
        match = next(v for k, v in init_a.items() if k.replace(".default", "").endswith(key.split("base_model.")[-1]))
        assert not torch.equal(match, trained[key]), f"{key} did not change"
    critic = load_file(str(out / "checkpoint-000003" / "critic" / "model.safetensors"))
    assert sorted(critic) == ["score.bias", "score.weight"]
    assert all(v.abs().sum() > 0 for v in critic.values())  # both start at exactly 0

    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "reward_mean" in r]
    assert [r["step"] for r in steps] == [1, 2, 3]
    for key in ("value_loss", "explained_variance", "values_mean", "returns_mean", "approx_kl", "clip_ratio",
                "value_clip_frac", "entropy", "policy_loss", "grad_norm", "critic_grad_norm", "kl_to_ref", "lr"):
        assert key in steps[-1], key
    assert steps[0]["values_mean"] == 0.0 and steps[-1]["values_mean"] != 0.0
    assert ("kl" in steps[-1]) == (kl_penalty == "loss")  # the k3 term of the policy loss
    state = torch.load(out / "checkpoint-000003" / "trainer_state.pt", weights_only=False)
    assert sorted(state["optimizers"]) == ["critic", "policy"]
    assert summary["after"] is not None and (out / "best" / "adapter" / "adapter_config.json").exists()


def poisoned_echo_task(poison: list[str]):
    from tests.rft.test_train_e2e import poisoned_echo_task as poisoned

    return poisoned(poison)


def test_resume_restores_the_critic_and_continues_exactly(tiny_model: Path, tmp_path: Path) -> None:
    """Interrupted after step 2 and resumed, the run ends with the same adapter and value head as a straight one."""
    straight = tmp_path / "straight"
    train(ppo_config(tiny_model, straight, steps=4), show_progress=False)

    resumed = tmp_path / "resumed"
    task = echo_task()
    earlier = {i["word"] for s in (0, 1) for i in step_items(task.train, s, 2, 0)}
    poison = [i["word"] for i in step_items(task.train, 2, 2, 0) if i["word"] not in earlier]
    with pytest.raises(KeyboardInterrupt):
        train(ppo_config(tiny_model, resumed, steps=4, **{"task.name": "tests.rft.test_ppo_e2e:poisoned_echo_task",
                                                         "task.options.poison": json.dumps(poison)}),
              show_progress=False)
    at_two = load_file(str(resumed / "checkpoint-000002" / "critic" / "model.safetensors"))
    assert at_two["score.weight"].abs().sum() > 0
    train(ppo_config(tiny_model, resumed, steps=4), resume=True, show_progress=False)

    for part, read in (("adapter", lora_weights), ("critic", lambda d: load_file(str(d / "model.safetensors")))):
        a, b = read(straight / "checkpoint-000004" / part), read(resumed / "checkpoint-000004" / part)
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=f"{part} {key}")


def test_critic_warmup_leaves_the_policy_alone(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    train(ppo_config(tiny_model, out, steps=2, **{"algorithm.critic_warmup_steps": "1",
                                                 "train.checkpoint_interval": "1"}), show_progress=False)
    after_warmup = lora_weights(out / "checkpoint-000001" / "adapter")
    assert all(v.abs().sum() == 0 for k, v in after_warmup.items() if "lora_B" in k)  # B still at its 0 init
    assert load_file(str(out / "checkpoint-000001" / "critic" / "model.safetensors"))["score.bias"].abs().sum() > 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if "reward_mean" in line]
    assert rows[0]["critic_warmup"] == 1.0 and "grad_norm" not in rows[0]
    assert rows[1]["critic_warmup"] == 0.0 and rows[1]["grad_norm"] > 0
    assert any(v.abs().sum() > 0 for k, v in lora_weights(out / "checkpoint-000002" / "adapter").items() if "lora_B" in k)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (["--algorithm.gamma", "1.5"], "algorithm.gamma must be in [0, 1]"),
        (["--algorithm.lam", "2"], "algorithm.lam must be in [0, 1]"),
        (["--algorithm.name", "rloo", "--algorithm.group_size", "1"], "algorithm.group_size must be >= 2 for RLOO"),
        ("no_hidden", "has no hidden_size"),
    ],
)
def test_bad_settings_fail_before_the_model_loads(override, message: str, tmp_path: Path) -> None:
    if override == "no_hidden":  # an image model's config: no language-model hidden state for a value head
        (tmp_path / "model").mkdir()
        (tmp_path / "model" / "config.json").write_text(json.dumps({"model_type": "convnext"}))
        override = ["--model.name", str(tmp_path / "model")]
    args = ["--algorithm.name", "ppo", *override] if override[1] != "rloo" else override
    proc = subprocess.run(
        [sys.executable, "-m", "rft.cli", "train", "--quiet", "--train.output_dir", str(tmp_path / "out"), *args],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stdout + proc.stderr
    assert not (tmp_path / "out" / "metrics.jsonl").exists()
