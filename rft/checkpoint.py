"""Atomic checkpoints: the LoRA adapter (peft format), optimizer, scheduler, RNG, step and config.

Each checkpoint is written to a temporary directory and renamed into place, so a crash mid-write
never leaves a half checkpoint that `--resume` would pick up. Only the last `keep_last` step
checkpoints are kept, plus `best/` (the adapter with the best held-out accuracy so far).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

_STEP_DIR = re.compile(r"^checkpoint-(\d+)$")


def _rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])


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


def save_checkpoint(
    output_dir: Path, step: int, model: Any, optimizer: Any, scheduler: Any, config: dict[str, Any], state: dict[str, Any]
) -> Path:
    """Write `checkpoint-{step}`; `state` holds loop state such as the best accuracy so far."""

    def fill(tmp: Path) -> None:
        model.save_pretrained(tmp / "adapter")
        torch.save(
            {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": _rng_state()},
            tmp / "trainer_state.pt",
        )
        (tmp / "state.json").write_text(json.dumps({"step": step, **state}, indent=2))
        (tmp / "config.json").write_text(json.dumps(config, indent=2))

    return _write_atomically(output_dir / f"checkpoint-{step:06d}", fill)


def save_best(output_dir: Path, model: Any, info: dict[str, Any]) -> Path:
    """Write the adapter with the best held-out accuracy to `best/` (peft format)."""

    def fill(tmp: Path) -> None:
        model.save_pretrained(tmp / "adapter")
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


def load_checkpoint(path: Path, model: Any, optimizer: Any, scheduler: Any) -> dict[str, Any]:
    """Restore adapter weights, optimizer, scheduler and RNG in place; return the saved loop state."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    adapter = path / "adapter"
    weights = adapter / "adapter_model.safetensors"
    if not weights.exists():
        raise FileNotFoundError(f"{path} has no adapter weights ({weights}); is it a complete checkpoint?")
    result = set_peft_model_state_dict(model, load_file(str(weights)))
    missing = [k for k in getattr(result, "unexpected_keys", []) if "lora" in k]
    if missing:
        raise ValueError(f"{weights}: LoRA weights do not match this model: {missing[:5]}")
    trainer_state = torch.load(path / "trainer_state.pt", weights_only=False)
    optimizer.load_state_dict(trainer_state["optimizer"])
    scheduler.load_state_dict(trainer_state["scheduler"])
    _set_rng_state(trainer_state["rng"])
    return json.loads((path / "state.json").read_text())
