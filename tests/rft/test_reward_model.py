"""The Bradley-Terry loss against hand-derived numbers, the reward_model grader's loading and scoring, and the
runner's batched mode it relies on."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
import torch

from graders.base import Grade, GraderInputError, Sample
from graders.runner import grade_batch
from graders.spec import known_types, load_grader
from graders.workers import SampleInputError
from rft.config import load_config
from rft.reward_model import RewardModelGrader, bradley_terry_loss, build_reward_model, load_reward_model
from tests.tiny_chat import build_chat_model, one_torch_thread

pytestmark = pytest.mark.usefixtures("one_torch_thread")
__all__ = ["one_torch_thread"]
ECHO = "tests.rft.test_train_e2e:echo_task"


def test_bradley_terry_loss_of_one_pair_by_hand() -> None:
    """r_w = 2, r_l = 0.5: margin 1.5, loss = -log sigma(1.5) = log(1 + e^-1.5) = log(1.22313) = 0.201413."""
    loss, metrics = bradley_terry_loss(torch.tensor([2.0]), torch.tensor([0.5]))
    assert loss.item() == pytest.approx(0.201413, abs=1e-6)
    assert metrics == pytest.approx({"loss": 0.201413, "accuracy": 1.0, "margin": 1.5, "reward_chosen": 2.0,
                                     "reward_rejected": 0.5}, abs=1e-6)


def test_bradley_terry_loss_matches_a_naive_loop_and_its_gradient() -> None:
    """Mean of -log(1 / (1 + exp(-(c - r)))) pair by pair; d loss / d c_i = -(1 - sigma(c_i - r_i)) / N."""
    torch.manual_seed(0)
    chosen = (torch.randn(7) * 3).requires_grad_()
    rejected = torch.randn(7) * 3
    rejected[0] = chosen[0].detach() + 40.0  # a hopeless pair: the loss must stay finite (about 40)
    loss, metrics = bradley_terry_loss(chosen, rejected)
    naive = []
    for c, r in zip(chosen.tolist(), rejected.tolist()):
        m = c - r
        naive.append(-m + math.log1p(math.exp(m)) if m < -30 else -math.log(1.0 / (1.0 + math.exp(-m))))
    assert loss.item() == pytest.approx(sum(naive) / 7, rel=1e-6)
    assert metrics["accuracy"] == pytest.approx(sum(c > r for c, r in zip(chosen.tolist(), rejected.tolist())) / 7)
    _, tied = bradley_terry_loss(torch.tensor([1.0, 1.0, 3.0]), torch.tensor([1.0, 2.0, 0.0]))
    assert tied["accuracy"] == pytest.approx((0.5 + 0 + 1) / 3)  # a tie counts half
    loss.backward()
    want = [-(1 - 1 / (1 + math.exp(-(c - r)))) / 7 for c, r in zip(chosen.tolist(), rejected.tolist())]
    assert chosen.grad.tolist() == pytest.approx(want, rel=1e-5, abs=1e-9)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny reward model with a random head and LoRA B, saved; returns (base model, saved dir)."""
    root = tmp_path_factory.mktemp("rm")
    base = build_chat_model(root / "base")
    cfg = load_config(None, ["--model.name", str(base), "--task.name", ECHO, "--lora.rank", "4"])
    torch.manual_seed(1)
    model = build_reward_model(cfg)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.requires_grad:
                param.add_(torch.randn_like(param) * 0.5)
    model.save_pretrained(root / "saved")
    return base, root / "saved"


def test_saved_model_loads_as_a_grader_and_scores_like_the_module(saved_model: tuple[Path, Path]) -> None:
    _, path = saved_model
    module = load_reward_model(path, "cpu")
    grader = load_grader({"type": "reward_model", "path": str(path), "batch_size": 2, "device": "cpu"})
    assert isinstance(grader, RewardModelGrader) and grader.pass_threshold == 0.5
    items = [{"word": w, "answer": w} for w in ("apple", "river", "stone")]
    texts = ["apple", "a river runs", ""]
    result = grade_batch(grader, texts, items)
    assert result.mode == "batched" and result.errors == 0
    rewards = module.score([[{"role": "user", "content": f"Say {i['word']}"}] for i in items], texts).tolist()
    assert len(set(rewards)) == 3  # a random head: three different rewards
    assert [g.details["reward"] for g in result.grades] == pytest.approx(rewards, abs=1e-5)
    assert result.scores == pytest.approx([1 / (1 + math.exp(-r)) for r in rewards], abs=1e-6)
    # One at a time (batches of 1, no padding) gives the same rewards as padded batches.
    single = [grader.grade(Sample(t), i).details["reward"] for t, i in zip(texts, items)]
    assert single == pytest.approx(rewards, abs=1e-5)


def test_raw_transform_counts_rewards_outside_zero_one(saved_model: tuple[Path, Path]) -> None:
    _, path = saved_model
    grader = load_grader({"type": "reward_model", "path": str(path), "transform": "raw", "device": "cpu"})
    result = grade_batch(grader, ["apple", "stone"], [{"word": "apple"}, {"word": "stone"}])
    for grade in result.grades:
        reward = grade.details["reward"]
        assert (grade.error is None) == (0 <= reward <= 1)
        assert grade.score == (reward if grade.error is None else 0.0)
    assert result.errors == sum(not 0 <= g.details["reward"] <= 1 for g in result.grades)


@pytest.mark.parametrize("damage", ["no_dir", "no_info", "bad_json", "no_head", "wrong_head", "no_adapter"])
def test_broken_model_directories_name_the_path(saved_model: tuple[Path, Path], tmp_path: Path, damage: str) -> None:
    import shutil

    from safetensors.torch import save_file

    _, path = saved_model
    broken = tmp_path / "rm"
    if damage != "no_dir":
        shutil.copytree(path, broken)
    if damage == "no_info":
        (broken / "reward_model.json").unlink()
    if damage == "bad_json":
        (broken / "reward_model.json").write_text("{not json")
    if damage == "no_head":
        (broken / "head.safetensors").unlink()
    if damage == "wrong_head":
        save_file({"score.weight": torch.zeros(1, 3), "score.bias": torch.zeros(1)}, str(broken / "head.safetensors"))
    if damage == "no_adapter":
        shutil.rmtree(broken / "adapter")
    with pytest.raises(GraderInputError, match=str(broken)):
        load_grader({"type": "reward_model", "path": str(broken), "device": "cpu"})


def test_spec_fields_are_checked_against_the_registered_schema() -> None:
    assert known_types()["reward_model"] == "rft.reward_model:RewardModelGrader"
    with pytest.raises(GraderInputError, match="transform: 'tanh' is not one of"):
        load_grader({"type": "reward_model", "path": "x", "transform": "tanh"})
    with pytest.raises(GraderInputError, match="'path' is a required property"):
        load_grader({"type": "reward_model"})


class FlakyBatchGrader:
    """A batch grader whose second call fails: its samples (and only those) get counted error grades."""

    name = "flaky"
    batch_size = 2

    def __init__(self, fail: type[Exception]) -> None:
        self.calls: list[int] = []
        self.fail = fail

    def grade(self, sample: Sample, item: Mapping[str, object]) -> Grade:
        return self.grade_many([sample], [item])[0]

    def grade_many(self, samples: Sequence[Sample], items: Sequence[Mapping[str, object]]) -> list[Grade]:
        self.calls.append(len(samples))
        if len(self.calls) == 2:
            raise self.fail("the scoring server dropped this batch")
        return [Grade(0.25 * len(s.output_text)) for s in samples]


def test_a_failed_scoring_batch_is_an_error_for_each_of_its_samples() -> None:
    grader = FlakyBatchGrader(RuntimeError)
    result = grade_batch(grader, ["a", "bb", "c", "dd", "ccc"], [{}] * 5)
    assert grader.calls == [2, 2, 1]
    assert result.mode == "batched" and result.errors == 2 and result.timeouts == 0
    assert result.scores == [0.25, 0.5, 0.0, 0.0, 0.75]
    assert result.grades[2].error == "RuntimeError: the scoring server dropped this batch"


def test_a_batch_with_bad_input_stops_the_run_naming_its_first_sample() -> None:
    with pytest.raises(SampleInputError, match="sample 2: the scoring server"):
        grade_batch(FlakyBatchGrader(GraderInputError), ["a", "b", "c"], [{}] * 3)


def test_reward_model_info_records_base_model_head_and_task(saved_model: tuple[Path, Path]) -> None:
    base, path = saved_model
    info = json.loads((path / "reward_model.json").read_text())
    assert info["base_model"] == str(base) and info["dtype"] == "float32"
    assert info["head"]["width"] == 64 and info["task"] == {"name": ECHO, "options": {}}


def test_example_pairs_script_and_configs() -> None:
    """examples/rlhf: pairs whose chosen answers pass the task's grader and rejected ones fail; the configs load."""
    import importlib.util

    from tasks.base import load_task

    root = Path(__file__).resolve().parents[2] / "examples" / "rlhf"
    spec = importlib.util.spec_from_file_location("make_pairs", root / "make_pairs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    task = load_task("arithmetic")
    pairs = module.make_pairs(task, 60, seed=0)
    assert len(pairs) == 60 and len({p.rejected for p in pairs}) > 30
    for pair in pairs:
        assert task.grader.grade(Sample(pair.chosen), pair.item).score == 1.0
        assert task.grader.grade(Sample(pair.rejected), pair.item).score == 0.0
        assert pair.messages == task.messages(pair.item)
    assert any(p.rejected.endswith("=") for p in pairs)  # the restated question is among the wrong answers
    rm = load_config(root / "reward_model.yaml")
    assert (rm.algorithm.name, rm.task.pairs) == ("reward_model", "runs/rlhf/pairs.jsonl")
    ppo = load_config(root / "ppo.yaml")
    assert ppo.algorithm.name == "ppo" and ppo.task.grader["path"] == "runs/rlhf/rm/reward_model"


def test_bad_reward_model_settings_fail_before_any_model_loads(tmp_path: Path) -> None:
    from rft.config import ConfigError
    from rft.run import load_checked_task

    with pytest.raises(ConfigError, match="task.pairs is needed with algorithm.name reward_model"):
        load_config(None, ["--algorithm.name", "reward_model"])
    with pytest.raises(ConfigError, match="task.pairs_held_out must be a fraction"):
        load_config(None, ["--algorithm.name", "reward_model", "--task.pairs", "p.jsonl", "--task.pairs_held_out", "2.5"])
    missing = tmp_path / "no_model"
    cfg = load_config(None, ["--algorithm.name", "ppo", "--task.grader", json.dumps({"type": "reward_model",
                                                                                     "path": str(missing)})])
    with pytest.raises(ConfigError, match=f"reward model path {missing}: no such directory"):
        load_checked_task(cfg)
    from rft.pairing import load_pair_splits

    bad = tmp_path / "pairs.jsonl"
    bad.write_text('{"prompt": "2+2?", "chosen": "4", "rejected": "4"}\n')
    with pytest.raises(ConfigError, match="pairs.jsonl:1: chosen and rejected replies are the same"):
        load_pair_splits(load_config(None, ["--algorithm.name", "reward_model", "--task.pairs", str(bad)]))
