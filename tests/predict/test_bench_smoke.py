"""benchmarks/bench_predict.py in its quick mode: the replayed runs (scores read from full LESS)
select exactly what the runs with real gradients select, and the JSON holds every reported field.
Structure and that equality only: no quality claim at these toy sizes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_predict.py"


@pytest.mark.slow  # ~1-2 min: a tiny model, warmup, full LESS, 2 replayed + 2 real runs, 3 trainings
def test_quick_predict_benchmark(tmp_path):
    res = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--workloads", "demo", "--workdir",
                          str(tmp_path / "work"), "--results-dir", str(tmp_path / "results")],
                         capture_output=True, text=True, timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    w = json.loads((tmp_path / "results" / "predict.json").read_text())["workloads"]["demo"]
    assert w["complete"] is True and {r["mode"] for r in w["runs"]} == {"predicted", "cascade"}
    replay = {r["mode"]: r for r in w["runs"]}
    for real in w["e2e"]:
        assert real["recall"] == replay[real["mode"]]["recall"]
        assert real["pool_gradient_passes"] == replay[real["mode"]]["pool_gradient_passes"]
        assert real["sample_score_max_abs_diff"] < 1e-3
    assert all(r["target_loss"] > 0 for r in w["runs"]) and len(w["quality"]["full_less"]) == 1
    assert all(0 <= s["recall"]["mean"] <= 1 for s in w["summary"])
