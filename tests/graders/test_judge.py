"""Judge graders end to end: a tiny model trained in the test answers as a judge, locally and over HTTP.

The HTTP judge talks to real servers on 127.0.0.1: a `rft serve` subprocess (the full path) and, for
failures, the same `rft serve` app in-process with extra routes that inject a 500, a stall, a prose verdict or a
garbage body, chosen by a URL prefix `/<mode>/<token>/v1` so every test counts its own requests.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from tiny_chat import build_chat_model, one_torch_thread, start_rft_serve

from graders.base import GraderInputError, Sample
from graders.judge import LabelModelGrader, ScoreModelGrader, parse_verdict, rubric_score
from graders.judge.backends import JudgeReply

pytestmark = pytest.mark.usefixtures(one_torch_thread.__name__)
ROOT = Path(__file__).resolve().parents[2]
ITEM = {"question": "What is the capital of France?"}
INPUT = [
    {"role": "system", "content": "You grade answers to geography questions."},
    {"role": "user", "content": "Question: {{item.question}}\nAnswer: {{sample.output_text}}"},
]
RUBRIC = [
    {"criterion": "Names Paris", "points": 5},
    {"criterion": "Is one word", "points": 3},
    {"criterion": "Names a wrong city", "points": -2},
]
# What the tiny judge is trained to say: answer -> (score verdict, label, rubric verdicts).
VERDICTS = {
    "Paris": ('{"steps": ["names the capital"], "result": 9}', "correct", [True, True, False]),
    "Lyon": ('{"steps": ["a different city"], "result": 2}', "incorrect", [False, True, True]),
}
NOWHERE = {"base_url": "http://127.0.0.1:9/v1", "model": "judge"}


def score_spec(**extra: Any) -> dict[str, Any]:
    return {
        "type": "score_model",
        "name": "geo",
        "input": INPUT,
        "range": [0, 10],
        "pass_threshold": 7,
        **extra,
    }


def label_spec(**extra: Any) -> dict[str, Any]:
    return {
        "type": "label_model",
        "name": "geo_label",
        "input": INPUT,
        "labels": ["correct", "incorrect"],
        "passing_labels": ["correct"],
        **extra,
    }


def rubric_spec(**extra: Any) -> dict[str, Any]:
    return {"type": "score_model", "name": "geo_rubric", "input": INPUT, "rubric": RUBRIC, **extra}


@pytest.fixture(scope="module")
def judge_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama trained to give the `VERDICTS` for exactly the prompts the graders render."""
    score = ScoreModelGrader.from_spec(score_spec(**NOWHERE))
    label = LabelModelGrader.from_spec(label_spec(**NOWHERE))
    examples = []
    for answer, (verdict, chosen, met) in VERDICTS.items():
        sample = Sample(answer)
        examples.append((score.prompt(sample, ITEM), verdict))
        examples.append((label.prompt(sample, ITEM), json.dumps({"steps": [], "result": chosen})))
        for criterion, ok in zip(RUBRIC, met):
            prompt = score.criterion_prompt(sample, ITEM, criterion)
            examples.append((prompt, json.dumps({"steps": [], "result": ok})))
    return build_chat_model(tmp_path_factory.mktemp("judge"), examples, max_steps=400)


def add_fault_routes(app: Any, chat: Any, state: SimpleNamespace) -> None:
    """Routes `/<mode>/<token>/v1/chat/completions` on the real app, whose `mode` picks an injected behaviour;
    per-token call records and in-flight counts go to `state`, so a stalled earlier test cannot leak in."""
    from fastapi.responses import JSONResponse, Response

    from rft.serve.app import error_body

    def answer(mode: str, call: int, body: dict[str, Any]) -> Response:
        if mode == "fail-once" and call == 1:
            return JSONResponse(error_body(500, "injected failure"), status_code=500)
        if mode == "slow":
            time.sleep(1.0)
            return JSONResponse(error_body(503, "too late"), status_code=503)
        if mode == "garbage":
            return Response(b"<html>upstream proxy error</html>", media_type="text/html")
        if mode in ("prose", "refusal"):
            message = {"role": "assistant", "content": "The answer looks fine to me."}
            if mode == "refusal":
                message = {"role": "assistant", "content": None, "refusal": "I can't help with that."}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            return JSONResponse({"choices": [choice], "usage": {"prompt_tokens": 5, "completion_tokens": 7}})
        if mode == "hold":
            time.sleep(0.2)
        return JSONResponse(chat.complete(body))

    @app.post("/{mode}/{token}/v1/chat/completions", response_model=None)
    def faulty(mode: str, token: str, body: dict[str, Any]):
        with state.lock:
            calls = state.calls.setdefault(token, [])
            calls.append(body)
            state.inflight[token] = state.inflight.get(token, 0) + 1
            state.max_inflight[token] = max(state.max_inflight.get(token, 0), state.inflight[token])
        try:
            return answer(mode, len(calls), body)
        finally:
            with state.lock:
                state.inflight[token] -= 1


@pytest.fixture(scope="module")
def fault_server(judge_dir: Path) -> Iterator[SimpleNamespace]:
    """The real `rft serve` app with fault routes added, on uvicorn on a free loopback port."""
    from rft.serve import ChatModel, Server, build_app

    chat = ChatModel.load(str(judge_dir), name="judge")
    state = SimpleNamespace(calls={}, lock=threading.Lock(), inflight={}, max_inflight={})
    app = build_app(chat)
    add_fault_routes(app, chat, state)
    with Server(app, port=0) as server:
        state.base_url = server.base_url.removesuffix("/v1")
        yield state


def http_spec(server: SimpleNamespace, mode: str, token: str, **extra: Any) -> dict[str, Any]:
    return {
        "base_url": f"{server.base_url}/{mode}/{token}/v1",
        "model": "judge",
        "retry_backoff_s": 0.01,
        **extra,
    }


@pytest.fixture(scope="module")
def served(judge_dir: Path):
    """`rft serve` as a real subprocess on a free port; yields its base URL."""
    proc, base_url = start_rft_serve(judge_dir)
    yield base_url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.mark.parametrize(
    "points, met, expected",
    [
        ([5, 3, -2], [True, True, False], 1.0),
        ([5, 3, -2], [False, True, True], 0.125),  # (3 - 2) / 8
        ([5, 3, -4], [False, False, True], 0.0),  # -4 / 8 clipped to 0
        ([2, 2], [True, False], 0.5),
    ],
)
def test_rubric_score(points: list[float], met: list[bool], expected: float) -> None:
    assert rubric_score(points, met) == expected


@pytest.mark.parametrize(
    "completion, result, error",
    [
        (JudgeReply('```json\n{"steps": ["a"], "result": 4}\n```'), 4, None),
        (JudgeReply('draft {"result": 1} final {"result": 2, "steps": []}'), 2, None),
        (JudgeReply("Looks good to me."), None, "no JSON object with 'result'"),
        (JudgeReply('{"steps": ["a", "b"', finish_reason="length"), None, "cut off at max_tokens"),
        (JudgeReply("", refusal="I cannot grade this."), None, "judge refused"),
        (JudgeReply('{"result": 1}', finish_reason="content_filter"), None, "content filter"),
    ],
)
def test_parse_verdict(completion: JudgeReply, result: Any, error: str | None) -> None:
    if error is None:
        assert parse_verdict(completion)[0] == result
    else:
        with pytest.raises(Exception, match=error):
            parse_verdict(completion)


@pytest.mark.parametrize(
    "spec, message",
    [
        (score_spec(backend="grpc", model="m"), "unknown judge backend 'grpc'"),
        (
            score_spec(backend="http", base_url="http://x/v1", model="m", api_key_env="RFT_TEST_NO_SUCH_KEY"),
            r"\$RFT_TEST_NO_SUCH_KEY, which is not set",
        ),
        (score_spec(range=[5, 5], model="/no/such/model"), r"range must have min < max, got \[5, 5\]"),
        (score_spec(range=[0, 10], pass_threshold=11, model="/no/such/model"), "outside range"),
        (score_spec(pass_threshold="high", model="m"), "pass_threshold must be a number"),
        (score_spec(backend="http", model="m"), "needs base_url"),
        (score_spec(model="m", sampling_params={"temprature": 0}), r"unknown keys \['temprature'\]"),
        (score_spec(model="m", base_url="http://x/v1", rubric=RUBRIC), "give 'range' or 'rubric'"),
        (rubric_spec(model="m", rubric=[{"criterion": "bad", "points": -1}]), "positive points"),
        (label_spec(model="m", passing_labels=["great"]), r"passing_labels \['great'\] are not among"),
        ({**score_spec(model="m"), "input": [{"role": "judge", "content": "x"}]}, r"input\[0\] must be"),
    ],
)
def test_bad_config_fails_before_grading(spec: dict[str, Any], message: str) -> None:
    """Each is rejected by from_spec; the /no/such/model cases prove the check runs before loading."""
    cls = LabelModelGrader if spec["type"] == "label_model" else ScoreModelGrader
    with pytest.raises(GraderInputError, match=message):
        cls.from_spec(spec)


def test_full_path_through_rft_serve_process(served: str) -> None:
    grader = ScoreModelGrader.from_spec(score_spec(base_url=served, model="judge", max_retries=0))
    good, bad = grader.grade(Sample("Paris"), ITEM), grader.grade(Sample("Lyon"), ITEM)
    assert (good.error, bad.error) == (None, None)
    assert (good.score, bad.score) == (0.9, 0.2)
    assert grader.pass_threshold == 0.7 and good.details["steps"] == ["names the capital"]
    usage = grader.usage()
    assert usage["requests"] == 2 and usage["errors"] == 0
    assert usage["prompt_tokens"] > 100 and usage["completion_tokens"] > 10


def test_label_and_rubric_over_http(fault_server: Any) -> None:
    label = LabelModelGrader.from_spec(label_spec(**http_spec(fault_server, "ok", "label")))
    rubric = ScoreModelGrader.from_spec(rubric_spec(**http_spec(fault_server, "ok", "rubric")))
    assert [label.grade(Sample(a), ITEM).score for a in ("Paris", "Lyon")] == [1.0, 0.0]
    assert label.grade(Sample("Lyon"), ITEM).details["label"] == "incorrect"
    paris, lyon = rubric.grade(Sample("Paris"), ITEM), rubric.grade(Sample("Lyon"), ITEM)
    assert (paris.score, lyon.score) == (1.0, 0.125)
    assert [c["met"] for c in lyon.details["criteria"]] == [False, True, True]
    assert len(fault_server.calls["rubric"]) == 6
    per_item = ScoreModelGrader.from_spec(
        rubric_spec(rubric="{{item.rubric}}", **http_spec(fault_server, "ok", "item-rubric"))
    )
    assert per_item.grade(Sample("Lyon"), {**ITEM, "rubric": RUBRIC}).score == 0.125
    with pytest.raises(GraderInputError, match="positive points"):
        per_item.grade(Sample("Lyon"), {**ITEM, "rubric": [{"criterion": "x", "points": -1}]})


def test_retry_after_500_then_success(fault_server: Any) -> None:
    grader = ScoreModelGrader.from_spec(score_spec(**http_spec(fault_server, "fail-once", "retry")))
    grade = grader.grade(Sample("Paris"), ITEM)
    assert (grade.error, grade.score) == (None, 0.9)
    assert len(fault_server.calls["retry"]) == 2 and grader.usage()["retries"] == 1


def test_timeout_becomes_counted_error(fault_server: Any) -> None:
    spec = http_spec(fault_server, "slow", "timeout", timeout_s=0.2, max_retries=1)
    grader = ScoreModelGrader.from_spec(score_spec(**spec))
    grade = grader.grade(Sample("Paris"), ITEM)
    assert grade.score == 0.0 and "timed out after 0.2s" in grade.error and "2 attempts" in grade.error
    assert len(fault_server.calls["timeout"]) == 2
    assert grader.usage()["errors"] == 1 and grader.usage()["requests"] == 0


@pytest.mark.parametrize(
    "mode, error",
    [("prose", "no JSON object with 'result'"), ("refusal", "judge refused"), ("garbage", "not JSON")],
)
def test_malformed_judge_replies_are_counted_errors(fault_server: Any, mode: str, error: str) -> None:
    grader = ScoreModelGrader.from_spec(score_spec(**http_spec(fault_server, mode, f"bad-{mode}")))
    grade = grader.grade(Sample("Paris"), ITEM)
    assert grade.score == 0.0 and error in grade.error
    assert grader.usage()["errors"] == 1
    if mode == "prose":
        assert grade.details["raw"] == "The answer looks fine to me."


def test_cached_repeat_costs_nothing(fault_server: Any) -> None:
    grader = ScoreModelGrader.from_spec(score_spec(**http_spec(fault_server, "ok", "cache")))
    first, second = grader.grade(Sample("Paris"), ITEM), grader.grade(Sample("Paris"), ITEM)
    assert first.score == second.score == 0.9
    assert (first.details["cached"], second.details["cached"]) == (False, True)
    assert len(fault_server.calls["cache"]) == 1
    usage = grader.usage()
    assert (usage["requests"], usage["cache_hits"]) == (1, 1)


def test_concurrency_limit_and_sampling_params(fault_server: Any) -> None:
    params = {"temperature": 0.5, "top_p": 0.9, "max_completions_tokens": 40, "seed": 7, "reasoning_effort": "low"}
    spec = http_spec(fault_server, "hold", "limit", max_concurrency=2, sampling_params=params)
    grader = ScoreModelGrader.from_spec(score_spec(**spec))

    async def grade_all() -> list[Any]:
        return await asyncio.gather(*(grader.agrade(Sample(f"City {i}"), ITEM) for i in range(6)))

    asyncio.run(grade_all())
    assert fault_server.max_inflight["limit"] == 2
    sent = fault_server.calls["limit"][0]
    keys = ("temperature", "top_p", "max_completion_tokens", "seed", "reasoning_effort")
    assert {k: sent[k] for k in keys} == {
        "temperature": 0.5,
        "top_p": 0.9,
        "max_completion_tokens": 40,
        "seed": 7,
        "reasoning_effort": "low",
    }


def test_sync_grade_inside_running_loop(fault_server: Any) -> None:
    grader = LabelModelGrader.from_spec(label_spec(**http_spec(fault_server, "ok", "inloop")))

    async def call_sync() -> float:
        return grader.grade(Sample("Paris"), ITEM).score

    assert asyncio.run(call_sync()) == 1.0


def test_wrong_model_name_is_a_config_error(served: str) -> None:
    grader = ScoreModelGrader.from_spec(score_spec(base_url=served, model="gpt-x"))
    with pytest.raises(GraderInputError, match="refused model 'gpt-x' with HTTP 404"):
        grader.grade(Sample("Paris"), ITEM)


@pytest.mark.parametrize("prefix", [None, '{"steps":'])
def test_local_backend_with_tiny_model(judge_dir: Path, prefix: str | None) -> None:
    """With a response prefix the model continues the JSON it was trained to write in full."""
    grader = ScoreModelGrader.from_spec(
        score_spec(backend="local", model=str(judge_dir), response_prefix=prefix)
    )
    grades = [grader.grade(Sample(a), ITEM) for a in ("Paris", "Lyon")]
    assert [g.score for g in grades] == [0.9, 0.2]
    assert grades[1].details["steps"] == ["a different city"]
    assert grader.usage()["requests"] == 2


def test_local_backend_without_rft_is_an_error_naming_the_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    """`graders` installed without `rft`: the local backend's dotted path cannot be imported."""
    monkeypatch.setitem(sys.modules, "rft", None)  # makes `import rft...` fail as if it were not installed
    monkeypatch.delitem(sys.modules, "rft.local_judge", raising=False)
    message = (
        r"'geo'.backend: judge backend 'local' is provided by rft.local_judge:LocalJudge, which cannot be"
    )
    with pytest.raises(GraderInputError, match=message):
        ScoreModelGrader.from_spec(score_spec(backend="local", model="m"))


def test_spec_loader_runner_and_multi(judge_dir: Path) -> None:
    """The judge plugs into `load_grader`, the batch runner and `multi` like any other grader."""
    from graders.runner import grade_batch
    from graders.spec import load_grader

    judge = score_spec(backend="local", model=str(judge_dir))
    multi = load_grader(
        {
            "type": "multi",
            "name": "both",
            "calculate_output": "0.5 * geo + 0.5 * exact",
            "graders": {
                "geo": judge,
                "exact": {
                    "type": "string_check",
                    "name": "exact",
                    "operation": "eq",
                    "input": "{{sample.output_text}}",
                    "reference": "Paris",
                },
            },
        }
    )
    result = grade_batch(multi, ["Paris", "Lyon"], [ITEM, ITEM])
    assert [g.score for g in result.grades] == [0.95, 0.1]
    assert result.grades[1].sub_grades["geo"].score == 0.2


@pytest.mark.slow
def test_local_backend_with_default_packaged_model() -> None:
    """SmolLM2-135M ignores the JSON format (a counted error); prefilled with `{"result": ` it complies."""
    plain = ScoreModelGrader.from_spec(score_spec(model="default", sampling_params={"max_tokens": 60}))
    grade = plain.grade(Sample("Paris"), ITEM)
    assert plain.usage()["requests"] == 1 and plain.usage()["completion_tokens"] > 0
    assert (grade.error is None) == (plain.usage()["errors"] == 0)
    guided = ScoreModelGrader.from_spec(
        score_spec(model="default", response_prefix='{"result": ', sampling_params={"max_tokens": 20})
    )
    grade = guided.grade(Sample("Paris"), ITEM)
    assert grade.error is None and 0.0 <= grade.score <= 1.0
    assert grade.details["result"] == grade.score * 10


def test_reasoning_effort_is_passed_and_drops_the_default_temperature() -> None:
    from graders.judge.backends import JudgeParams

    params = JudgeParams.from_spec({"max_completions_tokens": 32768, "top_p": 1, "reasoning_effort": "medium"})
    assert params.to_request() == {"top_p": 1, "max_completion_tokens": 32768, "reasoning_effort": "medium"}
    assert JudgeParams.from_spec({}).to_request() == {"temperature": 0.0}
    with pytest.raises(GraderInputError, match=r"reasoning_effort must be one of \['none', 'minimal'"):
        JudgeParams.from_spec({"reasoning_effort": "max"})


def test_openai_model_name_routes_to_http_and_never_loads(monkeypatch: pytest.MonkeyPatch, served: str) -> None:
    """`gpt-4o-2024-08-06` builds an HTTP judge (no local load); without a key it says so when first asked."""
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "RFT_MODEL_MAP"):
        monkeypatch.delenv(name, raising=False)
    grader = ScoreModelGrader.from_spec(score_spec(model="gpt-4o-2024-08-06"))
    assert grader.judge.backend.url == "https://api.openai.com/v1/chat/completions"
    with pytest.raises(GraderInputError, match=r"needs an API key: set \$OPENAI_API_KEY"):
        grader.grade(Sample("Paris"), ITEM)
    monkeypatch.setenv("RFT_MODEL_MAP", json.dumps({"o4-mini-2025-04-16": {"base_url": served, "model": "judge"}}))
    mapped = ScoreModelGrader.from_spec(score_spec(model="o4-mini-2025-04-16", max_retries=0))
    assert mapped.grade(Sample("Paris"), ITEM).score == 0.9
    monkeypatch.setenv("OPENAI_BASE_URL", served)
    by_env = LabelModelGrader.from_spec(label_spec(model="gpt-4.1-2025-04-14", max_retries=0))
    with pytest.raises(GraderInputError, match="refused model 'gpt-4.1-2025-04-14' with HTTP 404"):
        by_env.grade(Sample("Paris"), ITEM)


def test_content_parts_render_like_text(served: str) -> None:
    """`input_text` parts (one or a list) are joined with a space, as OpenAI renders them: the trained prompt."""
    parts = [
        {"role": "system", "content": {"type": "input_text", "text": INPUT[0]["content"]}},
        {"role": "user", "content": [
            {"type": "input_text", "text": "Question: {{item.question}}\nAnswer:"},
            {"type": "input_text", "text": "{{sample.output_text}}"},
        ]},
    ]
    grader = ScoreModelGrader.from_spec({**score_spec(base_url=served, model="judge"), "input": parts})
    assert [grader.grade(Sample(a), ITEM).score for a in ("Paris", "Lyon")] == [0.9, 0.2]


def test_input_image_needs_http_and_is_sent_as_image_url(fault_server: Any) -> None:
    image = [{"role": "user", "content": [
        {"type": "input_text", "text": "Is {{sample.output_text}} the city shown?"},
        {"type": "input_image", "image_url": "{{item.image}}", "detail": "low"},
    ]}]
    with pytest.raises(GraderInputError, match="input_image parts need an http judge backend"):
        ScoreModelGrader.from_spec({**score_spec(backend="local", model="m"), "input": image})
    spec = {**score_spec(**http_spec(fault_server, "prose", "image", max_retries=0)), "input": image}
    grade = ScoreModelGrader.from_spec(spec).grade(Sample("Paris"), {"image": "https://example.org/paris.png"})
    assert grade.details["error_kind"] == "model_grader_parse_error"  # the stub answers prose
    sent = fault_server.calls["image"][0]["messages"][-1]["content"]
    assert sent[1] == {"type": "image_url", "image_url": {"url": "https://example.org/paris.png", "detail": "low"}}
    assert sent[0] == {"type": "text", "text": "Is Paris the city shown?"}


def test_missing_local_model_path_is_a_config_error_before_loading() -> None:
    with pytest.raises(GraderInputError, match="'/no/such/judge' is not a directory or file"):
        ScoreModelGrader.from_spec(score_spec(backend="local", model="/no/such/judge"))
