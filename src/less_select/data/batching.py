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
    shift_logits = logits[:, :-1, :]                                    # [N,S-1,V]: t predicts t+1
    shift_logits = shift_logits.to(torch.promote_types(shift_logits.dtype, torch.float32))
    shift_labels = labels[:, 1:].to(logits.device)                      # [N,S-1]
    mask = shift_labels != IGNORE_INDEX                                 # [N,S-1]
    tok_loss = torch.nn.functional.cross_entropy(shift_logits.transpose(1, 2), shift_labels.clamp(min=0),
                                                 reduction="none")      # [N,S-1]
    n_tokens = mask.sum(dim=1)                                          # [N]
    return (tok_loss * mask).sum(dim=1) / n_tokens.clamp(min=1), n_tokens


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
