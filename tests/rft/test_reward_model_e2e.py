"""End to end on a tiny random Llama: a reward model trained on echo-task pairs (every LoRA and head weight moves,
metrics and checkpoints are written, a resumed run ends where a straight one does), loaded back as a grader, and
PPO driven by it while the held-out evaluation keeps the task's true grader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from graders.base import Sample
from graders.spec import load_grader
from rft.config import load_config
from rft.recipes import reward_model as recipe
from rft.reward_model import RewardModelGrader, build_reward_model
from rft.run import load_checked_task
from tests.rft.test_train_e2e import WORDS, echo_task
from tests.tiny_chat import build_chat_model, one_torch_thread

pytestmark = pytest.mark.usefixtures("one_torch_thread")
__all__ = ["one_torch_thread"]
ECHO = "tests.rft.test_train_e2e:echo_task"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The tiny base model and 20 echo pairs: the word itself beats two other words."""
    root = tmp_path_factory.mktemp("rm-e2e")
    pairs = root / "pairs.jsonl"
    with pairs.open("w") as fh:
        for i, word in enumerate(WORDS):
            for other in (WORDS[(i + 1) % len(WORDS)], WORDS[(i + 3) % len(WORDS)]):
                fh.write(json.dumps({"prompt": [{"role": "user", "content": f"Say {word}"}], "chosen": word,
                                     "rejected": other, "word": word, "answer": word}) + "\n")
    return build_chat_model(root / "base"), pairs


def rm_config(setup: tuple[Path, Path], out: Path, steps: int, **extra: str):
    base, pairs = setup
    args = {"algorithm.name": "reward_model", "task.pairs_held_out": "4", "model.name": str(base), "task.name": ECHO,
            "task.pairs": str(pairs), "train.steps": str(steps), "train.output_dir": str(out),
            "train.prompts_per_step": "4", "train.micro_batch_size": "3", "train.lr": "0.01",
            "train.lr_schedule": "constant", "train.warmup_steps": "0", "train.checkpoint_interval": "2",
            "eval.interval": "2", "lora.rank": "4", **extra}
    return load_config(None, [x for k, v in args.items() for x in (f"--{k}", v)])


@pytest.fixture(scope="module")
def trained(setup: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("rm-run") / "run"
    summary = recipe.train(rm_config(setup, out, steps=3), show_progress=False)
    return out, summary


def test_training_moves_every_lora_and_head_weight_and_writes_the_run(
    setup: tuple[Path, Path], trained: tuple[Path, dict]
) -> None:
    out, summary = trained
    cfg = rm_config(setup, out, steps=3)
    torch.manual_seed(cfg.train.seed)  # as the recipe seeds before building: the same initial weights
    init = {k: v.detach().clone() for k, v in build_reward_model(cfg).named_parameters() if v.requires_grad}
    saved = load_file(str(out / "checkpoint-000003" / "adapter" / "model.safetensors"))
    assert saved.keys() == init.keys() and len([k for k in saved if "lora_" in k]) == 2 * 2 * 7
    assert {"head.score.weight", "head.score.bias"} <= saved.keys()
    for key, value in saved.items():
        assert not torch.equal(value, init[key]), f"{key} did not change"

    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2, 3]
    assert steps[0]["loss"] == pytest.approx(0.693147, abs=1e-5)  # every reward starts at 0: -log sigma(0)
    for key in ("pairwise_accuracy", "margin", "reward_chosen", "reward_rejected", "grad_norm", "lr", "pairs"):
        assert key in steps[-1], key
    evals = [r for r in rows if "eval/accuracy" in r]
    assert [r["step"] for r in evals] == [0, 2, 3]
    assert evals[0]["eval/accuracy"] == 0.5  # equal rewards: every pair a tie, counted half
    last = evals[-1]
    assert last["eval/accuracy_low"] <= last["eval/accuracy"] <= last["eval/accuracy_high"]
    assert summary["after"]["n_items"] == 4
    lines = [json.loads(x) for x in (out / "eval" / "step-000003.jsonl").read_text().splitlines()]
    assert sum(x["ordered"] for x in lines) / 4 == last["eval/accuracy"]
    margins = [x["reward_chosen"] - x["reward_rejected"] for x in lines]
    assert last["eval/margin"] == pytest.approx(sum(margins) / 4, abs=1e-6)
    assert last["eval/margin_low"] < last["eval/margin"] < last["eval/margin_high"]
    assert evals[0]["eval/margin"] == 0.0
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-000002", "checkpoint-000003"]
    for saved_dir in (out / "reward_model", out / "best" / "adapter"):
        assert {"adapter", "head.safetensors", "reward_model.json"} <= {p.name for p in saved_dir.iterdir()}


def test_the_saved_model_grades_a_batch_as_the_trained_module_scores_it(
    setup: tuple[Path, Path], trained: tuple[Path, dict]
) -> None:
    out, _ = trained
    cfg = rm_config(setup, out, steps=3)
    module = build_reward_model(cfg)
    trained_weights = load_file(str(out / "checkpoint-000003" / "adapter" / "model.safetensors"))
    module.load_state_dict(trained_weights, strict=False)
    module.eval()
    items = [{"word": w, "answer": w} for w in WORDS[:5]]
    texts = ["apple", "stone", "Say cloud", "", "piano piano"]
    want = module.score([echo_task().messages(i) for i in items], texts).tolist()
    grader = load_grader({"type": "reward_model", "path": str(out / "reward_model"), "batch_size": 3,
                          "device": "cpu"})
    got = [g.details["reward"] for g in grader.grade_many([Sample(t) for t in texts], items)]
    assert got == pytest.approx(want, abs=1e-5)
    assert len({round(r, 4) for r in want}) > 1


def test_resumed_training_ends_where_a_straight_run_does(setup: tuple[Path, Path], tmp_path: Path) -> None:
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    recipe.train(rm_config(setup, straight, steps=4), show_progress=False)
    recipe.train(rm_config(setup, resumed, steps=2), show_progress=False)
    recipe.train(rm_config(setup, resumed, steps=4), resume=True, show_progress=False)
    a = load_file(str(straight / "checkpoint-000004" / "adapter" / "model.safetensors"))
    b = load_file(str(resumed / "checkpoint-000004" / "adapter" / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)
    steps = [json.loads(x) for x in (resumed / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]
    assert [r["step"] for r in steps] == [1, 2, 3, 4]


def test_ppo_trains_on_the_reward_model_and_evaluates_with_the_true_grader(
    trained: tuple[Path, dict], setup: tuple[Path, Path], tmp_path: Path
) -> None:
    from tests.rft.test_ppo_e2e import ppo_config

    rm_dir, out = trained[0] / "reward_model", tmp_path / "ppo"
    spec = json.dumps({"type": "reward_model", "path": str(rm_dir), "batch_size": 4, "device": "cpu"})
    cfg = ppo_config(setup[0], out, steps=2, **{"task.grader": spec})
    task = load_checked_task(cfg)
    assert isinstance(task.grader, RewardModelGrader)
    assert task.eval_grader is not None and type(task.eval_grader).__name__ == "TextSimilarityGrader"

    from rft.recipes.ppo import train

    summary = train(cfg, show_progress=False)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "reward_mean" in r]
    assert [r["step"] for r in steps] == [1, 2] and all(0 < r["reward_mean"] < 1 for r in steps)
    assert all(r["grader_errors"] == 0 and r["true/grader_errors"] == 0 for r in steps)
    assert all(0 <= r["true/reward_mean"] <= 1 and r["true/reward_mean"] != r["reward_mean"] for r in steps)
    assert [r["step"] for r in rows if "eval/accuracy" in r] == [0, 2]
    true = echo_task().grader
    for step in (0, 2):
        lines = [json.loads(x) for x in (out / "eval" / f"step-{step:06d}.jsonl").read_text().splitlines()]
        for line in lines:  # graded by the task's fuzzy match, not by the reward model (whose details hold "reward")
            assert "reward" not in line["details"]
            item = next(i for i in echo_task().test if f"Say {i['word']}" == line["prompt"])
            assert line["score"] == true.grade(Sample(line["output_text"]), item).score
    assert summary["after"]["n_items"] == len(echo_task().test)
