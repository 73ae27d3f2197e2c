"""Padding-aware batching of the datastore against brute force over all cuts of the sorted order."""

import itertools
import random

from less_select.data.batching import padding_aware_batches, token_budget_batches


def _cost(plan, lengths, c):
    return sum(len(b) * max(lengths[i] for i in b) + c for b in plan)


def _valid(plan, lengths, budget, cap):
    return all(len(b) == 1 or (len(b) * max(lengths[i] for i in b) <= budget and len(b) <= cap)
               for b in plan)


def test_optimal_against_brute_force_and_never_worse_than_greedy():
    rng = random.Random(0)
    for _ in range(60):
        n = rng.randint(1, 8)
        lengths = [rng.randint(1, 40) for _ in range(n)]
        budget, cap, c = rng.randint(20, 120), rng.randint(1, 5), rng.choice([0, 8, 64])
        plan = padding_aware_batches(lengths, budget, cap, c)
        assert sorted(i for b in plan for i in b) == list(range(n))         # every row exactly once
        assert _valid(plan, lengths, budget, cap)
        order = sorted(range(n), key=lambda i: (-lengths[i], i))
        best = min(_cost([order[a:b] for a, b in zip((0,) + cuts, cuts + (n,))], lengths, c)
                   for k in range(n) for cuts in itertools.combinations(range(1, n), k)
                   if _valid([order[a:b] for a, b in zip((0,) + cuts, cuts + (n,))], lengths, budget, cap))
        assert _cost(plan, lengths, c) == best
        assert best <= _cost(token_budget_batches(lengths, budget, cap), lengths, c)


def test_splits_mixed_lengths_that_greedy_puts_together():
    lengths = [128] * 4 + [20] * 12
    assert token_budget_batches(lengths, 8192, 64) == [list(range(16))]     # 16 x 128 = 2048 computed
    plan = padding_aware_batches(lengths, 8192, 64, batch_cost_tokens=128)
    assert plan == [[0, 1, 2, 3], list(range(4, 16))]                       # 512 + 240 computed
    assert padding_aware_batches([], 16) == []
    assert padding_aware_batches([50, 4, 60], 16) == [[2], [0], [1]]        # longer than the budget
