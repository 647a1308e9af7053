"""OpenAI's published grader examples, run unchanged: each spec in tests/data/openai_examples/ is verbatim from
the page it names (OpenAI's graders guide, RFT use-cases page and cookbook), with its example item and sample,
and the score the page prints where it prints one (`expected_from: page`); other expectations say `why`.

Model graders run against real OpenAI-compatible servers on 127.0.0.1: `rft serve` in a subprocess serving a
tiny judge trained here to give each case's `judge_reply`, with the specs' OpenAI model names
(`o4-mini-2025-04-16`, `gpt-4.1-2025-04-14`, `o3`, `gpt-4o-2024-08-06`) mapped to them by `RFT_MODEL_MAP`.
Every case is graded twice: by the batch runner (as `rft grade` and training do) and through
`graders.openai_api.run_grader` (the graders API).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tiny_chat import build_chat_model, one_torch_thread, start_rft_serve

from graders.base import Sample, error_kind
from graders.openai_api import run_grader
from graders.runner import grade_batch
from graders.spec import load_grader

pytestmark = pytest.mark.usefixtures(one_torch_thread.__name__)
ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = {
    p.stem: json.loads(p.read_text()) for p in sorted((ROOT / "tests/data/openai_examples").glob("*.json"))
}
MODEL_TYPES = ("score_model", "label_model")
NEEDS = {
    "vision-judge": pytest.mark.xfail(
        reason="shows the judge an image: rft serve answers text-only messages, so no loopback vision judge yet",
        strict=True,
    ),
}


# Its judge prompt is ~2,000 tokens: training a tiny judge to answer it takes minutes on a CPU.
SLOW = {"rftguide_security_multi"}


def cases() -> Iterator[Any]:
    for stem, example in EXAMPLES.items():
        marks = [NEEDS[example["needs"]]] if "needs" in example else []
        marks += [pytest.mark.slow] if stem in SLOW else []
        for index in range(len(example["cases"])):
            yield pytest.param(stem, index, marks=marks, id=f"{stem}[{index}]")


def sample_of(case: dict[str, Any]) -> Sample:
    return Sample.coerce(case["sample"] if "sample" in case else case["model_sample"])


def model_specs(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The model-grader specs in a spec: itself, or the model sub-graders of a multi."""
    if spec["type"] == "multi":
        return [sub for sub in spec["graders"].values() if sub["type"] in MODEL_TYPES]
    return [spec] if spec["type"] in MODEL_TYPES else []


def judge_examples(slow: bool) -> list[tuple[list[dict[str, Any]], str]]:
    """(prompt the grader sends, reply) for every judged case of the slow examples, or of the others."""
    examples = []
    for stem, example in EXAMPLES.items():
        if "needs" in example or (stem in SLOW) != slow:
            continue
        for spec in model_specs(example["grader"]):
            grader = load_grader(spec)
            for case in example["cases"]:
                if "judge_reply" in case:
                    examples.append((grader.prompt(sample_of(case), case["item"]), case["judge_reply"]))
    return examples


def serve_judge(path: Path, examples: list[tuple[list[dict[str, Any]], str]]) -> tuple[subprocess.Popen, str]:
    """Train a tiny judge on `examples` at `path` and start `rft serve` on it; returns the process and base URL.

    Reasoning-model specs send no temperature (the server samples at 1.0), so the trained head is sharpened
    50x: sampling then returns the greedy reply.
    """
    import torch
    from transformers import AutoModelForCausalLM

    build_chat_model(path, examples, max_steps=500)
    model = AutoModelForCausalLM.from_pretrained(path)
    with torch.no_grad():
        model.lm_head.weight.mul_(50.0)
    model.save_pretrained(path)
    return start_rft_serve(path)


@pytest.fixture(scope="module")
def judges(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], None]]:
    """`judges(stem)` serves the tiny judge for an example and maps its OpenAI model names to it in
    `RFT_MODEL_MAP`: one `rft serve` for the slow examples' long prompts, one for all the others, each started
    on first use (prompts of very different lengths train slowly together)."""
    servers: dict[bool, str] = {}
    procs: list[subprocess.Popen] = []
    routes: dict[str, dict[str, str]] = {}
    previous = os.environ.get("RFT_MODEL_MAP")

    def serve(stem: str) -> None:
        slow = stem in SLOW
        if slow not in servers:
            proc, servers[slow] = serve_judge(tmp_path_factory.mktemp("judge"), judge_examples(slow))
            procs.append(proc)
        for spec in model_specs(EXAMPLES[stem]["grader"]):
            routes[spec["model"]] = {"base_url": servers[slow], "model": "judge"}
        os.environ["RFT_MODEL_MAP"] = json.dumps(routes)

    try:
        yield serve
    finally:
        if previous is None:
            os.environ.pop("RFT_MODEL_MAP", None)
        else:
            os.environ["RFT_MODEL_MAP"] = previous
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)


def test_every_example_names_its_source_and_has_cases() -> None:
    assert len(EXAMPLES) >= 14
    for stem, example in EXAMPLES.items():
        assert example["source"]["url"].startswith("https://"), stem
        assert example["cases"] and all("expected" in c and "why" in c for c in example["cases"]), stem


@pytest.mark.parametrize(("stem", "index"), list(cases()))
def test_example_runs_unchanged_and_gives_its_score(
    stem: str, index: int, request: pytest.FixtureRequest
) -> None:
    example = EXAMPLES[stem]
    case = example["cases"][index]
    judged_by = model_specs(example["grader"])
    if judged_by:
        request.getfixturevalue("judges")(stem)
    grader = load_grader(example["grader"])
    grade = grade_batch(grader, [sample_of(case)], [case["item"]], mode="thread").grades[0]
    assert error_kind(grade) == case.get("error_kind"), grade.error
    assert grade.score == pytest.approx(case["expected"], abs=1e-9)
    low, high = case.get("page_range", (0.0, 1.0))
    assert low <= grade.score <= high
    if "model_sample" in case:
        response = run_grader(
            {"grader": example["grader"], "item": case["item"], "model_sample": case["model_sample"]}
        )
        assert response["reward"] == pytest.approx(case["expected"], abs=1e-9)
        flags = [k for k, v in response["metadata"]["errors"].items() if v is True]
        assert flags == ([case["error_kind"]] if "error_kind" in case else [])
        for judge in judged_by:  # a judge that was asked reports its tokens; one never asked reports none
            usage = response["model_grader_token_usage_per_model"][judge["model"]]
            asked = "judge_reply" in case
            assert (usage["prompt_tokens"] > 100, usage["completion_tokens"] > 5) == (asked, asked)
