"""`rft serve`: the OpenAI chat-completions wire format over a real tiny model on a loopback socket."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from tiny_chat import build_chat_model, one_torch_thread
from typer.testing import CliRunner

from rft.serve import ChatModel, ChatRequest, ChatServer

pytestmark = pytest.mark.usefixtures(one_torch_thread.__name__)
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a city."}]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_chat_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def server(model_dir: Path):
    srv = ChatServer(ChatModel.load(str(model_dir), name="tiny"), port=0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def chat(server: ChatServer, **body: Any) -> httpx.Response:
    return httpx.post(
        server.base_url + "/chat/completions", json={"model": "tiny", "messages": MESSAGES, **body}
    )


@pytest.mark.parametrize(
    "body, message",
    [
        ({"messages": []}, "messages must be a non-empty list"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, r"messages\[0\] must be"),
        ({"messages": MESSAGES, "temperature": 3}, r"temperature must be in \[0, 2\]"),
        ({"messages": MESSAGES, "top_p": 0}, r"top_p must be in \(0, 1\]"),
        ({"messages": MESSAGES, "max_tokens": 0}, "max_tokens must be a positive integer"),
        ({"messages": MESSAGES, "n": 1.5}, "n must be a positive integer"),
        ({"messages": MESSAGES, "stop": [""]}, "stop must be"),
        ({"messages": MESSAGES, "stream": True}, "stream=true is not supported"),
        ({"messages": MESSAGES, "logit_bias": {}}, r"unsupported fields \['logit_bias'\]"),
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


def test_models_health_and_unknown_routes(server: ChatServer) -> None:
    models = httpx.get(server.base_url + "/models").json()
    assert [m["id"] for m in models["data"]] == ["tiny"]
    assert httpx.get(server.base_url.removesuffix("/v1") + "/health").json() == {"status": "ok"}
    assert httpx.get(server.base_url + "/nope").status_code == 404


def test_greedy_completion_with_usage(server: ChatServer) -> None:
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


def test_seed_n_and_stop(server: ChatServer) -> None:
    def texts(**body: Any) -> list[str]:
        return [c["message"]["content"] for c in chat(server, max_tokens=8, **body).json()["choices"]]

    seeded = texts(temperature=1.0, top_p=0.95, seed=11, n=2)
    assert len(seeded) == 2 and seeded == texts(temperature=1.0, top_p=0.95, seed=11, n=2)
    assert seeded != texts(temperature=1.0, top_p=0.95, seed=12, n=2)
    greedy = texts(temperature=0)[0]
    stop = greedy[len(greedy) // 2 :][:2]
    cut = chat(server, temperature=0, max_tokens=8, stop=[stop]).json()["choices"][0]
    assert cut["message"]["content"] == greedy[: greedy.index(stop)] and cut["finish_reason"] == "stop"


def test_continue_final_message_extends_a_prefill(server: ChatServer) -> None:
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
def test_errors_use_openai_error_shape(server: ChatServer, content: bytes, status: int, message: str) -> None:
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
