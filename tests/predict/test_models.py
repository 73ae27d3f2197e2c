"""Predictors, label scales and rank metrics on synthetic problems with a known answer."""

from __future__ import annotations

import numpy as np
import pytest

from less_select.predict.features import PoolFeatures, Reducer, design_matrix
from less_select.predict.models import LabelScale, SubtaskPredictor, out_of_fold, rank_metrics
from less_select.predict.report import evaluate_predictors
from less_select.subtask_rules import get_rule


def synthetic(n: int, k: int = 3, seed: int = 0):
    """Features of n examples, and labels that are a known function of them."""
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n, 8))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    feats = PoolFeatures(embedding=emb.astype(np.float32),
                         cosine=rng.uniform(-1, 1, (n, k)).astype(np.float32),
                         bm25=rng.exponential(2.0, (n, k)).astype(np.float32),
                         prompt_tokens=rng.integers(5, 200, n), completion_tokens=rng.integers(1, 100, n),
                         source=rng.integers(0, 2, n), sources=["a", "b"],
                         subtasks=[f"s{j}" for j in range(k)])
    # per-subtask score: the subtask's cosine, minus a length effect, with subtask offsets/scales
    y = (np.array([1.0, 3.0, 0.5])[:k] * (feats.cosine - 0.3 * np.log1p(feats.completion_tokens)[:, None])
         + np.array([0.0, 1.0, -2.0])[:k])
    return feats, y


@pytest.mark.parametrize("name", ["ridge", "hgb"])
def test_known_function_is_recovered(name):
    feats, y = synthetic(1200)
    reducer = Reducer(4, 0).fit(feats.embedding)
    x = design_matrix(feats, reducer)
    train = np.arange(400)                     # fit on a third, judge on the rest
    model = SubtaskPredictor(name, "zscore", 0).fit(x[:400 * 3], y[train])
    held = np.arange(400, 1200)
    pred = model.predict(design_matrix(feats.rows(held), reducer))
    m = rank_metrics(y[held], pred, get_rule("max"), feats.subtasks, 0.05, 3.0)
    assert m["spearman"] > (0.99 if name == "ridge" else 0.95)
    assert m["top"]["recall"] >= (0.9 if name == "ridge" else 0.75)
    assert m["top"]["recall_within_cascade"] >= 0.97


def test_out_of_fold_never_sees_the_held_out_rows():
    feats, y = synthetic(90)
    x = design_matrix(feats, Reducer(2, 0).fit(feats.embedding))
    a = out_of_fold("ridge", x, y, 3, "zscore", seed=0)
    y2 = y.copy()
    y2[0] += 100.0                              # a label can only move others' predictions
    b = out_of_fold("ridge", x, y2, 3, "zscore", seed=0)
    assert a[0] == pytest.approx(b[0])


@pytest.mark.parametrize("kind", ["zscore", "rank"])
def test_label_scale_round_trip(kind):
    y = np.random.default_rng(1).normal(size=(50, 2)) * [1.0, 7.0] + [0.0, 3.0]
    s = LabelScale(kind).fit(y)
    np.testing.assert_allclose(s.inverse(s.transform(y)), y, atol=1e-9)


def test_rank_metrics_against_slow_reference():
    rng = np.random.default_rng(2)
    t, p = rng.normal(size=(40, 2)), rng.normal(size=(40, 2))
    m = rank_metrics(t, p, get_rule("max"), ["a", "b"], 0.1, 2.0)
    st, sp = t.max(axis=1), p.max(axis=1)
    # Spearman = Pearson of ranks (no ties here); Kendall = (concordant - discordant) / pairs
    rt, rp = st.argsort().argsort(), sp.argsort().argsort()
    assert m["spearman"] == pytest.approx(np.corrcoef(rt, rp)[0, 1])
    conc = sum(np.sign(st[i] - st[j]) * np.sign(sp[i] - sp[j]) for i in range(40) for j in range(i))
    assert m["kendall"] == pytest.approx(conc / (40 * 39 / 2))
    true_top, pred_top = set(np.argsort(-st)[:4]), set(np.argsort(-sp)[:4])
    assert m["top"]["precision"] == len(true_top & pred_top) / 4
    assert m["top"]["recall_within_cascade"] == len(true_top & set(np.argsort(-sp)[:8])) / 4


def test_verdict_says_plainly_when_a_single_feature_is_as_good():
    feats, _ = synthetic(120)
    y = feats.cosine.astype(np.float64)        # the label is the RDS+ cosine itself
    x = design_matrix(feats, Reducer(2, 0).fit(feats.embedding))
    q = evaluate_predictors(["ridge"], x, y, feats, get_rule("max"), feats.subtasks, folds=3,
                            transform="zscore", seed=0, top_fraction=0.1, cascade_factor=3.0)
    assert q["single_features"]["rds_plus_cosine"]["spearman"] == pytest.approx(1.0)
    assert not q["better_than_best_single_feature"]
    assert "NOT better than its best single feature (rds_plus_cosine)" in q["verdict"]
