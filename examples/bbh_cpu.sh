#!/usr/bin/env bash
# Real data, CPU scale: LESS with a BBH target on 300 examples of the shared pools. See bbh_cpu.yaml.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${LESS_DATA:-../shared/data}
mkdir -p runs/bbh_cpu_pool
for src in cot t0 alpaca_gpt4; do
  head -n 100 "$DATA/train/processed/$src/${src}_data.jsonl" > "runs/bbh_cpu_pool/$src.jsonl"
done
[ -f runs/bbh_cpu_model/config.json ] || less-select --threads 1 tiny-model \
  --data runs/bbh_cpu_pool/*.jsonl --output-dir runs/bbh_cpu_model --pretrain-steps 100
time less-select --threads 1 run examples/bbh_cpu.yaml
