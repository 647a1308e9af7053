"""`rft eval [CONFIG.yaml] [--adapter DIR] [--section.field VALUE ...]`: held-out evaluation alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

EXTRA = {"allow_extra_args": True, "ignore_unknown_options": True}


def eval_command(
    ctx: typer.Context,
    config: Optional[Path] = typer.Argument(None, help="YAML run config (model, task, eval sections)"),
    adapter: Optional[Path] = typer.Option(None, help="a LoRA adapter directory (peft format) to evaluate"),
    out: Optional[Path] = typer.Option(None, help="JSONL file for every sample with its grade"),
) -> None:
    """Evaluate the model (optionally with an adapter) on the task's held-out split."""
    import torch

    from rft.config import load_config, split_args
    from rft.eval import evaluate
    from rft.policy import policy_from_config
    from rft.sampling import build_sampler
    from tasks.base import load_task

    if adapter is not None and not (adapter / "adapter_config.json").exists():
        raise typer.BadParameter(f"{adapter} is not a peft adapter directory (no adapter_config.json)")
    try:
        cfg = load_config(*split_args(config, ctx.args))
        task = load_task(cfg.task.name, **cfg.task.options)
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        policy = policy_from_config(cfg, adapter=adapter, trainable=False)
    except (ValueError, OSError) as exc:
        typer.secho(f"error: {exc}", err=True, fg="red")
        raise typer.Exit(2) from exc
    result = evaluate(build_sampler(cfg.sampler, policy), task, cfg.eval, out_path=out, seed=cfg.train.seed)
    typer.echo(f"task {task.name}: {result.n_items} held-out items x {result.samples_per_item} samples")
    typer.echo(f"accuracy   {result.accuracy}")
    typer.echo(f"mean score {result.mean_score}")
    if result.pass_at_k is not None:
        typer.echo(f"pass@{result.samples_per_item}     {result.pass_at_k}")
    for name, value in result.per_grader.items():
        typer.echo(f"grader {name}: {value:.3f}")
    typer.echo(f"grader errors {result.grader_errors}; {result.seconds:.1f} s")
    typer.echo(json.dumps(result.to_dict()))


def register(app: typer.Typer) -> None:
    app.command(name="eval", context_settings=EXTRA)(eval_command)
