"""Our `metrics.jsonl` lines as OpenAI fine-tuning events, and checkpoints as `fine_tuning.job.checkpoint`s.

A training step becomes a `metrics` event whose data carries what OpenAI reports for reinforcement
jobs (`train_reward_mean`, per-grader means, timing) and a held-out evaluation one with
`valid_reward_mean`, per-grader means and our held-out accuracy with its Wilson 95% interval; alarms
(`rft.alarms`) holding at that step are listed under `alarms` and make the event a `warn`. Every
event also keeps the raw line under `rft`, so nothing `rft train` logs is lost.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from rft.serve.jobstore import new_id, now

TRAIN_KEYS = {  # OpenAI-style name -> our metrics.jsonl key
    "train_reward_mean": "reward_mean", "train_reward_std": "reward_std", "train_accuracy": "accuracy",
    "train_loss": "loss", "train_mean_completion_tokens": "completion_length",
    "train_truncation_rate": "truncation_rate", "train_grader_errors": "grader_errors", "kl": "kl",
    "seconds_per_step": "seconds/step", "seconds_sampling": "seconds/sampling",
    "seconds_grading": "seconds/grading", "seconds_training": "seconds/training",
    "train_rewards_margin": "rewards/margin", "train_rewards_accuracy": "rewards/accuracy",
}
VALID_KEYS = {
    "valid_reward_mean": "eval/mean_score", "valid_accuracy": "eval/accuracy",
    "valid_grader_errors": "eval/grader_errors", "valid_pass_at_k": "eval/pass_at_k", "seconds_eval": "eval/seconds",
}


def _pick(line: dict[str, Any], keys: dict[str, str], prefix: str) -> dict[str, Any]:
    out = {ours: line[theirs] for ours, theirs in keys.items() if theirs in line}
    out[f"{prefix}_grader_scores"] = {k.split("/")[-1]: v for k, v in line.items()
                                      if k.startswith("grader/" if prefix == "train" else "eval/grader/")}
    return out


def events_for(line: dict[str, Any], total_steps: int) -> list[tuple[str, dict[str, Any], str]]:
    """(message, data, level) of the events for one metrics line: a training step, an evaluation, or both.

    A line on which `rft.alarms` holds an alarm (`alarm/<name>` keys) gives `warn` events naming it.
    """
    step = line["step"]
    alarms = sorted(k.split("/", 1)[1] for k in line if k.startswith("alarm/"))
    head = {"step": step, "total_steps": total_steps} | ({"alarms": alarms} if alarms else {})
    level, note = ("warn", f" (alarms: {', '.join(alarms)})") if alarms else ("info", "")
    out = []
    if "reward_mean" in line or "rewards/margin" in line:
        data = head | _pick(line, TRAIN_KEYS, "train") | {"rft": line}
        what = (f"train reward mean {line['reward_mean']:.3f}" if "reward_mean" in line else
                f"train loss {line['loss']:.3f}, reward margin {line['rewards/margin']:.3f}")  # DPO on pairs
        out.append((f"Step {step}/{total_steps}: {what}{note}", data, level))
    if "eval/accuracy" in line:
        ci = [line["eval/accuracy_low"], line["eval/accuracy_high"]]
        data = head | _pick(line, VALID_KEYS, "valid") | {"valid_accuracy_ci": ci, "rft": line}
        message = (f"Step {step}/{total_steps}: held-out accuracy {100 * line['eval/accuracy']:.1f}% "
                   f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}], valid reward mean {line['eval/mean_score']:.3f}{note}")
        out.append((message, data, level))
    return out


def checkpoint_object(job_id: str, model_name: str, step: int, adapter: Path, metrics: dict[str, Any]
                      ) -> dict[str, Any]:
    """A `fine_tuning.job.checkpoint`, served as `<fine-tuned model>:ckpt-step-<step>`; `rft.adapter` is its path."""
    shown = {k: v for k, v in metrics.items() if k not in ("rft", "total_steps")} | {"step": step}
    return {"id": new_id("ftckpt"), "object": "fine_tuning.job.checkpoint", "created_at": now(),
            "fine_tuned_model_checkpoint": f"{model_name}:ckpt-step-{step}", "fine_tuning_job_id": job_id,
            "metrics": shown, "step_number": step, "rft": {"adapter": str(adapter)}}


RESULT_COLUMNS = {"step": "step", "train_reward_mean": "reward_mean", "train_reward_std": "reward_std",
                  "valid_reward_mean": "eval/mean_score", "valid_accuracy": "eval/accuracy",
                  "valid_accuracy_low": "eval/accuracy_low", "valid_accuracy_high": "eval/accuracy_high",
                  "seconds_per_step": "seconds/step"}


def results_csv(rows: list[dict[str, Any]]) -> bytes:
    """The job's result file (`step_metrics.csv`, purpose `fine-tune-results`): one row per step, evaluations
    merged into their step's row."""
    by_step: dict[int, dict[str, Any]] = {}
    for row in rows:
        by_step.setdefault(row["step"], {}).update(row)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(RESULT_COLUMNS)
    for step in sorted(by_step):
        writer.writerow([by_step[step].get(key, "") for key in RESULT_COLUMNS.values()])
    return out.getvalue().encode()
