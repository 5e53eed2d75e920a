#!/bin/bash
# One seed of configs/fmnist_best.py on a lent GPU, sized to about 10 minutes of device time.
#
# The full recipe is 60 epochs; this run trains a 20-epoch schedule of the same recipe
# (cosine to 0 over 20 epochs, everything else unchanged), seed 0, and records the wall time
# per epoch in $OUT/fmnist_best.json so the full schedule's cost is known. Data: the four
# Fashion-MNIST IDX .gz files in $1 (default data/fashion-mnist, carried to the device), e.g.
# `mkdir -p data && cp -r /usr/share/datasets/fashion-mnist data/` here. The device's Python
# needs the wheels of `bash scripts/device_wheels.sh` (carry .whl).
#
#   bash scripts/gpu_fmnist_best.sh data/fashion-mnist          # writes to ${OUT:-/tmp/out}
# A rehearsal on the CPU (the :cpu budget, 3 steps, same flags otherwise):
#   REHEARSAL=1 bash scripts/gpu_fmnist_best.sh /usr/share/datasets/fashion-mnist
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-data/fashion-mnist}
OUT=${OUT:-/tmp/out}
EPOCHS=${EPOCHS:-20}
# The workdir (checkpoints: many files, deep folders) stays outside $OUT, which the device tool
# returns only 8 files of, 2 folders deep: $OUT gets the log, metrics.jsonl and the summary.
WORKDIR=${WORKDIR:-/tmp/fmnist_best}
mkdir -p "$OUT"
source scripts/device_env.sh
config=configs/fmnist_best.py rehearsal_flags=()
if [ "${REHEARSAL:-0}" = 1 ]; then
  config=configs/fmnist_best.py:cpu rehearsal_flags=(--config.max_steps=3 --config.log_every_steps=1)
  WORKDIR=${WORKDIR%/}_rehearsal && rm -rf "$WORKDIR"   # a toy run: always from scratch
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null \
  | tee "$OUT/fmnist_best.log" || true
start=$(date +%s)
# SIGTERM after TRAIN_S seconds: train.py checkpoints and stops, and the summary below still
# reads what finished, so a schedule longer than the lease is measured, not lost.
status=0
timeout --signal=TERM "${TRAIN_S:-540}" python3 train.py --config "$config" \
  --workdir "$WORKDIR" --config.data.folder="$DATA" --config.num_epochs="$EPOCHS" \
  --config.eval_every_epochs=5 --config.progress_bar=False --config.seed=0 \
  "${rehearsal_flags[@]}" 2>&1 | tee -a "$OUT/fmnist_best.log" || status=$?
echo "train.py exit status: $status" | tee -a "$OUT/fmnist_best.log"
cp "$WORKDIR/metrics.jsonl" "$OUT/"
python3 - "$OUT" "$start" "$EPOCHS" <<'PY'
import json, pathlib, sys, time
out, start, epochs = pathlib.Path(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
records = [json.loads(l) for l in open(out / "metrics.jsonl")]
train = [r for r in records if r["kind"] == "train" and "images_per_s" in r]
evals = [r for r in records if r["kind"] == "eval"]
rate = sorted(r["images_per_s"] for r in train[1:])[len(train[1:]) // 2] if len(train) > 1 else None
summary = {"epochs": epochs, "last_step": max((r["step"] for r in records), default=0),
           "wall_s": round(time.time() - start, 1),
           "median_train_images_per_s": rate,
           "train_s_per_epoch": round(60000 / rate, 1) if rate else None,
           "evals": [{"step": r["step"], "epoch": r.get("epoch"), "test_accuracy": r["test_accuracy"]}
                     for r in evals]}
(out / "fmnist_best.json").write_text(json.dumps(summary, indent=1))
print(json.dumps(summary, indent=1))
PY
