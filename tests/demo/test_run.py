"""``less-select demo --quick`` end to end through the CLI: report folder, table, budgets, summary."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from less_select.cli import main
from less_select.demo.run import DemoConfig, resolved
from less_select.errors import UserError


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo_out"
    assert main(["--threads", "1", "demo", "--quick", "--output-dir", str(out)]) == 0
    return out


@pytest.mark.slow  # the quick demo fixture runs the whole demo (~50 s)
def test_quick_demo_report_folder(quick_demo, capsys):
    report = quick_demo / "report"
    for name in ("metrics.png", "less_scores.png", "family_share.png", "summary.md"):
        assert (report / name).is_file() and (report / name).stat().st_size > 100, name
    for name in ("metrics.png", "less_scores.png", "family_share.png"):
        assert (report / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow  # the quick demo fixture runs the whole demo (~50 s)
def test_quick_demo_table_and_budgets(quick_demo):
    s = resolved(DemoConfig(quick=True))
    result = json.loads((quick_demo / "demo.json").read_text())["result"]
    rows = {r["method"]: r for r in result["rows"]}
    assert list(rows) == ["base", *s["methods"], "full"]
    assert {"less", "random"} <= set(rows)
    n_budget = int(s["percentage"] * s["pool_size"])
    for name, r in rows.items():
        assert math.isfinite(r["target_loss"]) and r["target_loss"] > 0, name
        assert 0.0 <= r["exact_match"] <= 1.0, name
        assert r["n_test"] == s["n_test"]
    assert rows["full"]["n_selected"] == s["pool_size"] and rows["base"]["n_selected"] == 0
    # every selection has the budgeted size, on disk too
    for m in s["methods"]:
        assert rows[m]["n_selected"] == n_budget
        assert sum(result["family_counts"][m].values()) == n_budget
    sel = quick_demo / "compare" / "less_run" / "selected" / "target"
    assert len((sel / f"top_p{s['percentage']:g}.jsonl").read_text().splitlines()) == n_budget
    assert len((quick_demo / "compare" / "selections" / "random" /
                f"top_p{s['percentage']:g}.jsonl").read_text().splitlines()) == n_budget


@pytest.mark.slow  # the quick demo fixture runs the whole demo (~50 s)
def test_quick_demo_summary_mentions_every_method(quick_demo):
    md = (quick_demo / "report" / "summary.md").read_text()
    s = resolved(DemoConfig(quick=True))
    for m in ["base", *s["methods"], "full"]:
        assert f"| {m} |" in md, m
    assert "LESS vs random" in md and "Best exact match" in md
    assert "## Notes" in md and "Wall time per phase" in md


@pytest.mark.slow  # the quick demo fixture runs the whole demo (~50 s)
def test_rerun_with_same_settings_reuses_stages(quick_demo, capsys):
    assert main(["demo", "--quick", "--output-dir", str(quick_demo)]) == 0
    out = capsys.readouterr().out
    assert "method" in out and "less" in out and "random" in out  # the table is printed again
    result = json.loads((quick_demo / "demo.json").read_text())["result"]
    # pretraining and every compare stage were reused: the rerun is much quicker
    assert result["phase_seconds"]["pretrain"] < 2.0


def test_refuses_a_folder_that_is_not_a_demo_folder(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    from less_select.demo.run import run_demo
    with pytest.raises(UserError, match="not a demo folder"):
        run_demo(DemoConfig(quick=True, output_dir=str(tmp_path)))
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_resolved_sizes():
    full, quick = resolved(DemoConfig()), resolved(DemoConfig(quick=True))
    assert full["methods"] == ["less", "random", "bm25", "dsir", "rds", "rds_plus"]
    assert quick["pool_size"] < full["pool_size"] and quick["train_steps"] < full["train_steps"]
    assert resolved(DemoConfig(quick=True, pool_size=500, methods=["less", "bm25"]))["pool_size"] == 500
    with pytest.raises(UserError, match="train_method"):
        resolved(DemoConfig(train_method="adapter"))
    assert Path(DemoConfig().output_dir) == Path("demo_out")
