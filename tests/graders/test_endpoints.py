"""Routing of OpenAI model names: RFT_MODEL_MAP first, then OPENAI_BASE_URL / OPENAI_API_KEY."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from graders.base import GraderInputError
from graders.endpoints import OPENAI_BASE_URL, is_hosted_model, resolve


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "RFT_MODEL_MAP", "JUDGE_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("name", "hosted"),
    [("gpt-4o-2024-08-06", True), ("o4-mini", True), ("o3", True), ("o4-mini-2025-04-16", True),
     ("text-embedding-3-large", True), ("ft:gpt-4.1:org::abc", True), ("default", False),
     ("HuggingFaceTB/SmolLM2-135M-Instruct", False), ("./judge", False), ("opus-mt", False)],
)
def test_hosted_model_names(name: str, hosted: bool) -> None:
    assert is_hosted_model(name) is hosted


def test_default_is_openai_and_needs_a_key_only_when_used(monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = resolve("o4-mini")
    assert (endpoint.base_url, endpoint.model) == (OPENAI_BASE_URL, "o4-mini")
    with pytest.raises(GraderInputError, match=r"needs an API key: set \$OPENAI_API_KEY"):
        endpoint.headers()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert resolve("o4-mini").headers()["Authorization"] == "Bearer sk-test"


def test_openai_base_url_needs_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:8000/v1/")
    endpoint = resolve("gpt-4o-2024-08-06")
    assert endpoint.base_url == "http://127.0.0.1:8000/v1"
    assert endpoint.headers() == {"Content-Type": "application/json"}


def test_model_map_inline_and_from_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    entry = {"base_url": "http://127.0.0.1:9000/v1", "model": "judge", "api_key_env": "JUDGE_KEY"}
    monkeypatch.setenv("RFT_MODEL_MAP", json.dumps({"gpt-4.1-2025-04-14": entry}))
    endpoint = resolve("gpt-4.1-2025-04-14")
    assert (endpoint.base_url, endpoint.model) == ("http://127.0.0.1:9000/v1", "judge")
    with pytest.raises(GraderInputError, match=r"set \$JUDGE_KEY"):
        endpoint.headers()
    assert resolve("o3").base_url == OPENAI_BASE_URL  # names the map lacks keep the default route
    path = tmp_path / "models.json"
    path.write_text(json.dumps({"o3": {"model": "local-o3"}}))
    monkeypatch.setenv("RFT_MODEL_MAP", str(path))
    assert resolve("o3").model == "local-o3"


@pytest.mark.parametrize(
    ("value", "message"),
    [("{not json", "is not valid JSON"), ('{"o3": "x"}', "must map model names to"),
     ('{"o3": {"url": "x"}}', r"RFT_MODEL_MAP.o3: unknown keys \['url'\]"), ("/no/such/map.json", "cannot be read")],
)
def test_bad_model_map_is_a_config_error(monkeypatch: pytest.MonkeyPatch, value: str, message: str) -> None:
    monkeypatch.setenv("RFT_MODEL_MAP", value)
    with pytest.raises(GraderInputError, match=message):
        resolve("o3")
