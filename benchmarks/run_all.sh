#!/usr/bin/env bash
# Full benchmark of issue 6 (about 20 minutes on 2 shared cores); writes benchmarks/results/*.json
# and prints the tables. Pass --quick for the seconds-long smoke version.
set -euo pipefail
cd "$(dirname "$0")/.."
python benchmarks/bench_datastore.py --threads 1 --thread-counts 1,2 "$@"
python benchmarks/report.py
