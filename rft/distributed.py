"""Data-parallel training over torch.distributed: `torchrun --nproc-per-node N -m rft train CONFIG`.

Each rank samples, grades and trains on its contiguous share of the step's B prompts (whole groups
stay on one rank), so the data order is the single-process one. The policy loss of every rank is
normalised by the counts of the whole global batch (`global_counts`) and the LoRA gradients are
summed over ranks (`all_reduce_grads`) before clipping, so the update is the full batch's update.
That is DDP's all-reduce done once per optimizer step: gradient accumulation over micro-batches
and the grouped forward (one prompt pass per group) need no wrapper and no `no_sync`. Rank 0
alone logs, evaluates, checkpoints and writes the summary; `reduce_metrics` gives it the whole
step's metrics. Without a process group (a plain `rft train`) every helper here is the identity.

Sampling seeds do not come from the global torch stream: rank r draws step s with a seed derived
from (train.seed, s, r), or, with `sampler.seed_per_prompt`, each prompt's group with a seed
derived from (train.seed, s, its index in the step), which makes the completions independent of
the number of ranks. Every rank's global RNG stream therefore stays identical, and the one rank 0
checkpoints restores all of them on `--resume`.
"""

from __future__ import annotations

import datetime
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from rft.losses import BatchCounts
from rft.options import ConfigError
from rft.rollout import Rollout, rollout, step_items
from rft.sampling.base import Sampler, SamplingParams

if TYPE_CHECKING:
    from rft.config import RunConfig
    from tasks.base import Task

# Rank 0 evaluates alone while the others wait in the next collective: allow a long evaluation.
TIMEOUT = datetime.timedelta(hours=2)
SUMMED = {"loss", "grader_errors", "grader_timeouts", "zero_signal_groups", "sample_parse_errors", "completions",
          "dynamic/groups_kept", "dynamic/prompts_sampled"}  # shares or counts of the step


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def launched_by_torchrun() -> bool:
    """torchrun (and `accelerate launch`, `python -m torch.distributed.run`) export WORLD_SIZE to each rank."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(cfg: RunConfig) -> None:
    """Join the process group torchrun set up: nccl with one GPU per rank on CUDA, gloo on the CPU.

    Fails fast on a step that cannot be split into equal whole-group shares.
    """
    if not launched_by_torchrun() or dist.is_initialized():
        return
    world = int(os.environ["WORLD_SIZE"])
    if cfg.train.prompts_per_step % world:
        raise ConfigError(f"train.prompts_per_step ({cfg.train.prompts_per_step}) must be a multiple of the "
                         f"number of ranks ({world}): each rank trains on whole groups of an equal share")
    groups_per_update = getattr(cfg.algorithm, "mini_batch_size", 0) // cfg.algorithm.group_size
    if groups_per_update % world:
        raise ConfigError(f"algorithm.mini_batch_size / group_size ({groups_per_update} groups per update) must be a "
                         f"multiple of the number of ranks ({world}): each rank takes an equal share of a mini-batch")
    if cfg.model.device.startswith("cuda:"):
        raise ConfigError(f"model.device {cfg.model.device!r}: under torchrun each rank takes the GPU of its "
                          "LOCAL_RANK; use auto or cuda (limit the GPUs with CUDA_VISIBLE_DEVICES)")
    cuda = cfg.model.device != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))  # "cuda" now means this rank's GPU
    dist.init_process_group("nccl" if cuda else "gloo", timeout=TIMEOUT)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def step_seed(seed: int, step: int) -> int:
    """A seed for step `step` (1-based), far enough from its neighbours for B prompts and N ranks."""
    return (seed * 1_000_003 + step * 10_007) % 2**31


def step_rollout(sampler: Sampler, task: Task, cfg: RunConfig, params: SamplingParams, step: int) -> Rollout:
    """This rank's share of step `step`: the prompts `step_items` picks for the whole step, split by rank."""
    items = step_items(task.train, step - 1, cfg.train.prompts_per_step, cfg.train.seed)
    share = len(items) // world_size()
    first = rank() * share
    local = items[first : first + share]
    base = step_seed(cfg.train.seed, step)
    if cfg.sampler.seed_per_prompt:  # prompt k of the step always gets seed base + k, on any rank layout
        return rollout(sampler, task, local, replace(params, seed=base + first), batch_size=1, seed_per_batch=True)
    if dist.is_initialized():
        return rollout(sampler, task, local, replace(params, seed=base + rank()))
    return rollout(sampler, task, local, params)


def global_counts(counts: BatchCounts) -> BatchCounts:
    """The counts of the whole batch across ranks, so each rank's loss is its share of the global loss."""
    if not dist.is_initialized():
        return counts
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"  # nccl reduces GPU tensors only
    buf = torch.tensor([counts.sequences, counts.present, counts.tokens], dtype=torch.float64, device=device)
    dist.all_reduce(buf)
    return BatchCounts(int(buf[0]), int(buf[1]), float(buf[2]))


def all_reduce_grads(params: Sequence[torch.nn.Parameter]) -> None:
    """Sum the gradients of `params` over ranks, in one flat buffer (losses are global shares already)."""
    if not dist.is_initialized():
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    offset = 0
    for p, g in zip(params, grads):
        p.grad = flat[offset : offset + g.numel()].view_as(g).clone()
        offset += g.numel()


def broadcast_parameters(modules: Mapping[str, Any]) -> None:
    """Give every rank rank 0's trainable weights (as DDP does when it wraps a model); a sharded weight (DTensor)
    is left alone: each rank holds its own shard of weights that every rank initialised alike."""
    if not dist.is_initialized():
        return
    from torch.distributed.tensor import DTensor

    for module in modules.values():
        for p in module.parameters():
            if p.requires_grad and not isinstance(p, DTensor):
                dist.broadcast(p.data, src=0)


def global_whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """`rft.advantages.masked_whiten` with the mean and variance over every rank's real tokens; (N, T)."""
    if not dist.is_initialized():
        from rft.advantages import masked_whiten

        return masked_whiten(x, mask, eps=eps)
    mask = mask.to(x.dtype)
    sums = torch.stack([(x * mask).sum(), (x * x * mask).sum(), mask.sum()]).double()
    dist.all_reduce(sums)
    count = sums[2].clamp(min=1.0)
    mean = sums[0] / count
    var = (sums[1] / count - mean * mean).clamp(min=0.0)
    return ((x - mean.to(x.dtype)) * torch.rsqrt(var.to(x.dtype) + eps)) * mask


def combine_metrics(per_rank: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """One step's metrics from every rank's (equal-sized) share.

    Counts and loss shares are summed, `seconds/*` take the slowest rank (the step waits for it),
    `reward_std` is the pooled standard deviation of the whole batch, everything else is the mean
    over ranks: exact for per-sample means (reward, accuracy, length; every rank has as many
    samples), and for per-token means (kl, clip_ratio, entropy) weighted by rank, not by token.
    """
    out: dict[str, float] = {}
    for key in dict.fromkeys(k for m in per_rank for k in m):  # a rank may lack a key (no judge call, say)
        values = [float(m[key]) for m in per_rank if key in m]
        if key in SUMMED or key.endswith("_loss") or key.startswith("tokens/"):
            out[key] = sum(values)
        elif key.startswith("seconds/"):
            out[key] = max(values)
        else:
            out[key] = sum(values) / len(values)
    if "reward_std" in out and "reward_mean" in out:
        second = sum(m["reward_std"] ** 2 + m["reward_mean"] ** 2 for m in per_rank) / len(per_rank)
        out["reward_std"] = math.sqrt(max(0.0, second - out["reward_mean"] ** 2))
    return out


def broadcast_object(obj: Any) -> Any:
    """Rank 0's `obj` on every rank: a decision only rank 0 can make (it alone evaluates, so it alone knows
    the evaluation's judge cost)."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def reduce_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """The whole step's metrics (on every rank; rank 0 logs them); the identity on one process."""
    if not dist.is_initialized():
        return dict(metrics)
    gathered: list[Any] = [None] * world_size()
    dist.all_gather_object(gathered, dict(metrics))
    return combine_metrics(gathered)
