import numpy as np
import pytest

from less_select.baselines import DSIRSelector, make_baseline
from less_select.baselines.dsir import HashedNgrams

from .helpers import random_examples

MATH = "sum plus minus times equals three four seven number answer add subtract divide".split()
TRAVEL = "river mountain forest ocean island hike boat trail camp sunset valley map".split()


def data():
    targets = random_examples(MATH, 8, seed=0, prefix="t")
    in_dist = random_examples(MATH, 40, seed=1, prefix="m")
    out_dist = random_examples(TRAVEL, 40, seed=2, prefix="r")
    pool = [p for pair in zip(in_dist, out_dist) for p in pair]  # interleaved
    is_in = np.array([i % 2 == 0 for i in range(len(pool))])
    return pool, targets, is_in


def test_in_distribution_pool_scores_higher():
    pool, targets, is_in = data()
    scores = make_baseline("dsir", seed=0).score(pool, targets)
    assert scores[is_in].mean() > scores[~is_in].mean()
    top = np.argsort(-scores, kind="stable")[:20]
    assert is_in[top].mean() >= 0.9
    logw = DSIRSelector().log_weights(pool, targets)
    # log-weights are not length-normalized (as in DSIR), so require a high AUC, not a perfect split
    auc = (logw[is_in][:, None] > logw[~is_in][None, :]).mean()
    assert auc > 0.8


def test_deterministic_given_seed_and_seed_matters():
    pool, targets, _ = data()
    a = make_baseline("dsir", seed=5).score(pool, targets)
    b = make_baseline("dsir", seed=5).score(pool, targets)
    c = make_baseline("dsir", seed=6).score(pool, targets)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    plain = make_baseline("dsir", resample=False).score(pool, targets)
    np.testing.assert_allclose(plain, DSIRSelector().log_weights(pool, targets))


def test_gumbel_top1_samples_proportional_to_weights(monkeypatch):
    logw = np.log(np.array([0.5, 0.3, 0.15, 0.05]))
    monkeypatch.setattr(DSIRSelector, "log_weights", lambda self, pool, targets: logw)
    wins = np.zeros(4)
    for seed in range(4000):
        wins[np.argmax(DSIRSelector(DSIRSelector.Config(seed=seed)).score([None] * 4, [None]))] += 1
    np.testing.assert_allclose(wins / wins.sum(), np.exp(logw), atol=0.03)


def test_hashed_features_are_stable_unigrams_plus_bigrams():
    f = HashedNgrams(10000)
    b = f.buckets("The cat, sat!")  # tokens: the cat , sat !  -> 5 unigrams + 4 bigrams
    assert len(b) == 9 and b.min() >= 0 and b.max() < 10000
    np.testing.assert_array_equal(b, HashedNgrams(10000).buckets("the CAT, sat!"))
    # golden values pin the hash across runs, machines and Python hash seeds
    assert HashedNgrams(10000).buckets("hello world").tolist() == GOLDEN


GOLDEN = [5191, 6552, 6749]  # hello, world, (hello world)


def test_rejects_bad_smoothing():
    pool, targets, _ = data()
    from less_select.errors import UserError
    with pytest.raises(UserError):
        make_baseline("dsir", smoothing=0).score(pool, targets)
