"""One config section per training algorithm, chosen by `algorithm.name`, each validated beside it.

`algorithm:` in a run config is parsed into the section class that `ALGORITHMS[name]` names, so
`--algorithm.group_size 4` is a GRPO field and an unknown field is an error naming that algorithm.
A new recipe adds its section here and its entry point to `rft.recipes.RECIPES`.

GRPO, RLOO and REINFORCE++ share one critic-free recipe (`rft.recipes.grpo`): they differ only in
the advantage estimator (`advantage`, a key of `rft.advantages.ADVANTAGE_ESTIMATORS`) and in where
the KL to the reference goes, so they share the fields of the clipped update (`ClippedUpdate`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from rft.options import ConfigError, opt

if TYPE_CHECKING:
    from rft.config import RunConfig


@dataclass
class ClippedUpdate:
    """Fields of the critic-free clipped policy-gradient update (PPO's surrogate on sampled groups)."""

    name: str = opt("grpo", "training recipe (see rft.recipes.RECIPES)")
    group_size: int = opt(8, "G: completions sampled per prompt")
    epsilon: float = opt(0.2, "clip range below (and above, unless epsilon_high is set)")
    epsilon_high: float | None = opt(None, "DAPO clip-higher upper range")
    beta: float = opt(0.0, "k3 KL-to-reference weight in the loss; 0 skips it")
    kl_coef: float = opt(0.0, "k1 KL-to-reference penalty per token in the reward; 0 skips it")
    aggregation: str = opt("token_mean", "loss aggregation over the whole batch: seq_mean, token_mean or "
                           "seq_mean_token_sum_norm", choices=("seq_mean", "token_mean", "seq_mean_token_sum_norm"))
    num_iterations: int = opt(1, "optimisation passes over each sampled batch (>1 uses old log-probs)")
    mask_truncated: bool = opt(False, "exclude completions that hit max_new_tokens from the loss")
    tis_cap: float | None = opt(None, "truncated importance sampling (Yao et al. 2025): weigh each token by "
                                "min(pi_old / pi_sampler, tis_cap); null: off")
    dynamic_sampling: bool = opt(False, "DAPO dynamic sampling: drop groups whose rewards are all equal and refill "
                                 "the batch from further prompts")
    sampling_tries: int = opt(3, "dynamic sampling: rollouts per step at most (the step's own + refills)")

    label: ClassVar[str] = "GRPO"
    min_group: ClassVar[int] = 2  # samples per prompt the estimator needs to have a baseline

    def validate(self, run: RunConfig) -> None:
        """Settings that would crash later or silently do nothing, named by field."""
        if self.group_size < self.min_group:
            raise ConfigError(f"algorithm.group_size must be >= {self.min_group} for {self.label} (got "
                              f"{self.group_size}): a group of one has no baseline, so every advantage would be 0")
        if self.num_iterations < 1:
            raise ConfigError(f"algorithm.num_iterations must be >= 1, got {self.num_iterations}")
        if self.sampling_tries < 1:
            raise ConfigError(f"algorithm.sampling_tries must be >= 1, got {self.sampling_tries}")
        check_clip(self.epsilon, self.epsilon_high)
        if self.tis_cap is not None and self.tis_cap <= 0:
            raise ConfigError(f"algorithm.tis_cap must be > 0 or null, got {self.tis_cap}")
        for key in ("beta", "kl_coef"):
            if getattr(self, key) < 0:
                raise ConfigError(f"algorithm.{key} must be >= 0, got {getattr(self, key)}")


def check_clip(epsilon: float, epsilon_high: float | None) -> None:
    if epsilon < 0 or (epsilon_high is not None and epsilon_high < 0):
        raise ConfigError(f"algorithm.epsilon and algorithm.epsilon_high must be >= 0, got {epsilon}, {epsilon_high}")


@dataclass
class GRPOConfig(ClippedUpdate):
    """GRPO (Shao et al. 2024) with DAPO's clip-higher and token-level loss options."""

    name: str = opt("grpo", "training recipe (see rft.recipes.RECIPES)")
    advantage: str = opt("grpo", "advantage estimator: grpo (std-scaled) or dr_grpo (mean-centred)",
                         choices=("grpo", "dr_grpo"))


@dataclass
class RLOOConfig(ClippedUpdate):
    """RLOO (Ahmadian et al. 2024): each sample's baseline is the mean reward of the other G - 1."""

    name: str = opt("rloo", "training recipe (see rft.recipes.RECIPES)")
    kl_coef: float = opt(0.0, "k1 KL-to-reference penalty per token, summed into the sequence reward "
                         "(the paper's KL-shaped reward); 0 skips it")

    label: ClassVar[str] = "RLOO"
    advantage: ClassVar[str] = "rloo"


@dataclass
class ReinforcePPConfig(ClippedUpdate):
    """REINFORCE++ (Hu et al. 2025): per-token KL in the reward, advantages normalised over the batch."""

    name: str = opt("reinforce_pp", "training recipe (see rft.recipes.RECIPES)")
    group_size: int = opt(8, "G: completions sampled per prompt (1 is allowed: the baseline is the batch)")
    kl_coef: float = opt(0.01, "k1 KL-to-reference penalty per token in the reward (REINFORCE++'s beta)")

    label: ClassVar[str] = "REINFORCE++"
    min_group: ClassVar[int] = 1
    advantage: ClassVar[str] = "reinforce_pp"


@dataclass
class PPOConfig:
    """PPO (Schulman et al. 2017) in its RLHF form (Ouyang et al. 2022), with a value head on the policy."""

    name: str = opt("ppo", "training recipe (see rft.recipes.RECIPES)")
    group_size: int = opt(4, "G: completions sampled per prompt (prompts run once per group)")
    epsilon: float = opt(0.2, "policy clip range below (and above, unless epsilon_high is set)")
    epsilon_high: float | None = opt(None, "DAPO clip-higher upper range")
    kl_coef: float = opt(0.02, "KL-to-reference weight; 0 skips the reference pass")
    kl_penalty: str = opt("reward", "where the KL goes: reward (k1 per token, InstructGPT) or loss (k3, as GRPO)",
                          choices=("reward", "loss"))
    gamma: float = opt(1.0, "GAE discount, in [0, 1]")
    lam: float = opt(0.95, "GAE lambda, in [0, 1]")
    whiten_advantages: bool = opt(True, "normalise advantages over the real tokens of each rollout batch")
    value_clip: float | None = opt(0.2, "clip range of the value loss around the rollout-time values; null: none")
    vf_coef: float = opt(0.5, "weight of the value loss in the shared backbone's loss")
    value_lr: float = opt(1e-3, "AdamW learning rate of the value head")
    epochs: int = opt(2, "PPO epochs over each rollout batch")
    mini_batch_size: int = opt(16, "completions per optimizer update (a multiple of group_size; whole groups, "
                               "shuffled every epoch)")
    critic_warmup_steps: int = opt(0, "first steps that fit only the value head; the policy is not updated")
    aggregation: str = opt("token_mean", "policy-loss aggregation: seq_mean, token_mean or seq_mean_token_sum_norm",
                           choices=("seq_mean", "token_mean", "seq_mean_token_sum_norm"))
    mask_truncated: bool = opt(False, "exclude completions that hit max_new_tokens from the losses")

    def validate(self, run: RunConfig) -> None:
        """Settings that would crash later or silently do nothing, named by field."""
        for key in ("gamma", "lam"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ConfigError(f"algorithm.{key} must be in [0, 1], got {getattr(self, key)}")
        if self.group_size < 1:
            raise ConfigError(f"algorithm.group_size must be >= 1, got {self.group_size}")
        if self.epochs < 1:
            raise ConfigError(f"algorithm.epochs must be >= 1, got {self.epochs}")
        if self.mini_batch_size < self.group_size or self.mini_batch_size % self.group_size:
            raise ConfigError(f"algorithm.mini_batch_size must be a positive multiple of algorithm.group_size "
                              f"({self.group_size}), got {self.mini_batch_size}: mini-batches hold whole groups")
        check_clip(self.epsilon, self.epsilon_high)
        if self.value_clip is not None and self.value_clip <= 0:
            raise ConfigError(f"algorithm.value_clip must be > 0 or null, got {self.value_clip}")
        for key in ("kl_coef", "vf_coef"):
            if getattr(self, key) < 0:
                raise ConfigError(f"algorithm.{key} must be >= 0, got {getattr(self, key)}")
        if self.value_lr <= 0:
            raise ConfigError(f"algorithm.value_lr must be > 0, got {self.value_lr}")
        if not 0 <= self.critic_warmup_steps < run.train.steps:
            raise ConfigError(f"algorithm.critic_warmup_steps must be in [0, train.steps) = [0, {run.train.steps}), "
                              f"got {self.critic_warmup_steps}: the policy would never be updated")


# SCoRe's second user turn, after the paper's MATH prompt (Kumar et al. 2024, appendix), made task-neutral.
SELF_CORRECTION_INSTRUCTION = (
    "There might be an error in the solution above because of lack of understanding of the question. "
    "Please correct the error, if any, and rewrite the solution. Give the final answer in the format "
    "the question asks for."
)


@dataclass
class ScoreConfig:
    """SCoRe (Kumar et al. 2024): two attempts per prompt, stage I then stage II (see `rft.recipes.score`)."""

    name: str = opt("score", "training recipe (see rft.recipes.RECIPES)")
    group_size: int = opt(8, "G: first attempts per prompt, each followed by one second attempt")
    stage1_steps: int = opt(10, "stage I steps: reward on attempt 2, attempt 1 held to the reference by beta2")
    stage2_steps: int = opt(20, "stage II steps: reward on both attempts, alpha x (r2 - r1) added to attempt 2")
    alpha: float = opt(10.0, "stage II shaping weight on r2 - r1 (paper: 10; > 1 favours fixing over repeating)")
    beta1: float = opt(0.01, "k3 KL-to-reference weight on every rewarded attempt (paper: 0.01)")
    beta2: float = opt(0.1, "stage I k3 KL-to-reference weight on attempt 1 (paper: 0.1)")
    instruction: str = opt(SELF_CORRECTION_INSTRUCTION, "user turn that asks for the second attempt")
    aggregation: str = opt("token_mean", "loss aggregation over each attempt's batch: seq_mean, token_mean or "
                           "seq_mean_token_sum_norm", choices=("seq_mean", "token_mean", "seq_mean_token_sum_norm"))
    mask_truncated: bool = opt(False, "exclude completions that hit max_new_tokens from the loss")

    def stage(self, step: int) -> int:
        """1 for the first `stage1_steps` steps (1-based), then 2."""
        return 1 if step <= self.stage1_steps else 2

    def validate(self, run: RunConfig) -> None:
        """Settings that would crash later or silently do nothing, named by field."""
        if self.group_size < 2:
            raise ConfigError(f"algorithm.group_size must be >= 2 for SCoRe (got {self.group_size}): the "
                              "baseline is the mean reward of the G attempts of the same prompt")
        if self.stage1_steps < 0 or self.stage2_steps < 0:
            raise ConfigError(f"algorithm.stage1_steps and stage2_steps must be >= 0, got "
                              f"{self.stage1_steps}, {self.stage2_steps}")
        if self.stage1_steps + self.stage2_steps != run.train.steps:
            raise ConfigError(f"algorithm.stage1_steps + algorithm.stage2_steps ({self.stage1_steps} + "
                              f"{self.stage2_steps}) must equal train.steps ({run.train.steps})")
        for key in ("alpha", "beta1", "beta2"):
            if getattr(self, key) < 0:
                raise ConfigError(f"algorithm.{key} must be >= 0, got {getattr(self, key)}")
        if not self.instruction.strip():
            raise ConfigError("algorithm.instruction must not be empty: it is the turn that asks for attempt 2")


@dataclass
class DPOConfig:
    """DPO (Rafailov et al. 2023) on the preference pairs of `task.pairs` (see `rft.recipes.dpo`)."""

    name: str = opt("dpo", "training recipe (see rft.recipes.RECIPES)")
    beta: float = opt(0.1, "strength of the tie to the reference (the adapter disabled); IPO's tau")
    loss: str = opt("sigmoid", "sigmoid (DPO eq. 7), conservative (label-smoothed cDPO) or ipo (Azar et al. 2023)",
                    choices=("sigmoid", "conservative", "ipo"))
    label_smoothing: float = opt(0.0, "conservative: the assumed fraction of flipped preference labels, in (0, 0.5)")
    nll_coef: float = opt(0.0, "weight of the chosen replies' per-token NLL added to the loss (RPO, Pang et al. "
                          "2024): keeps their likelihood from falling with the rejected ones; 0: plain DPO")

    uses_pairs: ClassVar[bool] = True  # reads task.pairs

    def validate(self, run: RunConfig) -> None:
        """Settings that would crash later or silently do nothing, named by field."""
        if self.beta <= 0:
            raise ConfigError(f"algorithm.beta must be > 0, got {self.beta}")
        if self.loss == "conservative" and not 0 < self.label_smoothing < 0.5:
            raise ConfigError(f"algorithm.label_smoothing must be in (0, 0.5) for the conservative loss, got "
                              f"{self.label_smoothing} (0 is plain sigmoid DPO)")
        if self.loss != "conservative" and self.label_smoothing != 0:
            raise ConfigError(f"algorithm.label_smoothing is only used by loss 'conservative' (got loss "
                              f"{self.loss!r}, label_smoothing {self.label_smoothing})")
        if self.nll_coef < 0:
            raise ConfigError(f"algorithm.nll_coef must be >= 0, got {self.nll_coef}")
        if self.uses_pairs and not run.task.pairs:
            raise ConfigError(f"algorithm.name {self.name!r} trains on preference pairs: set task.pairs to a "
                              "JSONL / CSV / Parquet file or dataset directory (e.g. written by `rft prefs`)")


@dataclass
class OnlineDPOConfig(DPOConfig):
    """Online DPO (Guo et al. 2024): pairs of the current policy's own samples, ranked by the task's grader."""

    name: str = opt("online_dpo", "training recipe (see rft.recipes.RECIPES)")
    group_size: int = opt(4, "G: completions sampled per prompt, of which the best and the worst make its pair")
    mask_truncated: bool = opt(False, "leave completions that hit max_new_tokens out of the pairs")
    min_margin: float = opt(0.0, "smallest best-minus-worst score a pair needs (ties are always skipped)")
    judge: str = opt("", "rank with this grader spec or constitution YAML (principles:, judge:) instead of the "
                     "task's grader (RLAIF); held-out accuracy stays the task grader's")

    uses_pairs: ClassVar[bool] = False  # samples its own

    def validate(self, run: RunConfig) -> None:
        super().validate(run)
        if self.group_size < 2:
            raise ConfigError(f"algorithm.group_size must be >= 2 for online DPO (got {self.group_size}): a pair "
                              "needs two completions of the same prompt")
        if self.min_margin < 0:
            raise ConfigError(f"algorithm.min_margin must be >= 0, got {self.min_margin}")
        if not run.task.name:
            raise ConfigError("online DPO samples the prompts of task.name and ranks them with its grader: set it")


@dataclass
class RewardModelConfig:
    """A Bradley-Terry reward model on `task.pairs` (Ouyang et al. 2022, eq. 1; see `rft.recipes.reward_model`)."""

    name: str = opt("reward_model", "training recipe (see rft.recipes.RECIPES)")

    uses_pairs: ClassVar[bool] = True  # reads task.pairs, held out as for dpo (task.pairs_test / pairs_held_out)

    def validate(self, run: RunConfig) -> None:
        """Settings that would crash later or silently do nothing, named by field."""
        if not run.task.pairs:
            raise ConfigError("task.pairs is needed with algorithm.name reward_model: a JSONL file of "
                              "prompt/chosen/rejected pairs (e.g. from rft prefs or examples/rlhf/make_pairs.py)")
        if run.task.grader is not None:
            raise ConfigError("task.grader is not used by algorithm.name reward_model, which learns from task.pairs")


# algorithm.name -> its config section.
ALGORITHMS: dict[str, type] = {
    "grpo": GRPOConfig, "rloo": RLOOConfig, "reinforce_pp": ReinforcePPConfig, "ppo": PPOConfig,
    "score": ScoreConfig, "dpo": DPOConfig, "online_dpo": OnlineDPOConfig, "reward_model": RewardModelConfig,
}
