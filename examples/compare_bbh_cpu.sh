#!/usr/bin/env bash
# LESS vs. the baselines on a real pool with the BBH target, at CPU scale (2 cores, ~10 minutes).
#
#   bash examples/compare_bbh_cpu.sh            # DATA=../shared/data WORK=runs/compare_bbh_cpu THREADS=2
#
# 1. pool: 150 seeded-random examples from each of cot, t0 and alpaca_gpt4 (450 in all; the first
#    lines of each file are all one sub-task, hence the sampling), and 300 other examples of each
#    (disjoint from the pool) to pre-train the tiny model on;
# 2. a tiny Llama made offline (make_tiny_model_dir: BPE tokenizer trained on the pool text, random
#    weights), then briefly fully trained on the 900 disjoint examples with `less-select train`,
#    so that the comparison does not start from random weights. Nothing is downloaded;
# 3. `less-select compare`: less, random, bm25, dsir, rds, rds_plus at 10% (45 examples) + the
#    full pool, LoRA r 8 training with the same settings for all, target-set loss on the 81 BBH
#    validation examples. The report is $WORK/compare/report/comparison.md.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
WORK=${WORK:-runs/compare_bbh_cpu}
THREADS=${THREADS:-2}
mkdir -p "$WORK"

python - "$DATA" "$WORK" <<'PY'
import json, random, sys
from pathlib import Path
data, work = Path(sys.argv[1]), Path(sys.argv[2])
sources = {"cot": "cot/cot_data.jsonl", "t0": "t0/t0_data.jsonl",
           "alpaca_gpt4": "alpaca_gpt4/alpaca_gpt4_data.jsonl"}
(work / "pool").mkdir(parents=True, exist_ok=True)
pool_text, pretrain = [], []
for name, rel in sources.items():
    lines = (data / "train/processed" / rel).read_text(encoding="utf-8").splitlines()
    pick = random.Random(0).sample(range(len(lines)), 450)
    pool, rest = [lines[i] for i in pick[:150]], [lines[i] for i in pick[150:]]
    (work / "pool" / f"{name}.jsonl").write_text("\n".join(pool) + "\n", encoding="utf-8")
    pretrain += rest
    pool_text += [m["content"] for l in pool for m in json.loads(l)["messages"]]
(work / "pretrain.jsonl").write_text("\n".join(pretrain) + "\n", encoding="utf-8")
if not (work / "tiny_init" / "config.json").is_file():
    from less_select.modeling import make_tiny_model_dir
    make_tiny_model_dir(work / "tiny_init", pool_text, vocab_size=2048, seed=0, hidden_size=128,
                        num_layers=4, num_heads=4, intermediate_size=512, max_positions=4096)
PY

less-select --threads "$THREADS" train --method full --model "$WORK/tiny_init" \
  --train-files "$WORK/pretrain.jsonl" --output-dir "$WORK/tiny_base" --epochs 2 \
  --learning-rate 1e-3 --warmup-ratio 0.03 --per-device-batch-size 8 --effective-batch-size 8 \
  --max-seq-length 256 --dtype float32 --logging-steps 20

cat > "$WORK/compare.yaml" <<YAML
model: $WORK/tiny_base
data: [$WORK/pool/cot.jsonl, $WORK/pool/t0.jsonl, $WORK/pool/alpaca_gpt4.jsonl]
task: bbh
data_dir: $DATA
output_dir: $WORK/compare
methods: [less, random, bm25, dsir, rds, rds_plus]
include_full: true
percentage: 0.1
seed: 42
max_seq_length: 256          # pool examples: warmup, datastore, training
target_max_seq_length: 3072  # BBH 2-shot CoT targets are up to ~2,600 tokens with this tokenizer
eval_tasks: [loss:bbh]
warmup: {percentage: 0.2, epochs: 2, learning_rate: 0.001, lora_r: 8, lora_alpha: 32,
         per_device_batch_size: 8, effective_batch_size: 8, dtype: float32, logging_steps: 5}
datastore: {dims: [1024], projector: sparse, dtype: float32}
train: {epochs: 2, learning_rate: 0.001, lora_r: 8, lora_alpha: 32, per_device_batch_size: 8,
        effective_batch_size: 8, dtype: float32, logging_steps: 10}
eval: {dtype: float32}
YAML

less-select --threads "$THREADS" compare --config "$WORK/compare.yaml"
