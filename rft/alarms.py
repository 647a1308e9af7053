"""Alarms that say, with numbers, when a run's training signal cannot be trusted.

A reward that rises while the task gets worse is the failure RL fine-tuning users report most (reward
hacking, format-only rewards, a grader that breaks mid-run). Each alarm is a pure check over the step
metrics the recipes already log and the held-out evaluations:

- `accuracy_drop`: held-out accuracy `accuracy_drop` below its best while the training reward rose since then;
- `format_gap`: the share of completions the grader could read but scored wrong rose by `format_gap_rise`
  between windows, and by `format_gap_z` standard errors of that rise, while accuracy did not rise; for multi graders, sub-scores moving apart by `sub_score_divergence`;
- `reward_gap`: with `task.grader` replacing the task's grader (a reward model), the training reward pulling
  away from the task's own grader on the same samples by `reward_gap_rise` since the first window;
- `length`: mean completion length `length_ratio` times longer or shorter than in the first window;
- `kl_spike` / `clip_spike`: KL or clip ratio above `spike_floor` and `spike_factor` times its previous-window mean;
- `grader_errors`: grader errors and timeouts (not unreadable samples: those are the policy's) above
  `grader_error_rate` of a step's completions;
- `zero_signal`: a window whose groups had all-equal rewards `zero_signal` of the time (no gradient at all).

A window is the last `window` steps, compared with the `window` steps before them. Defaults stay quiet on
the default run (`examples/arithmetic.yaml`); `AlarmMonitor` prints each alarm once when raised, logs
`alarm/<name>` on every step it holds, and keeps its history in the checkpointed run state.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rft.options import opt

# Step metrics the checks read (what `rft.rewards.grade_texts`, `rft.rollout` and the losses log).
TRACKED = ("reward_mean", "accuracy", "completion_length", "grader_errors", "sample_parse_errors", "completions",
           "zero_signal_frac", "kl", "approx_kl", "clip_ratio", "true/reward_mean")


@dataclass
class AlarmConfig:
    window: int = opt(5, "steps per window; the last window is compared with the one before it")
    accuracy_drop: float = opt(0.05, "held-out accuracy this far below its best while the training reward rose")
    format_gap_rise: float = opt(0.25, "rise of the readable-but-wrong share between windows, accuracy flat")
    format_gap_z: float = opt(2.0, "... and that many standard errors of the rise (from the per-step shares): with "
                              "few prompts a step the share swings by chance")
    sub_score_divergence: float = opt(0.25, "one sub-grader's mean rising and another's falling this much")
    reward_gap_rise: float = opt(0.3, "training reward minus the true grader's reward on the same samples, "
                                 "grown this much since the first window (only with task.grader)")
    length_ratio: float = opt(2.5, "completion length this many times longer or shorter than the first window")
    spike_factor: float = opt(5.0, "KL or clip ratio this many times its previous-window mean ...")
    spike_floor: float = opt(0.05, "... and above this value")
    grader_error_rate: float = opt(0.05, "grader errors and timeouts per completion in one step")
    zero_signal: float = opt(0.9, "window mean share of groups whose rewards are all equal")


def _mean(rows: Sequence[Mapping[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
    return sum(values) / len(values) if values else None


def step_alarms(history: Sequence[Mapping[str, Any]], cfg: AlarmConfig) -> dict[str, str]:
    """Alarms raised by the step metrics `history` (oldest first, one dict per step): name -> message."""
    w = cfg.window
    now, last, before = history[-1], history[-w:], history[-2 * w : -w]
    out: dict[str, str] = {}
    errors = now.get("grader_errors", 0.0) - now.get("sample_parse_errors", 0.0)
    if now.get("completions") and errors / now["completions"] > cfg.grader_error_rate:
        out["grader_errors"] = (f"{errors:g} of {now['completions']:g} completions hit a grader error or timeout "
                                f"(threshold {cfg.grader_error_rate:.0%}): those rewards are 0, not the policy's doing")
    if len(history) < w:
        return out
    signal = _mean(last, "zero_signal_frac")
    if signal is not None and signal >= cfg.zero_signal:
        out["zero_signal"] = (f"{signal:.0%} of groups over the last {w} steps had all-equal rewards: almost no "
                              "gradient (try dynamic sampling, an easier curriculum or a larger group)")
    first, recent = _mean(history[:w], "completion_length"), _mean(last, "completion_length")
    if first and recent and max(recent / first, first / recent) >= cfg.length_ratio:
        way = "exploded" if recent > first else "collapsed"
        out["length"] = f"completion length {way}: {first:.1f} tokens in the first {w} steps, {recent:.1f} now"
    out |= _reward_gap(history[:w], last, cfg)
    if len(before) < w:
        return out
    for key, name in (("kl", "kl_spike"), ("approx_kl", "kl_spike"), ("clip_ratio", "clip_spike")):
        base, value = _mean(before, key), now.get(key)
        if base is not None and isinstance(value, (int, float)) and value > max(cfg.spike_floor,
                                                                                cfg.spike_factor * base):
            out[name] = f"{key} jumped to {value:.3g} from a mean of {base:.3g} over the {w} steps before"
    out |= _format_gap(last, before, cfg)
    return out


def _reward_gap(first: Sequence[Mapping[str, Any]], last: Sequence[Mapping[str, Any]], cfg: AlarmConfig
                ) -> dict[str, str]:
    """The learned reward against the task's own grader (`true/reward_mean`, logged when `task.grader` is set)."""
    means = [(_mean(rows, "reward_mean"), _mean(rows, "true/reward_mean")) for rows in (first, last)]
    if any(v is None for pair in means for v in pair):
        return {}
    (r0, t0), (r1, t1) = means
    if (r1 - t1) - (r0 - t0) < cfg.reward_gap_rise:
        return {}
    return {"reward_gap": (f"the training reward went {r0:.3f} -> {r1:.3f} while the task's own grader scored the "
                           f"same samples {t0:.3f} -> {t1:.3f}: the learned reward is being hacked")}


def _readable_wrong(rows: Sequence[Mapping[str, Any]]) -> list[float]:
    """Per step: the share of completions the grader could read (no parse error) but scored wrong."""
    return [1 - r["accuracy"] - r.get("sample_parse_errors", 0.0) / r["completions"]
            for r in rows if r.get("completions") and "accuracy" in r]


def _standard_error(values: Sequence[float]) -> float:
    return math.sqrt(statistics.variance(values) / len(values)) if len(values) > 1 else 0.0


def _format_gap(last: Sequence[Mapping[str, Any]], before: Sequence[Mapping[str, Any]], cfg: AlarmConfig
                ) -> dict[str, str]:
    out = {}
    then, now = _readable_wrong(before), _readable_wrong(last)
    acc_then, acc_now = _mean(before, "accuracy"), _mean(last, "accuracy")
    if then and now and acc_then is not None and acc_now is not None and acc_now <= acc_then:
        gap_then, gap_now = statistics.fmean(then), statistics.fmean(now)
        noise = math.hypot(_standard_error(then), _standard_error(now))
        if gap_now - gap_then >= max(cfg.format_gap_rise, cfg.format_gap_z * noise):
            out["format_gap"] = (f"completions the grader could read but scored wrong rose from {gap_then:.1%} to "
                                 f"{gap_now:.1%} while accuracy went {acc_then:.1%} -> {acc_now:.1%}: format "
                                 "without substance")
    subs = {k: (_mean(before, k), _mean(last, k)) for k in last[-1] if k.startswith("grader/")}
    moves = {k: b - a for k, (a, b) in subs.items() if a is not None and b is not None}
    up = [k for k, d in moves.items() if d >= cfg.sub_score_divergence]
    down = [k for k, d in moves.items() if d <= -cfg.sub_score_divergence]
    if up and down:
        out["sub_scores_diverge"] = (f"{', '.join(up)} rose while {', '.join(down)} fell by "
                                     f">= {cfg.sub_score_divergence} between windows: the reward may be hacked "
                                     "through the rising part")
    return out


def eval_alarms(evals: Sequence[tuple[int, float]], history: Sequence[Mapping[str, Any]], cfg: AlarmConfig
                ) -> dict[str, str]:
    """`accuracy_drop` from the held-out evaluations `(step, accuracy)` so far and the step metrics."""
    if len(evals) < 2:
        return {}
    step, accuracy = evals[-1]
    best_step, best = max(evals[:-1], key=lambda e: e[1])
    if best - accuracy < cfg.accuracy_drop:
        return {}
    at_best = [r for r in history if best_step - cfg.window < r["step"] <= best_step]
    then = _mean(at_best or history[: cfg.window], "reward_mean")  # best at step 0: the first steps' reward
    now = _mean([r for r in history if step - cfg.window < r["step"] <= step], "reward_mean")
    if then is None or now is None or now <= then:
        return {}
    return {"accuracy_drop": (f"held-out accuracy {accuracy:.1%} at step {step} is {100 * (best - accuracy):.1f} "
                              f"points below its best ({best:.1%} at step {best_step}) while the training reward "
                              f"rose {then:.3f} -> {now:.3f}: the reward is being gamed, or the policy overfits")}


class AlarmMonitor:
    """Feeds steps and evaluations to the checks; `state` (a JSON-able dict) lives in the run's checkpoints."""

    def __init__(self, cfg: AlarmConfig, state: dict[str, Any]) -> None:
        self.cfg = cfg
        self.state = state
        state.setdefault("history", [])
        state.setdefault("evals", [])
        state.setdefault("raised", {})

    def observe_step(self, step: int, metrics: Mapping[str, Any]) -> dict[str, float]:
        """Record a step's metrics; returns `alarm/<name>` metrics for every alarm holding at this step."""
        self.state["history"].append({"step": step} | {k: metrics[k] for k in TRACKED if k in metrics}
                                     | {k: v for k, v in metrics.items() if k.startswith("grader/")})
        return self._raise(step, step_alarms(self.state["history"], self.cfg))

    def observe_eval(self, step: int, accuracy: float) -> dict[str, float]:
        self.state["evals"].append((step, accuracy))
        return self._raise(step, eval_alarms(self.state["evals"], self.state["history"], self.cfg))

    def _raise(self, step: int, holding: dict[str, str]) -> dict[str, float]:
        for name, message in holding.items():
            if name not in self.state["raised"]:
                self.state["raised"][name] = {"step": step, "message": message}
                print(f"ALARM step {step} [{name}]: {message}", flush=True)
        return {f"alarm/{name}": 1.0 for name in holding}

    def summary(self) -> list[dict[str, Any]]:
        """Every alarm raised in the run, with the step it was first raised at and its message."""
        return [{"name": name} | info for name, info in self.state["raised"].items()]
