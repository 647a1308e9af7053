"""The run lifecycle every recipe shares, as plain helpers: no base class, the recipe keeps its loop.

    task = load_checked_task(cfg)
    with open_run(cfg, task, policy, {"policy": (optimizer, scheduler)}, resume=resume) as run:
        run.evaluate_before(sampler)                  # held-out accuracy before training (once)
        for step in run.remaining_steps():
            ...                                       # the recipe: rollout, advantages, update
            run.end_step(step, metrics, sampler)      # log; evaluate + keep best; save + prune
    return run.finish()                               # summary.json, plot, summary table

`open_run` opens or resumes the run directory (any number of named modules and optimizers, so a
critic or a reward head fits); leaving the `with` block by an exception (Ctrl-C, a crash) saves the
last completed step first, so `--resume` loses nothing that finished. Under torchrun every rank
trains, but only rank 0 writes: it logs the step's metrics reduced over all ranks, evaluates,
checkpoints and writes the summary (`rft.distributed`). With a sharded policy (`rft.sharding`) the
other ranks take part in rank 0's evaluations (every forward is a collective) and checkpoints (the
weights are gathered), and an interrupted run is not saved on the way out (a collective then could wait
on a rank that has died): it resumes from its last periodic checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from graders.spec import load_grader
from graders.templates import check_items
from rft import checkpoint, distributed, sharding
from rft.alarms import AlarmMonitor
from rft.budget import Usage, cost, usage_from_metrics
from rft.config import ConfigError, RunConfig
from rft.eval import EvalResult, evaluate
from rft.metrics import MetricsLogger
from rft.policy import Policy
from rft.report import plot, print_summary
from rft.rewards import grade_texts, use_grading
from rft.sampling.base import Sampler
from tasks.base import Task, load_task

# (sampler, task, eval config, *, out_path, seed) -> result; `rft.eval.evaluate` unless the recipe evaluates otherwise.
Evaluator = Callable[..., EvalResult]


def load_checked_task(cfg: RunConfig) -> Task:
    """The configured task, failing before any model is loaded on splits or graders that cannot work."""
    use_grading(cfg.grading.backend, cfg.grading.address)
    try:
        task = load_task(cfg.task.name, **cfg.task.options)
        if cfg.task.grader is not None:  # train on this grader (a reward model); evaluate with the task's own
            task = dataclasses.replace(task, grader=load_grader(cfg.task.grader), eval_grader=task.grader)
        for split, items in (("train", task.train), ("held-out", task.test)):
            if len(items) == 0:
                raise ValueError(f"task {task.name!r} has an empty {split} split")
            try:
                task.messages(items[0])
            except KeyError as exc:
                raise ValueError(f"task {task.name!r}: {split} item 0 lacks the field {exc} used by its prompt") from exc
        # A grader that cannot read an item (a template naming a missing field) must fail now, not mid-run.
        for grader in filter(None, (task.grader, task.eval_grader)):
            check_items(grader, task.train, f"task {task.name!r}: train item")
            check_items(grader, task.test, f"task {task.name!r}: held-out item")
        grade_texts(task.grader, ["0"], [task.train[0]])
    except (ValueError, TypeError) as exc:  # GraderInputError is a ValueError
        raise ConfigError(str(exc)) from exc
    return task


def seed_everything(cfg: RunConfig) -> None:
    """Threads and seeds before any weights are created, so LoRA initialisation is reproducible."""
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    torch.manual_seed(cfg.train.seed)
    random.seed(cfg.train.seed)


def _eval_metrics(result: EvalResult) -> dict[str, float]:
    out = {
        "eval/accuracy": result.accuracy.value, "eval/accuracy_low": result.accuracy.low,
        "eval/accuracy_high": result.accuracy.high, "eval/mean_score": result.mean_score.value,
        "eval/grader_errors": float(result.grader_errors), "eval/seconds": result.seconds,
    }
    if result.pass_at_k is not None:
        out["eval/pass_at_k"] = result.pass_at_k.value
    for name, interval in result.extra.items():
        out |= {f"eval/{name}": interval.value, f"eval/{name}_low": interval.low, f"eval/{name}_high": interval.high}
    return out | {f"eval/grader/{k}": v for k, v in result.per_grader.items()}


@dataclass
class Run:
    """One run directory: its config, task, policy, what gets checkpointed, and the loop state."""

    cfg: RunConfig
    task: Task | None  # None: a recipe whose evaluator needs no task (DPO on pairs alone)
    policy: Policy
    modules: dict[str, Any]
    optimizers: Mapping[str, tuple[Any, Any]]
    logger: MetricsLogger | None  # None on ranks other than 0, which write nothing
    show_progress: bool
    alarms: AlarmMonitor
    evaluator: Evaluator = evaluate
    state: dict[str, Any] = field(default_factory=lambda: {"best_accuracy": -1.0, "before": None, "best": None})
    done: int = 0  # last completed step
    saved: int = 0  # last checkpointed step
    after: EvalResult | None = None
    stop_reason: str | None = None  # why the run ended before train.steps (the judge budget)
    _step_started: float = field(default_factory=time.perf_counter)

    @property
    def out(self) -> Path:
        return Path(self.cfg.train.output_dir)

    @property
    def sharded(self) -> bool:
        return sharding.is_sharded(self.policy.model)

    @property
    def takes_part(self) -> bool:
        """Whether this rank evaluates and saves: rank 0, and every rank of a sharded run."""
        return self.logger is not None or self.sharded

    def remaining_steps(self) -> Iterator[int]:
        """Steps left to run, 1-based; a resumed run continues after its checkpoint."""
        for step in range(self.done + 1, self.cfg.train.steps + 1):
            self.stop_reason = distributed.broadcast_object(self._over_budget())
            if self.stop_reason is not None:
                if self.logger is not None:  # rank 0 alone writes
                    print(f"stopped before step {step}: {self.stop_reason}", flush=True)
                if self.takes_part and self.done > self.saved:
                    self.save(self.done)
                return
            self._step_started = time.perf_counter()
            yield step

    def _spend(self, usage: Usage) -> float:
        """Add the judge cost of these tokens to the run's total; returns it."""
        spent = sum(cost(usage, self.cfg.judge).values())
        self.state["judge_cost"] = self.state.get("judge_cost", 0.0) + spent
        return spent

    def _over_budget(self) -> str | None:
        """Why the next step must not start: the spend so far plus one more step like the last would exceed
        `judge.budget`."""
        budget, spent = self.cfg.judge.budget, self.state.get("judge_cost", 0.0)
        step_cost = self.state.get("judge_step_cost", 0.0)
        if budget <= 0 or spent + step_cost <= budget:
            return None
        return (f"judge budget: ${spent:.4f} of ${budget:.4f} spent and a step costs about ${step_cost:.4f} "
                f"(resume with a larger --judge.budget to continue)")

    def evaluate_before(self, sampler: Sampler) -> None:
        """Held-out accuracy of the untrained policy (step 0); a resumed run has it already."""
        if self.state["before"] is None and self.takes_part:
            self.state["before"] = self.evaluate(0, sampler).to_dict()

    def evaluate(self, step: int, sampler: Sampler) -> EvalResult:
        """Held-out evaluation, logged, with the policy adapter kept in `best/` when it is the best so far.

        The other ranks of a sharded run generate alongside rank 0 without grading (`sharding.ungraded`)
        and gather the adapter with it when it is the best.
        """
        if not self.takes_part:
            raise RuntimeError("only rank 0 evaluates: the other ranks of a distributed run write nothing")
        main = self.logger is not None
        result = self.evaluator(sampler, self.task if main else sharding.ungraded(self.task), self.cfg.eval,
                                out_path=self.out / "eval" / f"step-{step:06d}.jsonl" if main else None,
                                seed=self.cfg.train.seed)
        best = result.accuracy.value > self.state["best_accuracy"]
        weights = None
        if self.sharded and distributed.broadcast_object(best):  # rank 0's verdict
            weights = sharding.full_trainable_state(self.policy.model)
        if self.logger is None:
            return result
        spent = {"eval/judge_cost": self._spend(result.tokens)} if result.tokens else {}
        self.logger.log(step, _eval_metrics(result) | spent | self.alarms.observe_eval(step, result.accuracy.value))
        if best:
            self.state["best_accuracy"] = result.accuracy.value
            self.state["best"] = result.to_dict() | {"step": step}
            checkpoint.save_best(self.out, self.policy.model, self.state["best"], weights)
        return result

    def end_step(self, step: int, metrics: dict[str, float], sampler: Sampler) -> None:
        """Log the step; evaluate every `eval.interval` steps and save every `train.checkpoint_interval`."""
        self.done = step
        metrics = distributed.reduce_metrics(metrics | {"seconds/step": time.perf_counter() - self._step_started})
        if any(key.startswith("tokens/") for key in metrics):  # on every rank, so all agree on the budget
            self.state["judge_step_cost"] = self._spend(usage_from_metrics(metrics))
            metrics |= {"judge_cost/step": self.state["judge_step_cost"], "judge_cost/total": self.state["judge_cost"]}
        if not self.takes_part:
            return
        if self.logger is not None:
            self.logger.log(step, metrics | self.alarms.observe_step(step, metrics))
        last = step == self.cfg.train.steps
        if step % self.cfg.eval.interval == 0 or last:
            result = self.evaluate(step, sampler)
            self.after = result if self.logger is not None else None  # another rank's is ungraded
        if step % self.cfg.train.checkpoint_interval == 0 or last:
            self.save(step)

    def save(self, step: int) -> None:
        """Rank 0 writes the checkpoint; every rank of a sharded run first gathers the sharded weights with it."""
        gathered = sharding.gather_for_checkpoint(self.modules, self.optimizers)
        if self.logger is not None:
            self.state["policy_version"] = self.policy.version
            checkpoint.save_checkpoint(self.out, step, self.modules, self.optimizers, self.cfg.to_dict(),
                                       self.state, gathered)
            checkpoint.prune(self.out, self.cfg.train.keep_last)
        self.saved = step

    def __enter__(self) -> Run:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        try:
            if kind is not None and self.done > self.saved and self.logger is not None and not self.sharded:
                self.save(self.done)  # interrupted: keep the last completed step
        finally:
            if self.logger is not None:
                self.logger.close()

    def finish(self) -> dict[str, Any]:
        """Write `summary.json` and the plot, print the before/after table; returns the summary."""
        after = self.after.to_dict() if self.after else None
        summary = {"before": self.state["before"], "after": after, "best": self.state["best"],
                   "alarms": self.alarms.summary(), "stopped": self.stop_reason,
                   "judge_cost": self.state.get("judge_cost", 0.0)}
        if self.logger is None:
            return summary
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2))
        plot(self.out / "metrics.jsonl", self.out / "plot.png")
        if after is not None and self.show_progress:
            print_summary(self.state["before"], after, self.state["best"])
        return summary


def open_run(
    cfg: RunConfig,
    task: Task | None,
    policy: Policy,
    optimizers: Mapping[str, tuple[Any, Any]],
    *,
    modules: Mapping[str, Any] | None = None,
    resume: bool = False,
    show_progress: bool = True,
    evaluator: Evaluator = evaluate,
) -> Run:
    """Open `train.output_dir` (or resume its latest checkpoint); `modules` are checkpointed besides the policy.

    `evaluator` measures held-out accuracy (and keeps `best/` by its `accuracy`); SCoRe passes its two-turn one,
    DPO one that adds held-out pairwise accuracy (and needs no `task` when the pairs come from no task).
    """
    out = Path(cfg.train.output_dir)
    named = {"policy": policy.model, **(modules or {})}
    state: dict[str, Any] = {"best_accuracy": -1.0, "before": None, "best": None}
    done = 0
    if resume:
        found = checkpoint.list_checkpoints(out)
        if not found:
            raise FileNotFoundError(f"--resume: no checkpoint-* directory in {out}")
        state = checkpoint.load_checkpoint(found[-1], named, optimizers)
        done = state.pop("step")
        policy.version = state.get("policy_version", 0)
    distributed.broadcast_parameters(named)
    logger = None
    if distributed.is_main():
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
        logger = MetricsLogger(out, cfg.train.steps, done, show_progress)
    alarms = AlarmMonitor(cfg.alarms, state.setdefault("alarms", {}))
    return Run(cfg, task, policy, named, optimizers, logger, show_progress, alarms, evaluator, state, done=done,
               saved=done)
