"""The fine-tuning API's pieces without a server: hyperparameter mapping, metrics -> events, the SQLite store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rft.config import load_config
from rft.serve.app import ApiError
from rft.serve.job_config import parse_create, resolve_config
from rft.serve.job_events import checkpoint_object, events_for, results_csv
from rft.serve.job_runner import cut_metrics
from rft.serve.jobstore import JobStore

GRADER = {"type": "math", "name": "math", "reference": "{{item.answer}}"}
AUTO = {k: "auto" for k in ("n_epochs", "batch_size", "learning_rate_multiplier", "compute_multiplier",
                            "eval_interval", "eval_samples")}


def body(**hyper: object) -> dict:
    return {"model": "default", "training_file": "file-t", "validation_file": "file-v",
            "method": {"type": "reinforcement", "reinforcement": {"grader": GRADER, "hyperparameters": hyper}}}


def resolve(tmp_path: Path, request: dict, n_train: int = 2000) -> tuple[dict, dict]:
    cfg, resolved = resolve_config(parse_create(request, "default", lambda _: True), tmp_path / "ftjob-x",
                                   "default", "auto", n_train)
    return cfg.to_dict(), resolved


def test_auto_hyperparameters_give_the_config_of_examples_arithmetic_yaml(tmp_path: Path) -> None:
    (tmp_path / "ftjob-x").mkdir()
    got, resolved = resolve(tmp_path, body(**AUTO))
    want = load_config("examples/arithmetic.yaml").to_dict()
    differ = sorted(f"{s}.{k}" for s in want for k in want[s] if want[s][k] != got[s][k])
    # The data come from the uploaded files; the run lives in the job's directory; every checkpoint is kept.
    assert differ == ["task.name", "task.options", "train.keep_last", "train.output_dir"]
    assert got["train"]["keep_last"] == 4  # checkpoints at steps 10, 20, 30 all stay servable
    assert resolved == {"batch_size": 4, "n_epochs": 0.06, "learning_rate_multiplier": 1.0, "compute_multiplier": 1.0,
                        "eval_interval": 10, "eval_samples": 1, "reasoning_effort": "default"}
    assert got == resolve(tmp_path, body())[0]  # absent is "auto"


def test_hyperparameters_map_onto_the_recipe(tmp_path: Path) -> None:
    (tmp_path / "ftjob-x").mkdir()
    got, resolved = resolve(tmp_path, body(n_epochs=2, batch_size=8, learning_rate_multiplier=0.5,
                                           compute_multiplier=0.5, eval_interval=5, eval_samples=4,
                                           reasoning_effort="high"), n_train=100)
    assert got["train"]["steps"] == 25  # ceil(2 epochs x 100 items / 8 per step)
    assert (got["train"]["prompts_per_step"], got["train"]["lr"], got["algorithm"]["group_size"]) == (8, 2.5e-4, 4)
    assert (got["eval"]["interval"], got["eval"]["samples"]) == (5, 4)
    assert resolved["n_epochs"] == 2.0 and resolved["reasoning_effort"] == "high"
    ppo = body() | {"rft": {"algorithm": {"name": "ppo"}}}
    got, _ = resolve(tmp_path, ppo)
    assert (got["algorithm"]["name"], got["algorithm"]["group_size"]) == ("ppo", 4)  # PPO's own default G


@pytest.mark.parametrize("request_body, message", [
    (body(compute_multiplier=0), "compute_multiplier: must be \"auto\" or a number > 0, got 0"),
    (body(n_epochs=1.5), "n_epochs: must be \"auto\" or an integer >= 1, got 1.5"),
    (body(reasoning_effort="max"), "reasoning_effort: 'max' is not one of"),
    (body() | {"suffix": "a:b"}, "suffix: must be a string of at most 64 characters without ':'"),
    (body() | {"rft": {"train": {"stepz": 3}}}, "rft: train: unknown field(s) ['stepz']"),
    (body() | {"rft": {"algorithm": {"name": "ppo", "group_size": 3, "mini_batch_size": 4}}},
     "mini_batch_size must be a positive multiple"),
])
def test_bad_requests_name_the_field(tmp_path: Path, request_body: dict, message: str) -> None:
    (tmp_path / "ftjob-x").mkdir()
    with pytest.raises(ApiError) as exc:
        resolve(tmp_path, request_body)
    assert exc.value.status == 400 and message in exc.value.message


def dpo_body(**hyper: object) -> dict:
    return {"model": "default", "training_file": "file-t", "validation_file": "file-v",
            "method": {"type": "dpo", "dpo": {"hyperparameters": hyper}}}


def test_a_dpo_job_trains_the_dpo_recipe_on_its_preference_files(tmp_path: Path) -> None:
    job = tmp_path / "ftjob-x"
    job.mkdir()
    got, resolved = resolve(tmp_path, dpo_body(beta=0.25, n_epochs=2, batch_size=8, learning_rate_multiplier=2),
                            n_train=100)
    assert (got["algorithm"]["name"], got["algorithm"]["beta"], got["algorithm"]["loss"]) == ("dpo", 0.25, "sigmoid")
    assert got["task"] | {"options": None} == {"name": "", "options": None, "grader": None,
                                               "pairs": str(job / "data" / "train.jsonl"),
                                               "pairs_test": str(job / "data" / "test.jsonl"), "pairs_held_out": 0.1}
    assert (got["train"]["steps"], got["train"]["prompts_per_step"], got["train"]["lr"]) == (25, 8, 1e-3)
    assert resolved == {"batch_size": 8, "n_epochs": 2.0, "learning_rate_multiplier": 2.0, "beta": 0.25}
    auto = dpo_body() | {"validation_file": None}
    got, resolved = resolve(tmp_path, auto)
    assert (got["algorithm"]["beta"], got["task"]["pairs_test"], resolved["beta"]) == (0.1, "", 0.1)


@pytest.mark.parametrize("request_body, message", [
    (dpo_body(beta=0), "method.dpo.hyperparameters.beta: must be \"auto\" or a number > 0, got 0"),
    (dpo_body(compute_multiplier=2), "method.dpo.hyperparameters: unknown field(s) ['compute_multiplier']"),
    (dpo_body() | {"rft": {"algorithm": {"loss": "conservative"}}}, "label_smoothing must be in (0, 0.5)"),
])
def test_bad_dpo_requests_name_the_field(tmp_path: Path, request_body: dict, message: str) -> None:
    (tmp_path / "ftjob-x").mkdir()
    with pytest.raises(ApiError) as exc:
        resolve(tmp_path, request_body)
    assert exc.value.status == 400 and message in exc.value.message


def test_a_preference_upload_is_checked_as_pairs() -> None:
    from rft.serve.files import check_jsonl

    pair = {"input": {"messages": [{"role": "user", "content": "2+2?"}]},
            "preferred_output": [{"role": "assistant", "content": "4"}],
            "non_preferred_output": [{"role": "assistant", "content": "5"}]}
    assert check_jsonl((json.dumps(pair) + "\n").encode() * 3, "p.jsonl") == 3
    same = pair | {"non_preferred_output": pair["preferred_output"]}
    with pytest.raises(ValueError, match="p.jsonl line 2: chosen and rejected replies are the same"):
        check_jsonl(f"{json.dumps(pair)}\n{json.dumps(same)}\n".encode(), "p.jsonl")
    with pytest.raises(ValueError, match="p.jsonl line 2: not a preference pair"):
        check_jsonl(f'{json.dumps(pair)}\n{{"messages": [{{"role": "user", "content": "hi"}}]}}\n'.encode(), "p.jsonl")


def test_metrics_lines_become_openai_style_events() -> None:
    line = {"step": 10, "reward_mean": 0.5, "reward_std": 0.25, "grader/exact": 0.75, "seconds/step": 6.5,
            "eval/accuracy": 0.58, "eval/accuracy_low": 0.511, "eval/accuracy_high": 0.646, "eval/mean_score": 0.58,
            "eval/grader/exact": 0.6}
    (train_msg, train, level), (valid_msg, valid, _) = events_for(line, 30)
    assert (train_msg, level) == ("Step 10/30: train reward mean 0.500", "info")
    assert (train["train_reward_mean"], train["train_grader_scores"], train["seconds_per_step"]) == (0.5, {"exact": 0.75},
                                                                                                   6.5)
    assert valid_msg == "Step 10/30: held-out accuracy 58.0% [51.1, 64.6], valid reward mean 0.580"
    assert (valid["valid_accuracy_ci"], valid["valid_grader_scores"]) == ([0.511, 0.646], {"exact": 0.6})
    [(message, data, level)] = events_for({"step": 12, "reward_mean": 0.9, "alarm/accuracy_drop": 1.0,
                                           "alarm/length": 1.0}, 30)
    assert (message, level) == ("Step 12/30: train reward mean 0.900 (alarms: accuracy_drop, length)", "warn")
    assert data["alarms"] == ["accuracy_drop", "length"]
    ckpt = checkpoint_object("ftjob-x", "ft:m::ftjob-x", 10, Path("a"), train | valid)
    assert ckpt["fine_tuned_model_checkpoint"] == "ft:m::ftjob-x:ckpt-step-10"
    assert ckpt["metrics"]["valid_accuracy"] == 0.58 and "rft" not in ckpt["metrics"]


def test_store_survives_reopening_and_pages_newest_first(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    with pytest.raises(RuntimeError, match="in use by another rft serve"):
        JobStore(tmp_path)
    files = [store.add_file(f"f{i}.jsonl", "fine-tune", b"{}\n") for i in range(3)]
    store.add_job({"id": "ftjob-a", "status": "queued", "metadata": {"team": "x"}}, {"run_dir": "r"})
    for step in range(5):
        store.add_event("ftjob-a", f"step {step}", data={"step": step, "train_reward_mean": step / 10})
    store.close()

    store = JobStore(tmp_path)
    page, more = store.list_files(None, files[2]["id"], 1, ascending=False)
    assert [f["id"] for f in page] == [files[1]["id"]] and more
    events, more = store.list_events("ftjob-a", None, 3)
    assert [e["message"] for e in events] == ["step 4", "step 3", "step 2"] and more
    assert store.list_events("ftjob-a", events[-1]["id"], 10)[0][-1]["message"] == "Created fine-tuning job: ftjob-a"
    assert store.step_metrics("ftjob-a", 3)["train_reward_mean"] == 0.3
    assert [j["id"] for j in store.list_jobs(None, 10, {"team": "x"})[0]] == ["ftjob-a"]
    assert store.list_jobs(None, 10, {"team": "y"})[0] == []
    store.close()


def test_cut_metrics_keeps_what_resume_keeps(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    rows = [{"step": 0, "eval/accuracy": 0.1}, {"step": 1}, {"step": 2}, {"step": 2, "eval/accuracy": 0.2}, {"step": 3}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert cut_metrics(path, 2) == path.stat().st_size
    assert [json.loads(ln)["step"] for ln in path.read_text().splitlines()] == [0, 1, 2, 2]
    assert cut_metrics(path, 0) == 0 and path.read_text() == ""
    path.write_text(json.dumps({"step": 1}) + "\n" + '{"step": 2, "rew')  # killed mid-line
    assert cut_metrics(path, 2) == len(json.dumps({"step": 1})) + 1 and path.read_text() == '{"step": 1}\n'


def test_result_file_has_one_row_per_step_with_evaluations_merged() -> None:
    rows = [{"step": 0, "eval/accuracy": 0.19, "eval/mean_score": 0.19}, {"step": 1, "reward_mean": 0.125},
            {"step": 1, "eval/accuracy": 0.5, "eval/mean_score": 0.5, "eval/accuracy_low": 0.4}]
    assert results_csv(rows).decode().splitlines() == [
        ("step,train_reward_mean,train_reward_std,valid_reward_mean,valid_accuracy,valid_accuracy_low,"
         "valid_accuracy_high,seconds_per_step"),
        "0,,,0.19,0.19,,,", "1,0.125,,0.5,0.5,0.4,,"]


def test_a_dpo_step_becomes_a_train_event() -> None:
    ((message, data, level),) = events_for({"step": 3, "loss": 0.5, "rewards/margin": 0.2, "rewards/accuracy": 0.75}, 10)
    assert message == "Step 3/10: train loss 0.500, reward margin 0.200" and level == "info"
    assert (data["train_loss"], data["train_rewards_margin"], data["train_rewards_accuracy"]) == (0.5, 0.2, 0.75)
