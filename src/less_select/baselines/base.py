"""The one interface every selection method implements (LESS included) and shared input checks."""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from ..data.example import Example
from ..errors import UserError


@runtime_checkable
class Selector(Protocol):
    """A selection method: one float64 score per pool example, higher = selected first.

    ``score`` must be deterministic given the method's config (seeds included) and must return an
    array of shape ``[len(pool)]``; the caller (``selection.py``) does the top-k and the output.
    """

    name: str

    def score(self, pool: list[Example], targets: list[Example]) -> np.ndarray: ...


def check_inputs(name: str, pool: Sequence[Example], targets: Sequence[Example],
                 need_targets: bool = True) -> None:
    if need_targets and not targets:
        raise UserError(f"baseline '{name}': the target set is empty; give at least one target example")


def finish(name: str, scores: np.ndarray, n_pool: int) -> np.ndarray:
    """float64 ``[n_pool]``; a non-finite score is a bug in the method, never a silent top rank."""
    out = np.asarray(scores, dtype=np.float64).reshape(-1)
    if out.shape[0] != n_pool:
        raise RuntimeError(f"baseline '{name}' returned {out.shape[0]} scores for {n_pool} pool examples")
    bad = ~np.isfinite(out)
    if bad.any():
        raise RuntimeError(f"baseline '{name}' produced {int(bad.sum())} non-finite score(s), "
                           f"first at pool index {int(np.flatnonzero(bad)[0])}")
    return out
