"""Each training-signal alarm fires on a metrics stream built to raise it and stays quiet on a healthy one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rft.alarms import AlarmConfig, AlarmMonitor, eval_alarms, step_alarms

CFG = AlarmConfig()
DEFAULT_RUN = Path(__file__).resolve().parents[1] / "data" / "default_run_metrics.jsonl"


def steps(n: int, **series: object) -> list[dict]:
    """`n` step dicts (steps 1..n); each keyword is a constant or a list of n values."""
    base = {"reward_mean": 0.5, "accuracy": 0.5, "completion_length": 12.0, "grader_errors": 0.0,
            "sample_parse_errors": 0.0, "completions": 32.0, "zero_signal_frac": 0.25, "clip_ratio": 0.0}
    rows = []
    for i in range(n):
        row = {"step": i + 1, **base}
        for key, value in series.items():
            row[key] = value[i] if isinstance(value, list) else value
        rows.append(row)
    return rows


def test_the_default_run_raises_nothing() -> None:
    """A real default run (examples/arithmetic.yaml, 30 steps, 19.0% -> 65.0%, before later math grader changes);
    its grader errors were answers with no number in them ("no final answer found"), i.e. unreadable samples."""
    monitor = AlarmMonitor(CFG, {})
    for row in map(json.loads, DEFAULT_RUN.read_text().splitlines()):
        if "eval/accuracy" in row:
            assert monitor.observe_eval(row["step"], row["eval/accuracy"]) == {}
        else:
            assert monitor.observe_step(row["step"], row) == {}
    assert monitor.summary() == []


def test_accuracy_drop_needs_the_reward_to_rise() -> None:
    rising = steps(20, reward_mean=[0.3] * 10 + [0.8] * 10)
    evals = [(0, 0.2), (10, 0.6), (20, 0.45)]
    message = eval_alarms(evals, rising, CFG)["accuracy_drop"]
    assert "45.0% at step 20 is 15.0 points below its best (60.0% at step 10)" in message
    assert "0.300 -> 0.800" in message
    assert eval_alarms(evals, steps(20, reward_mean=[0.6] * 10 + [0.4] * 10), CFG) == {}  # just worse
    assert eval_alarms([(0, 0.2), (10, 0.6), (20, 0.57)], rising, CFG) == {}  # within 5 points


# PPO on a learned reward (examples/rlhf/ppo.yaml, the reward model of examples/rlhf/, default model): steps 1-10
# of the real run, whose held-out accuracy went 19.0% -> 3.0% at step 10 while completions shrank to 4 tokens.
PPO_REWARD = [0.209, 0.296, 0.282, 0.392, 0.492, 0.594, 0.704, 0.759, 0.833, 0.88]
PPO_TRUE = [0.062, 0.031, 0.094, 0.031, 0.031, 0.031, 0.125, 0.188, 0.0, 0.031]


def test_accuracy_drop_from_the_untrained_model() -> None:
    """The best evaluation is step 0's (no training reward before it): the first window's reward stands in."""
    hacked = steps(10, reward_mean=PPO_REWARD)
    message = eval_alarms([(0, 0.19), (10, 0.03)], hacked, CFG)["accuracy_drop"]
    assert "3.0% at step 10 is 16.0 points below its best (19.0% at step 0)" in message
    assert "0.334 -> 0.754" in message
    assert eval_alarms([(0, 0.19), (10, 0.03)], steps(10, reward_mean=PPO_REWARD[::-1]), CFG) == {}


def test_reward_gap_between_a_learned_reward_and_the_true_grader() -> None:
    hacked = steps(10, reward_mean=PPO_REWARD, **{"true/reward_mean": PPO_TRUE})
    assert [i + 1 for i in range(10) if "reward_gap" in step_alarms(hacked[: i + 1], CFG)] == [9, 10]
    assert "went 0.334 -> 0.754 while the task's own grader scored the same samples 0.050 -> 0.075" in (
        step_alarms(hacked, CFG)["reward_gap"])
    both_rise = steps(10, reward_mean=PPO_REWARD, **{"true/reward_mean": [r - 0.15 for r in PPO_REWARD]})
    assert "reward_gap" not in step_alarms(both_rise, CFG)
    assert "reward_gap" not in step_alarms(steps(10, reward_mean=PPO_REWARD), CFG)  # no task.grader: no true reward


def test_format_gap_and_diverging_sub_scores() -> None:
    # readable-but-wrong: 1 - 0.3 - 20/32 = 7.5% before, 70% after, accuracy flat at 30%
    gap = steps(10, accuracy=0.3, sample_parse_errors=[20.0] * 5 + [0.0] * 5, grader_errors=[20.0] * 5 + [0.0] * 5)
    assert "rose from 7.5% to 70.0%" in step_alarms(gap, CFG)["format_gap"]
    learning = steps(10, accuracy=[0.3] * 5 + [0.9] * 5, sample_parse_errors=[20.0] * 5 + [0.0] * 5)
    assert "format_gap" not in step_alarms(learning, CFG)
    diverge = steps(10, **{"grader/format": [0.2] * 5 + [0.9] * 5, "grader/correct": [0.6] * 5 + [0.2] * 5})
    assert "grader/format rose while grader/correct fell" in step_alarms(diverge, CFG)["sub_scores_diverge"]
    together = steps(10, **{"grader/format": [0.2] * 5 + [0.9] * 5, "grader/correct": [0.2] * 5 + [0.6] * 5})
    assert "sub_scores_diverge" not in step_alarms(together, CFG)


@pytest.mark.parametrize("lengths, fires", [([20.0] * 5 + [5.0] * 5, "collapsed"),
                                            ([10.0] * 5 + [30.0] * 5, "exploded"),
                                            ([18.0] * 5 + [12.0] * 5, None)])
def test_completion_length(lengths: list[float], fires: str | None) -> None:
    raised = step_alarms(steps(10, completion_length=lengths), CFG)
    assert (fires in raised["length"]) if fires else "length" not in raised


def test_kl_and_clip_spikes_above_the_floor() -> None:
    assert "kl jumped to 0.2" in step_alarms(steps(11, kl=[0.01] * 10 + [0.2]), CFG)["kl_spike"]
    assert step_alarms(steps(11, kl=[0.001] * 10 + [0.04]), CFG) == {}  # 40x, but under the 0.05 floor
    assert "clip_ratio jumped" in step_alarms(steps(11, clip_ratio=[0.01] * 10 + [0.3]), CFG)["clip_spike"]
    assert "kl_spike" in step_alarms(steps(11, approx_kl=[0.02] * 10 + [0.5]), CFG)


def test_grader_errors_but_not_unreadable_samples() -> None:
    assert "5 of 32 completions" in step_alarms(steps(1, grader_errors=5.0), CFG)["grader_errors"]
    assert step_alarms(steps(1, grader_errors=9.0, sample_parse_errors=9.0), CFG) == {}


def test_zero_signal_over_a_window() -> None:
    assert "100% of groups" in step_alarms(steps(5, zero_signal_frac=1.0), CFG)["zero_signal"]
    assert step_alarms(steps(5, zero_signal_frac=[1.0, 1.0, 1.0, 1.0, 0.25]), CFG) == {}  # 85%
    assert step_alarms(steps(4, zero_signal_frac=1.0), CFG) == {}  # not a full window yet


def test_monitor_prints_once_logs_while_holding_and_keeps_its_state(capsys: pytest.CaptureFixture) -> None:
    state: dict = {}
    monitor = AlarmMonitor(CFG, state)
    logged = [monitor.observe_step(row["step"], row) for row in steps(7, zero_signal_frac=1.0)]
    assert logged == [{}] * 4 + [{"alarm/zero_signal": 1.0}] * 3
    assert capsys.readouterr().out.count("ALARM step 5 [zero_signal]") == 1
    resumed = AlarmMonitor(CFG, json.loads(json.dumps(state)))  # as a checkpoint stores it
    assert resumed.observe_step(8, steps(8, zero_signal_frac=1.0)[-1]) == {"alarm/zero_signal": 1.0}
    assert capsys.readouterr().out == "" and [a["step"] for a in resumed.summary()] == [5]


def test_format_gap_is_quiet_on_the_noise_of_small_batches() -> None:
    # The training accuracy of json_extract's run (4 prompts a step; steps 18-27 of the bench run): the
    # readable-but-wrong share rose 26 points between the windows, 1.3 standard errors, while held-out accuracy
    # rose; the same rise with steady steps (countdown's always-adding policy) is 2+ standard errors and fires.
    noisy = steps(10, accuracy=[0.91, 0.19, 0.19, 0.19, 0.91, 0.0, 0.41, 0.06, 0.22, 0.47],
                  sample_parse_errors=[0.0, 2.0, 0.0, 2.0, 2.0, 0.0, 2.0, 0.0, 1.0, 1.0])
    assert "format_gap" not in step_alarms(noisy, CFG)
    assert "format_gap" in step_alarms(noisy, AlarmConfig(format_gap_z=1.0))
    steady = steps(10, accuracy=[0.48, 0.5, 0.45, 0.5, 0.47] + [0.2, 0.22, 0.19, 0.2, 0.21])
    assert "rose from 52.0% to 79.6%" in step_alarms(steady, CFG)["format_gap"]
