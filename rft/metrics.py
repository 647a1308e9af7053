"""Step metrics: one JSONL line per step, TensorBoard when installed, and what a person watching sees.

On a terminal that is a live progress bar; elsewhere (CI, `| tee`, nohup) a bar would print nothing
useful, so each step and each evaluation gets one plain line instead.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


class MetricsLogger:
    """Appends to `metrics.jsonl` (kept across `--resume`) and mirrors scalars to TensorBoard."""

    def __init__(self, output_dir: Path, total_steps: int, start_step: int = 0, show_progress: bool = True) -> None:
        self.path = output_dir / "metrics.jsonl"
        output_dir.mkdir(parents=True, exist_ok=True)
        if start_step == 0 and self.path.exists():
            self.path.unlink()
        elif start_step > 0:
            self._truncate_after(start_step)
        self._tb = _tensorboard(output_dir / "tensorboard")
        self.total_steps = total_steps
        self._progress: Progress | None = None
        self._lines = show_progress and not sys.stdout.isatty()
        if show_progress and not self._lines:
            self._progress = Progress(
                TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"), TimeRemainingColumn(),
            )
            self._progress.start()
            self._bar = self._progress.add_task("train", total=total_steps, completed=start_step, status="")

    def _truncate_after(self, step: int) -> None:
        """On resume, drop lines the interrupted run wrote after its last checkpoint."""
        if not self.path.exists():
            return
        keep = [ln for ln in self.path.read_text().splitlines() if ln and json.loads(ln).get("step", 0) <= step]
        self.path.write_text("".join(ln + "\n" for ln in keep))

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        line = {"step": step, **{k: _finite(v) for k, v in metrics.items()}}
        with self.path.open("a") as fh:
            fh.write(json.dumps(line) + "\n")
        if self._tb is not None:
            for key, value in metrics.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self._tb.add_scalar(key, value, step)
        if self._lines:
            self._print_line(step, metrics)
        if self._progress is not None and "reward_mean" in metrics:
            status = f"reward {metrics['reward_mean']:.3f}"
            if "eval/accuracy" in metrics:
                status += f"  held-out acc {metrics['eval/accuracy']:.3f}"
            self._progress.update(self._bar, completed=step, status=status)

    def _print_line(self, step: int, metrics: dict[str, Any]) -> None:
        if "eval/accuracy" in metrics:
            low, high = metrics["eval/accuracy_low"], metrics["eval/accuracy_high"]
            print(f"eval  step {step}: held-out accuracy {100 * metrics['eval/accuracy']:.1f}% "
                  f"[{100 * low:.1f}, {100 * high:.1f}]  mean score {metrics['eval/mean_score']:.3f}  "
                  f"{metrics['eval/seconds']:.1f} s", flush=True)
        if "reward_mean" in metrics:
            print(f"step {step}/{self.total_steps}: reward {metrics['reward_mean']:.3f}  "
                  f"accuracy {metrics.get('accuracy', float('nan')):.3f}  "
                  f"{metrics.get('seconds/step', float('nan')):.1f} s", flush=True)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
        if self._tb is not None:
            self._tb.close()


def _tensorboard(path: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(path))


def read_metrics(path: Path) -> list[dict[str, Any]]:
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
