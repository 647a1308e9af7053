"""The policy: base model + optional adapter + LoRA + dtype + device, and its optimizer and LR schedule.

One loader for every consumer (training, `rft eval`, `rft serve`, `rft preflight`, the local judge),
so dtype, device and adapter handling cannot drift between them. `Policy.version` counts optimizer
updates; samplers that hold their own copy of the weights use it to know when to re-sync.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rft.config import LoraConfig, RunConfig, TrainConfig
from rft.distributed import all_reduce_grads
from rft.models import apply_lora, load_model
from rft.sharding import clip_grad_norm, is_sharded, shard_model


@dataclass
class Policy:
    """The model being trained or served, its tokenizer, and how many updates it has had."""

    model: Any
    tokenizer: Any
    version: int = 0

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]


def resolve_device(name: str) -> torch.device:
    """`auto` is the first CUDA device when one is available, else the CPU; anything else is checked."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"model.device: {name!r} is not a torch device ({exc})") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"model.device: {name!r} asks for CUDA, which this machine does not have (use cpu or auto)")
    return device


def load_policy(
    name: str = "default",
    *,
    dtype: str = "float32",
    device: str = "auto",
    adapter: str | Path | None = None,
    lora: LoraConfig | None = None,
) -> Policy:
    """Load `name` (packaged name, path or hub id) onto `device`, then apply a saved adapter or fresh LoRA.

    `adapter` loads a peft adapter directory for inference (eval, serving); `lora` wraps the model in
    new trainable LoRA weights. The frozen base (adapter disabled) is the KL reference in training.
    """
    if adapter is not None and lora is not None:
        raise ValueError("load_policy: give either a saved adapter or a fresh LoRA config, not both")
    if not hasattr(torch, dtype) or not isinstance(getattr(torch, dtype), torch.dtype):
        raise ValueError(f"model.dtype: {dtype!r} is not a torch dtype")
    target = resolve_device(device)
    model, tokenizer = load_model(name, dtype=getattr(torch, dtype))
    if adapter is not None:
        from peft import PeftModel

        if not (Path(adapter) / "adapter_config.json").is_file():
            raise FileNotFoundError(f"{adapter} is not a peft adapter directory (no adapter_config.json)")
        model = PeftModel.from_pretrained(model, str(adapter))
    if lora is not None:
        model = apply_lora(model, rank=lora.rank, alpha=lora.alpha, dropout=lora.dropout,
                           target_modules=tuple(lora.target_modules))
    return Policy(model.to(target), tokenizer)


def policy_from_config(cfg: RunConfig, *, adapter: str | Path | None = None, trainable: bool = True) -> Policy:
    """The run's policy: with fresh LoRA weights to train, or with a saved adapter (or none) to evaluate.

    With `train.sharding: fsdp` the model is loaded into host memory and `fully_shard` moves it to the
    device one layer at a time, so the device never holds more than its shards and one whole layer;
    sharding comes before any optimizer sees the parameters.
    """
    sharded = trainable and cfg.train.sharding == "fsdp"
    policy = load_policy(cfg.model.name, dtype=cfg.model.dtype, device="cpu" if sharded else cfg.model.device,
                         adapter=adapter, lora=cfg.lora if trainable else None)
    if sharded:
        shard_model(policy.model, resolve_device(cfg.model.device))
    return policy


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


def build_optimizer(
    params: list[torch.nn.Parameter], train: TrainConfig, total_updates: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over `params` with linear warm-up, then `train.lr_schedule` over `total_updates` updates."""
    if not params:
        raise ValueError("build_optimizer: no trainable parameters (was LoRA applied?)")
    optimizer = torch.optim.AdamW(params, lr=train.lr, weight_decay=train.weight_decay)
    warmup, schedule = max(train.warmup_steps, 0), train.lr_schedule
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda u: lr_factor(u, warmup=warmup, total=total_updates, schedule=schedule)
    )
    return optimizer, scheduler


def optimizer_step(policy: Policy, optimizer: Any, scheduler: Any, max_grad_norm: float) -> float:
    """Sum gradients over ranks, clip, step, advance the schedule, clear gradients and bump `policy.version`.

    Returns the grad norm (of the whole batch's gradient, on every rank). A sharded model's gradients are
    summed by FSDP's reduce-scatter already; their norm is taken over every rank's shard.
    """
    params = policy.trainable_parameters()
    if not is_sharded(policy.model):
        all_reduce_grads(params)
    norm = clip_grad_norm(params, max_grad_norm)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    policy.version += 1
    return norm
