#!/usr/bin/env bash
# Create (or reuse) .venv and install less-select with its test extras. Sourced by demo.sh/test.sh.
# torch: kept if already importable (GPU users install their own build first); otherwise the pinned
# CPU-capable release torch==2.13.0 is installed before the package so that no resolver pulls an
# unpinned (CUDA) torch. Set LESS_TORCH_SPEC to install another torch requirement instead.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install --quiet --upgrade pip >/dev/null
if ! python -c "import torch" 2>/dev/null; then
  python -m pip install --quiet "${LESS_TORCH_SPEC:-torch==2.13.0}"
fi
python -m pip install --quiet -e ".[test]"
python -c "import torch, transformers, peft; print(f'torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}')"
