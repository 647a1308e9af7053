"""Each policy version's LoRA adapter as a directory an engine can load: adapter-only weight sync.

A LoRA run changes only the adapter (4.9 M parameters for SmolLM2-135M at r16, 19.5 MB in fp32), so the
sampler engines (vLLM in-process, a vLLM or `rft serve` server) get the adapter as a new named LoRA
per version instead of merged full weights. Directories go under `sampler.adapter_dir`, RAM-backed
(/dev/shm) by default, and a version's directory is deleted once the engine has dropped it.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class AdapterVersion:
    """One written adapter: the name and integer id an engine knows it by, and its directory."""

    name: str
    lora_id: int
    path: Path
    version: int


def has_lora(model: Any) -> bool:
    """Whether the policy carries a peft adapter (a base model alone has nothing to sync)."""
    return bool(getattr(model, "peft_config", None))


class AdapterWriter:
    """Writes adapters of one run into a fresh directory under `root`, removed when this object goes."""

    def __init__(self, root: str) -> None:
        Path(root).mkdir(parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix="run-", dir=root))
        self.tag = uuid.uuid4().hex[:8]  # two runs on one server never share an adapter name
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(self.dir), True)

    def write(self, model: Any, version: int) -> AdapterVersion:
        """Save `model`'s adapter weights (peft format) as policy version `version`."""
        path = self.dir / f"v{version:06d}"
        model.save_pretrained(str(path))
        # Engines cache a LoRA by name and id, so both are fresh per version; ids start at 1.
        return AdapterVersion(f"rft-{self.tag}-v{version}", version + 1, path, version)

    @staticmethod
    def remove(adapter: AdapterVersion) -> None:
        shutil.rmtree(adapter.path, ignore_errors=True)

    def close(self) -> None:
        self._cleanup()
