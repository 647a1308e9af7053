"""Run config: YAML + overrides, errors that name the field, and the JSON Schema kept current."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest

from rft.config import ConfigError, RunConfig, json_schema, load_config, parse_overrides, split_args

ROOT = Path(__file__).resolve().parents[2]


def test_yaml_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("train: {steps: 7, lr: 1e-4}\ntask: {name: arithmetic, options: {digits: 3}}\n")
    cfg = load_config(path, ["--train.steps", "9", "--task.options.ops=+-", "--lora.target_modules", "[q_proj]"])
    assert cfg.train.steps == 9 and cfg.train.lr == 1e-4
    assert cfg.task.options == {"digits": 3, "ops": "+-"}
    assert cfg.lora.target_modules == ["q_proj"]
    assert cfg.algorithm.epsilon_high is None and cfg.algorithm.group_size == RunConfig().algorithm.group_size


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--train.stepz", "3"], "train: unknown field(s) ['stepz']"),
        (["--train.steps", "many"], "train.steps: expected int, got 'many'"),
        (["--algorithm.beta", "true"], "algorithm.beta: expected float"),
        (["--lora.target_modules", "q_proj"], "lora.target_modules: expected a list"),
        (["train.steps", "3"], "must look like --section.field"),
        (["--train.steps"], "has no value"),
    ],
)
def test_bad_overrides_name_the_field(args: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(None, args)


def test_bad_yaml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(path)


def test_overrides_parse_yaml_scalars() -> None:
    assert parse_overrides(["--a.b", "1e-4", "--a.c=null", "--d.e", "x"]) == {"a": {"b": 1e-4, "c": None}, "d": {"e": "x"}}


def test_cli_config_argument_that_is_really_an_override() -> None:
    assert split_args(Path("--train.steps"), ["3"]) == (None, ["--train.steps", "3"])
    assert split_args(Path("run.yaml"), ["--a.b", "1"]) == (Path("run.yaml"), ["--a.b", "1"])


def test_schema_file_is_current_and_validates_the_examples() -> None:
    on_disk = json.loads((ROOT / "schemas" / "config.schema.json").read_text())
    assert on_disk == json_schema(), "regenerate with: python -m rft.config > schemas/config.schema.json"
    jsonschema.validate(RunConfig().to_dict(), on_disk)
    jsonschema.validate(load_config(ROOT / "examples" / "arithmetic.yaml").to_dict(), on_disk)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"train": {"steps": "x"}}, on_disk)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--algorithm.name", "rloo", "--algorithm.group_size", "1"], "algorithm.group_size must be >= 2 for RLOO"),
        (["--algorithm.name", "rloo", "--algorithm.advantage", "grpo"], "unknown field(s) ['advantage']"),
        (["--algorithm.name", "reinforce_pp", "--algorithm.kl_coef", "-0.1"], "algorithm.kl_coef must be >= 0"),
        (["--algorithm.name", "ppo", "--algorithm.gamma", "1.5"], "algorithm.gamma must be in [0, 1]"),
        (["--algorithm.name", "ppo", "--algorithm.lam", "-0.1"], "algorithm.lam must be in [0, 1]"),
        (["--algorithm.name", "ppo", "--algorithm.mini_batch_size", "6"], "algorithm.mini_batch_size must be"),
        (["--algorithm.name", "ppo", "--algorithm.critic_warmup_steps", "30"], "critic_warmup_steps must be in"),
        (["--algorithm.name", "ppo", "--algorithm.value_clip", "0"], "algorithm.value_clip must be > 0"),
        (["--algorithm.name", "ppo", "--algorithm.kl_penalty", "both"], "algorithm.kl_penalty: 'both' is not one of"),
        (["--algorithm.name", "ppo", "--algorithm.num_iterations", "2"], "unknown field(s) ['num_iterations']"),
    ],
)
def test_bad_algorithm_settings_name_the_field(args: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(None, args)


@pytest.mark.parametrize(("name", "group", "kl"), [("rloo", 8, 0.0), ("reinforce_pp", 8, 0.01), ("ppo", 4, 0.02)])
def test_each_algorithm_has_its_own_defaults(name: str, group: int, kl: float) -> None:
    cfg = load_config(None, ["--algorithm.name", name])
    assert (type(cfg.algorithm).__name__, cfg.algorithm.group_size, cfg.algorithm.kl_coef) == (
        {"rloo": "RLOOConfig", "reinforce_pp": "ReinforcePPConfig", "ppo": "PPOConfig"}[name], group, kl)
    assert load_config(None, ["--algorithm.name", "reinforce_pp", "--algorithm.group_size", "1"]).algorithm.group_size == 1


@pytest.mark.parametrize("algo", ["grpo", "rloo", "reinforce_pp", "ppo", "dpo", "online_dpo"])
def test_every_example_validates_against_the_schema(algo: str) -> None:
    on_disk = json.loads((ROOT / "schemas" / "config.schema.json").read_text())
    path = ROOT / "examples" / ("arithmetic.yaml" if algo == "grpo" else f"{algo}.yaml")
    assert path.read_text().startswith(f"# rft train {path.relative_to(ROOT)}")
    cfg = load_config(path)
    assert cfg.algorithm.name == algo
    jsonschema.validate(cfg.to_dict(), on_disk)


@pytest.mark.parametrize("path", sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "examples").rglob("*.yaml")
                                        if p.name != "constitution.yaml"))
def test_every_example_config_loads_and_matches_the_schema(path: str) -> None:
    on_disk = json.loads((ROOT / "schemas" / "config.schema.json").read_text())
    jsonschema.validate(load_config(ROOT / path).to_dict(), on_disk)
