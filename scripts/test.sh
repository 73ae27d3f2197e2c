#!/usr/bin/env bash
# Set up .venv (see setup_env.sh) and run the test suite.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup_env.sh
python -m pytest "$@"
