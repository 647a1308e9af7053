"""Training recipes, one file per algorithm; `RECIPES` maps `algorithm.name` to its entry point."""

RECIPES: dict[str, str] = {"grpo": "rft.recipes.grpo:train"}
