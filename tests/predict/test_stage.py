"""The predict stage end to end on the tiny model: real sample scores, cascade vs full LESS,
refusal of a too-small sample, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from less_select.errors import UserError
from less_select.predict import run_predict

from .conftest import predict_config


def test_sample_scores_equal_full_less(predict_setup, full_less):
    sel_dir, _, _ = full_less
    report = run_predict(predict_config(predict_setup, "run_pred", mode="predicted"))
    sel = Path(predict_setup[0]) / "run_pred" / "selection"
    real = np.load(sel / "real_scored.npy")
    ours = np.load(sel / "per_subtask_scores.npy")
    truth = np.load(sel_dir / "per_subtask_scores.npy")
    assert real.sum() == 30 and report["prediction"]["n_real_scored"] == 30
    np.testing.assert_allclose(ours[real], truth[real], rtol=1e-5, atol=1e-6)
    pred = json.loads((sel / "prediction.json").read_text())
    assert pred["cost"]["pool_gradient_passes"] == 30 * 2
    assert pred["cost"]["full_less_pool_gradient_passes"] == 60 * 2
    assert set(pred["quality_out_of_fold"]["single_features"]) == {"rds_plus_cosine", "bm25", "length"}
    assert "better than" in pred["quality_out_of_fold"]["verdict"] or \
        "beats" in pred["quality_out_of_fold"]["verdict"]


def test_cascade_covering_the_pool_is_full_less(predict_setup, full_less):
    sel_dir, _, _ = full_less
    # c x k = 10 x 6 >= 60 = the pool: every example gets real scores, the selection is LESS's
    run_predict(predict_config(predict_setup, "run_cascade", mode="cascade", cascade_factor=10))
    ours = Path(predict_setup[0]) / "run_cascade" / "selection" / "top_k6.jsonl"
    assert ours.read_bytes() == (sel_dir / "top_k6.jsonl").read_bytes()
    pred = json.loads(ours.with_name("prediction.json").read_text())
    assert pred["n_sample"] + pred["n_cascade_scored"] == 60


def test_too_small_sample_is_refused_before_any_gradient(predict_setup):
    cfg = predict_config(predict_setup, "run_small", sample_fraction=0.1, min_sample=30)
    with pytest.raises(UserError, match=r"sample has 6 example\(s\), too few .* need at least 30"):
        run_predict(cfg)
    run = Path(cfg.output_dir)
    assert not (run / "selection").exists()
    assert not list(run.glob("sample-*"))


def test_seeded_runs_give_the_same_bytes(predict_setup):
    a = predict_config(predict_setup, "det_a", seed=3, mode="predicted")
    b = predict_config(predict_setup, "det_b", seed=3, mode="predicted")
    run_predict(a)
    run_predict(b)
    sa, sb = Path(a.output_dir) / "selection", Path(b.output_dir) / "selection"
    for name in ("top_k6.jsonl", "scores.csv", "per_subtask_scores.npy", "real_scored.npy"):
        assert (sa / name).read_bytes() == (sb / name).read_bytes(), name
    pa, pb = (json.loads((s / "prediction.json").read_text()) for s in (sa, sb))
    for p in (pa, pb):
        p.pop("cost")   # wall seconds differ run to run; everything else must not
    assert pa == pb
