import numpy as np
import pytest

from less_select.baselines import SubtaskAccumulator, aggregate_by_subtask


def brute_force(sim, subtasks):
    out = []
    for i in range(sim.shape[0]):
        best = -np.inf
        for s in dict.fromkeys(subtasks):  # unique, first-appearance order
            vals = [sim[i, j] for j in range(sim.shape[1]) if subtasks[j] == s]
            best = max(best, sum(vals) / len(vals))
        out.append(best)
    return np.array(out)


# unequal sizes (3, 1, 2, 2), interleaved (non-contiguous), with None as a subtask of its own
SUBTASKS = ["a", "b", "a", None, "c", "a", None, "c"]


def test_matches_brute_force_unequal_interleaved_subtasks():
    rng = np.random.default_rng(0)
    sim = rng.normal(size=(50, len(SUBTASKS)))
    got = aggregate_by_subtask(sim, SUBTASKS)
    assert got.dtype == np.float64 and got.shape == (50,)
    np.testing.assert_allclose(got, brute_force(sim, SUBTASKS), rtol=0, atol=1e-12)


def test_not_the_equal_size_shortcut():
    # Mean over subtasks of unequal size differs from reshaping into equal blocks / a global mean.
    sim = np.array([[1.0, 0.0, 0.0, 0.9]])
    subtasks = ["a", "a", "a", "b"]
    assert aggregate_by_subtask(sim, subtasks)[0] == pytest.approx(0.9)
    sim2 = np.array([[0.0, 0.0, 0.9, 0.0]])  # single large value in the big subtask
    assert aggregate_by_subtask(sim2, subtasks)[0] == pytest.approx(0.3)


def test_no_subtasks_is_plain_mean():
    sim = np.arange(12, dtype=float).reshape(3, 4)
    np.testing.assert_allclose(aggregate_by_subtask(sim, [None] * 4), sim.mean(axis=1))


def test_streaming_accumulator_matches():
    rng = np.random.default_rng(1)
    sim = rng.normal(size=(20, len(SUBTASKS)))
    acc = SubtaskAccumulator(20, SUBTASKS)
    for j in reversed(range(len(SUBTASKS))):
        acc.add(j, sim[:, j])
    np.testing.assert_allclose(acc.result(), aggregate_by_subtask(sim, SUBTASKS), atol=1e-12)


def test_shape_errors():
    with pytest.raises(ValueError):
        aggregate_by_subtask(np.zeros((3, 2)), ["a"])
    acc = SubtaskAccumulator(3, ["a", "b"])
    acc.add(0, np.zeros(3))
    with pytest.raises(ValueError):
        acc.result()
