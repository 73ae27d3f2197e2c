"""Subtask aggregation shared by every similarity method and by LESS (docs/method.md, "Subtask rules").

For a pool example z and target subtasks V_1..V_K:  s(z) = max_k (1/|V_k|) sum_{z' in V_k} sim(z, z').
Subtasks may have unequal sizes and need not be contiguous; ``subtask=None`` is one subtask of its
own (so a target set without subtasks is a single subtask and the score is the plain mean).
"""

from __future__ import annotations

from typing import Hashable, Sequence

import numpy as np

_NONE = object()  # the key of the subtask ``None``


def subtask_groups(subtasks: Sequence[str | None]) -> dict[Hashable, np.ndarray]:
    """Column indices of each subtask, in order of first appearance."""
    groups: dict[Hashable, list[int]] = {}
    for j, s in enumerate(subtasks):
        groups.setdefault(_NONE if s is None else s, []).append(j)
    return {k: np.asarray(v, dtype=np.int64) for k, v in groups.items()}


def subtask_names(subtasks: Sequence[str | None]) -> list[str]:
    """Display names of :func:`subtask_groups`' keys, in the same order (``None`` -> ``"all"``)."""
    return ["all" if k is _NONE else str(k) for k in subtask_groups(subtasks)]


def mean_by_subtask(sim: np.ndarray, subtasks: Sequence[str | None]) -> np.ndarray:
    """``sim`` ``[n_pool, n_targets]`` -> ``[n_pool, K]``: each subtask's mean over its targets."""
    sim = np.asarray(sim)
    if sim.ndim != 2 or sim.shape[1] != len(subtasks) or sim.shape[1] == 0:
        raise ValueError(f"sim of shape {sim.shape} does not match {len(subtasks)} subtask labels")
    return np.stack([sim[:, cols].mean(axis=1, dtype=np.float64)
                     for cols in subtask_groups(subtasks).values()], axis=1)


def aggregate_by_subtask(sim: np.ndarray, subtasks: Sequence[str | None]) -> np.ndarray:
    """``sim`` ``[n_pool, n_targets]`` -> ``[n_pool]``: mean over each subtask's targets, then max.

    Computed in float64. Rows are independent, so callers may aggregate a block of pool rows at a time.
    """
    sim = np.asarray(sim)
    if sim.ndim != 2:
        raise ValueError(f"sim must be 2-D [n_pool, n_targets], got shape {sim.shape}")
    if sim.shape[1] != len(subtasks):
        raise ValueError(f"sim has {sim.shape[1]} target columns but {len(subtasks)} subtask labels")
    if sim.shape[1] == 0:
        raise ValueError("no target columns to aggregate")
    out = np.full(sim.shape[0], -np.inf, dtype=np.float64)
    for cols in subtask_groups(subtasks).values():
        np.maximum(out, sim[:, cols].mean(axis=1, dtype=np.float64), out=out)
    return out


class SubtaskAccumulator:
    """Streaming form of :func:`aggregate_by_subtask` for methods that produce one target column at
    a time (BM25): memory ``n_pool x n_subtasks`` instead of ``n_pool x n_targets``."""

    def __init__(self, n_pool: int, subtasks: Sequence[str | None]):
        self.subtasks = list(subtasks)
        self.groups = subtask_groups(self.subtasks)
        self.slot = {k: i for i, k in enumerate(self.groups)}
        self.sums = np.zeros((len(self.groups), n_pool), dtype=np.float64)
        self.seen = np.zeros(len(self.subtasks), dtype=bool)

    def add(self, target_index: int, column: np.ndarray) -> None:
        if self.seen[target_index]:
            raise ValueError(f"target {target_index} added twice")
        self.seen[target_index] = True
        s = self.subtasks[target_index]
        self.sums[self.slot[_NONE if s is None else s]] += np.asarray(column, dtype=np.float64)

    def per_subtask(self) -> np.ndarray:
        """``[n_pool, K]`` mean of each subtask's columns (subtasks in first-appearance order)."""
        if not self.seen.all():
            raise ValueError(f"{int((~self.seen).sum())} target column(s) never added")
        sizes = np.array([len(v) for v in self.groups.values()], dtype=np.float64)
        return (self.sums / sizes[:, None]).T

    def result(self) -> np.ndarray:
        if not self.seen.all():
            raise ValueError(f"{int((~self.seen).sum())} target column(s) never added")
        sizes = np.array([len(v) for v in self.groups.values()], dtype=np.float64)
        return (self.sums / sizes[:, None]).max(axis=0)
