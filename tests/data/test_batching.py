"""data/batching.py: right-padding collation and the token-budget batch plan, against direct
construction and a brute-force check of the plan's invariants."""

from __future__ import annotations

import random

import pytest
import torch

from less_select.data.batching import collate, token_budget_batches
from less_select.data.encode import IGNORE_INDEX, Encoded


def enc(ids: list[int], n_prompt: int) -> Encoded:
    return Encoded(input_ids=ids, labels=[IGNORE_INDEX] * n_prompt + ids[n_prompt:], truncated=False,
                   encoding="test")


def test_collate_right_pads_with_masked_labels():
    batch = collate([enc([5, 6, 7], 1), enc([8], 0), enc([9, 10], 2)], pad_token_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0], [9, 10, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0], [1, 1, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100], [-100, -100, -100]]
    assert all(t.dtype == torch.long for t in batch.values())


def test_collate_keeps_each_row_exactly():
    rows = [enc(list(range(1, n + 1)), n // 2) for n in (4, 1, 7, 3)]
    batch = collate(rows, pad_token_id=99)
    for i, row in enumerate(rows):
        n = len(row.input_ids)
        assert batch["input_ids"][i, :n].tolist() == row.input_ids
        assert batch["labels"][i, :n].tolist() == row.labels
        assert int(batch["attention_mask"][i].sum()) == n
        assert (batch["input_ids"][i, n:] == 99).all() and (batch["labels"][i, n:] == IGNORE_INDEX).all()


def test_plan_is_longest_first_and_packs_greedily():
    lengths = [3, 10, 3, 5, 1, 10]
    # order: 10 (i1), 10 (i5), 5, 3 (i0), 3 (i2), 1; budget 20 = batch x longest
    assert token_budget_batches(lengths, 20) == [[1, 5], [3, 0, 2, 4]]    # 4 x 5 = 20 fits
    assert token_budget_batches(lengths, 19) == [[1], [5], [3, 0, 2], [4]]
    assert token_budget_batches(lengths, 20, max_batch_size=2) == [[1, 5], [3, 0], [2, 4]]
    assert token_budget_batches(lengths, 1000) == [[1, 5, 3, 0, 2, 4]]


def test_a_sequence_over_the_budget_gets_its_own_batch():
    assert token_budget_batches([50, 4, 60], 16) == [[2], [0], [1]]
    assert token_budget_batches([], 16) == []


@pytest.mark.parametrize("seed", range(5))
def test_plan_invariants_on_random_lengths(seed):
    rng = random.Random(seed)
    lengths = [rng.randint(1, 40) for _ in range(rng.randint(1, 60))]
    budget, cap = rng.choice([16, 64, 200]), rng.choice([None, 1, 3, 8])
    plan = token_budget_batches(lengths, budget, cap)
    flat = [i for b in plan for i in b]
    assert sorted(flat) == list(range(len(lengths)))                  # every index exactly once
    assert flat == sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))  # deterministic order
    for b in plan:
        assert cap is None or len(b) <= cap
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= budget
    # greedy: the next sequence would not have fitted into the batch before it
    for prev, nxt in zip(plan, plan[1:]):
        full = cap is not None and len(prev) >= cap
        over = (len(prev) + 1) * max(lengths[i] for i in prev + [nxt[0]]) > budget
        assert full or over
    assert token_budget_batches(lengths, budget, cap) == plan
