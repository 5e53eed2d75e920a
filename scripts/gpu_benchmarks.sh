#!/bin/bash
# The GPU benchmarks of docs/BENCHMARKS.md in one run, sized to about 10 minutes of device time.
#
# 1. the training step, full ResNet-19, T=4, B=64, float32 and bfloat16: snnjax, the ANN limit
#    and (where torch is importable) SpikingJelly 2.0;
# 2. memory and step time vs T (1, 4, 16) at full width, B=32: BPTT, remat=block, the SLTT
#    gradient, and SpikingJelly where importable;
# 3. a profile of one snnjax step: the share of the neuron scan (a fused Pallas LIF kernel is
#    worth writing only if it exceeds 10 %).
# Every part writes its JSON (+ Markdown) to $OUT; a part that fails does not stop the next one.
#
# On the lent machine (its own Python, no registry): first, here, `bash scripts/device_wheels.sh`,
# then run with .whl carried:
#   OUT=/tmp/out bash scripts/gpu_benchmarks.sh
# A rehearsal of every command on the CPU at toy sizes (same scripts, same flags otherwise):
#   REHEARSAL=1 OUT=/tmp/out bash scripts/gpu_benchmarks.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
# Six files in $OUT (the device tool returns at most 8): this log and each part's JSON (+ .md).
exec > >(tee "$OUT/gpu_benchmarks.log") 2>&1
source scripts/device_env.sh
if [ "${REHEARSAL:-0}" = 1 ]; then
  device=cpu width=0.0625 step_batch=2 memory_batch=2 steps=1 Ts=1,2 few_steps=1
else
  device=gpu width=1 step_batch=64 memory_batch=32 steps=30 Ts=1,4,16 few_steps=3
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null
peers=""
if python3 -c "import torch, spikingjelly" 2>/dev/null; then peers=",spikingjelly"; fi
echo "peers: ${peers:-none importable}"

timeout 300 python3 benchmarks/train_throughput.py --device $device --width $width \
  --batch $step_batch --dtypes float32,bfloat16 --steps $steps --frameworks "snnjax,ann$peers" \
  --out "$OUT/throughput_gpu.json"

timeout 240 python3 benchmarks/memory_vs_T.py --device $device --width $width \
  --batch $memory_batch --Ts $Ts --steps $few_steps \
  --variants "none,block,sltt$peers" --out "$OUT/memory_vs_T_gpu.json"

timeout 90 python3 benchmarks/profile_step.py --width $width --batch $step_batch \
  --steps $few_steps --json "$OUT/profile_gpu.json"
