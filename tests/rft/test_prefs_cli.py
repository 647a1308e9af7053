"""`rft prefs` on a tiny random Llama: pairs that load back with their scores, counts, and constitution judges."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from graders.base import Grade, GraderInputError
from graders.judge.constitution import constitution_spec
from rft.cli import app
from rft.pairing import best_vs_worst, load_ranker
from rft.rewards import grade_texts
from rft.rollout import Rollout
from rft.sampling.base import Completion
from tasks.preferences import load_pairs
from tests.rft.test_train_e2e import echo_task
from tests.tiny_chat import build_chat_model, one_torch_thread  # noqa: F401  (a fixture)

pytestmark = pytest.mark.usefixtures("one_torch_thread")
ECHO = "tests.rft.test_train_e2e:echo_task"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_chat_model(tmp_path_factory.mktemp("tiny") / "model")


def prefs(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["prefs", *args])
    return result.exit_code, result.output


def counts(output: str) -> list[int]:
    """(prompts, pairs kept, ties, under the margin, ungraded) from the report line."""
    found = re.search(r"(\d+) prompts x .* (\d+) pairs kept, (\d+) ties, (\d+) under the margin .*, (\d+) with", output)
    assert found, output
    return [int(g) for g in found.groups()]


def test_pairs_load_back_with_the_grader_scores(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "pairs.jsonl"
    code, output = prefs(ECHO, "--model", str(tiny_model), "--out", str(out), "-k", "4", "--max-new-tokens", "6",
                         "--temperature", "1.5")
    assert code == 0, output
    prompts, kept, ties, below, ungraded = counts(output)
    assert (prompts, below, ungraded) == (6, 0, 0) and kept + ties == 6 and kept > 0
    pairs = load_pairs(out)
    assert len(pairs) == kept and json.loads(out.read_text().splitlines()[0]).keys() >= {
        "input", "preferred_output", "non_preferred_output", "chosen_score", "rejected_score", "word"}
    task = echo_task()
    assert [p.messages for p in pairs] == [task.messages(i) for i in task.train if i["word"] in
                                           {p.item["word"] for p in pairs}]
    regraded, _ = grade_texts(task.grader, [p.chosen for p in pairs] + [p.rejected for p in pairs],
                              [p.item for p in pairs] * 2)
    for i, pair in enumerate(pairs):  # the kept scores are the grader's, best above worst
        assert (regraded[i].score, regraded[len(pairs) + i].score) == pytest.approx(
            (pair.item["chosen_score"], pair.item["rejected_score"]))
        assert pair.item["chosen_score"] > pair.item["rejected_score"]


def test_a_margin_nothing_meets_writes_nothing_and_fails(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "pairs.jsonl"
    code, output = prefs(ECHO, "--model", str(tiny_model), "--out", str(out), "-k", "3", "--max-new-tokens", "6",
                         "--min-margin", "1.01")
    prompts, kept, ties, below, ungraded = counts(output)
    assert code == 1 and "no pair kept" in output and not out.exists()
    assert (prompts, kept, ungraded) == (6, 0, 0) and ties + below == 6


def rollout_of(scores: list[list[float | str | None]]) -> Rollout:
    """Groups of G completions with these scores; None is a grader timeout, "unreadable" an answer the grader
    could not read (kind sample_parse_error)."""
    groups = [[Completion([1], [2], f"s{b}{g}", False) for g in range(len(row))] for b, row in enumerate(scores)]
    grades = [Grade(0.0, error="timeout") if s is None else
              Grade.failure("no final answer", error_kind="sample_parse_error") if s == "unreadable" else Grade(s)
              for row in scores for s in row]
    return Rollout([{}] * len(scores), groups, grades, {})


def test_best_vs_worst_skips_errors_ties_and_small_margins() -> None:
    choices, got = best_vs_worst(rollout_of([[0.2, 0.9, 0.5], [0.4, 0.4, 0.4], [None, 0.7, None],
                                             [0.6, None, 0.1], [0.5, 0.55, 0.52], [None, "unreadable", 1.0]]),
                                 min_margin=0.1)
    # a timeout ranks nowhere; an unreadable answer is the answer's fault and ranks last with its 0
    assert [(c.group, c.chosen, c.rejected) for c in choices] == [(0, 1, 0), (3, 0, 2), (5, 2, 1)]
    assert got == {"pairs/kept": 3, "pairs/ties": 1, "pairs/below_margin": 1, "pairs/ungraded": 1}


def test_a_constitution_becomes_a_rubric_judge(tmp_path: Path) -> None:
    path = tmp_path / "constitution.yaml"
    path.write_text("judge: {model: default, backend: local, sampling_params: {max_completion_tokens: 32}}\n"
                    "principles:\n  - Answer with the final number only.\n  - Do not apologise.\n")
    grader = load_ranker(path, ["Be correct."])
    assert [c["criterion"] for c in grader.rubric] == ["Answer with the final number only.", "Do not apologise.",
                                                       "Be correct."]
    assert load_ranker(None) is None
    assert constitution_spec(["Be brief."])["input"][1]["content"].startswith("Conversation:\n{{item.conversation}}")
    with pytest.raises(GraderInputError, match="principles must be a non-empty list"):
        constitution_spec([])
    with pytest.raises(GraderInputError, match=r"\['rubric'\] are set by the constitution"):
        constitution_spec(["x"], {"rubric": []})
    path.write_text("principles: [x]\nrules: [y]\n")
    with pytest.raises(GraderInputError, match=r"unknown field\(s\) \['rules'\]"):
        load_ranker(path)


def test_an_unreadable_judge_counts_every_group_as_ungraded(tiny_model: Path, tmp_path: Path) -> None:
    """The random tiny model as the constitution's judge never answers with a verdict: every sample is a
    counted grader error, no group can be ranked, and nothing is written."""
    path = tmp_path / "constitution.yaml"
    path.write_text(f"judge: {{model: '{tiny_model}', backend: local, sampling_params: {{max_completion_tokens: 4}}}}\n"
                    "principles: [Say the word asked for.]\n")
    code, output = prefs(ECHO, "--model", str(tiny_model), "--out", str(tmp_path / "p.jsonl"), "-k", "2",
                         "--max-new-tokens", "4", "--judge", str(path))
    assert code == 1 and "ranked by 'constitution'" in output and "12 grader errors" in output
    assert counts(output) == [6, 0, 0, 0, 6]


def test_the_constitution_example_loads_as_a_three_principle_judge() -> None:
    root = Path(__file__).resolve().parents[2]
    example = root / "examples" / "constitution.yaml"
    assert example.read_text().startswith("# rft prefs arithmetic ")
    grader = load_ranker(example)
    assert (grader.name, len(grader.rubric), grader.judge.backend.key) == ("constitution", 3, "local:default:")
