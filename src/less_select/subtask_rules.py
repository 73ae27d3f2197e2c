"""How per-subtask influence becomes one ranking of the pool: the subtask rules.

Every method that scores a pool example against each target subtask (LESS, the similarity
baselines, the influence predictor) produces ``per_subtask`` ``[n_pool, K]``. A rule turns it into
a ranking (the order in which examples are selected) and a displayed score:

- ``max`` (LESS, the paper): s(z) = max_k Inf(z, V_k); rank by s, ties by pool order.
- ``balanced`` (round-robin over subtasks): subtask 1 takes its best example not yet taken, then
  subtask 2, ... and around again, so every subtask gets floor(k/K) or ceil(k/K) of any budget k.
  With the max rule one or two subtasks whose scores run higher (short answers, a format close to
  the pool's) can take the whole budget; round-robin removes that (docs/method.md, "Subtask rules").
  The displayed score stays the max over subtasks, the rank is the round-robin position.

Rules are small strategy objects (``SUBTASK_RULES[name]``) so callers never branch on the name.
"""

from __future__ import annotations

from typing import Literal, Protocol

import numpy as np

from .errors import UserError


def rank_order(scores: np.ndarray) -> np.ndarray:
    """Indices by descending score; ties by ascending index (deterministic, platform independent)."""
    scores = np.asarray(scores, dtype=np.float64)
    if np.isnan(scores).any():
        raise UserError(f"{int(np.isnan(scores).sum())} score(s) are NaN; refusing to rank them")
    return np.lexsort((np.arange(len(scores)), -scores))


SubtaskRuleName = Literal["max", "balanced"]


class SubtaskRule(Protocol):
    name: str

    def rank(self, per_subtask: np.ndarray) -> np.ndarray:
        """Pool indices in selection order, every index exactly once."""

    def score(self, per_subtask: np.ndarray) -> np.ndarray:
        """One float64 score per pool example (what ``scores.csv`` shows)."""


def _check(per_subtask: np.ndarray) -> np.ndarray:
    m = np.asarray(per_subtask, dtype=np.float64)
    if m.ndim != 2 or m.shape[1] == 0:
        raise ValueError(f"per_subtask must be [n_pool, K>0], got shape {m.shape}")
    if np.isnan(m).any():
        raise UserError(f"{int(np.isnan(m).sum())} per-subtask score(s) are NaN; refusing to rank them")
    return m


class MaxRule:
    """s(z) = max_k Inf(z, V_k), the LESS paper's rule."""

    name = "max"

    def score(self, per_subtask: np.ndarray) -> np.ndarray:
        return _check(per_subtask).max(axis=1)

    def rank(self, per_subtask: np.ndarray) -> np.ndarray:
        return rank_order(self.score(per_subtask))


class BalancedRule:
    """Round-robin over subtasks, each by its own ranking, skipping examples already taken."""

    name = "balanced"

    def score(self, per_subtask: np.ndarray) -> np.ndarray:
        return _check(per_subtask).max(axis=1)

    def rank(self, per_subtask: np.ndarray) -> np.ndarray:
        m = _check(per_subtask)
        n, k = m.shape
        orders = [rank_order(m[:, j]) for j in range(k)]          # each subtask's own ranking
        cursor = [0] * k
        taken = np.zeros(n, dtype=bool)
        out = np.empty(n, dtype=np.int64)
        filled = 0
        while filled < n:
            for j in range(k):
                order, c = orders[j], cursor[j]
                while c < n and taken[order[c]]:
                    c += 1
                cursor[j] = c
                if c == n:
                    continue
                i = order[c]
                taken[i] = True
                out[filled] = i
                filled += 1
                if filled == n:
                    break
        return out


SUBTASK_RULES: dict[str, SubtaskRule] = {r.name: r for r in (MaxRule(), BalancedRule())}


def get_rule(name: str) -> SubtaskRule:
    if name not in SUBTASK_RULES:
        raise UserError(f"unknown subtask rule {name!r}; valid rules are {', '.join(SUBTASK_RULES)}")
    return SUBTASK_RULES[name]
