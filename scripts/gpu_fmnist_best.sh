#!/bin/bash
# One seed of configs/fmnist_best.py on a lent GPU, sized to about 10 minutes of device time.
#
# The full recipe is 60 epochs; this run trains a 20-epoch schedule of the same recipe
# (cosine to 0 over 20 epochs, everything else unchanged), seed 0, and records the wall time
# per epoch in $OUT/fmnist_best.json so the full schedule's cost is known. Data: the four
# Fashion-MNIST IDX .gz files in $1 (default data/fashion-mnist, carried to the device).
#
#   bash scripts/gpu_fmnist_best.sh data/fashion-mnist          # writes to ${OUT:-/tmp/out}
set -euo pipefail
DATA=${1:-data/fashion-mnist}
OUT=${OUT:-/tmp/out}
EPOCHS=${EPOCHS:-20}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt" || true
start=$(date +%s)
python train.py --config configs/fmnist_best.py --workdir "$OUT/fmnist_best" \
  --config.data.folder="$DATA" --config.num_epochs="$EPOCHS" --config.eval_every_epochs=5 \
  --config.progress_bar=False --config.seed=0 2>&1 | tee "$OUT/fmnist_best.log"
python - "$OUT" "$start" "$EPOCHS" <<'PY'
import json, pathlib, sys, time
out, start, epochs = pathlib.Path(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
records = [json.loads(l) for l in open(out / "fmnist_best" / "metrics.jsonl")]
train = [r for r in records if r["kind"] == "train" and "images_per_s" in r]
evals = [r for r in records if r["kind"] == "eval"]
rate = sorted(r["images_per_s"] for r in train[1:])[len(train[1:]) // 2] if len(train) > 1 else None
summary = {"epochs": epochs, "wall_s": round(time.time() - start, 1),
           "median_train_images_per_s": rate,
           "train_s_per_epoch": round(60000 / rate, 1) if rate else None,
           "evals": [{"step": r["step"], "epoch": r.get("epoch"), "test_accuracy": r["test_accuracy"]}
                     for r in evals]}
(out / "fmnist_best.json").write_text(json.dumps(summary, indent=1))
print(json.dumps(summary, indent=1))
PY
