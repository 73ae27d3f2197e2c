"""benchmarks/bench_select.py runs end to end in its quick mode and writes well-formed JSON; the
GPU smoke script at least parses. Structure only: no performance claim (docs/performance.md)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.slow  # ~30-60 s: six scoring processes and two select processes on toy sizes
def test_quick_select_benchmark(tmp_path):
    res = subprocess.run([sys.executable, str(BENCH / "bench_select.py"), "--quick", "--workdir",
                          str(tmp_path / "work"), "--results-dir", str(tmp_path / "results")],
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    score = json.loads((tmp_path / "results" / "select_score_quick.json").read_text())
    assert score["bit_identical"] is True
    assert [r["impl"] for r in score["runs"]] == ["previous", "current", "read-only"] * 2  # interleaved
    assert len(score["share_of_read_only_rate"]) == 2 and all(x > 0 for x in score["share_of_read_only_rate"])
    assert all(r["peak_rss_mb"] > 0 and r["gb_per_s"] > 0 for r in score["runs"])
    sel = json.loads((tmp_path / "results" / "select_select_quick.json").read_text())
    for r in sel["runs"]:
        assert r["n_pool"] == sel["rows"] and r["selection_lines"] == r["n_selected"] == sel["rows"] // 20
        assert r["scores_csv_rows"] == sel["rows"]
    assert set(sel["summary"]) == {"previous", "current"}
    assert not (tmp_path / "work" / "score_store").exists() and not (tmp_path / "work" / "select_inputs").exists()


def test_gpu_smoke_script_parses_and_refuses_unknown_arguments():
    script = BENCH / "gpu_smoke.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    res = subprocess.run(["bash", str(script), "--no-such-flag"], capture_output=True, text=True)
    assert res.returncode == 2 and "unknown argument" in res.stderr
