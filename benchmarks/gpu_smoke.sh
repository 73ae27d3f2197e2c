#!/usr/bin/env bash
# GPU smoke test (GitHub issue 14, item 8): on a machine with a CUDA GPU, build a ~1B-parameter
# Llama-shaped model from a config (random weights, nothing downloaded), run
# warmup -> datastore -> targets -> select on a few hundred real pool examples, check that the
# projected features of a small slice are the same rows on the GPU as on the CPU, and print
# examples/s, tokens/s and peak GPU memory. Meant to finish in under 5 minutes on one GPU.
#
#   benchmarks/gpu_smoke.sh [--data-dir DIR] [--work DIR] [--examples N] [--cpu-dry-run]
#
# --data-dir   LESS data folder (train/processed/cot/cot_data.jsonl and eval/bbh); default
#              ../shared/data beside the repository, or $LESS_BENCH_DATA
# --work       scratch folder (default /tmp/less_gpu_smoke; deleted and recreated)
# --examples   pool examples (default 300)
# --cpu-dry-run  the same steps with a tiny model on the CPU (checks the script itself; the
#              parity check then compares two CPU builds, which only exercises the comparison)
#
# Exit status 0 only if every stage ran and the parity check passed.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA="${LESS_BENCH_DATA:-$REPO/../shared/data}"
WORK=/tmp/less_gpu_smoke
N=300
DRY=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --data-dir) DATA="$2"; shift 2 ;;
    --work) WORK="$2"; shift 2 ;;
    --examples) N="$2"; shift 2 ;;
    --cpu-dry-run) DRY=1; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "gpu_smoke.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

POOL_SRC="$DATA/train/processed/cot/cot_data.jsonl"
[[ -f "$POOL_SRC" ]] || { echo "gpu_smoke.sh: $POOL_SRC not found; pass --data-dir" >&2; exit 2; }
[[ -d "$DATA/eval/bbh" ]] || { echo "gpu_smoke.sh: $DATA/eval/bbh not found; pass --data-dir" >&2; exit 2; }
PY="${PYTHON:-python}"
CLI=("$PY" -m less_select.cli)
export PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false

if [[ $DRY == 1 ]]; then
  # tiny model, CPU only: hidden 64, 2 layers; short sequences; small d
  export CUDA_VISIBLE_DEVICES=""
  MODEL_SHAPE="hidden=64 layers=2 heads=4 intermediate=128 vocab=1024"
  SEQ=128; DIM=1024; DTYPE=float32
else
  "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
    || { echo "gpu_smoke.sh: no CUDA GPU visible to torch (use --cpu-dry-run to test the script on a CPU)" >&2; exit 2; }
  # ~1.0B parameters: 20 layers of width 2048 (MLP 5632) + embeddings (TinyLlama-like widths)
  MODEL_SHAPE="hidden=2048 layers=20 heads=16 intermediate=5632 vocab=32000"
  SEQ=512; DIM=8192; DTYPE=bfloat16
fi

rm -rf "$WORK"; mkdir -p "$WORK"
head -n "$N" "$POOL_SRC" > "$WORK/pool.jsonl"
T_ALL=$(date +%s.%N)
elapsed() { "$PY" -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(date +%s.%N)"; }

# peak GPU memory of the whole run: nvidia-smi sampled every 200 ms in the background
GPU_LOG="$WORK/gpu_mem.csv"
if [[ $DRY == 0 ]] && command -v nvidia-smi > /dev/null; then
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > "$GPU_LOG" &
  SMI=$!
  trap 'kill $SMI 2>/dev/null || true' EXIT
fi

echo "== model ($MODEL_SHAPE, random weights)"
"$PY" - "$WORK/model" "$WORK/pool.jsonl" $MODEL_SHAPE <<'EOF'
import sys, torch
from less_select.data import load_examples
from less_select.demo.tiny_model import build_tiny_llama, build_tokenizer
out, pool, *shape = sys.argv[1:]
shape = {k: int(v) for k, v in (s.split("=") for s in shape)}
examples, _ = load_examples([pool])
tok = build_tokenizer((e.prompt_text + "\n" + e.completion_text for e in examples), vocab_size=shape["vocab"])
model = build_tiny_llama(len(tok), hidden_size=shape["hidden"], num_layers=shape["layers"],
                         num_heads=shape["heads"], intermediate_size=shape["intermediate"],
                         max_positions=2048, tokenizer=tok)
tok.save_pretrained(out)
model.save_pretrained(out)
print(f"  {sum(p.numel() for p in model.parameters()) / 1e9:.3f}B parameters, vocabulary {len(tok)}")
EOF

echo "== warmup"
T=$(date +%s.%N)
"${CLI[@]}" warmup --model "$WORK/model" --pool-files "$WORK/pool.jsonl" --output-dir "$WORK/warmup" \
  --percentage 0.2 --epochs 1 --warmup-ratio 0 --max-seq-length "$SEQ" --per-device-batch-size 4 \
  --effective-batch-size 16 \
  --lora-r 8 --lora-alpha 32 --dtype "$DTYPE"
echo "  warmup: $(elapsed "$T") s"

echo "== datastore"
T=$(date +%s.%N)
"${CLI[@]}" datastore --model "$WORK/model" --checkpoints "$WORK/warmup" --data "$WORK/pool.jsonl" \
  --output-dir "$WORK/datastore" --dims "$DIM" --max-seq-length "$SEQ" --dtype "$DTYPE"
T_DS=$(elapsed "$T")

echo "== targets (bbh)"
T=$(date +%s.%N)
"${CLI[@]}" targets --datastore "$WORK/datastore" --task bbh --data-dir "$DATA" \
  --output-dir "$WORK/targets" --max-seq-length 2048 --dtype "$DTYPE"  # BBH prompts are 3-shot CoT
echo "  targets: $(elapsed "$T") s"

echo "== select"
T=$(date +%s.%N)
"${CLI[@]}" select --datastore "$WORK/datastore" --targets "$WORK/targets" --output-dir "$WORK/selection"
echo "  select: $(elapsed "$T") s"

echo "== parity: the first 8 examples' features on the GPU and on the CPU (float32)"
PARITY=(datastore --model "$WORK/model" --checkpoints "$WORK/warmup" --data "$WORK/pool.jsonl"
        --dims "$DIM" --max-seq-length "$SEQ" --dtype float32 --max-examples 8)
"${CLI[@]}" "${PARITY[@]}" --output-dir "$WORK/parity_gpu"
CUDA_VISIBLE_DEVICES="" "${CLI[@]}" "${PARITY[@]}" --output-dir "$WORK/parity_cpu"

[[ -n "${SMI:-}" ]] && { kill "$SMI" 2>/dev/null || true; wait "$SMI" 2>/dev/null || true; }
"$PY" - "$WORK" "$T_DS" "$DIM" "$DRY" <<'EOF'
import json, sys
from pathlib import Path
import numpy as np
from less_select.datastore.store import Datastore
work, t_ds, dim, dry = Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
ds = Datastore(work / "datastore")
tokens = sum(json.loads(line)["n_tokens"] for line in open(work / "datastore" / "index.jsonl"))
sel = json.loads((work / "selection" / "selection.json").read_text())
print(f"datastore: {ds.n_rows} rows, {tokens} tokens in {t_ds:.1f} s (model load included): "
      f"{ds.n_rows / t_ds:.1f} examples/s, {tokens / t_ds:.0f} tokens/s")
print(f"select: {sel['n_selected']} of {sel['n_pool']} selected")
g, c = Datastore(work / "parity_gpu"), Datastore(work / "parity_cpu")
worst_cos, worst_abs = 1.0, 0.0
for ck in ds.checkpoints:
    a, b = g.load(ck["name"], dim), c.load(ck["name"], dim)
    assert a.shape == b.shape, (a.shape, b.shape)
    cos = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    worst_cos, worst_abs = min(worst_cos, float(cos.min())), max(worst_abs, float(np.abs(a - b).max()))
# float32 on both devices; float16 storage rounds each entry to ~5e-4 relative
ok = worst_cos > 0.999
print(f"parity GPU vs CPU: min row cosine {worst_cos:.6f}, max |diff| {worst_abs:.2e} -> {'PASS' if ok else 'FAIL'}")
gpu_log = work / "gpu_mem.csv"
if gpu_log.is_file() and gpu_log.read_text().split():
    print(f"peak GPU memory (nvidia-smi, whole device): {max(int(x) for x in gpu_log.read_text().split()) / 1024:.1f} GiB")
else:
    print("peak GPU memory: n/a" + (" (CPU dry run)" if dry else " (nvidia-smi not found)"))
sys.exit(0 if ok else 1)
EOF
echo "total: $(elapsed "$T_ALL") s"
