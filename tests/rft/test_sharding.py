"""FSDP2 sharding of the base model (`train.sharding: fsdp`) on real torch.distributed (gloo), ranks started by torchrun."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rft.config import load_config
from rft.metrics import read_metrics
from rft.options import ConfigError
from rft.recipes.grpo import train
from tests.rft.test_distributed import args, settings, step_metrics, torchrun
from tests.rft.test_train_e2e import lora_weights
from tests.tiny_chat import build_chat_model

SHARDED = {"train.sharding": "fsdp"}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_chat_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.mark.parametrize(("overrides", "message"), [
    (["--sampler.backend", "vllm"], "sampler.backend 'vllm' needs the whole model on one engine"),
    (["--algorithm.dynamic_sampling", "true"], "algorithm.dynamic_sampling does not work with train.sharding"),
    (["--algorithm.name", "score"], "algorithm.name score does not support train.sharding fsdp"),
])
def test_what_a_sharded_run_cannot_do_fails_at_load(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, ["--train.sharding", "fsdp", *overrides])


def test_sharding_one_process_is_refused() -> None:
    """One process has no ranks to shard over: a setting that would do nothing fails instead."""
    from rft.sharding import shard_model

    with pytest.raises(ConfigError, match=r"start it with --nproc N \(N >= 2\)"):
        shard_model(torch.nn.Linear(2, 2), torch.device("cpu"))


def assert_same_adapter(a_dir: Path, b_dir: Path, atol: float) -> None:
    a, b = lora_weights(a_dir), lora_weights(b_dir)
    assert a.keys() == b.keys() and len(a) > 0
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=atol, msg=key)


@pytest.mark.slow
def test_two_sharded_ranks_take_the_single_process_step(tiny_model: Path, tmp_path: Path) -> None:
    """2 ranks with the base model sharded x 2 prompts give the adapter, loss and grad norm of 1 process x 4.

    As in the data-parallel test: per-prompt seeds give both layouts the same 12 completions (the sharded
    ranks generate unmerged, with synced steps), each rank's loss is its share of the whole batch's, and
    FSDP's reduce-scatter sums the LoRA gradients, so the grad norm (over both ranks' shards) is the whole
    batch's. The best adapter (evaluated by all ranks, gathered, written by rank 0) is the single process's,
    and the saved adapter loads in one process as a plain peft adapter.
    """
    from rft.policy import load_policy

    single, double = tmp_path / "single", tmp_path / "double"
    train(load_config(None, args(settings(tiny_model, single, 1))), show_progress=False)
    torchrun(settings(tiny_model, double, 1, **SHARDED))

    assert_same_adapter(single / "checkpoint-000001" / "adapter", double / "checkpoint-000001" / "adapter", 1e-6)
    one, two = step_metrics(single), step_metrics(double)
    for key in ("reward_mean", "reward_std", "accuracy", "completion_length", "loss", "grad_norm"):
        assert two[key] == pytest.approx(one[key], rel=1e-4, abs=1e-7), key
    assert one["grad_norm"] > 0 and one["reward_std"] > 0
    summary = json.loads((double / "summary.json").read_text())
    assert summary["after"]["n_items"] == 2
    assert summary["best"]["step"] == json.loads((single / "summary.json").read_text())["best"]["step"]
    assert_same_adapter(single / "best" / "adapter", double / "best" / "adapter", 1e-6)

    loaded = load_policy(str(tiny_model), device="cpu", adapter=double / "checkpoint-000001" / "adapter")
    params = dict(loaded.model.named_parameters())
    saved = lora_weights(double / "checkpoint-000001" / "adapter")
    for key, value in saved.items():
        torch.testing.assert_close(params[key.replace(".weight", ".default.weight")].detach(), value, msg=key)


@pytest.mark.slow
def test_sharded_run_checkpoints_and_resumes(tiny_model: Path, tmp_path: Path) -> None:
    """A sharded 2-rank run resumed from its step-2 checkpoint (weights and Adam state gathered there, resharded
    on load) ends at the adapter of the uninterrupted run."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    per_rank_seeds = {"train.checkpoint_interval": "1", "train.keep_last": "3", "sampler.seed_per_prompt": "false",
                      **SHARDED}
    torchrun(settings(tiny_model, straight, 3, **per_rank_seeds))
    shutil.copytree(straight, resumed)
    shutil.rmtree(resumed / "checkpoint-000003")
    torchrun(settings(tiny_model, resumed, 3, **per_rank_seeds), "--resume")

    assert_same_adapter(straight / "checkpoint-000003" / "adapter", resumed / "checkpoint-000003" / "adapter", 1e-6)
    state = torch.load(straight / "checkpoint-000002" / "trainer_state.pt", weights_only=False)
    adam = state["optimizers"]["policy"]["optimizer"]["state"]
    shapes = {tuple(v.shape) for v in lora_weights(straight / "checkpoint-000002" / "adapter").values()}
    assert {tuple(entry["exp_avg"].shape) for entry in adam.values()} == shapes  # whole, not a shard
    logged = [r["step"] for r in read_metrics(resumed / "metrics.jsonl")]
    assert logged == [0, 1, 2, 2, 3, 3]  # evals at 0, 2 and 3 interleaved with steps; step 3 once


@pytest.mark.slow
def test_two_sharded_ranks_take_the_single_process_ppo_step(tiny_model: Path, tmp_path: Path) -> None:
    """PPO with the policy sharded and the (tiny) value head replicated: the step of one process."""
    from rft.recipes.ppo import train as train_ppo

    ppo = {"algorithm.name": "ppo", "algorithm.mini_batch_size": "12", "algorithm.epochs": "1",
           "algorithm.kl_coef": "0.05", "algorithm.value_lr": "0.01"}
    single, double = tmp_path / "single", tmp_path / "double"
    overrides = {**settings(tiny_model, single, 1, **ppo)}
    del overrides["algorithm.beta"], overrides["algorithm.num_iterations"]  # GRPO's fields
    train_ppo(load_config(None, args(overrides)), show_progress=False)
    torchrun({**overrides, "train.output_dir": str(double), **SHARDED})

    for part in ("adapter/adapter_model.safetensors", "critic/model.safetensors"):
        a, b = (load_file(str(run / "checkpoint-000001" / part)) for run in (single, double))
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-6, msg=key)
    one, two = step_metrics(single), step_metrics(double)
    for key in ("reward_mean", "policy_loss", "value_loss", "grad_norm", "critic_grad_norm"):
        assert two[key] == pytest.approx(one[key], rel=1e-4, abs=1e-7), key
    assert one["grad_norm"] > 0 and one["value_loss"] > 0
