"""Data-parallel training on real torch.distributed (gloo), ranks started by torchrun as real subprocesses."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rft.config import load_config
from rft.distributed import combine_metrics, step_seed
from rft.metrics import read_metrics
from rft.recipes.grpo import train
from tests.rft.test_train_e2e import lora_weights
from tests.tiny_chat import build_chat_model

ROOT = Path(__file__).resolve().parents[2]
# One step of 4 prompts x 3 samples: rank r of 2 takes prompts 2r and 2r + 1 (whole groups).
OVERRIDES = {
    "train.prompts_per_step": "4", "algorithm.num_iterations": "1", "algorithm.aggregation": "token_mean",
    "sampler.seed_per_prompt": "true", "eval.limit": "2", "train.threads": "1",
}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_chat_model(tmp_path_factory.mktemp("tiny") / "model")


def settings(model: Path, out: Path, steps: int, **extra: str) -> dict[str, str]:
    """The GRPO end-to-end settings of tests/rft/test_train_e2e.py with OVERRIDES and `extra` on top."""
    return {"model.name": str(model), "task.name": "tests.rft.test_train_e2e:echo_task", "train.steps": str(steps),
            "train.output_dir": str(out), "train.micro_batch_size": "3", "train.checkpoint_interval": "2",
            "train.lr": "0.01", "algorithm.group_size": "3", "sampler.max_new_tokens": "6",
            "eval.max_new_tokens": "6", "eval.interval": "2", "lora.rank": "4", "algorithm.beta": "0.05",
            **OVERRIDES, **extra}


def args(overrides: dict[str, str]) -> list[str]:
    return [x for k, v in overrides.items() for x in (f"--{k}", v)]


def torchrun(overrides: dict[str, str], *extra: str) -> None:
    """`rft train --nproc 2` (torchrun --standalone underneath, gloo) as a real subprocess."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "rft", "train", "--quiet", "--nproc=2", *args(overrides), *extra],
                          check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def step_metrics(run: Path) -> dict[str, float]:
    rows = [r for r in read_metrics(run / "metrics.jsonl") if "reward_mean" in r]
    assert len(rows) == 1  # rank 0 alone logged the step
    return rows[0]


def test_combine_metrics_gives_the_whole_batch() -> None:
    """Rank 0 rewards [0, 1], rank 1 rewards [1, 1]: whole batch mean 0.75, population std sqrt(3)/4."""
    ranks = [
        {"reward_mean": 0.5, "reward_std": 0.5, "grader_errors": 1.0, "loss": 0.25, "value_loss": 0.5,
         "seconds/grading": 2.0, "clip_ratio": 0.1},
        {"reward_mean": 1.0, "reward_std": 0.0, "grader_errors": 2.0, "loss": -0.75, "value_loss": 0.25,
         "seconds/grading": 3.0, "clip_ratio": 0.3},
    ]
    out = combine_metrics(ranks)
    assert out["reward_mean"] == 0.75
    assert out["reward_std"] == pytest.approx(math.sqrt(3) / 4)  # E[r^2] = 3/4, minus 0.75^2
    assert (out["grader_errors"], out["loss"], out["value_loss"]) == (3.0, -0.5, 0.75)  # counts, loss shares
    assert out["seconds/grading"] == 3.0  # the slowest rank
    assert out["clip_ratio"] == pytest.approx(0.2)
    judged = combine_metrics([{"tokens/judge/prompt": 40.0, "completions": 16.0}, {"completions": 16.0}])
    assert judged == {"tokens/judge/prompt": 40.0, "completions": 32.0}  # a key one rank lacks; counts summed


def test_step_seeds_leave_room_for_every_prompt_of_a_step() -> None:
    seeds = [step_seed(0, s) + k for s in range(1, 50) for k in range(64)]
    assert len(set(seeds)) == len(seeds)


@pytest.mark.parametrize(("overrides", "message"), [
    (["--train.prompts_per_step", "4"], r"train.prompts_per_step \(4\) must be a multiple of the number of ranks \(3\)"),
    (["--train.prompts_per_step", "6", "--algorithm.name", "ppo", "--algorithm.group_size", "4",
      "--algorithm.mini_batch_size", "8"], r"\(2 groups per update\) must be a multiple of the number of ranks \(3\)"),
    (["--train.prompts_per_step", "6", "--model.device", "cuda:1"], "each rank takes the GPU of its LOCAL_RANK"),
])
def test_a_step_that_cannot_be_split_evenly_fails_before_joining(
    overrides: list[str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rft.distributed import setup
    from rft.options import ConfigError

    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(ConfigError, match=message):
        setup(load_config(None, overrides))


@pytest.mark.slow
def test_two_ranks_take_the_single_process_step(tiny_model: Path, tmp_path: Path) -> None:
    """2 ranks x 2 prompts give the adapter, loss and gradient norm of 1 process x 4 prompts.

    Per-prompt seeds give both layouts the same 12 completions; each rank's token_mean loss is
    divided by the token count of all 12, and the gradients are summed, so the logged loss and the
    (pre-clip) gradient norm are the whole batch's. Adam's first update is about lr x sign(grad),
    which is why the norm is compared as well as the adapter.
    """
    single, double = tmp_path / "single", tmp_path / "double"
    train(load_config(None, args(settings(tiny_model, single, 1))), show_progress=False)
    torchrun(settings(tiny_model, double, 1))

    a = lora_weights(single / "checkpoint-000001" / "adapter")
    b = lora_weights(double / "checkpoint-000001" / "adapter")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-6, msg=key)
    one, two = step_metrics(single), step_metrics(double)
    for key in ("reward_mean", "reward_std", "accuracy", "completion_length", "loss", "grad_norm"):
        assert two[key] == pytest.approx(one[key], rel=1e-4, abs=1e-7), key
    assert one["grad_norm"] > 0 and one["reward_std"] > 0
    assert json.loads((double / "summary.json").read_text())["after"]["n_items"] == 2


@pytest.mark.slow
def test_two_rank_run_checkpoints_and_resumes(tiny_model: Path, tmp_path: Path) -> None:
    """A 2-rank run resumed from its step-2 checkpoint ends at the adapter of the uninterrupted run."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    per_rank_seeds = {"train.checkpoint_interval": "1", "train.keep_last": "3", "sampler.seed_per_prompt": "false"}
    torchrun(settings(tiny_model, straight, 3, **per_rank_seeds))
    shutil.copytree(straight, resumed)
    shutil.rmtree(resumed / "checkpoint-000003")
    torchrun(settings(tiny_model, resumed, 3, **per_rank_seeds), "--resume")

    a = lora_weights(straight / "checkpoint-000003" / "adapter")
    b = lora_weights(resumed / "checkpoint-000003" / "adapter")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)
    logged = [r["step"] for r in read_metrics(resumed / "metrics.jsonl")]
    assert logged == [0, 1, 2, 2, 3, 3]  # evals at 0, 2 and 3 interleaved with steps; step 3 once


@pytest.mark.slow
def test_two_rank_ppo_step_equals_the_single_process_step(tiny_model: Path, tmp_path: Path) -> None:
    """PPO with one mini-batch of all 12 completions: whitening, value loss and both gradients are global."""
    from rft.recipes.ppo import train as train_ppo

    ppo = {"algorithm.name": "ppo", "algorithm.mini_batch_size": "12", "algorithm.epochs": "1",
           "algorithm.kl_coef": "0.05", "algorithm.value_lr": "0.01"}
    single, double = tmp_path / "single", tmp_path / "double"
    overrides = {**settings(tiny_model, single, 1, **ppo)}
    del overrides["algorithm.beta"], overrides["algorithm.num_iterations"]  # GRPO's fields
    train_ppo(load_config(None, args(overrides)), show_progress=False)
    torchrun({**overrides, "train.output_dir": str(double)})

    for part in ("adapter/adapter_model.safetensors", "critic/model.safetensors"):
        a, b = (load_file(str(run / "checkpoint-000001" / part)) for run in (single, double))
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-6, msg=key)
    one, two = step_metrics(single), step_metrics(double)
    for key in ("reward_mean", "reward_std", "policy_loss", "value_loss", "grad_norm", "critic_grad_norm"):
        assert two[key] == pytest.approx(one[key], rel=1e-4, abs=1e-7), key
    assert one["grad_norm"] > 0 and one["value_loss"] > 0


def test_a_ray_address_without_the_ray_backend_is_refused() -> None:
    from rft.options import ConfigError

    with pytest.raises(ConfigError, match="grading.address 'auto' is only used by grading.backend ray"):
        load_config(None, ["--grading.address", "auto"])
    assert load_config(None, ["--grading.backend", "ray", "--grading.address", "auto"]).grading.address == "auto"
