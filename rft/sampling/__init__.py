"""Generation backends behind one `Sampler` contract, built by name from `sampler.backend`."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from rft.sampling.base import Completion, Sampler, SamplingParams

if TYPE_CHECKING:
    from rft.config import SamplerConfig
    from rft.policy import Policy

# sampler.backend -> "module:class"; each class is built as cls(policy, config).
SAMPLERS: dict[str, str] = {"hf": "rft.sampling.hf:HFSampler"}


def build_sampler(cfg: SamplerConfig, policy: Policy) -> Sampler:
    """The configured backend, pointed at `policy`."""
    if cfg.backend not in SAMPLERS:
        raise ValueError(f"sampler.backend {cfg.backend!r} is not one of {sorted(SAMPLERS)}")
    module, attr = SAMPLERS[cfg.backend].split(":")
    return getattr(importlib.import_module(module), attr)(policy, cfg)


__all__ = ["SAMPLERS", "Completion", "Sampler", "SamplingParams", "build_sampler"]
