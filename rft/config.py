"""Typed run configuration: nested dataclasses, a YAML file, and `--section.field value` overrides.

`load_config("examples/arithmetic.yaml", ["--train.steps", "50"])` gives a validated `RunConfig`;
unknown keys, wrong types and values outside a field's choices are errors naming the field. The
`algorithm` section's fields depend on `algorithm.name` (see `rft.algorithms`). The JSON Schema in
`schemas/config.schema.json` is generated from these declarations (`python -m rft.config >
schemas/config.schema.json`; a test keeps it current).
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rft.alarms import AlarmConfig
from rft.algorithms import ALGORITHMS, GRPOConfig
from rft.budget import JudgeConfig
from rft.models import DEFAULT_LORA_TARGETS
from rft.options import ConfigError, opt

__all__ = ["ConfigError", "RunConfig", "load_config", "json_schema"]

_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


@dataclass
class ModelConfig:
    name: str = opt("default", 'packaged name ("default", "smollm2-135m"), local path or hub id')
    dtype: str = opt("float32", "torch dtype for weights and compute", choices=("float32", "bfloat16", "float16"))
    device: str = opt("auto", "torch device for the policy: auto (cuda when available, else cpu), cpu, cuda, cuda:1")


@dataclass
class LoraConfig:
    rank: int = opt(16, "LoRA rank r")
    alpha: float = opt(32.0, "LoRA scaling numerator (scale = alpha / rank)")
    dropout: float = opt(0.0, "dropout on the LoRA input")
    target_modules: list[str] = opt(factory=lambda: list(DEFAULT_LORA_TARGETS), help="module names to adapt")


@dataclass
class TaskConfig:
    name: str = opt("arithmetic", 'built-in task name, "package.module:attr", file.py:attr or a task directory')
    options: dict[str, Any] = opt(factory=dict, help="keyword options for the task factory")
    grader: dict[str, Any] | None = opt(None, "a grader spec that replaces the task's grader for training rewards "
                                        "(e.g. a reward_model); held-out evaluation keeps the task's own grader")
    pairs: str = opt("", "dpo, reward_model: preference pairs (JSONL / CSV / Parquet / dataset dir); task.name, "
                     "when set, is the task whose held-out accuracy is also measured (empty: pairwise accuracy only)")
    pairs_test: str = opt("", "preference recipes: held-out pairs; empty holds out pairs_held_out of task.pairs")
    pairs_held_out: float = opt(0.1, "held-out pairs when pairs_test is empty: a fraction (< 1) or a count")


@dataclass
class SamplerConfig:
    backend: str = opt("hf", "generation backend: hf (transformers, in-process), vllm (in-process vllm.LLM) or "
                       "server (an OpenAI-compatible server at base_url)", choices=("hf", "vllm", "server"))
    temperature: float = opt(0.8, "sampling temperature for training rollouts (log-probs are scored at it too)")
    top_p: float = opt(1.0, "nucleus sampling for training rollouts")
    max_new_tokens: int = opt(24, "completion length cap; longer completions are marked truncated")
    adapter_dir: str = opt("/dev/shm/rft-adapters", "vllm / server: where each policy version's adapter is written "
                           "(RAM-backed; a server must see the same path)")
    gpu_memory_utilization: float = opt(0.3, "vllm on a GPU: fraction of its memory vLLM takes (weights + KV "
                                        "cache); training uses the rest")
    enable_sleep_mode: bool = opt(False, "vllm on a GPU: free vLLM's weights and KV cache during each training phase")
    base_url: str = opt("", "server: the OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1")
    seed_per_prompt: bool = opt(False, "seed each prompt's group from (train.seed, step, prompt index): the same "
                                "completions on any number of ranks, at one generate call per prompt")


@dataclass
class TrainConfig:
    steps: int = opt(30, "optimizer steps, each on one freshly sampled batch")
    prompts_per_step: int = opt(4, "B: prompts per step (B * G completions)")
    micro_batch_size: int = opt(16, "completions per forward/backward (gradient accumulation over whole groups)")
    lr: float = opt(5e-4, "AdamW peak learning rate")
    warmup_steps: int = opt(2, "linear warm-up steps, then the lr_schedule")
    lr_schedule: str = opt("linear", "after warm-up: constant, linear or cosine (both decay to 10% at the end)",
                           choices=("constant", "linear", "cosine"))
    weight_decay: float = opt(0.0, "AdamW weight decay on LoRA weights")
    max_grad_norm: float = opt(1.0, "gradient clipping norm")
    seed: int = opt(0, "seeds data order, sampling and LoRA initialisation")
    output_dir: str = opt("runs/latest", "where metrics, checkpoints, plots and eval samples go")
    checkpoint_interval: int = opt(10, "steps between checkpoints (the last step is always saved)")
    keep_last: int = opt(2, "checkpoints kept besides the best one")
    threads: int = opt(0, "torch CPU threads; 0 keeps torch's default")
    sharding: str = opt("none", "none: every rank holds the whole model; fsdp: FSDP2-shard the base model over the "
                        "ranks, for a model that does not fit one device (rft.sharding)", choices=("none", "fsdp"))


@dataclass
class GradingConfig:
    backend: str = opt("local", "where graders run: local (this machine's process pool) or ray (a Ray cluster)",
                       choices=("local", "ray"))
    address: str = opt("", 'Ray cluster to join ("auto", "ray://host:10001"); empty starts a local one')


@dataclass
class EvalConfig:
    interval: int = opt(10, "evaluate on held-out items every N steps (and before and after training)")
    limit: int = opt(200, "held-out items used (0 = all)")
    samples: int = opt(1, "k samples per item; k > 1 reports pass@k")
    temperature: float = opt(0.0, "0 = greedy")
    max_new_tokens: int = opt(24, "completion length cap during evaluation")
    batch_size: int = opt(64, "prompts per generate call")


@dataclass
class RunConfig:
    model: ModelConfig = opt(factory=ModelConfig)
    lora: LoraConfig = opt(factory=LoraConfig)
    task: TaskConfig = opt(factory=TaskConfig)
    sampler: SamplerConfig = opt(factory=SamplerConfig)
    algorithm: Any = opt(factory=GRPOConfig, help="the recipe's own section; its fields depend on algorithm.name")
    train: TrainConfig = opt(factory=TrainConfig)
    eval: EvalConfig = opt(factory=EvalConfig)
    grading: GradingConfig = opt(factory=GradingConfig)
    alarms: AlarmConfig = opt(factory=AlarmConfig, help="thresholds of the training-signal alarms (rft.alarms)")
    judge: JudgeConfig = opt(factory=JudgeConfig, help="judge token prices and the run's budget (rft.budget)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        """Cross-field checks that need no model or task; the algorithm section checks its own."""
        for key in ("train.steps", "train.prompts_per_step", "train.micro_batch_size", "eval.interval",
                    "train.checkpoint_interval", "eval.samples", "eval.batch_size", "sampler.max_new_tokens",
                    "alarms.window"):
            section, name = key.split(".")
            if getattr(getattr(self, section), name) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(getattr(self, section), name)}")
        if self.sampler.temperature <= 0:
            raise ConfigError(f"sampler.temperature must be > 0 for training rollouts (got "
                              f"{self.sampler.temperature}): greedy samples of one prompt are all the same")
        if not 0 < self.sampler.top_p <= 1:
            raise ConfigError(f"sampler.top_p must be in (0, 1], got {self.sampler.top_p}")
        if self.sampler.backend == "server" and not self.sampler.base_url:
            raise ConfigError("sampler.base_url is needed with sampler.backend server (e.g. http://127.0.0.1:8000/v1)")
        if not 0 < self.sampler.gpu_memory_utilization <= 1:
            raise ConfigError(f"sampler.gpu_memory_utilization must be in (0, 1], got "
                              f"{self.sampler.gpu_memory_utilization}")
        if self.grading.address and self.grading.backend != "ray":
            raise ConfigError(f"grading.address {self.grading.address!r} is only used by grading.backend ray "
                              f"(got {self.grading.backend!r})")
        if (self.task.pairs or self.task.pairs_test) and not getattr(self.algorithm, "uses_pairs", False):
            raise ConfigError(f"task.pairs is read by preference recipes (dpo, reward_model), not by {self.algorithm.name!r}")
        if not self.task.name and not getattr(self.algorithm, "uses_pairs", False):
            raise ConfigError("task.name is empty: name the task to train on")
        held_out = self.task.pairs_held_out
        if held_out <= 0 or (held_out >= 1 and held_out != int(held_out)):
            raise ConfigError(f"task.pairs_held_out must be a fraction in (0, 1) or a whole count >= 1, got {held_out}")
        if self.train.sharding == "fsdp":
            self._check_sharding()
        self.algorithm.validate(self)
        self.judge.validate()

    def _check_sharding(self) -> None:
        """What a sharded run (`rft.sharding`) cannot do, before any model loads."""
        if self.sampler.backend != "hf":
            raise ConfigError(f"train.sharding fsdp samples with the sharded training model (sampler.backend hf); "
                              f"sampler.backend {self.sampler.backend!r} needs the whole model on one engine")
        if getattr(self.algorithm, "dynamic_sampling", False):
            raise ConfigError("algorithm.dynamic_sampling does not work with train.sharding fsdp: each rank refills "
                              "its share a different number of times, and sharded ranks run every forward together")
        if self.algorithm.name == "score":
            raise ConfigError("algorithm.name score does not support train.sharding fsdp (its two-turn rollouts and "
                              "evaluation run on rank 0 alone); use grpo, rloo, reinforce_pp or ppo")


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


def _algorithm_class(data: Any, where: str) -> type:
    name = data.get("name", "grpo") if isinstance(data, dict) else "grpo"
    if name not in ALGORITHMS:
        raise ValueError(f"{where}.name: {name!r} is not one of {sorted(ALGORITHMS)}")
    return ALGORITHMS[name]


def from_dict(data: dict[str, Any], cls: type = RunConfig, where: str = "") -> Any:
    """Build a (nested) config dataclass, rejecting unknown keys, wrong types and values not in choices."""
    if not isinstance(data, dict):
        raise ValueError(f"{where or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"{where or 'config'}: unknown field(s) {unknown}; known: {sorted(fields)}")
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        hint = _algorithm_class(value, path) if cls is RunConfig and key == "algorithm" else hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = from_dict(value, hint, path)
            continue
        kwargs[key] = _coerce(value, hint, path)
        choices = fields[key].metadata.get("choices")
        if choices and kwargs[key] not in choices:
            raise ValueError(f"{path}: {kwargs[key]!r} is not one of {list(choices)}")
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
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the config: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    try:
        data = _merge(data, parse_overrides(overrides or []))
        # The defaults of the chosen algorithm, not GRPO's, sit under a user's algorithm fields.
        defaults = RunConfig(algorithm=_algorithm_class(data.get("algorithm"), "algorithm")()).to_dict()
        cfg = from_dict(_merge(defaults, data))
        cfg.validate()
    except ValueError as exc:
        raise ConfigError(f"{path or 'config'}: {exc}") from exc
    return cfg


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
    """JSON Schema of a config dataclass, with each field's declared help text and choices."""
    hints = typing.get_type_hints(cls)
    props = {}
    for f in dataclasses.fields(cls):
        if cls is RunConfig and f.name == "algorithm":
            sections = [json_schema(c) for c in ALGORITHMS.values()]
            for name, section in zip(ALGORITHMS, sections):
                section["properties"]["name"] = {"const": name, **section["properties"]["name"]}
                section["properties"]["name"].pop("enum", None)
            props[f.name] = {"oneOf": sections, "description": f.metadata["help"]}
            continue
        prop = _schema_for(hints[f.name])
        if "choices" in f.metadata:
            prop["enum"] = list(f.metadata["choices"])
        if f.metadata.get("help") and not dataclasses.is_dataclass(hints[f.name]):
            prop["description"] = f.metadata["help"]
        props[f.name] = prop
    schema: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
    if cls is RunConfig:
        schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "rft run config", **schema}
    return schema


if __name__ == "__main__":
    print(json.dumps(json_schema(), indent=2))
