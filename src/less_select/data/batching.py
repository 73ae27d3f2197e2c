"""Padding, token-budget batching (sort by length, pack batches up to a token budget), and the loss
of each example of a padded batch."""

from __future__ import annotations

from typing import Sequence

import torch

from .encode import IGNORE_INDEX, Encoded


def per_example_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss of each example: the mean next-token cross-entropy over its completion tokens.

        loss[n] = (1 / T_n) sum_{t: labels[n, t+1] != -100} CE(logits[n, t], labels[n, t+1])

    Returns (loss [N], T [N]); an example without completion tokens has loss 0 and T = 0. Computed
    in at least float32 (float64 logits stay float64), on the logits' device.
    """
    mask, targets, _ = loss_positions(labels.to(logits.device))
    return token_loss_means(logits[:, :-1, :][mask], targets, mask)


def loss_positions(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where the loss is taken: (mask [N,S-1], targets [T], n_tokens [N]).

    ``mask[n, t]`` is True when position t predicts a labelled token t+1; ``targets`` are those
    labels in row-major order (the order of ``x[mask]`` for any ``x`` of shape [N, S-1, ...])."""
    shift_labels = labels[:, 1:]                                        # [N,S-1]: t predicts t+1
    mask = shift_labels != IGNORE_INDEX
    return mask, shift_labels[mask], mask.sum(dim=1)


def token_loss_means(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean cross-entropy of each example [N], T [N]) from the logits of the loss positions only.

    ``logits`` [T, V] are the rows of ``mask`` (row-major), ``targets`` [T] their labels. One
    cross-entropy over the flat [T, V] rows: no work at prompt or padding positions, and the fast
    2-D kernel rather than the [N, V, S] layout."""
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    tok_loss = torch.nn.functional.cross_entropy(logits, targets, reduction="none")   # [T]
    n_tokens = mask.sum(dim=1)                                                        # [N]
    rows = torch.arange(mask.shape[0], device=mask.device).repeat_interleave(n_tokens)  # [T]
    sums = torch.zeros(mask.shape[0], dtype=tok_loss.dtype, device=tok_loss.device).index_add(0, rows, tok_loss)
    return sums / n_tokens.clamp(min=1), n_tokens


def collate(batch: Sequence[Encoded], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad to the longest sequence; padding has attention 0 and label -100."""
    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad_token_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, e in enumerate(batch):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids)
        labels[i, :n] = torch.tensor(e.labels)
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def token_budget_batches(lengths: Sequence[int], max_tokens: int,
                         max_batch_size: int | None = None) -> list[list[int]]:
    """Group indices so that (batch size x longest length) stays within ``max_tokens``.

    Indices are sorted by length (longest first, ties by index, so the plan is deterministic) and
    packed greedily; a sequence longer than the budget gets a batch of its own.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    width = 0
    for i in order:
        new_width = max(width, lengths[i])
        too_many = max_batch_size is not None and len(current) >= max_batch_size
        if current and (new_width * (len(current) + 1) > max_tokens or too_many):
            batches.append(current)
            current, new_width = [], lengths[i]
        current.append(i)
        width = new_width
    if current:
        batches.append(current)
    return batches


def padding_aware_batches(lengths: Sequence[int], max_tokens: int, max_batch_size: int | None = None,
                          batch_cost_tokens: int = 128) -> list[list[int]]:
    """Like :func:`token_budget_batches` (same budget and cap, longest first), but where to cut the
    length-sorted order is chosen to minimise

        sum over batches of (batch size x longest length) + batch_cost_tokens

    i.e. the padded tokens computed plus a fixed cost per batch (Python, hooks, kernel launches),
    instead of filling every batch to the budget. Greedy filling puts a 128-token and a 20-token
    sequence in one batch whenever they fit and pays 108 padding positions; this splits where the
    padding would cost more than another batch. Exact dynamic programme over contiguous runs of the
    sorted order, O(n x max_batch_size).
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    lens = [lengths[i] for i in order]
    n, cap = len(lens), max_batch_size or len(lens)
    best = [0.0] + [float("inf")] * n     # best[j]: cost of batching the first j sorted sequences
    start = [0] * (n + 1)                 # start[j]: first index of the last batch in that plan
    for j in range(1, n + 1):
        for i in range(j - 1, max(-1, j - 1 - cap), -1):    # last batch = sorted[i:j], width lens[i]
            padded = (j - i) * lens[i]
            if padded > max_tokens and j - i > 1:            # grows as i falls: no wider batch fits
                break
            cost = best[i] + padded + batch_cost_tokens
            if cost < best[j]:
                best[j], start[j] = cost, i
    batches, j = [], n
    while j > 0:
        batches.append(order[start[j]:j])
        j = start[j]
    return batches[::-1]
