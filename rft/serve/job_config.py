"""A `POST /v1/fine_tuning/jobs` body, checked, turned into the run config `rft train` runs.

OpenAI's reinforcement hyperparameters map onto our GRPO recipe (`resolve_config`); "auto" (or
absent) keeps our default, so a job whose hyperparameters are all "auto" trains exactly what
`rft train examples/arithmetic.yaml` trains on the same data. The `rft` extension field (a mapping of
config sections, e.g. `{"algorithm": {"name": "ppo"}, "train": {"checkpoint_interval": 5}}`) is applied
last, so any recipe or setting is reachable from an OpenAI client through `extra_body`.

| OpenAI hyperparameter      | here                                                                  |
|----------------------------|-----------------------------------------------------------------------|
| batch_size                 | train.prompts_per_step (B prompts per step; auto 4)                   |
| n_epochs                   | train.steps = ceil(n_epochs x training items / B) (auto: 30 steps)    |
| learning_rate_multiplier   | train.lr = 5e-4 x multiplier (auto 1)                                 |
| compute_multiplier         | algorithm.group_size = round(G x multiplier), at least 2 (auto: G)    |
| eval_interval              | eval.interval (auto 10)                                               |
| eval_samples               | eval.samples, k samples per held-out item, k > 1 adds pass@k (auto 1) |
| seed (top level)           | train.seed (absent: 0)                                                |
| reasoning_effort           | recorded only: the models trained here have no reasoning budget       |

`method.type: "dpo"` trains the DPO recipe (`rft.recipes.dpo`) on the uploaded preference file (OpenAI's
preference shape; the validation file, when given, holds the held-out pairs, else 10% are held out):
`method.dpo.hyperparameters` beta -> algorithm.beta (auto 0.1), batch_size -> train.prompts_per_step
(pairs per step), n_epochs and learning_rate_multiplier as above. Held-out pairwise accuracy is the
job's accuracy, since preference data carries no grader.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from graders.base import GraderInputError
from graders.spec import load_grader, read_spec
from rft.algorithms import ALGORITHMS
from rft.config import RunConfig, load_config
from rft.options import ConfigError
from rft.serve.app import ApiError

HYPERPARAMETERS: dict[str, tuple[type, float]] = {  # name -> (type, smallest allowed value)
    "batch_size": (int, 1), "n_epochs": (int, 1), "learning_rate_multiplier": (float, 0),
    "compute_multiplier": (float, 0), "eval_interval": (int, 1), "eval_samples": (int, 1),
}
DPO_HYPERPARAMETERS: dict[str, tuple[type, float]] = {
    "batch_size": (int, 1), "n_epochs": (int, 1), "learning_rate_multiplier": (float, 0), "beta": (float, 0),
}
REASONING_EFFORTS = ("default", "low", "medium", "high")
CREATE_FIELDS = {"model", "training_file", "validation_file", "method", "seed", "suffix", "metadata",
                 "hyperparameters", "integrations", "rft"}


@dataclass
class JobRequest:
    """A checked create-job body: what the job object echoes and what its run config is built from."""

    model: str
    training_file: str
    validation_file: str | None
    method: str  # "reinforcement" or "dpo"
    grader: dict[str, Any] | None  # None for dpo: the preferences are the signal
    hyperparameters: dict[str, Any]
    response_format: dict[str, Any] | None
    seed: int
    suffix: str
    metadata: dict[str, str] | None
    extension: dict[str, Any]


def _object(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ApiError(400, f"{field}: must be an object, got {value!r}")
    return dict(value)


def _typed(raw: Any, known: dict[str, tuple[type, float]], where: str, also: tuple[str, ...] = ()) -> dict[str, Any]:
    """Hyperparameters `known`, typed and range-checked; "auto" and absent are kept as "auto"."""
    given = _object(raw if raw is not None else {}, where)
    unknown = sorted(set(given) - set(known) - set(also))
    if unknown:
        raise ApiError(400, f"{where}: unknown field(s) {unknown}; known: {sorted([*known, *also])}")
    out: dict[str, Any] = {}
    for name, (kind, low) in known.items():
        value = given.get(name, "auto")
        ok = value == "auto" or (isinstance(value, (int, float)) and not isinstance(value, bool)
                                 and (kind is float or float(value).is_integer()) and value > low - (kind is int))
        if not ok:
            bound = f">= {int(low)}" if kind is int else f"> {low:g}"
            raise ApiError(400, f"{where}.{name}: must be \"auto\" or "
                                f"{'an integer' if kind is int else 'a number'} {bound}, got {value!r}")
        out[name] = value if value == "auto" else kind(value)
    return out


def _hyperparameters(raw: Any) -> dict[str, Any]:
    """OpenAI's reinforcement hyperparameters, typed and range-checked; "auto" and absent are kept as "auto"."""
    out = _typed(raw, HYPERPARAMETERS, "method.reinforcement.hyperparameters", ("reasoning_effort",))
    effort = (raw or {}).get("reasoning_effort", "default")
    if effort not in REASONING_EFFORTS:
        raise ApiError(400, f"method.reinforcement.hyperparameters.reasoning_effort: {effort!r} is not one of "
                            f"{list(REASONING_EFFORTS)}")
    return out | {"reasoning_effort": effort}


def _dpo_hyperparameters(method: dict[str, Any]) -> dict[str, Any]:
    """The hyperparameters of a dpo method (beta, batch_size, n_epochs, learning_rate_multiplier)."""
    body = _object(method.get("dpo") or {}, "method.dpo")
    unknown = sorted(set(body) - {"hyperparameters"})
    if unknown:
        raise ApiError(400, f"method.dpo: unknown field(s) {unknown}")
    return _typed(body.get("hyperparameters"), DPO_HYPERPARAMETERS, "method.dpo.hyperparameters")


def _method(raw: Any) -> tuple[str, dict[str, Any] | None, dict[str, Any], dict[str, Any] | None]:
    """(type, grader spec, hyperparameters, response_format) of a reinforcement or dpo method; others are a 400."""
    method = _object(raw, "method")
    kind = method.get("type")
    if kind == "dpo":
        return kind, None, _dpo_hyperparameters(method), None
    if kind != "reinforcement":
        raise ApiError(400, f"method.type: {kind!r} is not available here; rft fine-tunes with "
                            "'reinforcement' (a grader scores sampled answers) or 'dpo' (preference pairs)")
    body = _object(method.get("reinforcement"), "method.reinforcement")
    unknown = sorted(set(body) - {"grader", "hyperparameters", "response_format"})
    if unknown:
        raise ApiError(400, f"method.reinforcement: unknown field(s) {unknown}")
    try:
        spec = read_spec(_object(body.get("grader"), "method.reinforcement.grader"))
        load_grader(spec)
    except GraderInputError as exc:
        raise ApiError(400, f"method.reinforcement.grader: {exc}") from None
    fmt = body.get("response_format")
    return kind, spec, _hyperparameters(body.get("hyperparameters")), _object(fmt, "response_format") if fmt else None


def parse_create(body: Any, served: str, file_ok: Any) -> JobRequest:
    """Check a create-job body; `file_ok(id)` says whether an uploaded fine-tune file has that id."""
    body = _object(body, "request body")
    unknown = sorted(set(body) - CREATE_FIELDS)
    if unknown:
        raise ApiError(400, f"unknown field(s) {unknown}")
    if body.get("model") != served:
        raise ApiError(400, f"model: {body.get('model')!r} cannot be fine-tuned here; this server trains "
                            f"adapters for the model it serves, {served!r}")
    for field in ("training_file", "validation_file"):
        value = body.get(field)
        if (value is not None or field == "training_file") and not (isinstance(value, str) and file_ok(value)):
            raise ApiError(400, f"{field}: no uploaded file with purpose 'fine-tune' has id {value!r}")
    if body.get("hyperparameters"):
        raise ApiError(400, "hyperparameters: the top-level field is for supervised jobs; give "
                            "method.reinforcement.hyperparameters (or method.dpo.hyperparameters) instead")
    if body.get("integrations"):
        raise ApiError(400, "integrations: not supported by this server (metrics are in the job's events)")
    kind, grader, hyper, fmt = _method(body.get("method"))
    seed, suffix, metadata = body.get("seed"), body.get("suffix") or "", body.get("metadata")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
        raise ApiError(400, f"seed: must be a non-negative integer, got {seed!r}")
    if not isinstance(suffix, str) or len(suffix) > 64 or ":" in suffix:
        raise ApiError(400, f"suffix: must be a string of at most 64 characters without ':', got {suffix!r}")
    if metadata is not None and not (isinstance(metadata, Mapping) and len(metadata) <= 16 and all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())):
        raise ApiError(400, "metadata: must be an object of at most 16 string keys and string values")
    return JobRequest(body["model"], body["training_file"], body.get("validation_file"), kind, grader, hyper, fmt,
                      0 if seed is None else seed, suffix, dict(metadata) if metadata else None,
                      _object(body.get("rft") or {}, "rft"))


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _reinforcement(req: JobRequest, defaults: RunConfig, job_dir: Path) -> dict[str, Any]:
    """The task (the job's data directory with its grader), group size and eval sections of a reinforcement job."""
    hp = req.hyperparameters
    cm = 1.0 if hp["compute_multiplier"] == "auto" else hp["compute_multiplier"]
    return {
        "task": {"name": str(job_dir / "data"), "options": {"name": job_dir.name}},
        "algorithm": {"group_size": max(2, round(defaults.algorithm.group_size * cm))},
        "eval": {"interval": defaults.eval.interval if hp["eval_interval"] == "auto" else hp["eval_interval"],
                 "samples": 1 if hp["eval_samples"] == "auto" else hp["eval_samples"]},
    }


def _dpo(req: JobRequest, defaults: RunConfig, job_dir: Path) -> dict[str, Any]:
    """The pairs (the uploaded files) and beta of a dpo job; no task: held-out pairwise accuracy is its accuracy."""
    beta = req.hyperparameters["beta"]
    held_out = {"pairs_test": str(job_dir / "data" / "test.jsonl")} if req.validation_file else {}
    return {"task": {"name": "", "pairs": str(job_dir / "data" / "train.jsonl"), **held_out},
            "algorithm": {"name": "dpo", **({} if beta == "auto" else {"beta": beta})}}


# method.type -> its config sections, and the hyperparameters the job reports besides batch, epochs and lr.
SECTIONS = {"reinforcement": _reinforcement, "dpo": _dpo}
REPORTED = {
    "reinforcement": lambda cfg, hp: {
        "compute_multiplier": 1.0 if hp["compute_multiplier"] == "auto" else hp["compute_multiplier"],
        "eval_interval": cfg.eval.interval, "eval_samples": cfg.eval.samples, "reasoning_effort": hp["reasoning_effort"]},
    "dpo": lambda cfg, hp: {"beta": cfg.algorithm.beta},
}


def resolve_config(req: JobRequest, job_dir: Path, base_model: str, device: str, n_train: int
                   ) -> tuple[RunConfig, dict[str, Any]]:
    """The run config of a job (written to `job_dir/config.yaml`) and its hyperparameters with "auto" resolved."""
    hp = req.hyperparameters
    algorithm = (req.extension.get("algorithm") or {}).get("name", "dpo" if req.method == "dpo" else "grpo")
    defaults = RunConfig(algorithm=ALGORITHMS[algorithm]()) if algorithm in ALGORITHMS else RunConfig()
    batch = defaults.train.prompts_per_step if hp["batch_size"] == "auto" else hp["batch_size"]
    steps = defaults.train.steps if hp["n_epochs"] == "auto" else math.ceil(hp["n_epochs"] * n_train / batch)
    lrm = 1.0 if hp["learning_rate_multiplier"] == "auto" else hp["learning_rate_multiplier"]
    mapped = {
        "model": {"name": base_model, "device": device},
        "train": {"steps": steps, "prompts_per_step": batch, "lr": defaults.train.lr * lrm, "seed": req.seed,
                  "output_dir": str(job_dir / "run")},
    } | SECTIONS[req.method](req, defaults, job_dir)
    data = _merge(mapped, req.extension)
    train = data["train"]
    # Every checkpoint stays on disk, so each one can be served under its own model name.
    interval = train.get("checkpoint_interval", defaults.train.checkpoint_interval)
    train.setdefault("keep_last", max(defaults.train.keep_last, train["steps"] // max(1, interval) + 1))
    path = job_dir / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        raise ApiError(400, f"rft: {exc}".replace(f"{path}: ", "")) from None
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))  # every field, as the worker will read it
    per_step = cfg.train.prompts_per_step
    resolved = {"batch_size": per_step, "n_epochs": round(cfg.train.steps * per_step / n_train, 4),
                "learning_rate_multiplier": cfg.train.lr / defaults.train.lr}
    return cfg, resolved | REPORTED[req.method](cfg, hp)
