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
    turns: int = typer.Option(1, min=1, max=2, help="2: a second attempt after a self-correction instruction "
                              "(algorithm.instruction when the config's algorithm is score), with SCoRe's metrics"),
) -> None:
    """Evaluate the model (optionally with an adapter) on the task's held-out split."""
    import functools

    import torch

    from rft.algorithms import SELF_CORRECTION_INSTRUCTION
    from rft.config import load_config, split_args
    from rft.eval import evaluate
    from rft.policy import policy_from_config
    from rft.sampling import build_sampler
    from rft.self_correction import evaluate_two_turns
    from tasks.base import load_task

    if adapter is not None and not (adapter / "adapter_config.json").exists():
        raise typer.BadParameter(f"{adapter} is not a peft adapter directory (no adapter_config.json)")
    try:
        cfg = load_config(*split_args(config, ctx.args))
        if turns == 2 and cfg.eval.samples != 1:
            raise ValueError(f"--turns 2 pairs one first and one second attempt per item: eval.samples must be 1, "
                             f"got {cfg.eval.samples}")
        task = load_task(cfg.task.name, **cfg.task.options)
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        policy = policy_from_config(cfg, adapter=adapter, trainable=False)
    except (ValueError, OSError) as exc:
        typer.secho(f"error: {exc}", err=True, fg="red")
        raise typer.Exit(2) from exc
    run = evaluate
    if turns == 2:
        instruction = getattr(cfg.algorithm, "instruction", SELF_CORRECTION_INSTRUCTION)
        run = functools.partial(evaluate_two_turns, instruction=instruction)
    result = run(build_sampler(cfg.sampler, policy), task, cfg.eval, out_path=out, seed=cfg.train.seed)
    typer.echo(f"task {task.name}: {result.n_items} held-out items x {result.samples_per_item} samples")
    for name, interval in result.extra.items():
        typer.echo(f"{name:<13} {interval}")
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
