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

from rft.distributed import combine_metrics, step_seed
from rft.metrics import read_metrics
from rft.recipes.grpo import train
from tests.rft.test_train_e2e import config, lora_weights
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


def torchrun(model: Path, out: Path, steps: int, *extra: str, nproc: int = 2) -> None:
    """`rft train --nproc 2` (torchrun --standalone underneath) with the test's tiny model and task."""
    overrides = {"model.name": str(model), "task.name": "tests.rft.test_train_e2e:echo_task",
                 "train.steps": str(steps), "train.output_dir": str(out), "train.prompts_per_step": "2",
                 "train.micro_batch_size": "3", "train.checkpoint_interval": "2", "train.lr": "0.01",
                 "algorithm.group_size": "3", "sampler.max_new_tokens": "6", "eval.max_new_tokens": "6",
                 "eval.interval": "2", "lora.rank": "4", "algorithm.beta": "0.05", **OVERRIDES}
    args = [x for k, v in overrides.items() for x in (f"--{k}", v)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "rft", "train", "--quiet", f"--nproc={nproc}", *args, *extra],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


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


def test_step_seeds_leave_room_for_every_prompt_of_a_step() -> None:
    seeds = [step_seed(0, s) + k for s in range(1, 50) for k in range(64)]
    assert len(set(seeds)) == len(seeds)


@pytest.mark.slow
def test_two_ranks_take_the_single_process_step(tiny_model: Path, tmp_path: Path) -> None:
    """2 ranks x 2 prompts give the adapter, loss and gradient norm of 1 process x 4 prompts.

    Per-prompt seeds give both layouts the same 12 completions; each rank's token_mean loss is
    divided by the token count of all 12, and the gradients are summed, so the logged loss and the
    (pre-clip) gradient norm are the whole batch's. Adam's first update is about lr x sign(grad),
    which is why the norm is compared as well as the adapter.
    """
    single = tmp_path / "single"
    torch.manual_seed(0)
    train(config(tiny_model, single, steps=1, **OVERRIDES), show_progress=False)
    double = tmp_path / "double"
    torchrun(tiny_model, double, 1)

    a = lora_weights(single / "checkpoint-000001" / "adapter")
    b = lora_weights(double / "checkpoint-000001" / "adapter")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-6, msg=key)
    one, two = ([r for r in read_metrics(run / "metrics.jsonl") if "reward_mean" in r][0] for run in (single, double))
    for key in ("reward_mean", "reward_std", "accuracy", "completion_length", "loss", "grad_norm", "kl"):
        assert two[key] == pytest.approx(one[key], rel=1e-4, abs=1e-7), key
    assert one["grad_norm"] > 0 and one["reward_std"] > 0
    assert len([r for r in read_metrics(double / "metrics.jsonl") if "reward_mean" in r]) == 1  # rank 0 alone
    assert json.loads((double / "summary.json").read_text())["after"]["n_items"] == 2


@pytest.mark.slow
def test_two_rank_run_checkpoints_and_resumes(tiny_model: Path, tmp_path: Path) -> None:
    """A 2-rank run resumed from its step-2 checkpoint ends at the adapter of the uninterrupted run."""
    straight = tmp_path / "straight"
    torchrun(tiny_model, straight, 3, "--train.checkpoint_interval", "1", "--train.keep_last", "3",
             "--sampler.seed_per_prompt", "false")
    resumed = tmp_path / "resumed"
    shutil.copytree(straight, resumed)
    shutil.rmtree(resumed / "checkpoint-000003")
    torchrun(tiny_model, resumed, 3, "--train.checkpoint_interval", "1", "--train.keep_last", "3",
             "--sampler.seed_per_prompt", "false", "--resume")

    a = lora_weights(straight / "checkpoint-000003" / "adapter")
    b = lora_weights(resumed / "checkpoint-000003" / "adapter")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)
    logged = [r["step"] for r in read_metrics(resumed / "metrics.jsonl")]
    assert logged == [0, 1, 2, 2, 3, 3]  # evals at 0, 2 and 3 interleaved with steps; step 3 once
