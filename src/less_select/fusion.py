"""Hybrid selection: reciprocal rank fusion of several methods' per-subtask scores.

For methods m (LESS, RDS+, BM25, ...) scoring the same pool rows against the same subtasks,
the fused score of row i for subtask j is

    F[i, j] = sum_m w_m / (c + r_mj(i)),     r_mj(i) = rank of row i by method m's column j (1 = best)

(Cormack et al. 2009, c = 60). Rank fusion needs no score calibration across methods (a BM25 score
and a cosine live on different scales) and rewards rows that several methods rank high. The fused
``[n, K]`` matrix is then ranked by a subtask rule like any other (``subtask_rules.py``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .subtask_rules import rank_order

RRF_CONSTANT = 60.0


def column_ranks(column: np.ndarray) -> np.ndarray:
    """1-based rank of every row by descending score, ties by row index (as selection breaks them)."""
    order = rank_order(column)
    ranks = np.empty(len(order), dtype=np.float64)
    ranks[order] = np.arange(1, len(order) + 1)
    return ranks


def reciprocal_rank_fusion(per_subtask: Sequence[np.ndarray], weights: Sequence[float] | None = None,
                           constant: float = RRF_CONSTANT) -> np.ndarray:
    """``[n, K]`` fused scores of several ``[n, K]`` matrices (same rows, same subtask columns)."""
    if not per_subtask:
        raise ValueError("nothing to fuse")
    shapes = {np.shape(m) for m in per_subtask}
    if len(shapes) != 1:
        raise ValueError(f"matrices to fuse differ in shape: {sorted(shapes)}")
    weights = list(weights) if weights is not None else [1.0] * len(per_subtask)
    if len(weights) != len(per_subtask) or any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"need one non-negative weight per method, got {weights}")
    n, k = shapes.pop()
    fused = np.zeros((n, k), dtype=np.float64)
    for m, w in zip(per_subtask, weights):
        m = np.asarray(m, dtype=np.float64)
        for j in range(k):
            fused[:, j] += w / (constant + column_ranks(m[:, j]))
    return fused


def align_columns(per_subtask: np.ndarray, names: Sequence[str], wanted: Sequence[str]) -> np.ndarray:
    """The columns of ``per_subtask`` reordered to ``wanted`` subtask names (all must be present)."""
    missing = [w for w in wanted if w not in names]
    if missing:
        raise ValueError(f"subtasks {missing} missing from {list(names)}")
    idx = [list(names).index(w) for w in wanted]
    return np.asarray(per_subtask)[:, idx]
