"""python examples/openai_client.py [--base-url http://127.0.0.1:8000/v1]

OpenAI's reinforcement fine-tuning workflow, written against the openai-python client exactly as for
OpenAI's API, run against `rft serve`: upload a training and a validation JSONL (the default task's
items, two-digit addition, in the OpenAI RFT shape), create a `reinforcement` job with the task's
grader as a grader spec and "auto" hyperparameters, poll it while printing its events, list its
checkpoints, and sample the tuned model by name. With "auto" the job trains what
`rft train examples/arithmetic.yaml` trains (same config, data order and seed), so its held-out
accuracy before and after matches that run.

Without --base-url the script starts `rft serve --port 0 --state-dir runs/openai_client` on the
default model itself and stops it at the end; with it, it talks to a server already running.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from openai import OpenAI

from tasks import load_task

GRADER = {"type": "math", "name": "math", "reference": "{{item.answer}}"}  # the arithmetic task's grader
AUTO = {k: "auto" for k in ("n_epochs", "batch_size", "learning_rate_multiplier", "compute_multiplier",
                            "eval_interval", "eval_samples")}


@contextmanager
def local_server(state_dir: str) -> Iterator[str]:
    """`rft serve` on the default model in a subprocess; yields its base URL."""
    cmd = [sys.executable, "-m", "rft.cli", "serve", "--port", "0", "--state-dir", state_dir]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in proc.stdout:
            print("  [server]", line.rstrip())
            if "listening on" in line:
                break
        else:
            raise RuntimeError("rft serve exited before listening")
        threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep draining its output
        yield line.rsplit(" ", 1)[-1].strip()
    finally:
        proc.terminate()
        proc.wait(180)


def jsonl(task, items) -> bytes:
    """Task items as OpenAI RFT lines: the chat `messages` plus every item field the grader can read."""
    return "".join(json.dumps({"messages": task.messages(i), **i}) + "\n" for i in items).encode()


def follow(client: OpenAI, job_id: str, poll: float) -> object:
    """Poll the job until it ends, printing each new event once (the API lists them newest first)."""
    seen: set[str] = set()
    while True:
        job = client.fine_tuning.jobs.retrieve(job_id)
        events = client.fine_tuning.jobs.list_events(job_id, limit=100).data
        for event in reversed(events):
            if event.id not in seen:
                seen.add(event.id)
                print(f"  {time.strftime('%H:%M:%S')} {event.level:5s} {event.message}", flush=True)
        if job.status in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(poll)


def run(client: OpenAI, model: str, poll: float) -> None:
    task = load_task("arithmetic", digits=2, ops="+")
    train = client.files.create(file=("arithmetic_train.jsonl", jsonl(task, task.train)), purpose="fine-tune")
    valid = client.files.create(file=("arithmetic_valid.jsonl", jsonl(task, task.test)), purpose="fine-tune")
    print(f"uploaded {train.id} ({train.bytes} bytes) and {valid.id} ({valid.bytes} bytes)")
    job = client.fine_tuning.jobs.create(
        model=model, training_file=train.id, validation_file=valid.id, suffix="arithmetic",
        method={"type": "reinforcement", "reinforcement": {"grader": GRADER, "hyperparameters": AUTO}},
    )
    print(f"created {job.id}: {job.status}, hyperparameters {job.method.reinforcement.hyperparameters}")
    job = follow(client, job.id, poll)
    print(f"{job.id}: {job.status}; fine-tuned model {job.fine_tuned_model}; {job.trained_tokens} tokens sampled")
    if job.status != "succeeded":
        raise SystemExit(f"the job did not succeed: {job.error}")
    for ckpt in client.fine_tuning.jobs.checkpoints.list(job.id).data:
        m = ckpt.metrics.model_dump()
        print(f"  checkpoint step {ckpt.step_number}: {ckpt.fine_tuned_model_checkpoint}  "
              f"train reward {m.get('train_reward_mean', float('nan')):.3f}  "
              f"held-out accuracy {m.get('valid_accuracy', float('nan')):.3f}")
    evals = [e.data for e in client.fine_tuning.jobs.list_events(job.id, limit=1000).data
             if e.data and "valid_accuracy" in e.data]
    first, last = evals[-1], evals[0]
    print(f"held-out accuracy: before {100 * first['valid_accuracy']:.1f}% "
          f"[{100 * first['valid_accuracy_ci'][0]:.1f}, {100 * first['valid_accuracy_ci'][1]:.1f}] -> "
          f"after {100 * last['valid_accuracy']:.1f}% "
          f"[{100 * last['valid_accuracy_ci'][0]:.1f}, {100 * last['valid_accuracy_ci'][1]:.1f}]")
    question = [{"role": "user", "content": "What is 47 + 38? Reply with just the number."}]
    for name in (model, job.fine_tuned_model):
        reply = client.chat.completions.create(model=name, messages=question, temperature=0, max_tokens=24)
        print(f"  {name}: {reply.choices[0].message.content!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", help="an rft serve already running (default: start one)")
    parser.add_argument("--model", default="default", help="the base model name the server serves")
    parser.add_argument("--poll", type=float, default=10.0, help="seconds between status polls")
    args = parser.parse_args()
    if args.base_url:
        run(OpenAI(base_url=args.base_url, api_key="-"), args.model, args.poll)
        return
    with local_server("runs/openai_client") as base_url:
        run(OpenAI(base_url=base_url, api_key="-"), args.model, args.poll)


if __name__ == "__main__":
    main()
