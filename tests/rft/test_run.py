"""The shared run lifecycle: checkpoints of several modules and optimizers, resume, interrupt, plain lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rft.config import load_config
from rft.policy import build_optimizer, load_policy
from rft.run import open_run
from tests.rft.test_train_e2e import echo_task
from tests.tiny_chat import build_chat_model


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_chat_model(tmp_path_factory.mktemp("tiny") / "model")


def _setup(model: Path, out: Path):
    cfg = load_config(None, ["--model.name", str(model), "--train.output_dir", str(out), "--train.steps", "3",
                             "--lora.rank", "2", "--train.keep_last", "1"])
    torch.manual_seed(0)
    policy = load_policy(str(model), lora=cfg.lora)
    critic = torch.nn.Linear(4, 1)  # stands in for a PPO value head: a plain module with its own optimizer
    optimizers = {"policy": build_optimizer(policy.trainable_parameters(), cfg.train, 3),
                  "critic": (torch.optim.SGD(critic.parameters(), lr=0.1, momentum=0.9), None)}
    return cfg, policy, critic, optimizers


def _train_critic(critic: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    critic(torch.ones(2, 4)).sum().backward()
    optimizer.step()
    optimizer.zero_grad()


def test_checkpoint_round_trips_extra_modules_and_optimizers(tiny_model: Path, tmp_path: Path) -> None:
    cfg, policy, critic, optimizers = _setup(tiny_model, tmp_path / "run")
    with open_run(cfg, echo_task(), policy, optimizers, modules={"critic": critic}, show_progress=False) as run:
        for step in run.remaining_steps():
            _train_critic(critic, optimizers["critic"][0])
            policy.version += 1
            if step == 2:
                run.save(step)
                break
    saved = tmp_path / "run" / "checkpoint-000002"
    assert (saved / "adapter" / "adapter_config.json").exists() and (saved / "critic" / "model.safetensors").exists()
    weights, momentum = critic.weight.detach().clone(), optimizers["critic"][0].state_dict()["state"][0]

    cfg, policy2, critic2, optimizers2 = _setup(tiny_model, tmp_path / "run")
    run = open_run(cfg, echo_task(), policy2, optimizers2, modules={"critic": critic2}, resume=True,
                   show_progress=False)
    with run:
        assert run.done == 2 and list(run.remaining_steps()) == [3] and policy2.version == 2
    torch.testing.assert_close(critic2.weight, weights)
    torch.testing.assert_close(optimizers2["critic"][0].state_dict()["state"][0]["momentum_buffer"],
                               momentum["momentum_buffer"])
    for (name, a), b in zip(policy.model.named_parameters(), policy2.model.parameters()):
        if "lora" in name:
            torch.testing.assert_close(a, b)
    _, policy3, _, optimizers3 = _setup(tiny_model, tmp_path / "run")
    with pytest.raises(ValueError, match=r"no saved state for optimizer\(s\) \['value'\]"):
        open_run(cfg, echo_task(), policy3, {**optimizers3, "value": optimizers3["critic"]}, resume=True)


def test_leaving_the_run_by_an_exception_saves_the_last_completed_step(tiny_model: Path, tmp_path: Path) -> None:
    cfg, policy, critic, optimizers = _setup(tiny_model, tmp_path / "run")
    with pytest.raises(RuntimeError, match="boom"):
        with open_run(cfg, echo_task(), policy, optimizers, modules={"critic": critic}, show_progress=False) as run:
            for step in run.remaining_steps():
                if step == 2:
                    raise RuntimeError("boom")
                run.done = step  # as end_step does, without an evaluation
    assert [p.name for p in (tmp_path / "run").glob("checkpoint-*")] == ["checkpoint-000001"]
    assert json.loads((tmp_path / "run" / "checkpoint-000001" / "state.json").read_text())["step"] == 1


def test_train_without_a_terminal_prints_one_line_per_step_and_evaluation(tiny_model: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "rft.cli", "train", "--model.name", str(tiny_model),
         "--task.name", "tests.rft.test_train_e2e:echo_task", "--train.steps", "2", "--train.prompts_per_step", "2",
         "--algorithm.group_size", "2", "--sampler.max_new_tokens", "4", "--eval.max_new_tokens", "4",
         "--eval.interval", "1", "--lora.rank", "2", "--train.output_dir", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    steps = [ln for ln in lines if ln.startswith("step ")]
    evals = [ln for ln in lines if ln.startswith("eval  step ")]
    assert [ln.split(":")[0] for ln in steps] == ["step 1/2", "step 2/2"], proc.stdout
    assert all(" reward " in ln and ln.endswith(" s") for ln in steps)
    assert [ln.split(":")[0] for ln in evals] == ["eval  step 0", "eval  step 1", "eval  step 2"]
    assert "held-out accuracy: before" in proc.stdout
