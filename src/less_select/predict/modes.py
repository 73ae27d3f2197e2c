"""The two ways predicted scores become a selection.

Both start from ``combined`` [n, K]: predicted per-subtask scores for the pool, with the sampled
examples' rows replaced by their real LESS scores (they were paid for; they keep them).

* ``predicted``: the selection is the top k of ``combined`` under the subtask rule.
* ``cascade``: the top ceil(c x k) of ``combined`` under the rule are the candidates; those not in
  the sample get real LESS gradients and scores; the selection is the exact top k, by real scores,
  of every example that has one (sample and candidates). The ranking continues with the remaining
  examples by predicted score. When c x k covers the pool every example is scored for real and the
  result is full LESS's.
"""

from __future__ import annotations

import math

import numpy as np


def combine(predicted: np.ndarray, sample: np.ndarray, real: np.ndarray) -> np.ndarray:
    out = np.array(predicted, dtype=np.float64, copy=True)
    out[sample] = real
    return out


def cascade_candidates(combined: np.ndarray, sample: np.ndarray, k: int, factor: float,
                       rule) -> np.ndarray:
    """Sorted pool positions, outside the sample, among the top ceil(factor x k) of ``combined``."""
    n_cand = min(len(combined), int(math.ceil(factor * k)))
    top = rule.rank(combined)[:n_cand]
    return np.sort(np.setdiff1d(top, sample)).astype(np.int64)


def cascade_order(combined: np.ndarray, real_rows: np.ndarray, real: np.ndarray,
                  rule) -> tuple[np.ndarray, np.ndarray]:
    """(selection order of the pool, per-subtask scores shown for each example).

    ``real_rows`` are the positions with real scores ``real`` [len(real_rows), K]; they are ranked
    first, among themselves by the rule on real scores, then the rest by the rule on predictions."""
    shown = np.array(combined, dtype=np.float64, copy=True)
    shown[real_rows] = real
    real_rows = np.sort(np.asarray(real_rows))     # ties then fall to pool order, as in full LESS
    first = real_rows[rule.rank(shown[real_rows])]
    rest_rows = np.setdiff1d(np.arange(len(combined)), real_rows)
    rest = rest_rows[rule.rank(shown[rest_rows])] if len(rest_rows) else rest_rows
    return np.concatenate([first, rest]).astype(np.int64), shown

