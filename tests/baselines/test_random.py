import numpy as np

from less_select.baselines import make_baseline

from .helpers import ex

POOL = [ex(i, f"question {i}", f"answer {i}") for i in range(200)]


def top(scores, k=10):
    return set(np.argsort(-scores, kind="stable")[:k].tolist())


def test_same_seed_same_selection():
    a = make_baseline("random", seed=3).score(POOL, [])
    b = make_baseline("random", seed=3).score(POOL, POOL[:2])
    assert a.dtype == np.float64 and a.shape == (200,)
    np.testing.assert_array_equal(a, b)


def test_different_seed_different_selection():
    a = make_baseline("random", seed=3).score(POOL, [])
    b = make_baseline("random", seed=4).score(POOL, [])
    assert top(a) != top(b)


def test_roughly_uniform():
    s = make_baseline("random", seed=0).score(POOL * 10, [])
    assert 0.0 <= s.min() and s.max() < 1.0 and abs(s.mean() - 0.5) < 0.05
