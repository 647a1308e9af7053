"""OpenAI's files and fine-tuning jobs APIs: the real openai-python client against a real `rft serve` subprocess.

Jobs train a tiny random Llama (built in the test) on a ten-word echo task graded by fuzzy similarity;
the slow tests run whole jobs (a worker process each, about 10 s of start-up), pause, cancel, and a
server killed mid-job and started again.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from tiny_chat import build_chat_model, start_rft_serve

WORDS = ["apple", "river", "stone", "cloud", "tiger", "piano", "lemon", "orbit", "maple", "coral"]
GRADER = {"type": "text_similarity", "name": "echo", "input": "{{sample.output_text}}",
          "reference": "{{item.answer}}", "evaluation_metric": "fuzzy_match", "pass_threshold": 0.5}
TINY = {"train": {"micro_batch_size": 3, "lr": 0.01, "checkpoint_interval": 1}, "lora": {"rank": 4},
        "sampler": {"max_new_tokens": 6}, "eval": {"max_new_tokens": 6}}


def lines(words: list[str]) -> bytes:
    return "".join(json.dumps({"messages": [{"role": "user", "content": f"Say {w}"}], "answer": w}) + "\n"
                   for w in words).encode()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_chat_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def client(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    proc, base_url = start_rft_serve(model_dir, name="tiny", state_dir=tmp_path_factory.mktemp("state"))
    yield openai.OpenAI(base_url=base_url, api_key="-", max_retries=0)
    proc.terminate()
    proc.wait(60)


def upload(client: openai.OpenAI) -> tuple[str, str]:
    train = client.files.create(file=("train.jsonl", lines(WORDS[:6])), purpose="fine-tune")
    valid = client.files.create(file=("valid.jsonl", lines(WORDS[6:])), purpose="fine-tune")
    return train.id, valid.id


def create(client: openai.OpenAI, files: tuple[str, str], rft: dict[str, Any] | None = None,
           **hyper: Any) -> Any:
    hyperparameters = {"batch_size": 2, "n_epochs": 1, "compute_multiplier": 0.375, "eval_interval": 1} | hyper
    extension = {k: {**v, **(rft or {}).get(k, {})} for k, v in TINY.items()} | {
        k: v for k, v in (rft or {}).items() if k not in TINY}
    return client.fine_tuning.jobs.create(
        model="tiny", training_file=files[0], validation_file=files[1], suffix="echo",
        method={"type": "reinforcement", "reinforcement": {"grader": GRADER, "hyperparameters": hyperparameters}},
        extra_body={"rft": extension},
    )


def wait(client: openai.OpenAI, job_id: str, until: Any, timeout: float = 600.0) -> Any:
    """Poll the job until `until(job)` holds (generous: a loaded 2-core machine runs these jobs 10x slower)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if until(job):
            return job
        if job.status == "failed":
            raise AssertionError(f"job {job_id} failed: {job.error}")
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} still {job.status} after {timeout} s")


def messages(client: openai.OpenAI, job_id: str) -> list[str]:
    return [e.message for e in reversed(client.fine_tuning.jobs.list_events(job_id, limit=1000).data)]


def test_files_api_round_trip_and_a_malformed_line_is_a_400_naming_it(client: openai.OpenAI) -> None:
    good = lines(WORDS[:3])
    uploaded = client.files.create(file=("train.jsonl", good), purpose="fine-tune")
    assert (uploaded.object, uploaded.purpose, uploaded.bytes, uploaded.status) == ("file", "fine-tune", len(good),
                                                                                     "processed")
    assert client.files.retrieve(uploaded.id).filename == "train.jsonl"
    assert client.files.content(uploaded.id).read() == good
    assert uploaded.id in [f.id for f in client.files.list(purpose="fine-tune").data]

    bad = good + b'{"messages": [{"role": "robot", "content": "hi"}], "answer": "x"}\n'
    with pytest.raises(openai.BadRequestError) as exc:
        client.files.create(file=("bad.jsonl", bad), purpose="fine-tune")
    assert "bad.jsonl line 4: field 'messages/0/role'" in exc.value.message
    with pytest.raises(openai.BadRequestError, match="line 2: invalid JSON"):
        client.files.create(file=("broken.jsonl", good.splitlines(keepends=True)[0] + b"{oops\n"), purpose="fine-tune")

    assert client.files.delete(uploaded.id).deleted is True
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(uploaded.id)


@pytest.mark.parametrize("method, message", [
    ({"type": "dpo", "dpo": {"hyperparameters": {"beta": 0}}},
     "method.dpo.hyperparameters.beta: must be \"auto\" or a number > 0, got 0"),
    ({"type": "supervised"}, "method.type: 'supervised' is not available here"),
    ({"type": "reinforcement", "reinforcement": {"grader": {"type": "string_check", "input": "x"}}},
     "method.reinforcement.grader: "),
    ({"type": "reinforcement", "reinforcement": {"grader": GRADER, "hyperparameters": {"batch_size": 0}}},
     "hyperparameters.batch_size: must be \"auto\" or an integer >= 1, got 0"),
    ({"type": "reinforcement", "reinforcement": {"grader": GRADER, "hyperparameters": {"epochs": 2}}},
     "unknown field(s) ['epochs']"),
])
def test_bad_job_requests_are_400s_naming_the_field(client: openai.OpenAI, method: dict, message: str) -> None:
    train = client.files.create(file=("train.jsonl", lines(WORDS[:4])), purpose="fine-tune")
    with pytest.raises(openai.BadRequestError) as exc:
        client.fine_tuning.jobs.create(model="tiny", training_file=train.id, method=method)
    assert message in exc.value.message
    with pytest.raises(openai.BadRequestError, match="model: 'gpt-4o' cannot be fine-tuned here"):
        client.fine_tuning.jobs.create(model="gpt-4o", training_file=train.id, method=method)


@pytest.mark.slow
def test_job_succeeds_with_events_checkpoints_and_its_model_served(client: openai.OpenAI) -> None:
    job = create(client, upload(client))
    assert job.status == "validating_files" and job.seed == 0
    assert job.method.reinforcement.hyperparameters.batch_size == 2
    config = job.model_extra["rft"]["config"]
    assert (config["train"]["steps"], config["algorithm"]["group_size"], config["eval"]["interval"]) == (3, 3, 1)

    job = wait(client, job.id, lambda j: j.status == "succeeded")
    assert job.fine_tuned_model == f"ft:tiny:echo:{job.id}" and job.finished_at >= job.created_at
    assert job.trained_tokens == 3 * 2 * 3 * 6  # 3 steps x B=2 x G=3 completions, each 6 tokens (the cap)
    results = client.files.content(job.result_files[0]).text.splitlines()
    assert results[0].startswith("step,train_reward_mean,") and [r.split(",")[0] for r in results[1:]] == list("0123")
    events = client.fine_tuning.jobs.list_events(job.id, limit=1000).data
    steps = [e.data for e in events if e.type == "metrics" and "train_reward_mean" in e.data]
    assert sorted(d["step"] for d in steps) == [1, 2, 3]
    assert all(0 <= d["train_reward_mean"] <= 1 and d["seconds_per_step"] > 0 for d in steps)
    evals = [e.data for e in events if e.type == "metrics" and "valid_accuracy" in e.data]
    assert sorted(d["step"] for d in evals) == [0, 1, 2, 3]
    assert all(d["valid_accuracy_ci"][0] <= d["valid_accuracy"] <= d["valid_accuracy_ci"][1] for d in evals)
    said = messages(client, job.id)
    assert said[:4] == [f"Created fine-tuning job: {job.id}", said[1], "Files validated, moving job to queued state",
                        "Fine-tuning job started"]
    assert said[-1] == "The job has successfully completed"

    ckpts = client.fine_tuning.jobs.checkpoints.list(job.id).data
    assert [c.step_number for c in ckpts] == [3, 2, 1]
    assert ckpts[0].fine_tuned_model_checkpoint == f"{job.fine_tuned_model}:ckpt-step-3"
    assert ckpts[0].metrics.step == 3 and 0 <= ckpts[0].metrics.model_extra["train_reward_mean"] <= 1
    served = [m.id for m in client.models.list().data]
    assert job.fine_tuned_model in served and all(c.fine_tuned_model_checkpoint in served for c in ckpts)
    for name in (job.fine_tuned_model, ckpts[1].fine_tuned_model_checkpoint):
        reply = client.chat.completions.create(model=name, messages=[{"role": "user", "content": "Say apple"}],
                                               max_tokens=4, temperature=0)
        assert reply.model == name and reply.usage.completion_tokens <= 4
    assert job.id in [j.id for j in client.fine_tuning.jobs.list(limit=50).data]


def pair_lines(words: list[str]) -> bytes:
    """Echo preferences in OpenAI's shape: "Say apple" prefers "apple" to the next word."""
    return "".join(json.dumps({"input": {"messages": [{"role": "user", "content": f"Say {w}"}]},
                               "preferred_output": [{"role": "assistant", "content": w}],
                               "non_preferred_output": [{"role": "assistant", "content": WORDS[i - 1]}]}) + "\n"
                   for i, w in enumerate(words)).encode()


@pytest.mark.slow
def test_a_dpo_job_trains_on_uploaded_preferences(client: openai.OpenAI) -> None:
    train = client.files.create(file=("prefs.jsonl", pair_lines(WORDS[:6])), purpose="fine-tune")
    valid = client.files.create(file=("prefs_valid.jsonl", pair_lines(WORDS[6:])), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(
        model="tiny", training_file=train.id, validation_file=valid.id, suffix="prefs",
        method={"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.2, "batch_size": 3, "n_epochs": 1}}},
        extra_body={"rft": {k: v for k, v in TINY.items() if k != "sampler"}})
    assert job.method.type == "dpo" and job.method.dpo.hyperparameters.beta == 0.2
    job = wait(client, job.id, lambda j: j.status == "succeeded")
    assert job.fine_tuned_model == f"ft:tiny:prefs:{job.id}"
    events = client.fine_tuning.jobs.list_events(job.id, limit=1000).data
    steps = sorted(e.data["step"] for e in events if e.type == "metrics" and "train_rewards_margin" in e.data)
    assert steps == [1, 2]  # 6 pairs, 3 per step, one epoch
    valid_events = [e.data for e in events if e.type == "metrics" and "valid_accuracy" in e.data]
    assert sorted(d["step"] for d in valid_events) == [0, 2]  # before training and at the end
    assert all(d["valid_accuracy"] == d["rft"]["eval/pair_accuracy"] for d in valid_events)  # no grader: pairs


@pytest.mark.slow
def test_pause_resume_and_cancel_a_running_job(client: openai.OpenAI) -> None:
    job = create(client, upload(client), rft={"train": {"steps": 400, "checkpoint_interval": 1000}},
                 eval_interval=1000)
    wait(client, job.id, lambda j: any("train_reward_mean" in (e.data or {}) for e in
                                       client.fine_tuning.jobs.list_events(j.id, limit=5).data))
    client.fine_tuning.jobs.pause(job.id)
    wait(client, job.id, lambda j: j.status == "paused")
    saved = client.fine_tuning.jobs.checkpoints.list(job.id).data  # SIGINT: rft train saved its last step
    assert len(saved) == 1 and 1 <= saved[0].step_number < 400
    with pytest.raises(openai.BadRequestError, match="its status is 'paused'"):
        client.fine_tuning.jobs.pause(job.id)

    client.fine_tuning.jobs.resume(job.id)
    wait(client, job.id, lambda j: j.status == "running")
    assert wait(client, job.id, lambda j: f"Resumed from the checkpoint of step {saved[0].step_number}"
                in messages(client, j.id))
    cancelled = client.fine_tuning.jobs.cancel(job.id)
    assert cancelled.id == job.id
    job = wait(client, job.id, lambda j: j.status == "cancelled")
    assert job.fine_tuned_model is None and messages(client, job.id)[-1] == "Job was cancelled"
    with pytest.raises(openai.BadRequestError, match="its status is 'cancelled'"):
        client.fine_tuning.jobs.cancel(job.id)


def _worker_pid(state: Path, job_id: str) -> int:
    with sqlite3.connect(state / "state.sqlite3") as db:
        return json.loads(db.execute("SELECT private FROM jobs WHERE id = ?", (job_id,)).fetchone()[0])["pid"]


def _gone(pid: int, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.slow
def test_a_killed_server_resumes_its_job_from_the_last_checkpoint(model_dir: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    proc, base_url = start_rft_serve(model_dir, name="tiny", state_dir=state, start_new_session=True)
    client = openai.OpenAI(base_url=base_url, api_key="-", max_retries=0)
    interval = 4
    files = upload(client)
    job = create(client, files, rft={"train": {"steps": 40, "checkpoint_interval": interval}}, eval_interval=1000)
    queued = create(client, files)  # one job runs at a time: this one waits in the queue
    wait(client, job.id, lambda j: client.fine_tuning.jobs.checkpoints.list(j.id).data)
    assert client.fine_tuning.jobs.retrieve(queued.id).status == "queued"
    os.killpg(proc.pid, signal.SIGKILL)  # the server's whole process group; the worker has its own session
    proc.wait()
    assert _gone(_worker_pid(state, job.id)), "the worker outlived its server"
    run = state / "jobs" / job.id / "run"
    done = max(json.loads(ln)["step"] for ln in (run / "metrics.jsonl").read_text().splitlines())
    kept = max(int(p.name.split("-")[1]) for p in run.glob("checkpoint-*"))
    assert done < 40 and done - kept <= interval  # at most one checkpoint interval is lost

    proc, base_url = start_rft_serve(model_dir, name="tiny", state_dir=state)
    try:
        client = openai.OpenAI(base_url=base_url, api_key="-", max_retries=0)
        job = wait(client, job.id, lambda j: j.status == "succeeded")
        said = messages(client, job.id)
        assert f"Resumed from the checkpoint of step {kept}" in said
        assert any("The server stopped while the job was running" in m for m in said)
        steps = sorted({e.data["step"] for e in client.fine_tuning.jobs.list_events(job.id, limit=1000).data
                        if "train_reward_mean" in (e.data or {})})
        assert steps == list(range(1, 41))
        ckpts = [c.step_number for c in client.fine_tuning.jobs.checkpoints.list(job.id).data]
        assert ckpts == list(range(40, 0, -interval))
        assert wait(client, queued.id, lambda j: j.status == "succeeded").fine_tuned_model.endswith(queued.id)
        reply = client.chat.completions.create(model=job.fine_tuned_model, max_tokens=3,
                                               messages=[{"role": "user", "content": "Say river"}])
        assert reply.model == job.fine_tuned_model
    finally:
        proc.terminate()
        proc.wait(60)
