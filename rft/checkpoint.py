"""Atomic checkpoints: any named modules and optimizers, RNG state, the step and the config.

A checkpoint holds each named module (a peft model as its adapter in peft format; the policy's
under `adapter/`, where users and `rft eval --adapter` look; any other module, such as a PPO
critic or a reward head, as its trainable state dict), every named optimizer with its scheduler,
the Python / NumPy / torch (and CUDA, when present) RNG states, the loop state and the config.
Each is written to a temporary directory and renamed into place, so a crash mid-write never
leaves a half checkpoint that `--resume` would pick up. Only the last `keep_last` step
checkpoints are kept, plus `best/` (the policy adapter with the best held-out accuracy so far).
A sharded module (`rft.sharding`) is written from its weights and optimizer state gathered whole,
so its checkpoint is the single-process one; loading gives each rank its shard.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rft.sharding import local_optimizer_state

_STEP_DIR = re.compile(r"^checkpoint-(\d+)$")

Optimizers = Mapping[str, tuple[Any, Any]]  # name -> (optimizer, scheduler or None)
Gathered = tuple[Mapping[str, dict[str, Any]], Mapping[str, dict[str, Any]]]  # (weights, optimizer states) by name


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _write_atomically(target: Path, fill: Any) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        fill(tmp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _module_dir(name: str) -> str:
    return "adapter" if name == "policy" else name


def _save_module(path: Path, module: Any, weights: dict[str, torch.Tensor] | None = None) -> None:
    """A peft model as its adapter, anything else as its trainable weights; `weights`: them gathered whole."""
    if hasattr(module, "peft_config"):
        module.save_pretrained(path, state_dict=weights)
        return
    from safetensors.torch import save_file

    path.mkdir(parents=True)
    if weights is None:
        weights = {k: v.detach() for k, v in module.named_parameters() if v.requires_grad}
    save_file({k: v.cpu().contiguous() for k, v in weights.items()}, str(path / "model.safetensors"))


def _load_module(path: Path, module: Any) -> None:
    from safetensors.torch import load_file

    if hasattr(module, "peft_config"):
        from peft import set_peft_model_state_dict

        weights = path / "adapter_model.safetensors"
        if not weights.exists():
            raise FileNotFoundError(f"{path} has no adapter weights ({weights}); is it a complete checkpoint?")
        result = set_peft_model_state_dict(module, load_file(str(weights)))
        mismatched = [k for k in getattr(result, "unexpected_keys", []) if "lora" in k]
        if mismatched:
            raise ValueError(f"{weights}: LoRA weights do not match this model: {mismatched[:5]}")
        return
    weights = path / "model.safetensors"
    if not weights.exists():
        raise FileNotFoundError(f"{path} has no module weights ({weights}); is it a complete checkpoint?")
    missing, unexpected = module.load_state_dict(load_file(str(weights)), strict=False)
    trainable = {k for k, v in module.named_parameters() if v.requires_grad}
    if unexpected or trainable & set(missing):
        raise ValueError(f"{weights}: weights do not match the module (missing {sorted(trainable & set(missing))[:5]}, "
                         f"unexpected {unexpected[:5]})")


def save_checkpoint(
    output_dir: Path,
    step: int,
    modules: Mapping[str, Any],
    optimizers: Optimizers,
    config: dict[str, Any],
    state: dict[str, Any],
    gathered: Gathered = ({}, {}),
) -> Path:
    """Write `checkpoint-{step}`; `state` holds loop state such as the best accuracy so far. `gathered`: the
    whole weights and optimizer states of sharded modules, by name (`rft.sharding.gather_for_checkpoint`)."""
    weights, optimizer_states = gathered

    def fill(tmp: Path) -> None:
        for name, module in modules.items():
            _save_module(tmp / _module_dir(name), module, weights.get(name))
        trainer_state = {
            "optimizers": {
                name: {"optimizer": optimizer_states.get(name) or opt.state_dict(),
                       "scheduler": sched.state_dict() if sched else None}
                for name, (opt, sched) in optimizers.items()
            },
            "rng": _rng_state(),
        }
        torch.save(trainer_state, tmp / "trainer_state.pt")
        (tmp / "state.json").write_text(json.dumps({"step": step, **state}, indent=2))
        (tmp / "config.json").write_text(json.dumps(config, indent=2))

    return _write_atomically(output_dir / f"checkpoint-{step:06d}", fill)


def save_best(output_dir: Path, model: Any, info: dict[str, Any], weights: dict[str, torch.Tensor] | None = None
              ) -> Path:
    """Write the policy adapter with the best held-out accuracy to `best/adapter` (peft format); `weights`:
    a sharded model's LoRA weights gathered whole."""

    def fill(tmp: Path) -> None:
        model.save_pretrained(tmp / "adapter", state_dict=weights)
        (tmp / "state.json").write_text(json.dumps(info, indent=2))

    return _write_atomically(output_dir / "best", fill)


def list_checkpoints(output_dir: Path) -> list[Path]:
    """Step checkpoints, oldest first."""
    if not output_dir.exists():
        return []
    found = [(int(m.group(1)), p) for p in output_dir.iterdir() if (m := _STEP_DIR.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def prune(output_dir: Path, keep_last: int) -> None:
    for old in list_checkpoints(output_dir)[: -max(keep_last, 1)]:
        shutil.rmtree(old)


def load_checkpoint(path: Path, modules: Mapping[str, Any], optimizers: Optimizers) -> dict[str, Any]:
    """Restore every named module, optimizer, scheduler and the RNG in place; return the saved loop state."""
    for name, module in modules.items():
        _load_module(path / _module_dir(name), module)
    trainer_state = torch.load(path / "trainer_state.pt", weights_only=False)
    saved = trainer_state["optimizers"]
    missing = sorted(set(optimizers) - set(saved))
    if missing:
        raise ValueError(f"{path}: no saved state for optimizer(s) {missing} (saved: {sorted(saved)})")
    for name, (opt, sched) in optimizers.items():
        opt.load_state_dict(local_optimizer_state(opt, saved[name]["optimizer"]))
        if sched is not None and saved[name]["scheduler"] is not None:
            sched.load_state_dict(saved[name]["scheduler"])
    _set_rng_state(trainer_state["rng"])
    return json.loads((path / "state.json").read_text())
