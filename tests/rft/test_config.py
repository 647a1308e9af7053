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
