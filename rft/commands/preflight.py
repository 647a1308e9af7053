"""`rft preflight [TASK] [--config RUN.yaml] [--filter-out FILE.jsonl]`: which training prompts give GRPO no signal.

Sampling settings default to the run config's (sampler temperature and token limit, group size), so the
report describes the rollouts training would see.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer


def _hint(report: Any) -> str:
    """Which way to move the task's difficulty when most prompts give no signal."""
    always, never = report.share("always"), report.share("never")
    if always + never < 0.5:
        return "most prompts have mixed outcomes: GRPO gets signal from this task."
    if never >= always:
        return (
            "most prompts are never solved: make the task easier, raise --max-new-tokens, "
            "or use --filter-out."
        )
    return "most prompts are always solved: make the task harder, or use --filter-out."


def _summary_rows(report: Any, group_size: int) -> list[tuple[str, str]]:
    n = len(report.prompts)

    def pct(share: float) -> str:
        return f"{100 * share:.1f}% ({round(share * n)}/{n})"

    return [
        ("prompts checked", f"{n} of {report.n_train}, {report.samples} samples each"),
        ("always solved (no signal)", pct(report.share("always"))),
        ("never solved (no signal)", pct(report.share("never"))),
        ("mixed (has signal)", pct(report.share("mixed"))),
        ("mean reward", f"{report.mean_reward:.4f}"),
        (f"mean pass rate (score >= {report.threshold:g})", f"{report.mean_pass_rate:.4f}"),
        (f"zero-variance groups (G={report.samples}, observed)", pct(report.zero_variance_share)),
        (
            f"all-pass/all-fail groups (G={group_size}, estimated)",
            f"{100 * report.no_signal_estimate(group_size):.1f}%",
        ),
        ("truncated completions", f"{100 * report.truncated_share:.1f}%"),
        ("grader errors (timeouts)", f"{report.errors} ({int(report.extra.get('grader_timeouts', 0))})"),
        ("seconds", f"{report.seconds:.1f}"),
    ]


def _print_report(task_name: str, report: Any, group_size: int) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    summary = Table(title=f"Pre-flight: {task_name}")
    summary.add_column("measure")
    summary.add_column("value", justify="right")
    for label, value in _summary_rows(report, group_size):
        summary.add_row(label, value)
    console.print(summary)
    histogram = Table(title="Prompts by passing samples")
    histogram.add_column("passed")
    histogram.add_column("prompts", justify="right")
    for passed, count in enumerate(report.pass_histogram()):
        histogram.add_row(f"{passed}/{report.samples}", str(count))
    console.print(histogram)
    console.print(_hint(report), markup=False)


def preflight_command(
    task: Optional[str] = typer.Argument(
        None, help="built-in task, pkg.module:attr, file.py:attr or a task directory (default: the config's task)"
    ),
    config: Optional[Path] = typer.Option(
        None, "--config", "-c", help="run config YAML: model, task, sampler temperature and token limit, group size"
    ),
    model: Optional[str] = typer.Option(None, help="packaged model name, local path or hub id (default: model.name)"),
    prompts: int = typer.Option(32, help="training prompts to check (a seeded random subset); 0 = all"),
    samples: Optional[int] = typer.Option(None, help="completions sampled per prompt (default: algorithm.group_size)"),
    temperature: Optional[float] = typer.Option(None, help="sampling temperature (default: sampler.temperature)"),
    max_new_tokens: Optional[int] = typer.Option(None, help="completion cap (default: sampler.max_new_tokens)"),
    option: list[str] = typer.Option([], "--option", "-o", help="task option key=value, repeatable"),
    filter_out: Optional[Path] = typer.Option(
        None, "--filter-out", help="write the checked training items that have signal to this JSONL file"
    ),
    keep: str = typer.Option("mixed", help="with --filter-out: 'mixed' pass/fail, 'varied' score spread"),
    group_size: Optional[int] = typer.Option(None, help="GRPO group size for the estimate (default: --samples)"),
    batch_size: int = typer.Option(8, help="prompts per generate call"),
    seed: Optional[int] = typer.Option(None, help="seeds the prompt subset and the sampling (default: train.seed)"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON instead of tables"),
) -> None:
    """Sample the model on training prompts, as training would, and report how many it always / never solves."""
    from rft.commands.tasks import parse_options
    from rft.config import load_config
    from rft.policy import load_policy
    from rft.preflight import KEEP, preflight, write_signal_items
    from rft.sampling import build_sampler
    from tasks.base import load_task

    try:
        if keep not in KEEP:
            raise ValueError(f"--keep must be one of {sorted(KEEP)}, got {keep!r}")
        cfg = load_config(config)
        task = task or cfg.task.name
        options = parse_options(option) if (option or task != cfg.task.name) else cfg.task.options
        loaded = load_task(task, **options)
        samples = samples or getattr(cfg.algorithm, "group_size", 8)
        policy = load_policy(model or cfg.model.name, dtype=cfg.model.dtype, device=cfg.model.device)
        report = preflight(
            loaded, build_sampler(cfg.sampler, policy), n_prompts=prompts, samples=samples,
            temperature=cfg.sampler.temperature if temperature is None else temperature,
            max_new_tokens=max_new_tokens or cfg.sampler.max_new_tokens,
            seed=cfg.train.seed if seed is None else seed, batch_size=batch_size,
        )
    except (ValueError, TypeError, OSError) as exc:
        typer.secho(f"error: {exc}", err=True, fg="red")
        raise typer.Exit(2) from exc
    group = group_size or samples
    if as_json:
        typer.echo(json.dumps(report.to_dict(group)))
    else:
        _print_report(loaded.name, report, group)
    if filter_out is not None:
        written = write_signal_items(filter_out, loaded, report, keep)
        filtered = {"base_task": task, "train_file": str(filter_out), **options}
        partial = ""
        if len(report.prompts) < report.n_train:
            partial = f" (checked {len(report.prompts)} of {report.n_train}; --prompts 0 checks all)"
        typer.echo(
            f"wrote {written} training items with signal to {filter_out}{partial}; train on them with "
            f"task name 'rft.preflight:filtered_task' and options {json.dumps(filtered)}",
            err=as_json,
        )


def register(app: typer.Typer) -> None:
    app.command(name="preflight")(preflight_command)
