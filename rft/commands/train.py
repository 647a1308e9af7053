"""`rft train [CONFIG.yaml] [--section.field VALUE ...] [--resume]`."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Optional

import typer

EXTRA = {"allow_extra_args": True, "ignore_unknown_options": True}


def train(
    ctx: typer.Context,
    config: Optional[Path] = typer.Argument(None, help="YAML run config; defaults apply when omitted"),
    resume: bool = typer.Option(False, "--resume", help="continue from the latest checkpoint in train.output_dir"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bar or summary table"),
) -> None:
    """Train a LoRA adapter on a task with the configured recipe (GRPO by default)."""
    from rft.config import ConfigError, load_config, split_args
    from rft.recipes import RECIPES

    try:
        cfg = load_config(*split_args(config, ctx.args))
        if cfg.algorithm.name not in RECIPES:
            raise ConfigError(f"algorithm.name {cfg.algorithm.name!r} is not one of {sorted(RECIPES)}")
        module, attr = RECIPES[cfg.algorithm.name].split(":")
        summary = getattr(importlib.import_module(module), attr)(cfg, resume=resume, show_progress=not quiet)
    except (ConfigError, FileNotFoundError) as exc:
        typer.secho(f"error: {exc}", err=True, fg="red")
        raise typer.Exit(2) from exc
    out = Path(cfg.train.output_dir)
    before, after = summary["before"], summary["after"]
    if after is not None:
        typer.echo(
            f"held-out accuracy: before {100 * before['accuracy']['value']:.1f}% -> "
            f"after {100 * after['accuracy']['value']:.1f}%  (adapter: {out / 'best' / 'adapter'}, "
            f"plot: {out / 'plot.png'})"
        )


def register(app: typer.Typer) -> None:
    app.command(context_settings=EXTRA)(train)
