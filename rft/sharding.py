"""FSDP2 sharding of the base model (`train.sharding: fsdp`), for a model that does not fit on one device.

Every decoder layer is its own `fully_shard` group and the root (embeddings, final norm, LM head) one
more, on a 1-D mesh of all ranks: a rank keeps 1/N of every weight and all-gathers one layer at a time
for each forward and backward. A layer's group holds its frozen base weights and its trainable LoRA
weights together: FSDP2 keeps each parameter as its own DTensor, so the all-gather brings both and the
reduce-scatter carries only the LoRA gradients (frozen weights get none; `tests/rft/test_sharding.py`).
Gradients are reduce-scattered as sums, not means: every rank's loss is already its share of the global
batch's (`rft.distributed.global_counts`), so the sum is the single-process gradient, as with DDP.

A forward is a collective, so every rank runs the same forwards: training shares are equal (whole
groups), `generate` runs with `synced_gpus` (a rank whose samples have all ended keeps stepping until
every rank's have), and at an evaluation every rank generates the whole held-out set while rank 0 alone
grades and writes (`ungraded`). Checkpoints gather the LoRA weights and the policy's optimizer state
(small: LoRA only, never the base weights) into full tensors on every rank, and rank 0 writes them in
the single-process format: the adapter is a plain peft directory and `--resume` works at any number of
ranks, sharded or not. The hf sampler generates with the adapter unmerged (merging rewrites whole base
weights, which a rank does not hold).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from graders.base import Grade, Sample
from rft.options import ConfigError

if TYPE_CHECKING:
    from tasks.base import Task

State = dict[str, Any]
# FSDP and DTensor are imported where used: `rft.policy` and `rft.checkpoint` import this module, and
# commands that never shard should not pay for importing torch.distributed.fsdp.


def is_sharded(model: Any) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def shard_model(model: Any, device: torch.device) -> None:
    """`fully_shard` every decoder layer, then the root, over all ranks, each moved to `device` as it is
    sharded; gradients are summed, not averaged."""
    if not dist.is_initialized() or dist.get_world_size() < 2:
        raise ConfigError("train.sharding fsdp shards the model over the ranks of a distributed run: start it with "
                          "--nproc N (N >= 2) or under torchrun")
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import FSDPModule, fully_shard, register_fsdp_forward_method

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    layer_types = set(getattr(base, "_no_split_modules", None) or ())
    layers = [m for m in model.modules() if type(m).__name__ in layer_types]
    if not layers:
        raise ConfigError(f"train.sharding fsdp: {type(base).__name__} names no decoder layer class "
                          "(_no_split_modules) to shard by")
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))  # on CUDA: this rank's GPU (rft.distributed)
    for layer in layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.set_gradient_divide_factor(1.0)
            module.set_force_sum_reduction_for_comms(True)  # gloo has no pre-multiplied sum
    register_fsdp_forward_method(model, "generate")  # generate's forwards use the root's gathered weights


def full_tensor(value: Any) -> Any:
    """A DTensor's whole tensor on the CPU (a collective: every rank calls it); anything else unchanged."""
    from torch.distributed.tensor import DTensor

    return value.full_tensor().cpu() if isinstance(value, DTensor) else value


def full_trainable_state(model: Any) -> State | None:
    """The whole trainable weights by name, gathered on every rank; None when `model` is not sharded."""
    if not is_sharded(model):
        return None
    return {name: full_tensor(p.detach()) for name, p in model.named_parameters() if p.requires_grad}


def full_optimizer_state(optimizer: torch.optim.Optimizer) -> State:
    """`optimizer.state_dict()` with every sharded state tensor gathered whole (the single-process format)."""
    saved = optimizer.state_dict()
    state = {index: {key: full_tensor(value) for key, value in entry.items()}
             for index, entry in saved["state"].items()}
    return {**saved, "state": state}


def local_optimizer_state(optimizer: torch.optim.Optimizer, saved: State) -> State:
    """A single-process optimizer state made to fit `optimizer`'s parameters: each whole state tensor of a
    sharded parameter becomes this rank's shard (every rank read the same file, so no communication)."""
    from torch.distributed.tensor import DTensor, distribute_tensor
    params = [p for group in optimizer.param_groups for p in group["params"]]
    state = {}
    for index, entry in saved["state"].items():
        param = params[int(index)]
        if isinstance(param, DTensor):
            entry = {key: distribute_tensor(value.to(param.device), param.device_mesh, param.placements,
                                            src_data_rank=None)
                     if torch.is_tensor(value) and value.shape == param.shape else value
                     for key, value in entry.items()}
        state[index] = entry
    return {**saved, "state": state}


def gather_for_checkpoint(
    modules: Mapping[str, Any], optimizers: Mapping[str, tuple[Any, Any]]
) -> tuple[dict[str, State], dict[str, State]]:
    """The whole weights and optimizer states of the sharded modules (same names), gathered on every rank."""
    weights = {name: state for name, module in modules.items() if (state := full_trainable_state(module))}
    states = {name: full_optimizer_state(opt) for name, (opt, _) in optimizers.items()
              if name in modules and is_sharded(modules[name])}
    return weights, states


def clip_grad_norm(params: Sequence[torch.nn.Parameter], max_norm: float) -> float:
    """`clip_grad_norm_` with the global norm when the gradients are sharded DTensors; returns it."""
    from torch.distributed.tensor import DTensor
    grads = [p.grad for p in params if p.grad is not None]
    if not any(isinstance(g, DTensor) for g in grads):
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    total = torch.nn.utils.get_total_norm(grads)
    total = total.full_tensor() if isinstance(total, DTensor) else total  # partial sums of squares -> whole norm
    torch.nn.utils.clip_grads_with_norm_(params, max_norm, total)
    return float(total)


class Ungraded:
    """Scores every sample 0 at no cost: what a rank other than 0 grades with while it evaluates only to take
    part in the sharded forwards (rank 0 grades for real)."""

    name = "ungraded"
    cheap = True  # graded inline: no process pool, no judge call

    def grade(self, sample: Sample, item: Mapping[str, Any]) -> Grade:
        return Grade(score=0.0)


def ungraded(task: Task) -> Task:
    return replace(task, grader=Ungraded())
