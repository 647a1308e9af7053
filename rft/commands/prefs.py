"""`rft prefs TASK --model M --out pairs.jsonl`: preference pairs from the model's own samples, for DPO.

For each training prompt of TASK, sample k completions, grade them with the task's grader (or rank them
with `--judge SPEC`, a grader spec or a constitution YAML, and/or `--principle TEXT` flags), and keep the
best-vs-worst pair when its score margin is at least `--min-margin` (ties are always dropped). Each line is
in OpenAI's preference shape with the task item's fields and both scores (`chosen_score`,
`rejected_score`), so `tasks.preferences.load_pairs` reads it back and `rft train --algorithm.name dpo
--task.name TASK --task.pairs pairs.jsonl` trains on it while measuring the task's held-out accuracy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer


def sample_pairs(task: Any, policy: Any, *, k: int, prompts: int, min_margin: float, ranker: Any,
                 temperature: float, max_new_tokens: int, seed: int, batch_size: int
                 ) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """The lines to write and the counts to report, from `prompts` training prompts (0: all) x `k` samples."""
    from rft.pairing import best_vs_worst, ranked_by
    from rft.rollout import rollout
    from rft.sampling.base import SamplingParams
    from rft.sampling.hf import HFSampler
    from tasks.preferences import Pair

    items = list(task.train[:prompts] if prompts else task.train)
    ranking = ranked_by(task, ranker)
    params = SamplingParams(n=k, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed)
    batch = rollout(HFSampler(policy), ranking, ranking.train[: len(items)], params, batch_size=batch_size,
                    seed_per_batch=True)
    choices, counts = best_vs_worst(batch, min_margin)
    lines = []
    for c in choices:
        item, group = items[c.group], batch.groups[c.group]
        pair = Pair(task.messages(item), group[c.chosen].text, group[c.rejected].text, item=dict(item))
        lines.append(pair.to_openai() | {"chosen_score": c.chosen_score, "rejected_score": c.rejected_score})
    counts |= {"prompts": float(len(items)), "completions": batch.metrics["completions"],
               "grader_errors": batch.metrics["grader_errors"], "reward_mean": batch.metrics["reward_mean"]}
    return lines, counts


def prefs(
    task: Annotated[str, typer.Argument(help="Task: a built-in name, 'pkg.mod:attr', file.py:attr or a directory.")],
    out: Annotated[Path, typer.Option(help="JSONL file to write the pairs to (OpenAI's preference shape).")],
    model: Annotated[str, typer.Option(help="Model that samples: packaged name, local path or hub id.")] = "default",
    adapter: Annotated[Path | None, typer.Option(help="A LoRA adapter directory to sample with.")] = None,
    k: Annotated[int, typer.Option("-k", "--k", min=2, help="Completions sampled per prompt.")] = 4,
    prompts: Annotated[int, typer.Option(min=0, help="Training prompts used, the first N (0: all).")] = 0,
    min_margin: Annotated[float, typer.Option(help="Smallest best-minus-worst score kept (ties always go).")] = 0.0,
    judge: Annotated[str | None, typer.Option(help="Rank with this grader spec (JSON / YAML) or constitution "
                                              "YAML (principles:, judge:) instead of the task's grader.")] = None,
    principle: Annotated[list[str] | None, typer.Option(help="A principle of the constitution judge (repeat).")
                         ] = None,
    temperature: Annotated[float, typer.Option(help="Sampling temperature (> 0).")] = 0.8,
    max_new_tokens: Annotated[int, typer.Option(help="Completion length cap.")] = 24,
    seed: Annotated[int, typer.Option(help="Seeds the sampling.")] = 0,
    batch_size: Annotated[int, typer.Option(help="Prompts per generate call.")] = 16,
    threads: Annotated[int, typer.Option(help="torch CPU threads (0: torch's default).")] = 0,
) -> None:
    """Sample k completions per training prompt, rank them, and write best-vs-worst preference pairs."""
    import torch

    from graders.base import GraderInputError
    from rft.pairing import load_ranker
    from rft.policy import load_policy
    from tasks.base import load_task

    try:
        if temperature <= 0:
            raise ValueError(f"--temperature must be > 0 (got {temperature}): greedy samples of a prompt are equal")
        ranker = load_ranker(judge, principle or ())
        loaded = load_task(task)
        if threads:
            torch.set_num_threads(threads)
        policy = load_policy(model, adapter=adapter)
    except (GraderInputError, ValueError, OSError) as exc:
        typer.secho(f"error: {exc}", err=True, fg="red")
        raise typer.Exit(2) from exc
    torch.manual_seed(seed)
    lines, counts = sample_pairs(loaded, policy, k=k, prompts=prompts, min_margin=min_margin, ranker=ranker,
                                 temperature=temperature, max_new_tokens=max_new_tokens, seed=seed,
                                 batch_size=batch_size)
    by = "the task's grader" if ranker is None else f"{ranker.name!r}"
    typer.echo(f"{int(counts['prompts'])} prompts x {k} samples ranked by {by} (mean score "
               f"{counts['reward_mean']:.3f}, {int(counts['grader_errors'])} grader errors): {len(lines)} pairs "
               f"kept, {int(counts['pairs/ties'])} ties, {int(counts['pairs/below_margin'])} under the margin "
               f"{min_margin:g}, {int(counts['pairs/ungraded'])} with < 2 graded samples")
    if not lines:
        typer.secho("error: no pair kept, nothing written (raise -k or the temperature, or lower --min-margin)",
                    err=True, fg="red")
        raise typer.Exit(1)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))
    typer.echo(f"wrote {len(lines)} pairs to {out}")


def register(app: typer.Typer) -> None:
    app.command("prefs")(prefs)
