"""Name -> selector class, and construction from plain options (YAML/CLI/Python)."""

from __future__ import annotations

from typing import Any

from ..configs import from_dict
from ..errors import UserError
from .bm25 import BM25Selector
from .dsir import DSIRSelector
from .random_select import RandomSelector
from .rds import RDSPlusSelector, RDSSelector

BASELINES: dict[str, type] = {cls.name: cls for cls in
                              (RandomSelector, BM25Selector, DSIRSelector, RDSSelector, RDSPlusSelector)}


def _cls(name: str) -> type:
    if name not in BASELINES:
        raise UserError(f"unknown baseline {name!r}; valid baselines are {', '.join(sorted(BASELINES))}")
    return BASELINES[name]


def baseline_config(name: str, **options: Any):
    """The config dataclass of baseline ``name`` from plain options (unknown or ill-typed ones raise
    :class:`UserError` naming them)."""
    return from_dict(_cls(name).Config, options, where=f"baseline '{name}'")


def make_baseline(name: str, **options: Any):
    """A ready selector, e.g. ``make_baseline("bm25", k1=1.2).score(pool, targets)``.

    For ``rds``/``rds_plus`` with an already loaded model, construct the class directly:
    ``RDSSelector(RDSConfig(), model=model, tokenizer=tokenizer)``.
    """
    return _cls(name)(baseline_config(name, **options))
