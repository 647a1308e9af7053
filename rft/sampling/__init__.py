"""Generation backends behind one `Sampler` contract, built by name from `sampler.backend`."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from rft.sampling.base import Completion, Sampler, SamplingParams

if TYPE_CHECKING:
    from rft.config import SamplerConfig
    from rft.policy import Policy

# sampler.backend -> "module:class"; each class is built as cls(policy, config).
SAMPLERS: dict[str, str] = {
    "hf": "rft.sampling.hf:HFSampler",
    "vllm": "rft.sampling.vllm:VLLMSampler",
    "server": "rft.sampling.server:ServerSampler",
}


def build_sampler(cfg: SamplerConfig, policy: Policy) -> Sampler:
    """The configured backend, pointed at `policy`."""
    if cfg.backend not in SAMPLERS:
        raise ValueError(f"sampler.backend {cfg.backend!r} is not one of {sorted(SAMPLERS)}")
    module, attr = SAMPLERS[cfg.backend].split(":")
    return getattr(importlib.import_module(module), attr)(policy, cfg)


def release_memory(sampler: Sampler) -> None:
    """Before a training phase: a backend sharing the accelerator with training (vLLM in sleep mode) frees
    its memory until the next `sync`; the others hold nothing to free and have no `sleep`."""
    sleep = getattr(sampler, "sleep", None)
    if sleep is not None:
        sleep()


__all__ = ["SAMPLERS", "Completion", "Sampler", "SamplingParams", "build_sampler", "release_memory"]
