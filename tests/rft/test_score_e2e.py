"""SCoRe end to end on a tiny random Llama: both stages, two-turn evaluation, resume across the stage boundary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rft.config import load_config
from rft.recipes.grpo import step_items
from rft.recipes.score import train
from tests.rft.test_train_e2e import echo_task, lora_weights
from tests.tiny_chat import build_chat_model, one_torch_thread

pytestmark = pytest.mark.usefixtures("one_torch_thread")
__all__ = ["one_torch_thread"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_chat_model(tmp_path_factory.mktemp("tiny") / "model")


def config(model: Path, out: Path, **extra: str):
    overrides = {
        "model.name": str(model), "task.name": "tests.rft.test_train_e2e:echo_task", "train.steps": "4",
        "train.output_dir": str(out), "train.prompts_per_step": "2", "train.micro_batch_size": "3",
        "train.checkpoint_interval": "2", "train.lr": "0.01", "algorithm.name": "score",
        "algorithm.group_size": "3", "algorithm.stage1_steps": "2", "algorithm.stage2_steps": "2",
        "algorithm.instruction": "Check it and say it again", "sampler.max_new_tokens": "5",
        "eval.max_new_tokens": "5", "eval.interval": "2", "lora.rank": "4", **extra,
    }
    return load_config(None, [x for k, v in overrides.items() for x in (f"--{k}", v)])


def test_both_stages_train_and_evaluate_two_turns(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    summary = train(config(tiny_model, out), show_progress=False)

    trained = lora_weights(out / "checkpoint-000004" / "adapter")
    assert all(v.abs().sum() > 0 for k, v in trained.items() if "lora_B" in k)  # every B moved off 0
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "reward_mean" in r]
    assert [(r["step"], r["stage"]) for r in steps] == [(1, 1.0), (2, 1.0), (3, 2.0), (4, 2.0)]
    for r in steps:
        assert r["kl_t1"] >= 0 and r["kl_t2"] >= 0 and r["grad_norm"] > 0
        assert r["delta"] == pytest.approx(r["delta_i_to_c"] - r["delta_c_to_i"])
        assert r["delta"] == pytest.approx(r["t2/accuracy"] - r["t1/accuracy"])
        assert r["loss"] == pytest.approx(r["loss_t1"] + r["loss_t2"])
    # Stage I trains attempt 1 on the KL alone: its loss is beta2 x KL (token mean over real tokens).
    assert steps[0]["loss_t1"] == pytest.approx(0.1 * steps[0]["kl_t1"], rel=1e-4, abs=1e-7)
    evals = [r for r in rows if "eval/accuracy" in r]
    assert [r["step"] for r in evals] == [0, 2, 4]
    for r in evals:
        assert r["eval/accuracy"] == r["eval/accuracy_t2"]
        assert r["eval/delta_t1_t2"] == pytest.approx(r["eval/delta_i_to_c"] - r["eval/delta_c_to_i"])
        assert r["eval/delta_t1_t2_low"] <= r["eval/delta_t1_t2"] <= r["eval/delta_t1_t2_high"]
    lines = [json.loads(x) for x in (out / "eval" / "step-000004.jsonl").read_text().splitlines()]
    assert len(lines) == 4 and lines[0]["instruction"] == "Check it and say it again"
    passed = [(x["attempt_1"]["passed"], x["attempt_2"]["passed"]) for x in lines]
    assert summary["after"]["extra"]["accuracy_t1"]["value"] == sum(a for a, _ in passed) / 4
    assert summary["after"]["extra"]["accuracy_t2"]["value"] == sum(b for _, b in passed) / 4
    assert all("score" in x["attempt_2"] and isinstance(x["attempt_2"]["output_text"], str) for x in lines)


def test_resume_across_the_stage_boundary_continues_exactly(tiny_model: Path, tmp_path: Path) -> None:
    """Interrupted in stage II's first step, resumed from stage I's last checkpoint: the same adapter."""
    straight = tmp_path / "straight"
    train(config(tiny_model, straight), show_progress=False)

    resumed = tmp_path / "resumed"
    task = echo_task()
    earlier = {i["word"] for s in (0, 1) for i in step_items(task.train, s, 2, 0)}
    poison = [i["word"] for i in step_items(task.train, 2, 2, 0) if i["word"] not in earlier]
    assert poison
    interrupted = config(tiny_model, resumed, **{"task.name": "tests.rft.test_train_e2e:poisoned_echo_task",
                                                 "task.options.poison": json.dumps(poison)})
    with pytest.raises(KeyboardInterrupt):
        train(interrupted, show_progress=False)
    assert [p.name for p in resumed.glob("checkpoint-*")] == ["checkpoint-000002"]  # the end of stage I
    train(config(tiny_model, resumed), resume=True, show_progress=False)

    a = lora_weights(straight / "checkpoint-000004" / "adapter")
    b = lora_weights(resumed / "checkpoint-000004" / "adapter")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)
    logged = [json.loads(x) for x in (resumed / "metrics.jsonl").read_text().splitlines()]
    assert [r.get("stage") for r in logged if "reward_mean" in r] == [1.0, 1.0, 2.0, 2.0]


@pytest.mark.parametrize(("override", "message"), [
    (["--algorithm.stage1_steps", "3"], "must equal train.steps"),
    (["--algorithm.group_size", "1"], "group_size must be >= 2"),
    (["--algorithm.instruction", "' '"], "instruction must not be empty"),
    (["--algorithm.beta2", "-1"], "beta2 must be >= 0"),
])
def test_bad_score_settings_fail_before_training(override: list[str], message: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "rft.cli", "train", "--quiet", "--train.output_dir", str(tmp_path),
         "--algorithm.name", "score", *override],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
    assert not (tmp_path / "metrics.jsonl").exists()


def test_rft_eval_turns_two_prints_the_five_metrics_and_writes_both_attempts(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "samples.jsonl"
    base = [sys.executable, "-m", "rft.cli", "eval", "--model.name", str(tiny_model), "--task.name",
            "tests.rft.test_train_e2e:echo_task", "--eval.max_new_tokens", "4", "--train.threads", "1"]
    proc = subprocess.run([*base, "--turns", "2", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    names = ["accuracy_t1", "accuracy_t2", "delta_t1_t2", "delta_i_to_c", "delta_c_to_i"]
    printed = {line.split()[0] for line in proc.stdout.splitlines() if line.strip()}
    assert set(names) <= printed
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == result["n_items"] == 4
    assert result["extra"]["accuracy_t2"]["value"] == sum(x["attempt_2"]["passed"] for x in lines) / 4
    assert lines[0]["instruction"].startswith("There might be an error in the solution above")
    bad = subprocess.run([*base, "--turns", "2", "--eval.samples", "2"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "eval.samples must be 1" in bad.stderr
