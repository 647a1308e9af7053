"""`rft train [CONFIG.yaml] [--section.field VALUE ...] [--resume] [--nproc N]`."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path
from typing import Optional

import typer

EXTRA = {"allow_extra_args": True, "ignore_unknown_options": True}


def train(
    ctx: typer.Context,
    config: Optional[Path] = typer.Argument(None, help="YAML run config; defaults apply when omitted"),
    resume: bool = typer.Option(False, "--resume", help="continue from the latest checkpoint in train.output_dir"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bar or summary table"),
    nproc: int = typer.Option(1, "--nproc", help="data-parallel ranks on this machine (runs itself under torchrun)"),
) -> None:
    """Train a LoRA adapter on a task with the configured recipe (GRPO by default)."""
    from rft import distributed
    from rft.config import ConfigError, load_config, split_args
    from rft.recipes import RECIPES

    if nproc > 1 and not distributed.launched_by_torchrun():
        raise typer.Exit(_torchrun(nproc, config, ctx.args, resume, quiet))
    try:
        cfg = load_config(*split_args(config, ctx.args))
        if cfg.algorithm.name not in RECIPES:
            raise ConfigError(f"algorithm.name {cfg.algorithm.name!r} is not one of {sorted(RECIPES)}")
        distributed.setup(cfg)
        module, attr = RECIPES[cfg.algorithm.name].split(":")
        main = distributed.is_main()
        summary = getattr(importlib.import_module(module), attr)(cfg, resume=resume, show_progress=main and not quiet)
    except (ConfigError, FileNotFoundError) as exc:
        typer.secho(f"error: {exc}", err=True, fg="red")
        raise typer.Exit(2) from exc
    finally:
        distributed.shutdown()
    out = Path(cfg.train.output_dir)
    before, after = summary["before"], summary["after"]
    if after is not None:
        typer.echo(
            f"held-out accuracy: before {100 * before['accuracy']['value']:.1f}% -> "
            f"after {100 * after['accuracy']['value']:.1f}%  (adapter: {out / 'best' / 'adapter'}, "
            f"plot: {out / 'plot.png'})"
        )


def _torchrun(nproc: int, config: Optional[Path], args: list[str], resume: bool, quiet: bool) -> int:
    """Run this same command on `nproc` ranks of this machine (`torchrun --standalone`); its exit code."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "-m", "rft", "train", *([str(config)] if config else []), *args,
               *(["--resume"] if resume else []), *(["--quiet"] if quiet else [])]
    return subprocess.run(command, check=False).returncode


def register(app: typer.Typer) -> None:
    app.command(context_settings=EXTRA)(train)
