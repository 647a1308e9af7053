"""End-of-run report: a PNG of reward and held-out accuracy over steps, and a summary table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from rft.metrics import read_metrics


def plot(metrics_path: Path, out_path: Path) -> Path:
    """Training reward (per step, with a running mean) and held-out accuracy with its 95% CI."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_path)
    # DPO on a pair file samples nothing, so its training curve is the implicit reward margin of its pairs.
    key = "reward_mean" if any(r.get("reward_mean") is not None for r in rows) else "rewards/margin"
    train = [r for r in rows if r.get(key) is not None]
    evals = [r for r in rows if r.get("eval/accuracy") is not None]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    if train:
        steps = [r["step"] for r in train]
        rewards = [r[key] for r in train]
        window = 5
        running = [sum(rewards[max(0, i - window + 1) : i + 1]) / len(rewards[max(0, i - window + 1) : i + 1])
                   for i in range(len(rewards))]
        ax1.plot(steps, rewards, alpha=0.35, label="reward (batch mean)" if key == "reward_mean" else "reward margin")
        ax1.plot(steps, running, label=f"running mean ({window})")
    ax1.set(xlabel="step", ylabel="reward", title="Training reward")
    ax1.legend(loc="lower right")
    if evals:
        steps = [r["step"] for r in evals]
        acc = [r["eval/accuracy"] for r in evals]
        low = [r.get("eval/accuracy_low", a) for r, a in zip(evals, acc)]
        high = [r.get("eval/accuracy_high", a) for r, a in zip(evals, acc)]
        ax2.fill_between(steps, low, high, alpha=0.2, label="95% CI")
        ax2.plot(steps, acc, marker="o", label="held-out accuracy")
    ax2.set(xlabel="step", ylabel="accuracy", title="Held-out accuracy", ylim=(0, 1))
    ax2.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
    return out_path


def summary_table(before: dict[str, Any], after: dict[str, Any], best: dict[str, Any] | None = None) -> Table:
    """Before/after (and best) held-out numbers side by side."""
    table = Table(title="Held-out evaluation")
    table.add_column("metric")
    columns = [("before", before), ("after", after)] + ([("best", best)] if best else [])
    for name, _ in columns:
        table.add_column(name, justify="right")
    for key in ("accuracy", "mean_score", "pass_at_k"):
        if before.get(key) is None:
            continue
        table.add_row(key, *[_fmt(res[key]) for _, res in columns])
    return table


def _fmt(interval: dict[str, float] | None) -> str:
    if interval is None:
        return "-"
    return f"{100 * interval['value']:.1f}% [{100 * interval['low']:.1f}, {100 * interval['high']:.1f}]"


def print_summary(before: dict[str, Any], after: dict[str, Any], best: dict[str, Any] | None = None) -> None:
    Console().print(summary_table(before, after, best))
