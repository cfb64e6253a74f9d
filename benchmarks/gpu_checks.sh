#!/usr/bin/env bash
# The GPU checks, as one short run on a CUDA machine (README: Memory, Several GPUs):
#   bash benchmarks/gpu_checks.sh OUT_DIR
# 1. pytest -m gpu (NF4 + LoRA step on CUDA; QLoRA + FSDP through configs/strategies/fsdp.yaml);
# 2. benchmarks.memory at CodeLlama-7B's shape with random weights: one SFT step at 2,048 and 4,096 tokens and one
#    PPO iteration (prompt 1,024 + 256, batch 8) with each critic: peak and total CUDA memory, tokens/s, time split.
# Rows stream to OUT_DIR/memory_7b.err as they finish, so a run cut short keeps what it measured.
set -uo pipefail
out=${1:-runs/gpu}
py=${PYTHON:-.venv/bin/python}  # PYTHON=python3 where the CUDA torch is the system one
mkdir -p "$out"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/device.txt"
"$py" -c "import torch, transformers, peft, bitsandbytes; print('torch', torch.__version__, 'transformers', \
transformers.__version__, 'peft', peft.__version__, 'bitsandbytes', bitsandbytes.__version__)" | tee -a "$out/device.txt"
timeout 120 "$py" -m pytest -m gpu tests/gpu/test_qlora_cuda.py -q -s 2>&1 | tee "$out/pytest_qlora.log"
timeout "${MEMORY_TIMEOUT:-420}" "$py" -m benchmarks.memory --shape codellama7b --seq 2048 4096 --bf16 --grad-ckpt \
  > "$out/memory_7b.json" 2> "$out/memory_7b.err"
echo "memory rc=$?" | tee -a "$out/device.txt"
timeout "${FSDP_TIMEOUT:-150}" "$py" -m pytest -m gpu tests/gpu/test_fsdp_cuda.py -q 2>&1 | tee "$out/pytest_fsdp.log"
