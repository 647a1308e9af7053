"""Pre-flight report numbers derived by hand, the filtered training split, and `rft preflight` end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from graders.string import StringCheckGrader
from rft.preflight import build_report, choose_prompts, filtered_task, write_signal_items
from tasks.base import Task
from tasks.datasets import task_from_files

TRAIN = [
    {"prompt": "Say apple", "answer": "apple"},  # the tiny model is trained to say it: always solved
    {"prompt": "Say river", "answer": "river"},  # always solved
    {"prompt": "Say tiger", "answer": "lion"},  # it says "tiger": never solved
    {"prompt": "Flip a coin", "answer": "heads"},  # trained on both heads and tails: mixed
    {"prompt": "Toss a coin", "answer": "tails"},  # mixed
]
TEST = [{"prompt": "Say stone", "answer": "stone"}]


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def coin_task() -> Task:
    """Five training prompts whose outcomes under the tiny model below are known in advance."""
    return Task(
        name="coin",
        train=[dict(item) for item in TRAIN],
        test=[dict(item) for item in TEST],
        prompt=lambda item: item["prompt"],
        grader=StringCheckGrader(reference="{{item.answer}}", operation="eq"),
        reference=lambda item: item["answer"],
    )


# (scores per prompt, threshold, always, never, mixed, mean reward, mean pass rate, zero-variance share)
REPORT_CASES = [
    # Binary rewards: 4 + 0 + 2 + 3 = 9 passes of 16 samples.
    ([[1, 1, 1, 1], [0, 0, 0, 0], [1, 0, 1, 0], [1, 1, 1, 0]], 1.0, 0.25, 0.25, 0.5, 9 / 16, 9 / 16, 0.5),
    # Graded rewards: [0.2, 0.4] never passes yet varies; [0.6, 0.6] always passes with no spread.
    ([[0.2, 0.4], [0.6, 0.6], [0.9, 0.1]], 0.5, 1 / 3, 1 / 3, 1 / 3, 2.8 / 6, 1.5 / 3, 1 / 3),
]


@pytest.mark.parametrize("scores, threshold, always, never, mixed, reward, pass_rate, zero_var", REPORT_CASES)
def test_report_shares_and_means(
    scores: list[list[float]], threshold: float, always: float, never: float, mixed: float,
    reward: float, pass_rate: float, zero_var: float,
) -> None:
    report = build_report(scores, threshold)
    assert report.share("always") == pytest.approx(always)
    assert report.share("never") == pytest.approx(never)
    assert report.share("mixed") == pytest.approx(mixed)
    assert report.mean_reward == pytest.approx(reward)
    assert report.mean_pass_rate == pytest.approx(pass_rate)
    assert report.zero_variance_share == pytest.approx(zero_var)


def test_no_signal_estimate_by_hand() -> None:
    """Passes c of k = 4: 4, 0, 2, 3.

    G = 2 (without replacement): 1, 1, [C(2,2) + C(2,2)] / C(4,2) = 2/6, [C(3,2) + C(1,2)] / 6 = 3/6;
    mean (1 + 1 + 1/3 + 1/2) / 4 = 17/24. G = k = 4 gives exactly the observed always + never share.
    G = 8 > k uses p^8 + (1-p)^8: 1, 1, 2 / 2^8, 0.75^8 + 0.25^8.
    """
    report = build_report([[1, 1, 1, 1], [0, 0, 0, 0], [1, 0, 1, 0], [1, 1, 1, 0]], 1.0)
    assert report.no_signal_estimate(2) == pytest.approx(17 / 24)
    assert report.no_signal_estimate(4) == pytest.approx(0.5)
    assert report.no_signal_estimate(1) == pytest.approx(1.0)
    assert report.no_signal_estimate(8) == pytest.approx((2 + 2 / 256 + 0.75**8 + 0.25**8) / 4)
    assert report.pass_histogram() == [1, 0, 1, 1, 1]
    with pytest.raises(ValueError, match="group_size"):
        report.no_signal_estimate(0)


@pytest.mark.parametrize("scores", [[], [[1, 0], [1]], [[]]])
def test_report_rejects_ragged_or_empty_scores(scores: list[list[float]]) -> None:
    with pytest.raises(ValueError, match="same"):
        build_report(scores, 1.0)


@pytest.mark.parametrize(
    "n_train, n_prompts, expected_len", [(10, 0, 10), (10, 3, 3), (10, 10, 10), (10, 50, 10), (1, 1, 1)]
)
def test_choose_prompts_is_a_seeded_sorted_subset(n_train: int, n_prompts: int, expected_len: int) -> None:
    chosen = choose_prompts(n_train, n_prompts, seed=7)
    assert len(chosen) == expected_len == len(set(chosen))
    assert chosen == sorted(chosen) and all(0 <= i < n_train for i in chosen)
    assert chosen == choose_prompts(n_train, n_prompts, seed=7)


def test_choose_prompts_rejects_negative_count() -> None:
    with pytest.raises(ValueError, match="n_prompts"):
        choose_prompts(5, -1, seed=0)


@pytest.mark.parametrize("keep, expected", [("mixed", [3, 4]), ("varied", [2, 3, 4])])
def test_filter_keeps_signal_items_and_loads_back(tmp_path: Path, keep: str, expected: list[int]) -> None:
    """Prompt 2's scores vary (0.3, 0.0) without any pass: kept only by 'varied'."""
    task = coin_task()
    scores = [[1, 1], [1, 1], [0.3, 0.0], [1, 0], [0, 1]]
    path = tmp_path / "kept.jsonl"
    assert write_signal_items(path, task, build_report(scores, 1.0), keep) == len(expected)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines == [{**TRAIN[i], "messages": user(TRAIN[i]["prompt"])} for i in expected]

    reloaded = filtered_task("tests.rft.test_preflight:coin_task", str(path))
    assert [item["answer"] for item in reloaded.train] == [TRAIN[i]["answer"] for i in expected]
    assert reloaded.test == TEST and reloaded.issues == []
    assert [reloaded.messages(i) for i in reloaded.train] == [line["messages"] for line in lines]
    # The file is an ordinary dataset too: messages come from it, other fields reach the grader.
    as_dataset = task_from_files(path, grader=task.grader, n_test=0)
    assert [i["answer"] for i in as_dataset.train] == [TRAIN[i]["answer"] for i in expected]


def test_filtered_task_drops_items_of_the_held_out_split(tmp_path: Path) -> None:
    path = tmp_path / "kept.jsonl"
    rows = [TRAIN[3], TEST[0]]
    path.write_text("".join(json.dumps({**r, "messages": user(r["prompt"])}) + "\n" for r in rows))
    task = filtered_task("tests.rft.test_preflight:coin_task", str(path))
    assert [item["prompt"] for item in task.train] == ["Flip a coin"]
    assert task.issues == [f"{path}: 1 item(s) are in the held-out split, dropped"]
    with pytest.raises(ValueError, match="no usable training items"):
        path.write_text(path.read_text().splitlines()[1] + "\n")
        filtered_task("tests.rft.test_preflight:coin_task", str(path))


@pytest.fixture(scope="module")
def coin_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama trained to answer the prompts above; the coins get heads and tails as targets."""
    import torch

    from tests.tiny_chat import build_chat_model

    examples = [(user(w), w.split()[-1]) for w in ("Say apple", "Say river", "Say tiger")]
    examples += [(user(coin), side) for coin in ("Flip a coin", "Toss a coin") for side in ("heads", "tails")]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 64-wide model: thread hand-offs cost more than the arithmetic
    try:
        return build_chat_model(tmp_path_factory.mktemp("coin") / "model", examples, max_steps=40)
    finally:
        torch.set_num_threads(threads)


def test_preflight_command_reports_known_outcomes_and_filters(coin_model: Path, tmp_path: Path) -> None:
    """At temperature 0.3 the trained answers are certain while heads/tails stay 50/50, so prompts 0-1
    are always solved, 2 never, 3-4 mixed: shares 2/5, 1/5, 2/5."""
    from typer.testing import CliRunner

    from rft.cli import app

    kept = tmp_path / "kept.jsonl"
    done = CliRunner().invoke(app, [
        "preflight", "tests.rft.test_preflight:coin_task", "--model", str(coin_model), "--prompts", "0",
        "--samples", "8", "--temperature", "0.3", "--max-new-tokens", "6", "--group-size", "4",
        "--filter-out", str(kept), "--json",
    ])
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    outcomes = [(p["index"], p["passed"]) for p in report["per_prompt"]]
    assert [i for i, _ in outcomes] == [0, 1, 2, 3, 4]
    assert [c for _, c in outcomes][:3] == [8, 8, 0] and all(0 < c < 8 for _, c in outcomes[3:])
    assert (report["always_share"], report["never_share"], report["mixed_share"]) == (0.4, 0.2, 0.4)
    assert report["zero_variance_share"] == 0.6
    heads, tails = outcomes[3][1], outcomes[4][1]
    assert report["mean_pass_rate"] == pytest.approx((16 + heads + tails) / 40)
    expected = (3 + sum((math.comb(c, 4) + math.comb(8 - c, 4)) / 70 for c in (heads, tails))) / 5
    assert report["no_signal_estimate"] == pytest.approx(expected)
    assert report["grader_errors"] == 0 and report["grader_metrics"]["grader_timeouts"] == 0
    assert report["grader_metrics"]["reward_mean"] == pytest.approx(report["mean_reward"])
    assert [json.loads(line)["prompt"] for line in kept.read_text().splitlines()] == [
        "Flip a coin", "Toss a coin"
    ]
    assert "rft.preflight:filtered_task" in done.stderr


def test_preflight_command_prints_tables_and_rejects_bad_options(coin_model: Path) -> None:
    from typer.testing import CliRunner

    from rft.cli import app

    runner = CliRunner()
    ok = runner.invoke(app, [
        "preflight", "tests.rft.test_preflight:coin_task", "--model", str(coin_model), "--prompts", "2",
        "--samples", "2", "--max-new-tokens", "4",
    ])
    assert ok.exit_code == 0, ok.output
    assert "prompts checked" in ok.output and "2 of 5, 2 samples each" in ok.output
    assert all(f"{c}/2" in ok.output for c in range(3))
    bad = runner.invoke(app, ["preflight", "tests.rft.test_preflight:coin_task", "--keep", "most"])
    assert bad.exit_code == 2 and "--keep must be one of" in bad.output
    one = runner.invoke(app, [
        "preflight", "tests.rft.test_preflight:coin_task", "--model", str(coin_model), "--samples", "1"
    ])
    assert one.exit_code == 2 and "samples must be >= 2" in one.output


@pytest.mark.slow
def test_preflight_on_default_model_and_arithmetic() -> None:
    """SmolLM2-135M solves some two-digit sums and misses others: every bucket share is a real count."""
    from rft.models import load_model
    from rft.preflight import preflight
    from rft.policy import Policy
    from rft.sampling.hf import HFSampler
    from tasks.base import load_task

    model, tokenizer = load_model("default")
    sampler = HFSampler(Policy(model, tokenizer))
    task = load_task("arithmetic")
    report = preflight(task, sampler, n_prompts=8, samples=8, temperature=0.7, max_new_tokens=48)
    assert [p.index for p in report.prompts] == choose_prompts(2000, 8, seed=0) and report.n_train == 2000
    assert report.share("always") + report.share("never") + report.share("mixed") == pytest.approx(1.0)
    assert report.no_signal_estimate(8) == pytest.approx(report.share("always") + report.share("never"))
    assert 0 < report.mean_pass_rate < 1
    assert report.share("never") > 0
