"""Tiny chat models built offline for tests: a byte-level BPE tokenizer with a chat template, a 2-layer Llama.

`build_chat_model(path, examples)` trains the model until it answers each example's messages with its
target text under greedy decoding, so a test can drive a real model through a real server and get a
known judge verdict back. With no examples it saves the random model untrained (fast, for plumbing tests).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

Messages = list[dict[str, str]]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
_BASE_CORPUS = ["The capital of France is Paris.", "Rate the answer from 0 to 10.", "<|user|> <|assistant|>"]


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread; more only contend with other work on a 2-core machine.

    Import it into a test module and list it in `pytestmark = pytest.mark.usefixtures(...)`.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build_tokenizer(corpus: Sequence[str]):  # -> PreTrainedTokenizerFast
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([*_BASE_CORPUS, *corpus], trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_chat_model(path: Path, examples: Sequence[tuple[Messages, str]] = (), max_steps: int = 300) -> Path:
    """Save a tiny Llama + tokenizer at `path`, trained to answer each `(messages, target)` exactly."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    corpus = [m["content"] for msgs, _ in examples for m in msgs] + [t for _, t in examples]
    tokenizer = build_tokenizer(corpus)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    if examples:
        _fit(model, tokenizer, examples, max_steps)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _fit(model, tokenizer, examples: Sequence[tuple[Messages, str]], max_steps: int) -> None:
    """Teacher-force the targets (prompt tokens masked out) until greedy decoding reproduces every one."""
    import torch

    rows, prompts = [], []
    for messages, target in examples:
        prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        t = tokenizer(target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        rows.append((p + t, [-100] * len(p) + t))
        prompts.append((p, target))
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.tensor(
        [ids + [tokenizer.pad_token_id] * (width - len(ids)) for ids, _ in rows]
    )  # [N, T]
    labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in rows])  # [N, T]
    mask = (torch.arange(width)[None, :] < torch.tensor([len(ids) for ids, _ in rows])[:, None]).long()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: extra threads only add contention on a busy machine
    try:
        for step in range(max_steps):
            model.train()
            loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            if loss.item() < 0.03 and step % 10 == 0 and _reproduces(model, tokenizer, prompts):
                break
    finally:
        torch.set_num_threads(threads)
        model.eval()


def _reproduces(model, tokenizer, prompts: list[tuple[list[int], str]]) -> bool:
    import torch

    model.eval()
    with torch.inference_mode():
        for ids, target in prompts:
            out = model.generate(
                torch.tensor([ids]),
                max_new_tokens=len(target),
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
            if tokenizer.decode(out[0, len(ids) :], skip_special_tokens=True) != target:
                return False
    return True


def start_rft_serve(
    model_dir: Path, name: str = "judge", state_dir: Path | None = None, **popen: Any
) -> tuple[subprocess.Popen, str]:
    """`rft serve` on `model_dir` as a real subprocess on a free loopback port: the process and its base URL.

    Its fine-tuning state goes to `state_dir` (default: a fresh temporary directory). The caller terminates
    the process. Its output keeps being drained so a chatty server never blocks.
    """
    state = state_dir or Path(tempfile.mkdtemp(prefix="rft-serve-"))
    cmd = [sys.executable, "-m", "rft.cli", "serve", "--model", str(model_dir), "--name", name, "--port", "0",
           "--state-dir", str(state)]
    proc = subprocess.Popen(
        cmd,
        cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        **popen,
    )
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "listening on" in line:
            break
    else:
        pytest.fail("rft serve exited before listening:\n" + "".join(lines))
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    return proc, line.rsplit(" ", 1)[-1].strip()
