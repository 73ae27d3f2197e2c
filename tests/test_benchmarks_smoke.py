"""The benchmark script runs end to end in its quick mode and writes well-formed JSON.

This checks structure only; it claims nothing about performance (see docs/performance.md).
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_datastore.py"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "train" / "processed" / "cot" / "cot_data.jsonl"


@pytest.mark.slow  # ~60 s: trains and benchmarks every section in quick mode
@pytest.mark.skipif(not DATA.is_file(), reason="needs ../shared/data (the benchmark's pool)")
def test_quick_benchmark_writes_every_section(tmp_path):
    res = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--thread-counts", "1",
                          "--workdir", str(tmp_path / "work"), "--results-dir", str(tmp_path / "results")],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    out = {p.stem: json.loads(p.read_text()) for p in (tmp_path / "results").glob("*.json")}
    assert set(out) == {"throughput", "fidelity", "scoring", "scaling"}
    for name, payload in out.items():
        assert payload["section"] == name and payload["quick"] is True
        assert payload["machine"]["cpus"] >= 1

    run = out["throughput"]["runs"][0]
    assert run["plain_examples_per_s"] > 0 and run["datastore_examples_per_s"] > 0
    assert len(run["ratios"]) >= 2 and run["ratio_min"] <= run["ratio_median"] <= run["ratio_max"]
    assert run["original"]["examples_per_s"] > 0 and run["datastore_vs_original"] > 0
    pad = run["padding"]
    assert 0 <= pad["padding_aware"]["padding_over_real"] <= pad["greedy"]["padding_over_real"]

    fid = out["fidelity"]
    kinds = {(s["projector"], s["nnz"]) for s in fid["summary"]}
    assert {("sparse", 1), ("rademacher", None)} <= kinds
    for s in fid["summary"]:
        assert -1 <= s["spearman_mean"] <= 1 and 0 <= s["top5_mean"] <= 1
        assert s["expected_cosine_error"] == pytest.approx(s["dim"] ** -0.5)
        assert s["cosine_error_std"] > 0  # a projection is not exact
    assert fid["exact_score_std"] > 0

    sc = out["scoring"]
    assert sc["runs"][0]["rows"] == sc["rows"] and sc["runs"][0]["peak_rss_mb"] > 0
    assert not (tmp_path / "work" / "synthetic_store").exists()  # the synthetic store is deleted

    scale = out["scaling"]
    assert [r["rows"] for r in scale["runs"]] == sorted(r["rows"] for r in scale["runs"])
    assert all(r["seconds"] > 0 and r["peak_rss_mb"] > 0 for r in scale["runs"])
