#!/usr/bin/env bash
# Set up .venv (see setup_env.sh) and run the demo (add --quick for the one-minute version).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup_env.sh
less-select --threads "${LESS_THREADS:-1}" demo "$@"
