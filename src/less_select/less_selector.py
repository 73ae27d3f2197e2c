"""LESS as a :class:`~less_select.baselines.base.Selector`: the influence of each pool example on
the target examples, from a pool datastore and a target store built from them (docs/method.md,
"Influence"), so the select stage, ``compare`` and every other caller treat LESS like a baseline.

Unlike the baselines, LESS does not score raw examples: its features were computed when the stores
were built. The selector therefore scores exactly the pool rows of its datastore (``pool_rows``
re-reads them from the files the store records) and refuses any other pool.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .data import Example
from .errors import UserError


class LessSelector:
    """``score``/``score_per_subtask`` of the pool rows of ``datastore`` against ``targets``."""

    name = "less"

    def __init__(self, datastore: str | Path, targets: str | Path, dim: int | None = None,
                 scores_file: str | Path | None = None):
        from .datastore.store import Datastore
        self.store, self.targets = Datastore(datastore), Datastore(targets)
        self.dim = dim or None
        self.scores_file = scores_file
        self.last = None  # the last ``scoring.Scores`` (projection-noise estimate included)

    def pool_rows(self) -> tuple[list[Example], list[tuple[Example, str]], int]:
        """(row-aligned pool examples, [(example without a row, reason)], pool size)."""
        from .select_stage import pool_examples_for_store
        return pool_examples_for_store(self.store)

    def target_examples(self) -> list[Example]:
        """The target examples of the target store, when they can be rebuilt (else empty)."""
        from .select_stage import target_examples_for_store
        return target_examples_for_store(self.targets)

    def score_per_subtask(self, pool: list[Example], targets: list[Example] = ()
                          ) -> tuple[np.ndarray, list[str]]:
        """``[len(pool), K]`` influence per target subtask; ``targets`` are the store's already."""
        from .scoring import compute_scores
        self._check_rows(pool)
        self.last = compute_scores(self.store.path, self.targets.path, self.dim,
                                   out_file=self.scores_file)
        return np.asarray(self.last.per_subtask, dtype=np.float64), list(self.last.subtasks)

    def score(self, pool: list[Example], targets: list[Example] = ()) -> np.ndarray:
        """LESS's score: the max over target subtasks of the influence."""
        return self.score_per_subtask(pool, targets)[0].max(axis=1)

    def _check_rows(self, pool: list[Example]) -> None:
        if getattr(pool, "store_path", None) == self.store.path:
            return  # data/pool_rows.PoolRows read from this store's own index: its rows by construction
        index = self.store.index()
        rows = [(r["file"], r["line"]) for r in index]
        given = [(e.source, e.line) for e in pool]
        if given != rows:
            raise UserError(f"LESS scores the {len(rows)} pool rows of {self.store.path}; the "
                            f"{len(given)} example(s) given are not those rows (use pool_rows())")
