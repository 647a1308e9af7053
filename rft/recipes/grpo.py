"""GRPO with LoRA, top to bottom (Shao et al. 2024, "DeepSeekMath", sec. 4).

Each step: take B training prompts, sample G completions per prompt, grade them, turn rewards into
group-normalised advantages, and take one optimizer step (or `num_iterations` steps on the same
batch) on the clipped surrogate loss, optionally with a k3 KL penalty to the reference policy,
which is the same model with the LoRA adapter disabled. Held-out accuracy is measured before
training, every `eval.interval` steps and at the end; the best adapter is kept.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from rft import checkpoint
from rft.advantages import ADVANTAGE_ESTIMATORS
from rft.config import ConfigError, RunConfig
from rft.eval import EvalResult, evaluate
from rft.logprobs import grouped_completion_logprobs, pack_groups
from rft.losses import AGGREGATIONS, grpo_loss
from rft.metrics import MetricsLogger
from rft.models import apply_lora, load_model
from rft.report import plot, print_summary
from rft.rewards import grade_texts
from rft.sampling.base import Completion, SamplingParams
from rft.sampling.hf import HFSampler
from tasks.base import Task, load_task


def validate(cfg: RunConfig, task: Task) -> None:
    """Fail before any model is loaded on settings that would crash later or silently do nothing."""
    algo = cfg.algorithm
    if algo.group_size < 2:
        raise ValueError(f"algorithm.group_size must be >= 2 for GRPO (got {algo.group_size}): "
                         "a group of one has no baseline, so every advantage would be 0")
    if algo.advantage not in ADVANTAGE_ESTIMATORS:
        raise ValueError(f"algorithm.advantage {algo.advantage!r} is not one of {sorted(ADVANTAGE_ESTIMATORS)}")
    if algo.aggregation not in AGGREGATIONS:
        raise ValueError(f"algorithm.aggregation {algo.aggregation!r} is not one of {sorted(AGGREGATIONS)}")
    if cfg.train.lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"train.lr_schedule {cfg.train.lr_schedule!r} is not one of {sorted(LR_SCHEDULES)}")
    if algo.num_iterations < 1 or cfg.train.steps < 1 or cfg.train.prompts_per_step < 1:
        raise ValueError("algorithm.num_iterations, train.steps and train.prompts_per_step must be >= 1")
    if cfg.sampler.backend != "hf":
        raise ValueError(f"sampler.backend {cfg.sampler.backend!r} is not available in this recipe (use 'hf')")
    for split, items in (("train", task.train), ("held-out", task.test)):
        if len(items) == 0:
            raise ValueError(f"task {task.name!r} has an empty {split} split")
        try:
            task.messages(items[0])
        except KeyError as exc:
            raise ValueError(f"task {task.name!r}: {split} item 0 lacks the field {exc} used by its prompt") from exc
    # A grader that cannot read the item (a template naming a missing field) must fail now, not mid-run.
    grade_texts(task.grader, ["0"], [task.train[0]])


def step_items(items: Sequence[Mapping[str, Any]], step: int, count: int, seed: int) -> list[Mapping[str, Any]]:
    """The prompts of one step: a fixed-seed shuffle per epoch, so a resumed run sees the same data."""
    out = []
    for k in range(step * count, (step + 1) * count):
        epoch, pos = divmod(k, len(items))
        order = list(range(len(items)))
        random.Random(seed * 100_003 + epoch).shuffle(order)
        out.append(items[order[pos]])
    return out


def policy_update(
    model: Any, optimizer: Any, scheduler: Any, groups: list[list[Completion]], advantages: torch.Tensor,
    cfg: RunConfig, pad_id: int,
) -> dict[str, float]:
    """One optimizer step per iteration over the B groups of G rollouts, with gradient accumulation.

    Micro-batches hold whole groups (micro_batch_size // G of them) so each prompt is run once.
    """
    algo, train = cfg.algorithm, cfg.train
    G = algo.group_size
    n = len(groups) * G
    length = max(1, max(len(c.token_ids) for g in groups for c in g))
    per_micro = max(1, train.micro_batch_size // G)
    micro = []
    for lo in range(0, len(groups), per_micro):
        chunk = groups[lo : lo + per_micro]
        flat = [c for g in chunk for c in g]
        tensors = pack_groups([g[0].prompt_ids for g in chunk], [c.token_ids for c in flat], G, pad_id, length)
        mask = tensors[3].float()  # (n_micro, T)
        if algo.mask_truncated:
            mask = mask * torch.tensor([0.0 if c.truncated else 1.0 for c in flat]).unsqueeze(1)
        micro.append((tensors, mask, slice(lo * G, lo * G + len(flat))))
    with torch.no_grad():
        old = [grouped_completion_logprobs(model, *t, G) for t, _, _ in micro] if algo.num_iterations > 1 else None
        ref = None
        if algo.beta > 0:
            with model.disable_adapter():
                ref = [grouped_completion_logprobs(model, *t, G) for t, _, _ in micro]
    params = [p for p in model.parameters() if p.requires_grad]
    totals: dict[str, float] = {}
    for _ in range(algo.num_iterations):
        for i, (tensors, mask, rows) in enumerate(micro):
            logprobs = grouped_completion_logprobs(model, *tensors, G)  # (n_micro, T)
            loss, metrics = grpo_loss(
                logprobs, old[i] if old else logprobs, ref[i] if ref else None, advantages[rows], mask,
                epsilon=algo.epsilon, epsilon_high=algo.epsilon_high, beta=algo.beta,
                aggregation=algo.aggregation, max_tokens=cfg.sampler.max_new_tokens,
            )
            # Micro-batch losses are weighted by their share of rows, so the sum matches one full batch.
            (loss * (rows.stop - rows.start) / n).backward()
            for key, value in metrics.items():
                totals[key] = totals.get(key, 0.0) + value / (len(micro) * algo.num_iterations)
        totals["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, train.max_grad_norm))
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    return totals


def _eval_metrics(result: EvalResult) -> dict[str, float]:
    out = {
        "eval/accuracy": result.accuracy.value, "eval/accuracy_low": result.accuracy.low,
        "eval/accuracy_high": result.accuracy.high, "eval/mean_score": result.mean_score.value,
        "eval/grader_errors": float(result.grader_errors), "eval/seconds": result.seconds,
    }
    if result.pass_at_k is not None:
        out["eval/pass_at_k"] = result.pass_at_k.value
    return out | {f"eval/grader/{k}": v for k, v in result.per_grader.items()}


# Learning-rate factor after warm-up, as a function of progress in [0, 1] through the remaining updates.
LR_SCHEDULES: dict[str, Callable[[float], float]] = {
    "constant": lambda progress: 1.0,
    "linear": lambda progress: 1.0 - 0.9 * progress,
    "cosine": lambda progress: 0.1 + 0.45 * (1.0 + math.cos(math.pi * progress)),
}


def lr_factor(update: int, *, warmup: int, total: int, schedule: str) -> float:
    """Multiplier of the peak learning rate at optimizer update `update` (0-based) of `total`."""
    if update < warmup:
        return (update + 1) / (warmup + 1)
    return LR_SCHEDULES[schedule](min(1.0, (update - warmup) / max(1, total - warmup - 1)))


def build_policy(cfg: RunConfig) -> tuple[Any, Any, Any, Any]:
    """The LoRA-wrapped policy, its tokenizer, AdamW over the adapter, and linear warm-up."""
    model, tokenizer = load_model(cfg.model.name, dtype=getattr(torch, cfg.model.dtype))
    model = apply_lora(model, rank=cfg.lora.rank, alpha=cfg.lora.alpha, dropout=cfg.lora.dropout,
                       target_modules=tuple(cfg.lora.target_modules))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.train.lr,
                                  weight_decay=cfg.train.weight_decay)
    total = cfg.train.steps * cfg.algorithm.num_iterations  # the scheduler steps once per optimizer update
    warmup, schedule = max(cfg.train.warmup_steps, 0), cfg.train.lr_schedule
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda u: lr_factor(u, warmup=warmup, total=total, schedule=schedule)
    )
    return model, tokenizer, optimizer, scheduler


def grpo_step(
    step: int, task: Task, sampler: HFSampler, model: Any, optimizer: Any, scheduler: Any, cfg: RunConfig
) -> dict[str, float]:
    """Sample B x G rollouts, grade them, and update the policy; returns the step's metrics."""
    G = cfg.algorithm.group_size
    t0 = time.perf_counter()
    items = step_items(task.train, step - 1, cfg.train.prompts_per_step, cfg.train.seed)
    params = SamplingParams(n=G, temperature=cfg.sampler.temperature, top_p=cfg.sampler.top_p,
                            max_new_tokens=cfg.sampler.max_new_tokens)
    groups = sampler.generate([task.messages(i) for i in items], params)  # B lists of G
    rollouts = [c for group in groups for c in group]  # (B*G,), group-major
    t1 = time.perf_counter()
    grades, grade_metrics = grade_texts(task.grader, [c.text for c in rollouts], [i for i in items for _ in range(G)])
    t2 = time.perf_counter()
    rewards = torch.tensor([g.score for g in grades])  # (B*G,)
    advantages, adv_metrics = ADVANTAGE_ESTIMATORS[cfg.algorithm.advantage](rewards, group_size=G)
    update = policy_update(model, optimizer, scheduler, groups, advantages, cfg, sampler.tokenizer.pad_token_id)
    t3 = time.perf_counter()
    lengths = [len(c.token_ids) for c in rollouts]
    return grade_metrics | adv_metrics | update | {
        "completion_length": sum(lengths) / len(lengths),
        "truncation_rate": sum(c.truncated for c in rollouts) / len(rollouts),
        "lr": scheduler.get_last_lr()[0],
        "seconds/sampling": t1 - t0, "seconds/grading": t2 - t1, "seconds/training": t3 - t2,
    }


def train(cfg: RunConfig, *, resume: bool = False, show_progress: bool = True) -> dict[str, Any]:
    """Run GRPO as configured; returns the before/after/best held-out results."""
    out = Path(cfg.train.output_dir)
    try:
        task = load_task(cfg.task.name, **cfg.task.options)
        validate(cfg, task)
    except (ValueError, TypeError) as exc:  # GraderInputError is a ValueError
        raise ConfigError(str(exc)) from exc
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    torch.manual_seed(cfg.train.seed)
    random.seed(cfg.train.seed)
    model, tokenizer, optimizer, scheduler = build_policy(cfg)
    sampler = HFSampler(model, tokenizer)

    state: dict[str, Any] = {"best_accuracy": -1.0, "before": None, "best": None}
    done = 0
    if resume:
        found = checkpoint.list_checkpoints(out)
        if not found:
            raise FileNotFoundError(f"--resume: no checkpoint-* directory in {out}")
        state = checkpoint.load_checkpoint(found[-1], model, optimizer, scheduler)
        done = state.pop("step")
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    logger = MetricsLogger(out, cfg.train.steps, done, show_progress)

    def run_eval(step: int) -> EvalResult:
        result = evaluate(sampler, task, cfg.eval, out_path=out / "eval" / f"step-{step:06d}.jsonl", seed=cfg.train.seed)
        logger.log(step, _eval_metrics(result))
        if result.accuracy.value > state["best_accuracy"]:
            state["best_accuracy"] = result.accuracy.value
            state["best"] = result.to_dict() | {"step": step}
            checkpoint.save_best(out, model, state["best"])
        return result

    def save(step: int) -> None:
        checkpoint.save_checkpoint(out, step, model, optimizer, scheduler, cfg.to_dict(), state)
        checkpoint.prune(out, cfg.train.keep_last)

    if state["before"] is None:
        state["before"] = run_eval(0).to_dict()
    after: EvalResult | None = None
    saved = done
    try:
        for step in range(done + 1, cfg.train.steps + 1):
            metrics = grpo_step(step, task, sampler, model, optimizer, scheduler, cfg)
            done = step
            logger.log(step, metrics)
            if step % cfg.eval.interval == 0 or step == cfg.train.steps:
                after = run_eval(step)
            if step % cfg.train.checkpoint_interval == 0 or step == cfg.train.steps:
                save(step)
                saved = step
    except BaseException:
        if done > saved:  # an interrupted run (Ctrl-C, a crash) keeps its last completed step
            save(done)
        raise
    finally:
        logger.close()
    summary = {"before": state["before"], "after": after.to_dict() if after else None, "best": state["best"]}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    plot(out / "metrics.jsonl", out / "plot.png")
    if after is not None and show_progress:
        print_summary(state["before"], summary["after"], state["best"])
    return summary
