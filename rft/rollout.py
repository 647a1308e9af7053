"""Rollouts: sample n completions for each of B prompts, grade them, and return rewards with metrics.

Every recipe, held-out evaluation and the pre-flight check go through `rollout`, so batching,
grading and the sampling/grading metrics are computed one way. Layout is group-major: row
`b * n + g` is sample g of prompt b.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import torch

from graders.base import Grade
from rft.logprobs import pack_groups
from rft.rewards import grade_texts
from rft.sampling.base import Completion, Sampler, SamplingParams
from tasks.base import Messages, Task

if TYPE_CHECKING:
    from rft.config import RunConfig


@dataclass
class Rollout:
    """B prompts x n completions with their grades.

    items: the B task items. groups: groups[b][g], sample g of prompt b. grades: (B*n,) group-major.
    metrics: grading metrics (reward mean/std, accuracy, sub-graders, errors), completion length,
    truncation rate and the seconds spent sampling and grading; with a learned reward (`task.eval_grader`
    set), `true/reward_mean`, `true/accuracy` and `true/grader_errors` from the task's own grader.
    """

    items: list[Mapping[str, Any]]
    groups: list[list[Completion]]
    grades: list[Grade]
    metrics: dict[str, float]

    @property
    def completions(self) -> list[Completion]:
        """(B*n,) group-major."""
        return [c for group in self.groups for c in group]

    def rewards(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """(B*n,) float32 scores; a grader error scores 0 and is counted in `metrics`."""
        return torch.tensor([g.score for g in self.grades], dtype=torch.float32, device=device)

    def grade_rows(self) -> list[list[Grade]]:
        """grades[b][g] for prompt b, sample g."""
        n = len(self.groups[0]) if self.groups else 0
        return [self.grades[b * n : (b + 1) * n] for b in range(len(self.groups))]


def rollout(
    sampler: Sampler,
    task: Task,
    items: Sequence[Mapping[str, Any]],
    params: SamplingParams,
    *,
    batch_size: int | None = None,
    seed_per_batch: bool = False,
    prompts: Sequence[Messages] | None = None,
) -> Rollout:
    """Sample `params.n` completions per item (in generate calls of `batch_size` prompts) and grade them all.

    With `seed_per_batch`, batch k is sampled with seed `params.seed + k`, so batches differ while the
    whole call stays reproducible. `prompts`: the conversation to answer, one per item, when it is not
    the task's own prompt (a second attempt answers the first one; see `rft.self_correction`).
    """
    if not items:
        raise ValueError(f"task {task.name!r}: rollout needs at least one item")
    if prompts is not None and len(prompts) != len(items):
        raise ValueError(f"rollout: {len(prompts)} prompts for {len(items)} items")
    start = time.perf_counter()
    size = batch_size or len(items)
    groups: list[list[Completion]] = []
    for k, lo in enumerate(range(0, len(items), size)):
        call = replace(params, seed=params.seed + k) if seed_per_batch and params.seed is not None else params
        chunk = prompts[lo : lo + size] if prompts is not None else [task.messages(i) for i in items[lo : lo + size]]
        groups += sampler.generate(list(chunk), call)
    sampled = time.perf_counter()
    flat = [c for group in groups for c in group]
    graded_items = [i for i in items for _ in range(params.n)]
    grades, metrics = grade_texts(task.grader, [c.text for c in flat], graded_items)
    if task.eval_grader is not None:  # training on a learned reward: the true grader's view of the same samples
        _, true = grade_texts(task.eval_grader, [c.text for c in flat], graded_items)
        metrics |= {f"true/{key}": true[key] for key in ("reward_mean", "accuracy", "grader_errors")}
    lengths = [len(c.token_ids) for c in flat]
    metrics |= {
        "completion_length": sum(lengths) / len(lengths),
        "truncation_rate": sum(c.truncated for c in flat) / len(flat),
        "seconds/sampling": sampled - start,
        "seconds/grading": time.perf_counter() - sampled,
    }
    return Rollout(list(items), groups, grades, metrics)


def signal_groups(batch: Rollout) -> list[int]:
    """Indices of the groups whose rewards are not all equal: the only ones a group baseline learns from."""
    return [b for b, row in enumerate(batch.grade_rows()) if len({g.score for g in row}) > 1]


def select_groups(batch: Rollout, keep: Sequence[int]) -> Rollout:
    """The sub-batch of groups `keep` (metrics unchanged: they describe what was sampled)."""
    rows = batch.grade_rows()
    grades = [g for b in keep for g in rows[b]]
    return Rollout([batch.items[b] for b in keep], [batch.groups[b] for b in keep], grades, batch.metrics)


def refill_items(items: Sequence[Mapping[str, Any]], step: int, attempt: int, count: int, seed: int, rank: int = 0
                 ) -> list[Mapping[str, Any]]:
    """Further prompts for dynamic sampling's `attempt` (>= 1) at `step`: fixed per (seed, step, attempt, rank),
    so a resumed run draws the same ones and data-parallel ranks draw different ones."""
    rng = random.Random(f"refill:{seed}:{step}:{attempt}:{rank}")
    return [items[rng.randrange(len(items))] for _ in range(count)]


def dynamic_rollout(
    sampler: Sampler, task: Task, first: Rollout, params: SamplingParams, *, step: int, tries: int, seed: int,
    rank: int = 0,
) -> Rollout:
    """DAPO's dynamic sampling (Yu et al. 2025, "DAPO", sec. 3.2, eq. 11's constraint 0 < |correct| < G): drop
    the groups of the step's batch `first` whose rewards are all equal and refill it with groups from further
    prompts, at most `tries` rollouts in all (`first` included). Refills are sampled with seeds of their own
    (from seed, step, attempt and rank), so they leave the global random stream alone. The step's metrics are
    those of `first` (its own prompts: unbiased), plus `dynamic/tries`, `dynamic/groups_kept` and
    `dynamic/prompts_sampled`. If no group had signal after `tries`, the step trains on `first` (advantages
    all 0: only a KL term moves the policy).
    """
    size = len(first.items)
    kept = select_groups(first, signal_groups(first))
    metrics = dict(first.metrics)
    attempt = 1
    while len(kept.groups) < size and attempt < tries:
        call = replace(params, seed=(seed * 1_000_003 + step * 10_007 + attempt * 101 + rank) % 2**31)
        more = rollout(sampler, task, refill_items(task.train, step, attempt, size, seed, rank), call)
        extra = select_groups(more, signal_groups(more)[: size - len(kept.groups)])
        kept = Rollout(kept.items + extra.items, kept.groups + extra.groups, kept.grades + extra.grades, metrics)
        for key in ("seconds/sampling", "seconds/grading"):
            metrics[key] += more.metrics[key]
        attempt += 1
    metrics |= {"dynamic/tries": float(attempt), "dynamic/groups_kept": float(len(kept.groups)),
                "dynamic/prompts_sampled": float(attempt * size)}
    chosen = kept if kept.groups else first
    return Rollout(chosen.items, chosen.groups, chosen.grades, metrics)


def training_params(cfg: RunConfig) -> SamplingParams:
    """How every training recipe samples: G completions per prompt at the run's temperature, top_p and length.

    The sampler's own log-probs are asked for when another engine samples (the train/inference gap is
    logged) or when the loss weighs tokens by them (`algorithm.tis_cap`).
    """
    sampler = cfg.sampler
    logprobs = sampler.backend != "hf" or getattr(cfg.algorithm, "tis_cap", None) is not None
    return SamplingParams(n=cfg.algorithm.group_size, temperature=sampler.temperature, top_p=sampler.top_p,
                          max_new_tokens=sampler.max_new_tokens, logprobs=logprobs)


def step_items(items: Sequence[Mapping[str, Any]], step: int, count: int, seed: int) -> list[Mapping[str, Any]]:
    """The prompts of one step: a fixed-seed shuffle per epoch, so a resumed run sees the same data."""
    out = []
    for k in range(step * count, (step + 1) * count):
        epoch, pos = divmod(k, len(items))
        order = list(range(len(items)))
        random.Random(seed * 100_003 + epoch).shuffle(order)
        out.append(items[order[pos]])
    return out


MicroBatch = tuple[tuple[torch.Tensor, ...], torch.Tensor, slice]


def micro_batches(
    groups: list[list[Completion]], cfg: RunConfig, pad_id: int, device: torch.device, length: int | None = None,
    group_size: int | None = None,
) -> list[MicroBatch]:
    """Whole groups per micro-batch (micro_batch_size // G of them), so each prompt is run once.

    Each entry: the packed tensors (`pack_groups`), the loss mask (n_micro, T) and the rows of
    `groups` it covers. Completions are padded to `length` (default: the longest in `groups`).
    `group_size`: completions per group when not `algorithm.group_size` (1 for second attempts, whose
    prompts all differ).
    """
    G = group_size or cfg.algorithm.group_size
    length = length or max(1, max(len(c.token_ids) for g in groups for c in g))
    per_micro = max(1, cfg.train.micro_batch_size // G)
    out = []
    for lo in range(0, len(groups), per_micro):
        chunk = groups[lo : lo + per_micro]
        flat = [c for g in chunk for c in g]
        tensors = pack_groups([g[0].prompt_ids for g in chunk], [c.token_ids for c in flat], G, pad_id, length, device)
        mask = tensors[3].float()  # (n_micro, T)
        if cfg.algorithm.mask_truncated:
            kept = torch.tensor([not c.truncated for c in flat], dtype=mask.dtype, device=device)  # (n_micro,)
            mask = mask * kept.unsqueeze(1)
        out.append((tensors, mask, slice(lo * G, lo * G + len(flat))))
    return out
