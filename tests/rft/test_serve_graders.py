"""OpenAI's grader endpoints on `rft serve`, driven by the official openai-python client over loopback.

Specs and expected scores are OpenAI's published examples (`tests/data/openai_examples/`, sources named in
each file); a model grader reaches a judge through `RFT_MODEL_MAP`, here the same server's tiny chat model.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tiny_chat import build_chat_model, one_torch_thread

from rft.serve import ChatModel, Server, full_app

pytestmark = pytest.mark.usefixtures(one_torch_thread.__name__)
EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "openai_examples"
# Text-only examples without a judge: every case's model_sample and the score its page (or the file) gives.
TEXT_EXAMPLES = [
    "cookbook_rft_string_grader",
    "guide_combined_name_email",
    "guide_python_minimal",
    "guide_python_rapidfuzz",
    "usecases_chipstack_python",
]


def example_cases() -> Iterator[Any]:
    for name in TEXT_EXAMPLES:
        data = json.loads((EXAMPLES / f"{name}.json").read_text())
        for i, case in enumerate(data["cases"]):
            yield pytest.param(data["grader"], case, id=f"{name}-{i}")


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    chat = ChatModel.load(str(build_chat_model(tmp_path_factory.mktemp("tiny"))), name="tiny")
    with Server(full_app(chat), port=0) as server:
        yield server.base_url


@pytest.fixture(scope="module")
def client(base_url: str) -> Any:
    from openai import OpenAI

    return OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=120)


@pytest.mark.parametrize("grader, case", list(example_cases()))
def test_published_examples_through_the_openai_client(client: Any, grader: dict, case: dict) -> None:
    validated = client.fine_tuning.alpha.graders.validate(grader=grader)
    assert validated.grader.type == grader["type"]
    result = client.fine_tuning.alpha.graders.run(
        grader=grader, model_sample=case["model_sample"], item=case["item"]
    )
    assert result.reward == pytest.approx(case["expected"], abs=1e-3)
    flags = {flag for flag, raised in result.metadata.errors.model_dump().items() if raised is True}
    assert flags == ({case["error_kind"]} if "error_kind" in case else set())
    assert result.metadata.type == grader["type"] and result.metadata.execution_time >= 0
    if grader["type"] == "multi":
        assert set(result.sub_rewards) == set(grader["graders"])


def test_model_grader_reaches_its_judge_and_reports_its_parse_error(
    client: Any, base_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A score_model naming an OpenAI model is routed (RFT_MODEL_MAP) to this server's untrained tiny model,
    whose reply is no verdict: reward 0 with `model_grader_parse_error`, and the judge's tokens counted."""
    monkeypatch.setenv(
        "RFT_MODEL_MAP", json.dumps({"gpt-4o-2024-08-06": {"base_url": base_url, "model": "tiny"}})
    )
    grader = {
        "type": "score_model",
        "name": "judge",
        "model": "gpt-4o-2024-08-06",
        "input": [
            {"role": "user", "content": "Rate {{sample.output_text}} against {{item.answer}} from 0 to 1."}
        ],
        "range": [0, 1],
        "sampling_params": {"max_completions_tokens": 8, "temperature": 0},
    }
    result = client.fine_tuning.alpha.graders.run(grader=grader, model_sample="4", item={"answer": "4"})
    assert result.reward == 0.0 and result.metadata.errors.model_grader_parse_error
    usage = result.model_grader_token_usage_per_model["gpt-4o-2024-08-06"]
    assert usage["completion_tokens"] > 0 and result.metadata.sampled_model_name == "gpt-4o-2024-08-06"


def test_bad_requests_get_openai_errors(client: Any, base_url: str) -> None:
    from openai import BadRequestError

    with pytest.raises(BadRequestError, match="operation"):
        client.fine_tuning.alpha.graders.validate(
            grader={
                "type": "string_check",
                "name": "c",
                "input": "a",
                "reference": "b",
                "operation": "equals",
            }
        )
    with pytest.raises(BadRequestError, match="model_sample"):
        client.fine_tuning.alpha.graders.run(
            grader={"type": "string_check", "name": "c", "input": "a", "reference": "b", "operation": "eq"},
            model_sample=None,  # type: ignore[arg-type]
        )
    response = httpx.post(base_url + "/fine_tuning/alpha/graders/run", content=b"{not json")
    assert response.status_code == 400 and "not JSON" in response.json()["error"]["message"]
