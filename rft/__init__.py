"""rft: verifiable-reward reinforcement fine-tuning of LoRA adapters.

Importing `rft` registers its torch-backed grader types with `graders` by dotted path (`graders`
itself never imports torch or `rft`); they load only when a spec uses them.
"""

from pathlib import Path

from graders.spec import register_type

__version__ = "0.1.0"

register_type("reward_model", "rft.reward_model:RewardModelGrader",
              Path(__file__).resolve().parent.parent / "schemas" / "reward_model_grader.schema.json")
