"""The seeded sample and the two selection modes."""

from __future__ import annotations

import numpy as np
import pytest

from less_select.data.example import Example
from less_select.errors import UserError
from less_select.predict import modes
from less_select.predict.sampling import allocate, draw_sample
from less_select.subtask_rules import get_rule


def pool(n_a: int, n_b: int) -> list[Example]:
    return [Example(id=str(i), messages=[], source="a.jsonl" if i < n_a else "b.jsonl",
                    raw={"dataset": "x" if i % 2 else "y"}) for i in range(n_a + n_b)]


def test_sample_is_seeded_sorted_and_sized():
    p = pool(70, 30)
    a, b = draw_sample(p, 0.2, seed=5), draw_sample(p, 0.2, seed=5)
    assert np.array_equal(a, b) and len(a) == 20 and np.all(np.diff(a) > 0)
    assert not np.array_equal(a, draw_sample(p, 0.2, seed=6))


def test_stratified_sample_keeps_the_shares():
    s = draw_sample(pool(70, 30), 0.1, seed=0, stratify="file")
    assert (s < 70).sum() == 7 and (s >= 70).sum() == 3
    d = draw_sample(pool(70, 30), 0.1, seed=0, stratify="dataset")
    assert sum(int(i) % 2 for i in d) == 5


def test_allocate_is_exact():
    assert sum(allocate([5, 5, 5], 7)) == 7 and allocate([1, 99], 10) == [0, 10]


def test_fraction_out_of_range_is_refused():
    with pytest.raises(UserError, match="sample_fraction"):
        draw_sample(pool(5, 5), 1.0, seed=0)


def test_cascade_keeps_exact_top_k_among_real_scores():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(50, 3))
    noisy = truth + rng.normal(scale=0.3, size=truth.shape)
    sample = np.arange(0, 50, 5)
    rule = get_rule("max")
    combined = modes.combine(noisy, sample, truth[sample])
    cand = modes.cascade_candidates(combined, sample, k=5, factor=3, rule=rule)
    assert len(cand) <= 15 and not set(cand) & set(sample)
    real_rows = np.concatenate([sample, cand])
    order, shown = modes.cascade_order(combined, real_rows, truth[real_rows], rule)
    assert sorted(order.tolist()) == list(range(50))
    top = order[:5]
    assert set(top) <= set(real_rows)
    best_real = real_rows[np.argsort(-truth[real_rows].max(axis=1))[:5]]
    assert set(top) == set(best_real)


@pytest.mark.parametrize("rule_name", ["max", "balanced"])
def test_cascade_covering_the_pool_is_the_exact_ranking(rule_name):
    truth = np.random.default_rng(1).normal(size=(30, 2))
    rule = get_rule(rule_name)
    sample = np.array([3, 7])
    combined = modes.combine(np.zeros((30, 2)), sample, truth[sample])
    cand = modes.cascade_candidates(combined, sample, k=10, factor=3, rule=rule)
    real_rows = np.concatenate([sample, cand])
    order, _ = modes.cascade_order(combined, real_rows, truth[real_rows], rule)
    assert np.array_equal(order, rule.rank(truth))


def test_write_selection_keeps_a_given_order(tmp_path):
    """``order=`` (how predict's cascade ranks real scores first) wins over the score order."""
    import json

    from less_select.selection import BudgetConfig, write_selection
    exs = [Example(id=f"e{i}", messages=[], source="a.jsonl", line=i + 1, raw={"id": f"e{i}"})
           for i in range(4)]
    scores = np.array([0.9, 0.1, 0.5, 0.3])
    rep = write_selection(tmp_path / "s", exs, scores, BudgetConfig(top_k=2), "t", order=[1, 3, 0, 2])
    lines = (tmp_path / "s" / "top_k2.jsonl").read_text().splitlines()
    assert [json.loads(x)["id"] for x in lines] == ["e1", "e3"] and rep["n_selected"] == 2
    with pytest.raises(ValueError, match="permutation"):
        write_selection(tmp_path / "t", exs, scores, BudgetConfig(top_k=2), "t", order=[0, 0, 1, 2])
