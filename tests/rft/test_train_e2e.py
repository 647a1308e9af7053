"""End to end: a few GRPO steps on a tiny random Llama built in the test, checkpoints and --resume."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from graders.similarity import TextSimilarityGrader
from rft.config import load_config
from rft.recipes.grpo import train
from tasks.base import Task
from tests.tiny_chat import build_chat_model

WORDS = ["apple", "river", "stone", "cloud", "tiger", "piano", "lemon", "orbit", "maple", "coral"]


def echo_task(n_train: int = 12, n_test: int = 4) -> Task:
    """Repeat a word back; fuzzy similarity gives graded rewards even to a random model's babble."""
    items = [{"word": w, "answer": w} for w in WORDS]
    return Task(
        name="echo",
        train=items[:n_train][: len(items) - n_test],
        test=items[-n_test:],
        prompt=lambda item: f"Say {item['word']}",
        grader=TextSimilarityGrader(reference="{{item.answer}}", evaluation_metric="fuzzy_match", pass_threshold=0.5),
        reference=lambda item: item["answer"],
    )


def judge_task(judge_model: str) -> Task:
    """The echo task graded by a score_model judge: a tiny model loaded in this process (greedy, 8 tokens)."""
    from graders.spec import load_grader

    task = echo_task()
    task.grader = load_grader({
        "type": "score_model", "name": "judge", "model": judge_model, "backend": "local", "range": [0, 10],
        "input": [{"role": "user", "content": "Rate 0 to 10: {{sample.output_text}} (wanted {{item.word}})"}],
        "sampling_params": {"max_completion_tokens": 8},
    })
    return task


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_chat_model(tmp_path_factory.mktemp("tiny") / "model")


def config(model: Path, out: Path, steps: int, **extra: str):
    overrides = {
        "model.name": str(model), "task.name": "tests.rft.test_train_e2e:echo_task", "train.steps": str(steps),
        "train.output_dir": str(out), "train.prompts_per_step": "2", "train.micro_batch_size": "3",
        "train.checkpoint_interval": "2", "train.lr": "0.01", "algorithm.group_size": "3",
        "sampler.max_new_tokens": "6", "eval.max_new_tokens": "6", "eval.interval": "2", "lora.rank": "4",
        "algorithm.beta": "0.05", "algorithm.num_iterations": "2", **extra,
    }
    args = [x for k, v in overrides.items() for x in (f"--{k}", v)]
    return load_config(None, args)


def lora_weights(adapter_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(adapter_dir / "adapter_model.safetensors"))


def test_grpo_steps_change_every_lora_parameter_and_write_outputs(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    summary = train(config(tiny_model, out, steps=3), show_progress=False)

    # Every LoRA tensor moved away from its initialisation (B starts at 0, A gets gradient from step 2).
    import peft
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    torch.manual_seed(0)
    init = peft.get_peft_model(base, peft.LoraConfig(r=4, lora_alpha=32, target_modules=[
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    trained = lora_weights(out / "checkpoint-000003" / "adapter")
    b_keys = [k for k in trained if "lora_B" in k]
    assert len(b_keys) == 2 * 7  # 2 layers x 7 target modules
    for key, value in trained.items():
        assert value.abs().sum() > 0, key
    init_state = {k: v for k, v in init.state_dict().items() if "lora_A" in k}
    for key in (k for k in trained if "lora_A" in k):
        match = next(v for k, v in init_state.items() if k.replace(".default", "").endswith(key.split("base_model.")[-1]))
        assert not torch.equal(match, trained[key]), f"{key} did not change"

    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "reward_mean" in r]
    assert [r["step"] for r in steps] == [1, 2, 3]
    for key in ("reward_std", "kl", "clip_ratio", "grad_norm", "zero_signal_groups", "truncation_rate",
                "completion_length", "lr", "seconds/sampling", "seconds/grading", "seconds/training"):
        assert key in steps[-1], key
    assert [r["step"] for r in rows if "eval/accuracy" in r] == [0, 2, 3]
    assert (out / "plot.png").stat().st_size > 1000
    assert (out / "best" / "adapter" / "adapter_config.json").exists()
    assert json.loads((out / "config.json").read_text())["train"]["steps"] == 3
    assert summary["before"]["n_items"] == 4 and summary["after"] is not None
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-000002", "checkpoint-000003"]
    assert len((out / "eval" / "step-000003.jsonl").read_text().splitlines()) == 4


def test_resume_continues_exactly(tiny_model: Path, tmp_path: Path) -> None:
    """A run interrupted after step 2 and resumed ends with the same adapter as an uninterrupted run."""
    from rft.recipes.grpo import step_items

    straight = tmp_path / "straight"
    train(config(tiny_model, straight, steps=4), show_progress=False)

    resumed = tmp_path / "resumed"
    task = echo_task()
    earlier = {i["word"] for s in (0, 1) for i in step_items(task.train, s, 2, 0)}
    poison = [i["word"] for i in step_items(task.train, 2, 2, 0) if i["word"] not in earlier]
    interrupted = config(tiny_model, resumed, steps=4, **{"task.name": "tests.rft.test_train_e2e:poisoned_echo_task",
                                                          "task.options.poison": json.dumps(poison)})
    with pytest.raises(KeyboardInterrupt):
        train(interrupted, show_progress=False)
    train(config(tiny_model, resumed, steps=4), resume=True, show_progress=False)

    a = lora_weights(straight / "checkpoint-000004" / "adapter")
    b = lora_weights(resumed / "checkpoint-000004" / "adapter")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)
    logged = [json.loads(x)["step"] for x in (resumed / "metrics.jsonl").read_text().splitlines()]
    assert logged == [0, 1, 2, 2, 3, 4, 4]  # evals at 0, 2, 4 interleaved with steps


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (["--algorithm.group_size", "1"], "group_size must be >= 2"),
        (["--task.name", "no_such_task"], "unknown task"),
        (["--train.stepz", "3"], "unknown field"),
        (["--algorithm.aggregation", "mean"], "aggregation"),
    ],
)
def test_bad_settings_fail_before_training(override: list[str], message: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "rft.cli", "train", "--quiet", "--train.output_dir", str(tmp_path), *override],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
    assert not (tmp_path / "metrics.jsonl").exists()


def poisoned_echo_task(poison: list[str]) -> Task:
    """echo_task whose prompt builder is interrupted (as by Ctrl-C) on the `poison` words."""
    task = echo_task()
    build = task.prompt

    def prompt(item: dict) -> str:
        if item["word"] in poison:
            raise KeyboardInterrupt
        return build(item)

    task.prompt = prompt
    return task


def test_interrupted_run_keeps_its_last_completed_step(tiny_model: Path, tmp_path: Path) -> None:
    from rft.recipes.grpo import step_items

    task = echo_task()
    # Poison only prompts first used at step 3, so steps 1 and 2 complete (no checkpoint is due at step 1).
    earlier = {i["word"] for s in (0, 1) for i in step_items(task.train, s, 2, 0)}
    poison = [i["word"] for i in step_items(task.train, 2, 2, 0) if i["word"] not in earlier]
    assert poison
    out = tmp_path / "run"
    cfg = config(tiny_model, out, steps=6, **{"task.name": "tests.rft.test_train_e2e:poisoned_echo_task",
                                              "task.options.poison": json.dumps(poison),
                                              "train.checkpoint_interval": "5"})
    with pytest.raises(KeyboardInterrupt):
        train(cfg, show_progress=False)
    assert [p.name for p in out.glob("checkpoint-*")] == ["checkpoint-000002"]
    state = json.loads((out / "checkpoint-000002" / "state.json").read_text())
    assert state["step"] == 2


@pytest.mark.parametrize("aggregation", ["seq_mean", "token_mean", "seq_mean_token_sum_norm"])
def test_micro_batch_size_does_not_change_the_update(tiny_model: Path, aggregation: str) -> None:
    """micro_batch_size = G (3 micro-batches) and = B*G (one) give the same update, for every aggregation.

    Plain SGD with lr 1 makes the parameter change equal to minus the gradient, so the check is on the
    gradient itself (Adam's first step would hide a rescaled gradient)."""
    from rft.policy import load_policy
    from rft.recipes.grpo import policy_update
    from rft.sampling.base import SamplingParams
    from rft.sampling.hf import HFSampler

    deltas = []
    for micro in (2, 6):
        cfg = config(tiny_model, Path("unused"), steps=1, **{
            "algorithm.aggregation": aggregation, "algorithm.group_size": "2", "train.micro_batch_size": str(micro),
            "algorithm.num_iterations": "1", "algorithm.beta": "0.05", "train.max_grad_norm": "1e9"})
        torch.manual_seed(0)
        policy = load_policy(str(tiny_model), lora=cfg.lora)
        for name, p in policy.model.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(p, std=0.1)
        sampler = HFSampler(policy)
        prompts = [[{"role": "user", "content": f"Say {w}"}] for w in WORDS[:3]]
        groups = sampler.generate(prompts, SamplingParams(n=2, temperature=1.0, max_new_tokens=6, seed=1))
        assert len({len(c.token_ids) for g in groups for c in g}) > 1  # ragged, so normalisers matter
        params = policy.trainable_parameters()
        before = [p.detach().clone() for p in params]
        optimizer = torch.optim.SGD(params, lr=1.0)
        advantages = torch.tensor([1.0, -1.0, 0.5, -0.5, -2.0, 2.0])
        policy_update(policy, optimizer, None, groups, advantages, cfg, sampler)
        deltas.append(torch.cat([(p.detach() - b).flatten() for p, b in zip(params, before)]))
    assert deltas[0].abs().sum() > 0
    torch.testing.assert_close(deltas[0], deltas[1], rtol=1e-4, atol=1e-6)


def test_a_raised_alarm_reaches_metrics_summary_and_stdout(tiny_model: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    """Wiring of rft.alarms in a real run: a length alarm set to fire on any change (ratio 1) is printed once,
    logged as alarm/length on each step it holds, and listed in summary.json."""
    out = tmp_path / "run"
    summary = train(config(tiny_model, out, steps=3, **{"alarms.window": "1", "alarms.length_ratio": "1.0"}),
                    show_progress=False)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r.get("alarm/length") == 1.0] == [1, 2, 3]  # ratio >= 1 always holds
    assert [a["name"] for a in summary["alarms"]] == ["length"] and summary["alarms"][0]["step"] == 1
    assert json.loads((out / "summary.json").read_text())["alarms"] == summary["alarms"]
    assert capsys.readouterr().out.count("ALARM step 1 [length]") == 1


def test_dynamic_sampling_in_a_run(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    train(config(tiny_model, out, steps=2, **{"algorithm.dynamic_sampling": "true", "algorithm.sampling_tries": "2",
                                               "eval.interval": "5"}), show_progress=False)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if "reward_mean" in line]
    assert [r["step"] for r in rows] == [1, 2]
    for row in rows:
        assert row["dynamic/tries"] in (1.0, 2.0) and 0 <= row["dynamic/groups_kept"] <= 2
        assert row["zero_signal_groups"] == (2.0 if row["dynamic/groups_kept"] == 0 else 0.0)


def test_judge_budget_stops_cleanly_and_resume_continues_exactly(tiny_model: Path, tmp_path: Path) -> None:
    """Priced judge tokens: a budget that covers step 1 but not step 2 stops the run with a checkpoint at step 1
    and the reason in the summary; resuming with no limit ends where an unlimited run ends."""
    judged = {"task.name": "tests.rft.test_train_e2e:judge_task", "task.options": json.dumps(
        {"judge_model": str(tiny_model)}), "judge.prompt_price": "1000000", "judge.completion_price": "2000000",
        "eval.interval": "10"}
    full = train(config(tiny_model, tmp_path / "full", steps=2, **judged), show_progress=False)
    rows = [json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    eval0, step1 = rows[0]["eval/judge_cost"], rows[1]["judge_cost/step"]
    assert rows[1]["tokens/judge/prompt"] > 0 and step1 == pytest.approx(
        rows[1]["tokens/judge/prompt"] + 2 * rows[1]["tokens/judge/completion"])  # $1 and $2 per token
    assert full["judge_cost"] == pytest.approx(sum(r.get("judge_cost/step", r.get("eval/judge_cost", 0)) for r in rows))

    out = tmp_path / "stopped"
    stopped = train(config(tiny_model, out, steps=2, **judged, **{"judge.budget": str(eval0 + 1.5 * step1)}),
                    show_progress=False)
    assert stopped["stopped"].startswith("judge budget: $") and stopped["after"] is None
    assert [p.name for p in out.glob("checkpoint-*")] == ["checkpoint-000001"]
    resumed = train(config(tiny_model, out, steps=2, **judged), resume=True, show_progress=False)
    # (the totals may differ: a resumed run starts with an empty judge cache, so it pays for repeats again)
    assert resumed["stopped"] is None and resumed["judge_cost"] > stopped["judge_cost"] == pytest.approx(eval0 + step1)
    assert torch.equal(*(lora_weights(run / "checkpoint-000002" / "adapter")["base_model.model.model.layers.0."
                                                                               "self_attn.q_proj.lora_B.weight"]
                         for run in (tmp_path / "full", out)))
