"""End to end: DPO on a pair file and online DPO on a tiny random Llama built in the test; checkpoints and resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rft.config import ConfigError, load_config
from rft.recipes import dpo, online_dpo
from tests.rft.test_train_e2e import WORDS, lora_weights
from tests.tiny_chat import build_chat_model, one_torch_thread  # noqa: F401  (a fixture)

pytestmark = pytest.mark.usefixtures("one_torch_thread")
LORA_KEYS = 2 * 7 * 2  # 2 layers x 7 target modules x (A, B)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_chat_model(tmp_path_factory.mktemp("tiny") / "model")


def write_pairs(path: Path) -> Path:
    """Echo pairs: "Say apple" prefers "apple" to a different word; 10 pairs."""
    lines = [{"prompt": f"Say {w}", "chosen": w, "rejected": WORDS[(i + 3) % len(WORDS)], "word": w, "answer": w}
             for i, w in enumerate(WORDS)]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def config(model: Path, out: Path, steps: int, **extra: str):
    overrides = {
        "model.name": str(model), "train.steps": str(steps), "train.output_dir": str(out),
        "train.prompts_per_step": "3", "train.micro_batch_size": "4", "train.checkpoint_interval": "2",
        "train.lr": "0.01", "sampler.max_new_tokens": "6", "eval.max_new_tokens": "6", "eval.interval": "2",
        "lora.rank": "4", **extra,
    }
    return load_config(None, [x for k, v in overrides.items() for x in (f"--{k}", v)])


def dpo_config(model: Path, out: Path, steps: int, pairs: Path, **extra: str):
    return config(model, out, steps, **{"algorithm.name": "dpo", "task.pairs": str(pairs), "task.name": "",
                                        "task.pairs_held_out": "3", **extra})


def online_config(model: Path, out: Path, steps: int, **extra: str):
    return config(model, out, steps, **{"algorithm.name": "online_dpo", "algorithm.group_size": "3",
                                        "task.name": "tests.rft.test_train_e2e:echo_task", "train.prompts_per_step": "2",
                                        **extra})


def assert_every_lora_tensor_moved(model: Path, adapter: Path) -> None:
    """B starts at 0, A at its seeded initialisation: every tensor must differ from where it started."""
    import peft
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    init = peft.get_peft_model(AutoModelForCausalLM.from_pretrained(model), peft.LoraConfig(
        r=4, lora_alpha=32, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    start = {k.replace(".default", ""): v for k, v in init.state_dict().items() if "lora_" in k}
    trained = lora_weights(adapter)
    assert len(trained) == LORA_KEYS
    for key, value in trained.items():
        assert not torch.equal(start[key], value), f"{key} did not change"


def test_dpo_trains_every_parameter_and_writes_metrics_checkpoints_and_pair_evals(tiny_model: Path,
                                                                                  tmp_path: Path) -> None:
    out = tmp_path / "run"
    summary = dpo.train(dpo_config(tiny_model, out, 3, write_pairs(tmp_path / "pairs.jsonl")), show_progress=False)
    assert_every_lora_tensor_moved(tiny_model, out / "checkpoint-000003" / "adapter")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2, 3]
    assert steps[0]["loss"] == pytest.approx(0.693147, abs=1e-5)  # log 2: the policy starts as the reference
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margin", "rewards/accuracy", "grad_norm", "lr"):
        assert key in steps[-1], key
    evals = [r for r in rows if "eval/pair_accuracy" in r]
    assert [r["step"] for r in evals] == [0, 2, 3]
    assert (evals[0]["eval/pair_margin"], evals[0]["eval/pair_accuracy"]) == (0.0, 0.5)  # policy = reference: ties
    assert evals[-1]["eval/accuracy"] == evals[-1]["eval/pair_accuracy"]  # no task: pairs decide best/
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-000002", "checkpoint-000003"]
    assert len((out / "eval" / "step-000003.jsonl").read_text().splitlines()) == 3
    assert summary["before"]["n_items"] == 3 and (out / "best" / "adapter" / "adapter_config.json").exists()


def test_dpo_with_a_task_measures_its_accuracy_too(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    summary = dpo.train(dpo_config(tiny_model, out, 1, write_pairs(tmp_path / "pairs.jsonl"), **{
        "task.name": "tests.rft.test_train_e2e:echo_task", "algorithm.loss": "ipo", "algorithm.nll_coef": "1.0"}),
        show_progress=False)
    assert summary["after"]["n_items"] == 4  # the echo task's held-out items
    (step,) = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    assert step["nll"] > 0 and step["loss"] == pytest.approx(0.25 / 0.01 + step["nll"], rel=1e-5)  # IPO at h = 0
    assert summary["after"]["extra"]["pair_accuracy"]["value"] in (0.0, 1 / 3, 2 / 3, 1.0)


def resumed_equals_straight(train, make, tmp_path: Path) -> Path:
    """Run 4 steps straight; run 2, then resume to 4; the adapters must match. Returns the resumed run."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train(make(straight, 4), show_progress=False)
    train(make(resumed, 2), show_progress=False)
    train(make(resumed, 4), resume=True, show_progress=False)
    a, b = (lora_weights(run / "checkpoint-000004" / "adapter") for run in (straight, resumed))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)
    return resumed


def test_dpo_resumes_exactly(tiny_model: Path, tmp_path: Path) -> None:
    pairs = write_pairs(tmp_path / "pairs.jsonl")
    resumed_equals_straight(dpo.train, lambda out, steps: dpo_config(
        tiny_model, out, steps, pairs, **{"train.lr_schedule": "constant"}), tmp_path)


def test_online_dpo_trains_every_parameter_counts_pairs_and_resumes_exactly(tiny_model: Path, tmp_path: Path) -> None:
    run = resumed_equals_straight(online_dpo.train, lambda out, steps: online_config(
        tiny_model, out, steps, **{"train.lr_schedule": "constant"}), tmp_path)
    assert_every_lora_tensor_moved(tiny_model, tmp_path / "straight" / "checkpoint-000004" / "adapter")
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "pairs/kept" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4]
    for row in steps:  # every one of the 2 prompts is kept, tied or ungraded
        assert row["pairs/kept"] + row["pairs/ties"] + row["pairs/ungraded"] == 2 and row["pairs/below_margin"] == 0
        assert ("rewards/margin" in row) == (row["pairs/kept"] > 0) and "reward_mean" in row
    assert sum(r["pairs/kept"] for r in steps) > 0
    assert [r["step"] for r in rows if "eval/accuracy" in r] == [0, 2, 4]


@pytest.mark.parametrize(("extra", "message"), [
    ({"algorithm.name": "dpo"}, "set task.pairs"),
    ({"algorithm.name": "dpo", "task.pairs": "p.jsonl", "algorithm.label_smoothing": "0.1"},
     "only used by loss 'conservative'"),
    ({"algorithm.name": "dpo", "task.pairs": "p.jsonl", "algorithm.loss": "conservative"}, "must be in (0, 0.5)"),
    ({"algorithm.name": "online_dpo", "algorithm.group_size": "1"}, "group_size must be >= 2"),
    ({"task.pairs": "p.jsonl"}, "not by 'grpo'"),
])
def test_bad_preference_settings_are_named(extra: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(None, [x for k, v in extra.items() for x in (f"--{k}", v)])


def test_a_bad_pair_file_names_file_and_line(tiny_model: Path, tmp_path: Path) -> None:
    pairs = write_pairs(tmp_path / "pairs.jsonl")
    lines = pairs.read_text().splitlines()
    lines[4] = json.dumps({"prompt": "Say x", "chosen": "x", "rejected": " x "})
    pairs.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=rf"{pairs}:5: chosen and rejected replies are the same"):
        dpo.train(dpo_config(tiny_model, tmp_path / "run", 1, pairs), show_progress=False)


def test_online_dpo_ranks_by_its_judge_and_skips_steps_that_all_tie(tiny_model: Path, tmp_path: Path) -> None:
    """Ranked by an exact-match judge the random model never satisfies, every group ties: no pair, no update,
    while held-out accuracy is still the task's fuzzy grader's."""
    judge = tmp_path / "judge.json"
    judge.write_text(json.dumps({"type": "string_check", "name": "exact", "input": "{{sample.output_text}}",
                                 "reference": "{{item.word}}", "operation": "eq"}))
    out = tmp_path / "run"
    summary = online_dpo.train(online_config(tiny_model, out, 2, **{"algorithm.judge": str(judge)}), show_progress=False)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "pairs/ties" in r]
    assert [(r["pairs/ties"], r["reward_mean"], "rewards/margin" in r) for r in steps] == [(2.0, 0.0, False)] * 2
    assert summary["after"]["mean_score"]["value"] > 0  # fuzzy similarity of babble to the word is not 0
    assert all(v.abs().sum() == 0 for k, v in lora_weights(out / "checkpoint-000002" / "adapter").items()
               if "lora_B" in k)  # B never left 0
