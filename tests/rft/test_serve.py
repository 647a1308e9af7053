"""`rft serve`: the OpenAI chat-completions wire format over a real tiny model on a loopback socket."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from tiny_chat import build_chat_model, one_torch_thread
from typer.testing import CliRunner

from rft.serve import ChatModel, ChatRequest, Server, full_app

pytestmark = pytest.mark.usefixtures(one_torch_thread.__name__)
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a city."}]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_chat_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def server(model_dir: Path) -> Iterator[SimpleNamespace]:
    """The app on uvicorn on a free loopback port: `base_url` and the `chat` model it serves."""
    chat_model = ChatModel.load(str(model_dir), name="tiny")
    with Server(full_app(chat_model), port=0) as srv:
        yield SimpleNamespace(base_url=srv.base_url, chat=chat_model)


def chat(server: SimpleNamespace, **body: Any) -> httpx.Response:
    return httpx.post(
        server.base_url + "/chat/completions", json={"model": "tiny", "messages": MESSAGES, **body}
    )


@pytest.mark.parametrize(
    "body, message",
    [
        ({"messages": []}, "messages must be a non-empty list"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, r"messages\[0\] must be"),
        (
            {"messages": MESSAGES, "temperature": 3},
            "temperature: Input should be less than or equal to 2, got 3",
        ),
        ({"messages": MESSAGES, "top_p": 0}, "top_p: Input should be greater than 0, got 0"),
        ({"messages": MESSAGES, "max_tokens": 0}, "max_tokens: Input should be greater than or equal to 1"),
        ({"messages": MESSAGES, "n": 1.5}, "n: Input should be a valid integer, got 1.5"),
        ({"messages": MESSAGES, "seed": "7"}, "seed: Input should be a valid integer"),
        ({"messages": MESSAGES, "stop": [""]}, "stop must be"),
        ({"messages": MESSAGES, "stream": "yes"}, "stream: Input should be a valid boolean"),
        (
            {"messages": MESSAGES, "stream_options": {"usage": True}},
            "stream_options.usage: unsupported field",
        ),
        ({"messages": MESSAGES, "logit_bias": {}}, "logit_bias: unsupported field"),
        ([MESSAGES], "request body must be a JSON object"),
        ({"messages": MESSAGES, "continue_final_message": True}, "last message to be from the assistant"),
        ({"messages": MESSAGES, "continue_final_message": True, "add_generation_prompt": True}, "opposite"),
    ],
)
def test_request_validation(body: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ChatRequest.parse(body)


def test_request_defaults_and_aliases() -> None:
    req = ChatRequest.parse(
        {"messages": MESSAGES, "max_completion_tokens": 7, "stop": "\n", "temperature": None}
    )
    assert (req.max_tokens, req.stop, req.temperature, req.n) == (7, ("\n",), 1.0, 1)


def test_models_health_and_unknown_routes(server: SimpleNamespace) -> None:
    models = httpx.get(server.base_url + "/models").json()
    assert [m["id"] for m in models["data"]] == ["tiny"]
    assert httpx.get(server.base_url.removesuffix("/v1") + "/health").json() == {"status": "ok"}
    assert httpx.get(server.base_url + "/nope").status_code == 404


def test_greedy_completion_with_usage(server: SimpleNamespace) -> None:
    """A random tiny model runs for all 6 tokens (no EOS), so the finish reason is 'length'."""
    tokenizer = server.chat.tokenizer
    prompt = tokenizer.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    first, again = (
        chat(server, temperature=0, max_tokens=6).json(),
        chat(server, temperature=0, max_tokens=6).json(),
    )
    assert first["object"] == "chat.completion" and first["model"] == "tiny"
    assert first["choices"][0]["finish_reason"] == "length"
    assert first["choices"][0]["message"]["content"] == again["choices"][0]["message"]["content"]
    usage = first["usage"]
    assert usage["prompt_tokens"] == len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert (usage["completion_tokens"], usage["total_tokens"]) == (6, usage["prompt_tokens"] + 6)


def test_seed_n_and_stop(server: SimpleNamespace) -> None:
    def texts(**body: Any) -> list[str]:
        return [c["message"]["content"] for c in chat(server, max_tokens=8, **body).json()["choices"]]

    seeded = texts(temperature=1.0, top_p=0.95, seed=11, n=2)
    assert len(seeded) == 2 and seeded == texts(temperature=1.0, top_p=0.95, seed=11, n=2)
    assert seeded != texts(temperature=1.0, top_p=0.95, seed=12, n=2)
    greedy = texts(temperature=0)[0]
    stop = greedy[len(greedy) // 2 :][:2]
    cut = chat(server, temperature=0, max_tokens=8, stop=[stop]).json()["choices"][0]
    assert cut["message"]["content"] == greedy[: greedy.index(stop)] and cut["finish_reason"] == "stop"


def test_continue_final_message_extends_a_prefill(server: SimpleNamespace) -> None:
    """The reply continues the assistant's partial message: prompt = rendered messages + the prefill text."""
    prefill = [*MESSAGES, {"role": "assistant", "content": "Paris"}]
    body = chat(
        server,
        messages=prefill,
        temperature=0,
        max_tokens=4,
        continue_final_message=True,
        add_generation_prompt=False,
    ).json()
    tokenizer = server.chat.tokenizer
    prompt = tokenizer.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True) + "Paris"
    assert body["usage"]["prompt_tokens"] == len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    enc = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")
    out = server.chat.model.generate(
        **enc, max_new_tokens=4, do_sample=False, pad_token_id=tokenizer.pad_token_id
    )
    expected = tokenizer.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    assert body["choices"][0]["message"]["content"] == expected


@pytest.mark.parametrize(
    "content, status, message",
    [
        (b"not json", 400, "request body is not JSON"),
        (b'{"model": "other", "messages": []}', 404, "model 'other' is not served here"),
        (b'{"model": "tiny", "messages": [], "n": 2}', 400, "messages must be a non-empty list"),
    ],
)
def test_errors_use_openai_error_shape(
    server: SimpleNamespace, content: bytes, status: int, message: str
) -> None:
    response = httpx.post(server.base_url + "/chat/completions", content=content)
    assert response.status_code == status and message in response.json()["error"]["message"]


def test_lora_adapter_changes_the_model(model_dir: Path, tmp_path: Path) -> None:
    """A saved adapter with non-zero weights is applied on load: same prompt, different logits."""
    import torch
    from peft import LoraConfig, get_peft_model

    base = ChatModel.load(str(model_dir))
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    torch.manual_seed(0)
    get_peft_model(base.model, config).save_pretrained(tmp_path / "adapter")
    base = ChatModel.load(str(model_dir))
    tuned = ChatModel.load(str(model_dir), adapter=str(tmp_path / "adapter"))
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.inference_mode():
        delta = (tuned.model(ids).logits - base.model(ids).logits).abs().max().item()
    assert delta > 1e-3
    assert (
        tuned.complete({"messages": MESSAGES, "temperature": 0, "max_tokens": 3})["usage"][
            "completion_tokens"
        ]
        == 3
    )


def test_cli_rejects_a_directory_without_adapter(tmp_path: Path) -> None:
    from rft.cli import app

    result = CliRunner().invoke(app, ["serve", "--adapter", str(tmp_path)])
    assert result.exit_code == 2 and "adapter_config.json" in result.output


def stream(server: SimpleNamespace, **body: Any) -> list[dict[str, Any]]:
    """The server-sent events of a streamed request, parsed; asserts the stream ends with `[DONE]`."""
    payload = {"model": "tiny", "messages": MESSAGES, "stream": True, **body}
    with httpx.stream("POST", server.base_url + "/chat/completions", json=payload) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


def streamed_texts(chunks: list[dict[str, Any]]) -> dict[int, str]:
    texts: dict[int, str] = {}
    for chunk in chunks:
        for choice in chunk["choices"]:
            texts[choice["index"]] = texts.get(choice["index"], "") + choice["delta"].get("content", "")
    return texts


def test_stream_equals_the_whole_completion(server: SimpleNamespace) -> None:
    """Greedy and seeded-sampled streams concatenate to exactly the non-streamed texts, in several chunks,
    one id for the whole stream, a role delta first, a finish reason last per choice, usage when asked."""
    whole = chat(server, temperature=0, max_tokens=8).json()
    chunks = stream(server, temperature=0, max_tokens=8, stream_options={"include_usage": True})
    assert streamed_texts(chunks) == {0: whole["choices"][0]["message"]["content"]}
    assert len(chunks) >= 4 and {c["id"] for c in chunks} == {chunks[0]["id"]}
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "tiny" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-2]["choices"][0]["finish_reason"] == whole["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == whole["usage"]

    sampled = {"temperature": 1.0, "top_p": 0.9, "seed": 5, "n": 2, "max_tokens": 8}
    expected = [c["message"]["content"] for c in chat(server, **sampled).json()["choices"]]
    assert streamed_texts(stream(server, **sampled)) == dict(enumerate(expected))


def test_stream_holds_back_a_stop_string(server: SimpleNamespace) -> None:
    """A stop string is never sent, not even its first characters: the stream ends where the text is cut."""
    greedy = chat(server, temperature=0, max_tokens=8).json()["choices"][0]["message"]["content"]
    stop = greedy[len(greedy) // 2 :][:2]
    chunks = stream(server, temperature=0, max_tokens=8, stop=stop)
    assert streamed_texts(chunks) == {0: greedy[: greedy.index(stop)]}
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_closing_a_stream_stops_generation(server: SimpleNamespace) -> None:
    """A client that goes away frees the model at once: a 100k-token generation gives the lock back."""
    chunks = server.chat.stream(
        ChatRequest.parse({"messages": MESSAGES, "max_tokens": 100_000, "stream": True})
    )
    next(chunks), next(chunks)
    chunks.close()
    assert server.chat._lock.acquire(timeout=10)
    server.chat._lock.release()


def test_openai_client_chat_and_stream(server: SimpleNamespace) -> None:
    """The official openai-python client, pointed at the server, gets the same text whole and streamed."""
    from openai import NotFoundError, OpenAI

    client = OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
    assert [m.id for m in client.models.list()] == ["tiny"]
    whole = client.chat.completions.create(model="tiny", messages=MESSAGES, temperature=0, max_tokens=6)
    parts = client.chat.completions.create(
        model="tiny", messages=MESSAGES, temperature=0, max_tokens=6, stream=True
    )
    text = "".join(p.choices[0].delta.content or "" for p in parts if p.choices)
    assert text == whole.choices[0].message.content and whole.usage.completion_tokens == 6
    with pytest.raises(NotFoundError, match="is not served here"):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)


def test_embeddings_through_the_openai_client(server: SimpleNamespace) -> None:
    """Unit vectors of the model's width, equal for equal texts, read back from openai-python's default
    base64 form and from floats alike; each one is the mean of the last hidden state over the text's tokens."""
    import torch
    from openai import BadRequestError, OpenAI

    client = OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
    texts = ["Paris is a city.", "Name a city.", "Paris is a city."]
    result = client.embeddings.create(model="tiny", input=texts)
    vectors = [torch.tensor(d.embedding) for d in sorted(result.data, key=lambda d: d.index)]
    width = server.chat.model.config.hidden_size
    assert all(v.shape == (width,) and abs(v.norm().item() - 1) < 1e-5 for v in vectors)
    assert torch.equal(vectors[0], vectors[2]) and (vectors[0] @ vectors[1]).item() < 0.9999
    floats = client.embeddings.create(model="tiny", input=texts[0], encoding_format="float").data[0].embedding
    assert torch.allclose(torch.tensor(floats), vectors[0], atol=1e-6)
    tok = server.chat.tokenizer
    enc = tok(texts[1], return_tensors="pt")
    with torch.inference_mode():
        hidden = server.chat.model(**enc, output_hidden_states=True).hidden_states[-1][0].mean(0)
    assert torch.allclose(vectors[1], hidden / hidden.norm(), atol=1e-5)
    assert result.usage.prompt_tokens == sum(len(tok(t)["input_ids"]) for t in texts)
    with pytest.raises(BadRequestError, match="input must be a non-empty string"):
        client.embeddings.create(model="tiny", input=[""])


def test_cosine_grader_against_served_embeddings(
    server: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unchanged OpenAI cosine spec, its `text-embedding-3-large` mapped to `rft serve`."""
    from graders import load_grader

    monkeypatch.setenv(
        "RFT_MODEL_MAP",
        json.dumps({"text-embedding-3-large": {"base_url": server.base_url, "model": "tiny"}}),
    )
    grader = load_grader(
        {
            "type": "text_similarity",
            "name": "cos",
            "input": "{{sample.output_text}}",
            "reference": "{{item.ref}}",
            "evaluation_metric": "cosine",
        }
    )
    same = grader.grade("Paris is a city.", {"ref": "Paris is a city."})
    other = grader.grade("Name a city.", {"ref": "Paris is a city."})
    assert same.error is None and same.score == pytest.approx(1.0, abs=1e-5)
    assert other.error is None and other.score < same.score


def save_random_adapter(model_dir: Path, path: Path, seed: int) -> Path:
    """A LoRA adapter with non-zero weights (peft's default init would leave the model unchanged)."""
    import torch
    from peft import LoraConfig, get_peft_model

    base = ChatModel.load(str(model_dir))
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    torch.manual_seed(seed)
    get_peft_model(base.model, config).save_pretrained(path)
    return path


def test_named_adapters_are_served_beside_the_base(model_dir: Path, tmp_path: Path) -> None:
    """Each added adapter answers as if loaded alone; the base name still gets the base; removal 404s."""
    import torch

    paths = [save_random_adapter(model_dir, tmp_path / f"a{seed}", seed) for seed in (1, 2)]
    ids = torch.tensor([[5, 6, 7, 8]])

    def logits(chat: ChatModel, model: str | None = None) -> torch.Tensor:
        with chat.using(model) as lm, torch.inference_mode():
            return lm(ids).logits

    alone = [logits(ChatModel.load(str(model_dir), adapter=str(p))) for p in paths]
    base = logits(ChatModel.load(str(model_dir)))
    chat_model = ChatModel.load(str(model_dir), name="tiny")
    chat_model.add_adapter("one", paths[0])
    chat_model.add_adapter("two", paths[1])
    assert chat_model.served() == ["tiny", "one", "two"]
    assert (alone[0] - alone[1]).abs().max() > 1e-3 and (alone[0] - base).abs().max() > 1e-3
    for model, expected in [("two", alone[1]), ("tiny", base), ("one", alone[0]), (None, base)]:
        torch.testing.assert_close(logits(chat_model, model), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="already served"):
        chat_model.add_adapter("one", paths[1])
    with Server(full_app(chat_model), port=0) as srv:
        cards = httpx.get(srv.base_url + "/models").json()["data"]
        assert [(c["id"], c["parent"]) for c in cards] == [("tiny", None), ("one", "tiny"), ("two", "tiny")]
        body = {"model": "two", "messages": MESSAGES, "temperature": 0, "max_tokens": 4}
        reply = httpx.post(srv.base_url + "/chat/completions", json=body).json()
        assert reply["model"] == "two"
        chat_model.remove_adapter("two")
        gone = httpx.post(srv.base_url + "/chat/completions", json=body)
        assert gone.status_code == 404 and "'two' is not served here" in gone.json()["error"]["message"]
    torch.testing.assert_close(logits(chat_model, "one"), alone[0], rtol=1e-5, atol=1e-5)
    chat_model.remove_adapter("one")
    torch.testing.assert_close(logits(chat_model), base, rtol=1e-5, atol=1e-5)
    with pytest.raises(KeyError, match="no adapter 'one'"):
        chat_model.remove_adapter("one")


def test_adapters_on_a_model_loaded_with_one(model_dir: Path, tmp_path: Path) -> None:
    """A server started with --adapter keeps answering its own name with that adapter, others by name."""
    import torch

    own, extra = (save_random_adapter(model_dir, tmp_path / f"a{seed}", seed) for seed in (3, 4))
    ids = torch.tensor([[5, 6, 7]])
    chat_model = ChatModel.load(str(model_dir), adapter=str(own), name="tuned")
    with chat_model.using(None) as lm, torch.inference_mode():
        before = lm(ids).logits
    chat_model.add_adapter("extra", extra)
    expected = ChatModel.load(str(model_dir), adapter=str(extra)).model(ids).logits.detach()
    with chat_model.using("extra") as lm, torch.inference_mode():
        torch.testing.assert_close(lm(ids).logits, expected, rtol=1e-5, atol=1e-5)
    with chat_model.using("tuned") as lm, torch.inference_mode():
        torch.testing.assert_close(lm(ids).logits, before, rtol=1e-5, atol=1e-5)
