#!/usr/bin/env bash
# LESS vs. the baselines on a real pool with the BBH target, at CPU scale (2 cores, ~10 minutes).
#
#   bash examples/compare_bbh_cpu.sh        # env: DATA=../shared/data WORK=runs/compare_bbh_cpu THREADS=1
#
# 1. pool: 150 seeded-random examples from each of cot, t0 and alpaca_gpt4 (450 in all; the first
#    lines of each file all come from one sub-task, hence the sampling);
# 2. a tiny Llama made offline from the pool text (`less-select tiny-model`: BPE tokenizer + 100
#    causal-LM pretraining steps), so selection does not start from random weights. Nothing is
#    downloaded;
# 3. `less-select compare`: less, random, bm25, dsir, rds, rds_plus at 10% (45 examples) and the
#    full pool, LoRA r 8 training with the same settings for every method, target-set loss on the
#    81 BBH validation examples. Report: $WORK/compare/report/comparison.md (and .json).
# Rerunning reuses every finished stage (and reports the seconds measured when it ran).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
WORK=${WORK:-runs/compare_bbh_cpu}
THREADS=${THREADS:-1}
mkdir -p "$WORK/pool"

python - "$DATA" "$WORK" <<'PY'
import random, sys
from pathlib import Path
data, work = Path(sys.argv[1]), Path(sys.argv[2])
for name in ("cot", "t0", "alpaca_gpt4"):
    lines = (data / "train/processed" / name / f"{name}_data.jsonl").read_text(encoding="utf-8").splitlines()
    pick = sorted(random.Random(0).sample(range(len(lines)), 150))
    (work / "pool" / f"{name}.jsonl").write_text("".join(lines[i] + "\n" for i in pick), encoding="utf-8")
PY
POOL=("$WORK/pool/cot.jsonl" "$WORK/pool/t0.jsonl" "$WORK/pool/alpaca_gpt4.jsonl")

[ -f "$WORK/tiny_model/config.json" ] || less-select --threads "$THREADS" tiny-model \
  --data "${POOL[@]}" --output-dir "$WORK/tiny_model" --vocab-size 2048 --hidden-size 64 \
  --num-layers 2 --num-heads 4 --intermediate-size 256 --pretrain-seq-length 256 --pretrain-steps 100

cat > "$WORK/compare.yaml" <<YAML
model: $WORK/tiny_model
data: [${POOL[0]}, ${POOL[1]}, ${POOL[2]}]
task: bbh
data_dir: $DATA
output_dir: $WORK/compare
methods: [less, random, bm25, dsir, rds, rds_plus]
include_full: true
percentage: 0.1
seed: 42
max_seq_length: 256          # pool examples: warmup, datastore, training
target_max_seq_length: 3072  # BBH 2-shot CoT targets reach ~2,600 tokens with this tokenizer
eval_tasks: [loss:bbh]
warmup: {percentage: 0.2, epochs: 2, learning_rate: 0.001, lora_r: 8, lora_alpha: 32,
         per_device_batch_size: 8, effective_batch_size: 8, dtype: float32, logging_steps: 5}
datastore: {dims: [8192], projector: sparse, dtype: float32}
train: {epochs: 2, learning_rate: 0.001, lora_r: 8, lora_alpha: 32, per_device_batch_size: 8,
        effective_batch_size: 8, dtype: float32, logging_steps: 10}
eval: {dtype: float32}
YAML

less-select --threads "$THREADS" compare --config "$WORK/compare.yaml"
