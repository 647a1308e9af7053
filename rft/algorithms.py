"""One config section per training algorithm, chosen by `algorithm.name`, each validated beside it.

`algorithm:` in a run config is parsed into the section class that `ALGORITHMS[name]` names, so
`--algorithm.group_size 4` is a GRPO field and an unknown field is an error naming that algorithm.
A new recipe adds its section here and its entry point to `rft.recipes.RECIPES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rft.options import ConfigError, opt

if TYPE_CHECKING:
    from rft.config import RunConfig


@dataclass
class GRPOConfig:
    """GRPO (Shao et al. 2024) with DAPO's clip-higher and token-level loss options."""

    name: str = opt("grpo", "training recipe (see rft.recipes.RECIPES)")
    group_size: int = opt(8, "G: completions sampled per prompt")
    advantage: str = opt("grpo", "advantage estimator: grpo (std-scaled) or dr_grpo (mean-centred)",
                         choices=("grpo", "dr_grpo"))
    epsilon: float = opt(0.2, "clip range below (and above, unless epsilon_high is set)")
    epsilon_high: float | None = opt(None, "DAPO clip-higher upper range")
    beta: float = opt(0.0, "KL coefficient to the adapter-disabled reference; 0 skips the reference pass")
    aggregation: str = opt("token_mean", "loss aggregation over the whole batch: seq_mean, token_mean or "
                           "seq_mean_token_sum_norm", choices=("seq_mean", "token_mean", "seq_mean_token_sum_norm"))
    num_iterations: int = opt(1, "optimisation passes over each sampled batch (>1 uses old log-probs)")
    mask_truncated: bool = opt(False, "exclude completions that hit max_new_tokens from the loss")

    def validate(self, run: RunConfig) -> None:
        """Settings that would crash later or silently do nothing, named by field."""
        if self.group_size < 2:
            raise ConfigError(f"algorithm.group_size must be >= 2 for GRPO (got {self.group_size}): "
                              "a group of one has no baseline, so every advantage would be 0")
        if self.num_iterations < 1:
            raise ConfigError(f"algorithm.num_iterations must be >= 1, got {self.num_iterations}")
        if self.epsilon < 0 or (self.epsilon_high is not None and self.epsilon_high < 0) or self.beta < 0:
            raise ConfigError("algorithm.epsilon, algorithm.epsilon_high and algorithm.beta must be >= 0")


# algorithm.name -> its config section.
ALGORITHMS: dict[str, type] = {"grpo": GRPOConfig}
