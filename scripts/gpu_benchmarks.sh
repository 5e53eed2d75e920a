#!/bin/bash
# The GPU benchmarks of docs/BENCHMARKS.md in one run, sized to about 10 minutes of device time.
#
# 1. the training step, full ResNet-19, T=4, B=64, float32 and bfloat16: snnjax, the ANN limit
#    and (where torch is importable) SpikingJelly 2.0;
# 2. memory and step time vs T (1, 4, 16) at full width, B=32: BPTT, remat=block, the SLTT
#    gradient, and SpikingJelly where importable;
# 3. a profile of one snnjax step: the share of the neuron scan (a fused Pallas LIF kernel is
#    worth writing only if it exceeds 10 %).
# Every part writes JSON + Markdown to $OUT; a part that fails does not stop the next one.
#
#   OUT=/tmp/out bash scripts/gpu_benchmarks.sh
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt" || true
peers=""
if python -c "import torch, spikingjelly" 2>/dev/null; then peers=",spikingjelly"; fi
echo "peers: ${peers:-none importable}" | tee "$OUT/peers.txt"

timeout 300 python benchmarks/train_throughput.py --device gpu --width 1 --batch 64 \
  --dtypes float32,bfloat16 --steps 30 --frameworks "snnjax,ann$peers" \
  --out "$OUT/throughput_gpu.json" 2>&1 | tail -20 | tee "$OUT/throughput_gpu.log"

timeout 240 python benchmarks/memory_vs_T.py --device gpu --width 1 --batch 32 --Ts 1,4,16 \
  --variants "none,block,sltt$peers" --out "$OUT/memory_vs_T_gpu.json" 2>&1 | tail -25 \
  | tee "$OUT/memory_vs_T_gpu.log"

timeout 90 python benchmarks/profile_step.py --width 1 --batch 64 \
  --json "$OUT/profile_gpu.json" 2>&1 | head -30 | tee "$OUT/profile_gpu.log"
