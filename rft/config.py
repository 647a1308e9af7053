"""Typed run configuration: nested dataclasses, a YAML file, and `--section.field value` overrides.

`load_config("examples/arithmetic.yaml", ["--train.steps", "50"])` gives a validated `RunConfig`;
unknown keys and wrongly typed values are errors naming the field. `schemas/config.schema.json` is
generated from these dataclasses (`python -m rft.config > schemas/config.schema.json`; a test
keeps it current).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rft.models import DEFAULT_LORA_TARGETS


_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


class ConfigError(ValueError):
    """A setting a user must fix; the CLI prints it without a traceback."""


@dataclass
class ModelConfig:
    name: str = "default"  # packaged name ("default", "smollm2-135m"), local path or hub id
    dtype: str = "float32"  # torch dtype for weights and compute: float32, bfloat16 or float16


@dataclass
class LoraConfig:
    rank: int = 16  # LoRA rank r
    alpha: float = 32.0  # LoRA scaling numerator (scale = alpha / rank)
    dropout: float = 0.0  # dropout on the LoRA input
    target_modules: list[str] = field(default_factory=lambda: list(DEFAULT_LORA_TARGETS))  # module names to adapt


@dataclass
class TaskConfig:
    name: str = "arithmetic"  # built-in task name or "package.module:attr"
    options: dict[str, Any] = field(default_factory=dict)  # keyword options for the task factory


@dataclass
class SamplerConfig:
    backend: str = "hf"  # generation backend (see rft.sampling.BACKENDS)
    temperature: float = 0.8  # sampling temperature for training rollouts
    top_p: float = 1.0  # nucleus sampling for training rollouts
    max_new_tokens: int = 24  # completion length cap; longer completions are marked truncated


@dataclass
class AlgorithmConfig:
    name: str = "grpo"  # training recipe (see rft.recipes.RECIPES)
    group_size: int = 8  # G: completions sampled per prompt
    advantage: str = "grpo"  # advantage estimator: grpo (std-scaled) or dr_grpo (mean-centred)
    epsilon: float = 0.2  # clip range below (and above, unless epsilon_high is set)
    epsilon_high: float | None = None  # DAPO clip-higher upper range
    beta: float = 0.0  # KL coefficient to the adapter-disabled reference; 0 skips the reference pass
    aggregation: str = "token_mean"  # loss aggregation: seq_mean, token_mean or seq_mean_token_sum_norm
    num_iterations: int = 1  # optimisation passes over each sampled batch (>1 uses old log-probs)
    mask_truncated: bool = False  # exclude completions that hit max_new_tokens from the loss


@dataclass
class TrainConfig:
    steps: int = 30  # optimizer steps, each on one freshly sampled batch
    prompts_per_step: int = 4  # B: prompts per step (B * G completions)
    micro_batch_size: int = 16  # completions per forward/backward (gradient accumulation)
    lr: float = 5e-4  # AdamW peak learning rate
    warmup_steps: int = 2  # linear warm-up steps, then the lr_schedule
    lr_schedule: str = "linear"  # after warm-up: constant, linear or cosine (both decay to 10% at the end)
    weight_decay: float = 0.0  # AdamW weight decay on LoRA weights
    max_grad_norm: float = 1.0  # gradient clipping norm
    seed: int = 0  # seeds data order, sampling and LoRA initialisation
    output_dir: str = "runs/latest"  # where metrics, checkpoints, plots and eval samples go
    checkpoint_interval: int = 10  # steps between checkpoints (the last step is always saved)
    keep_last: int = 2  # checkpoints kept besides the best one
    threads: int = 0  # torch CPU threads; 0 keeps torch's default


@dataclass
class EvalConfig:
    interval: int = 10  # evaluate on held-out items every N steps (and before and after training)
    limit: int = 200  # held-out items used (0 = all)
    samples: int = 1  # k samples per item; k > 1 reports pass@k
    temperature: float = 0.0  # 0 = greedy
    max_new_tokens: int = 24  # completion length cap during evaluation
    batch_size: int = 64  # prompts per generate call


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check or convert one value against a field's type hint, naming the field on failure."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        hint = next(a for a in options if a is not type(None))
        origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, typing.get_args(hint)[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str) and _FLOAT.fullmatch(value):
        return float(value)  # YAML 1.1 reads `1e-4` (no dot) as a string
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ValueError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value


def from_dict(data: dict[str, Any], cls: type = RunConfig, where: str = "") -> Any:
    """Build a (nested) config dataclass, rejecting unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise ValueError(f"{where or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{where or 'config'}: unknown field(s) {unknown}; known: {sorted(names)}")
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = from_dict(value, hint, path)
        else:
            kwargs[key] = _coerce(value, hint, path)
    return cls(**kwargs)


def parse_overrides(args: list[str]) -> dict[str, Any]:
    """`["--train.steps", "50", "--lora.rank=8"]` -> {"train": {"steps": 50}, "lora": {"rank": 8}}.

    Values are parsed as YAML scalars, so `50` is an int, `1e-4` a float, `[q_proj]` a list.
    """
    out: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or "." not in arg:
            raise ValueError(f"override {arg!r} must look like --section.field VALUE")
        if "=" in arg:
            key, raw = arg[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(args):
                raise ValueError(f"override {arg!r} has no value")
            key, raw = arg[2:], args[i + 1]
            i += 2
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        value = yaml.safe_load(raw) if raw != "" else ""
        node[leaf] = float(value) if isinstance(value, str) and _FLOAT.fullmatch(value) else value
    return out


def split_args(config: Path | None, extra: list[str]) -> tuple[Path | None, list[str]]:
    """The CLI's optional config path may have swallowed the first `--section.field` override."""
    if config is not None and str(config).startswith("--"):
        return None, [str(config), *extra]
    return config, list(extra)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and key != "options":
            merged[key] = _merge(merged[key], value)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Defaults, then the YAML file, then command-line overrides; validated into a `RunConfig`."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    try:
        data = _merge(data, parse_overrides(overrides or []))
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    try:
        return from_dict(_merge(RunConfig().to_dict(), data))
    except ValueError as exc:
        raise ConfigError(f"{path or 'config'}: {exc}") from exc


def _schema_for(hint: Any) -> dict[str, Any]:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [_schema_for(a) for a in typing.get_args(hint)]}
    if dataclasses.is_dataclass(hint):
        return json_schema(hint)
    if origin is list:
        return {"type": "array", "items": _schema_for(typing.get_args(hint)[0])}
    if origin is dict:
        return {"type": "object"}
    names = {str: "string", int: "integer", float: "number", bool: "boolean", type(None): "null"}
    return {"type": names[hint]} if hint in names else {}


def json_schema(cls: type = RunConfig) -> dict[str, Any]:
    """JSON Schema of a config dataclass; field comments in this file are the descriptions."""
    hints = typing.get_type_hints(cls)
    source = inspect.getsource(cls).splitlines()
    props = {}
    for f in dataclasses.fields(cls):
        prop = _schema_for(hints[f.name])
        comment = next((ln.split("#", 1)[1].strip() for ln in source if ln.strip().startswith(f"{f.name}:") and "#" in ln), "")
        if comment and not dataclasses.is_dataclass(hints[f.name]):
            prop["description"] = comment
        props[f.name] = prop
    schema: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
    if cls is RunConfig:
        schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "rft run config", **schema}
    return schema


if __name__ == "__main__":
    print(json.dumps(json_schema(), indent=2))
