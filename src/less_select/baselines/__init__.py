"""Baseline selection methods (the LESS paper's Table 3, plus RDS+), behind one interface.

Every method is a :class:`Selector`: ``score(pool, targets) -> float64 [len(pool)]``, higher =
selected first; ``selection.py`` does the top-k. Build one by name with :func:`make_baseline`.
Exact variants: ``docs/baselines.md`` and each module's docstring.
"""

from .aggregate import SubtaskAccumulator, aggregate_by_subtask
from .base import Selector
from .bm25 import BM25Config, BM25Selector
from .dsir import DSIRConfig, DSIRSelector
from .random_select import RandomConfig, RandomSelector
from .rds import RDSConfig, RDSPlusSelector, RDSSelector
from .registry import BASELINES, baseline_config, make_baseline

__all__ = ["Selector", "aggregate_by_subtask", "SubtaskAccumulator", "BASELINES", "make_baseline",
           "baseline_config", "RandomConfig", "RandomSelector", "BM25Config", "BM25Selector",
           "DSIRConfig", "DSIRSelector", "RDSConfig", "RDSSelector", "RDSPlusSelector"]
