import numpy as np
import pytest

from less_select.fusion import align_columns, reciprocal_rank_fusion


def test_rrf_matches_a_loop_reference():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(7, 2)), rng.normal(size=(7, 2))
    fused = reciprocal_rank_fusion([a, b], [1.0, 0.5], constant=60)
    ref = np.zeros((7, 2))
    for m, w in ((a, 1.0), (b, 0.5)):
        for j in range(2):
            order = sorted(range(7), key=lambda i: (-m[i, j], i))
            for r, i in enumerate(order, start=1):
                ref[i, j] += w / (60 + r)
    np.testing.assert_allclose(fused, ref)


def test_rrf_rewards_rows_both_methods_rank_high_and_checks_shapes():
    a = np.array([[3.0], [2.0], [1.0], [0.0]])
    b = np.array([[0.0], [3.0], [2.0], [1.0]])
    fused = reciprocal_rank_fusion([a, b])
    assert int(fused[:, 0].argmax()) == 1  # second by one, first by the other
    with pytest.raises(ValueError, match="differ in shape"):
        reciprocal_rank_fusion([a, np.zeros((3, 1))])
    m = align_columns(np.array([[1.0, 2.0]]), ["x", "y"], ["y", "x"])
    assert m.tolist() == [[2.0, 1.0]]
