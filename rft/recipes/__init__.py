"""Training recipes, one file per algorithm; `RECIPES` maps `algorithm.name` to its entry point.

GRPO, RLOO and REINFORCE++ share the critic-free loop in `grpo.py` (they differ in the advantage
estimator, chosen by their config section); PPO, which adds a critic, has its own;
SCoRe, which trains two attempts per prompt, too. DPO trains on a file of preference pairs; online DPO
on pairs of its own samples each step, sharing DPO's update; the Bradley-Terry reward model (trained on
preference pairs, no sampling) has its own.
"""

RECIPES: dict[str, str] = {
    "grpo": "rft.recipes.grpo:train",
    "rloo": "rft.recipes.grpo:train",
    "reinforce_pp": "rft.recipes.grpo:train",
    "ppo": "rft.recipes.ppo:train",
    "score": "rft.recipes.score:train",
    "dpo": "rft.recipes.dpo:train",
    "online_dpo": "rft.recipes.online_dpo:train",
    "reward_model": "rft.recipes.reward_model:train",
}
