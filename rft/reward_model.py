"""Bradley-Terry reward model: the policy's base model + LoRA + a scalar head, its loss, save/load, and its grader.

r(x, y) is a linear head on the last hidden state at the last real token of prompt x (chat template,
ready for the assistant turn) followed by reply y and an end-of-turn token, so the whole reply is in view
when the reward is read. The head is PPO's value head (`rft.recipes.ppo.ValueHead`, zero-initialised), so
every reward starts at 0. Trained on pairs by `rft.recipes.reward_model` with `bradley_terry_loss`.

A saved reward model is a directory: `adapter/` (peft LoRA adapter), `head.safetensors` (the head's
weight and bias) and `reward_model.json` (base model, dtype, head width, and the task whose prompts it
was trained on: the grader builds each item's prompt with that task). `RewardModelGrader` loads one as
the grader type `{"type": "reward_model", "path": DIR}` (registered in `rft/__init__.py`), scoring
`batch_size` completions per forward pass through the runner's `batched` mode.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from graders.base import Grade, GraderInputError, Sample
from rft.recipes.ppo import ValueHead
from rft.sampling.tokens import encode_prompts

Messages = list[dict[str, str]]
INFO_FILE, HEAD_FILE, ADAPTER_DIR = "reward_model.json", "head.safetensors", "adapter"
TRANSFORMS = ("sigmoid", "raw")


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """Pairwise loss of Ouyang et al. 2022 (InstructGPT), eq. 1: mean over pairs of -log sigma(r(x, y_w) - r(x, y_l)).

    chosen, rejected: (N,) rewards of the preferred and the other reply of N pairs. The paper also
    divides by C(K, 2) for K ranked replies per prompt; with one pair per prompt (K = 2) that is 1.
    `logsigmoid` keeps large negative margins finite. Metrics: the loss, pairwise accuracy (`ordered`:
    a pair counts 1 when r_w > r_l, 1/2 on a tie, so an untrained model's equal rewards score chance),
    the mean margin r_w - r_l, and the mean rewards of each side.
    """
    margin = chosen - rejected  # (N,)
    loss = -F.logsigmoid(margin).mean()
    metrics = {
        "loss": float(loss.detach()),
        "accuracy": float(ordered(margin).mean()),
        "margin": float(margin.detach().mean()),
        "reward_chosen": float(chosen.detach().mean()),
        "reward_rejected": float(rejected.detach().mean()),
    }
    return loss, metrics


def ordered(margin: torch.Tensor) -> torch.Tensor:
    """(N,) 1.0 where r_w - r_l > 0, 0.5 on a tie, else 0.0: each pair's share of pairwise accuracy."""
    return (margin > 0).float() + 0.5 * (margin == 0).float()


class RewardModel(torch.nn.Module):
    """A peft-wrapped causal LM (`backbone`) and a scalar `head`; `info` is what `reward_model.json` records."""

    def __init__(self, backbone: Any, tokenizer: Any, head: ValueHead, info: dict[str, Any]) -> None:
        super().__init__()
        self.backbone, self.head, self.tokenizer, self.info = backbone, head, tokenizer, info

    @property
    def device(self) -> torch.device:
        return next(self.head.parameters()).device

    def encode(self, messages: Messages, reply: str) -> list[int]:
        """Prompt ids (chat template, assistant turn opened) + reply ids + the end-of-turn id when there is one."""
        end = [] if self.tokenizer.eos_token_id is None else [self.tokenizer.eos_token_id]
        reply_ids = self.tokenizer(reply, add_special_tokens=False)["input_ids"]
        return encode_prompts(self.tokenizer, [messages])[0] + list(reply_ids) + end

    def forward(self, sequences: Sequence[Sequence[int]]) -> torch.Tensor:
        """Rewards (N,) of N token sequences: the head on the last hidden state at each one's last real token."""
        pad = self.tokenizer.pad_token_id
        width = max(len(s) for s in sequences)
        ids = torch.tensor([list(s) + [pad] * (width - len(s)) for s in sequences], device=self.device)  # (N, L)
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in sequences], device=self.device)
        out = self.backbone(input_ids=ids, attention_mask=mask, output_hidden_states=True, logits_to_keep=1)
        last = mask.sum(1) - 1  # (N,): right padding, so the last real token is at length - 1
        hidden = out.hidden_states[-1][torch.arange(len(sequences), device=self.device), last]  # (N, H)
        return self.head(hidden)

    def score(self, prompts: Sequence[Messages], replies: Sequence[str], batch_size: int = 16) -> torch.Tensor:
        """Rewards (N,) of `replies[i]` to `prompts[i]`, without gradient, `batch_size` sequences per forward."""
        encoded = [self.encode(m, r) for m, r in zip(prompts, replies)]
        with torch.no_grad():
            parts = [self(encoded[lo : lo + batch_size]) for lo in range(0, len(encoded), batch_size)]
        return torch.cat(parts) if parts else torch.zeros(0)

    def save_pretrained(self, path: str | Path, state_dict: dict[str, torch.Tensor] | None = None) -> None:
        """Write the loadable directory: `adapter/`, `head.safetensors`, `reward_model.json`.

        `state_dict`: the adapter's weights when the caller gathered them (the checkpoint writer's interface).
        """
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.backbone.save_pretrained(path / ADAPTER_DIR, state_dict=state_dict)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()}, str(path / HEAD_FILE))
        (path / INFO_FILE).write_text(json.dumps(self.info, indent=2))


def build_reward_model(cfg: Any) -> RewardModel:
    """The run's base model with fresh LoRA weights (seeded) and a zero head, ready to train."""
    from rft.policy import policy_from_config
    from rft.recipes.ppo import hidden_width

    width = hidden_width(cfg)  # before the weights load: a model without hidden states fails here
    policy = policy_from_config(cfg)
    info = {"base_model": cfg.model.name, "dtype": cfg.model.dtype,
            "head": {"type": "linear", "width": width, "reads": "last hidden state at the last real token"},
            "task": {"name": cfg.task.name, "options": cfg.task.options}}
    return RewardModel(policy.model, policy.tokenizer, ValueHead(width).to(policy.device), info)


def _read_info(path: Path) -> dict[str, Any]:
    if not path.is_dir():
        raise GraderInputError(f"reward model path {path}: no such directory (train one with algorithm.name "
                               "reward_model; it is saved as <output_dir>/reward_model)")
    for need in (INFO_FILE, HEAD_FILE, f"{ADAPTER_DIR}/adapter_config.json"):
        if not (path / need).is_file():
            raise GraderInputError(f"reward model path {path}: {need} is missing (is this a saved reward model?)")
    try:
        info = json.loads((path / INFO_FILE).read_text())
    except json.JSONDecodeError as exc:
        raise GraderInputError(f"reward model path {path}: {INFO_FILE} is not valid JSON ({exc})") from exc
    missing = [k for k in ("base_model", "dtype", "head", "task") if not isinstance(info, dict) or k not in info]
    if missing:
        raise GraderInputError(f"reward model path {path}: {INFO_FILE} lacks {missing}")
    return info


def load_reward_model(path: str | Path, device: str = "auto") -> RewardModel:
    """A saved reward model, in eval mode; a missing or malformed file is a `GraderInputError` naming `path`."""
    from safetensors.torch import load_file

    from rft.policy import load_policy

    path = Path(path)
    info = _read_info(path)
    try:
        policy = load_policy(info["base_model"], dtype=info["dtype"], device=device, adapter=path / ADAPTER_DIR)
        head = ValueHead(int(info["head"]["width"])).to(policy.device)
        head.load_state_dict(load_file(str(path / HEAD_FILE)))
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as exc:
        raise GraderInputError(f"reward model path {path}: cannot load it: {exc}") from exc
    return RewardModel(policy.model, policy.tokenizer, head, info).eval()


class RewardModelGrader:
    """Scores a completion with a saved reward model: sigmoid(r) (or r itself with `transform: raw`).

    The prompt of each item is built by the task the model was trained on (`reward_model.json`), as
    its training pairs were. The raw reward is kept in `details["reward"]`.
    """

    def __init__(self, path: str | Path, *, name: str = "reward_model", batch_size: int = 16,
                 transform: str = "sigmoid", device: str = "auto", pass_threshold: float = 0.5) -> None:
        from tasks.base import load_task

        if transform not in TRANSFORMS:
            raise GraderInputError(f"transform: {transform!r} is not one of {list(TRANSFORMS)}")
        if batch_size < 1:
            raise GraderInputError(f"batch_size must be >= 1, got {batch_size}")
        self.path, self.name, self.batch_size, self.transform = str(path), name, batch_size, transform
        self.pass_threshold = pass_threshold
        self.model = load_reward_model(path, device)
        task = self.model.info["task"]
        try:
            self.task = load_task(task["name"], **task.get("options", {}))
        except ValueError as exc:
            raise GraderInputError(f"reward model path {path}: its task {task['name']!r} cannot be loaded: {exc}") from exc

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> RewardModelGrader:
        keys = ("name", "batch_size", "transform", "device", "pass_threshold")
        return cls(spec["path"], **{k: spec[k] for k in keys if k in spec})

    def grade(self, sample: Sample, item: Mapping[str, Any]) -> Grade:
        return self.grade_many([sample], [item])[0]

    def grade_many(self, samples: Sequence[Sample], items: Sequence[Mapping[str, Any]]) -> list[Grade]:
        """One forward pass per `batch_size` samples (the runner passes at most that many)."""
        try:
            prompts = [self.task.messages(item) for item in items]
        except KeyError as exc:
            raise GraderInputError(f"item lacks the field {exc} that task {self.task.name!r} builds its prompt "
                                   f"from (reward model {self.path})") from exc
        rewards = self.model.score(prompts, [s.output_text for s in samples], self.batch_size).tolist()
        return [self._grade(r) for r in rewards]

    def _grade(self, reward: float) -> Grade:
        if not math.isfinite(reward):
            return Grade.failure(f"reward model gave a non-finite reward {reward}", reward=reward)
        if self.transform == "sigmoid":
            return Grade(1.0 / (1.0 + math.exp(-reward)) if reward > -700 else 0.0, {"reward": reward})
        if not 0.0 <= reward <= 1.0:
            return Grade.failure(f"raw reward {reward:.4g} is outside [0, 1] (use transform sigmoid)", reward=reward)
        return Grade(reward, {"reward": reward})
