"""The labelled sample of the influence predictor: which pool examples get real LESS gradients.

A seeded draw of ``round(fraction * n)`` pool positions. With stratification the pool is split into
groups (its source file, or the records' ``dataset`` field) and each group gets its proportional
share, rounded by largest remainder so the total is exact; within a group the draw is uniform. The
positions come back sorted, so the sample's store rows follow pool order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from ..data.example import Example
from ..errors import UserError

Stratify = Literal["none", "file", "dataset"]


def group_of(ex: Example, stratify: Stratify) -> str:
    """The stratum of an example: its file name, its ``dataset`` field, or one group for all."""
    if stratify == "file":
        return Path(ex.source).name
    if stratify == "dataset":
        value = ex.raw.get("dataset") if isinstance(ex.raw, dict) else None
        return str(value) if value is not None else "<no dataset field>"
    return ""


def allocate(sizes: Sequence[int], total: int) -> list[int]:
    """Proportional shares of ``total`` over groups of ``sizes`` (largest remainder, ties by order)."""
    n = sum(sizes)
    exact = [total * s / n for s in sizes]
    shares = [int(np.floor(e)) for e in exact]
    by_remainder = sorted(range(len(sizes)), key=lambda g: (-(exact[g] - shares[g]), g))
    for g in by_remainder[:total - sum(shares)]:
        shares[g] += 1
    return [min(s, size) for s, size in zip(shares, sizes)]


def draw_sample(examples: Sequence[Example], fraction: float, seed: int,
                stratify: Stratify = "none") -> np.ndarray:
    """Sorted pool positions of the labelled sample (int64)."""
    if not 0 < fraction < 1:
        raise UserError(f"sample_fraction must be in (0, 1), got {fraction}")
    n = len(examples)
    total = int(round(fraction * n))
    if total < 1:
        raise UserError(f"sample_fraction {fraction} of a pool of {n} draws no example")
    groups: dict[str, list[int]] = {}
    for i, ex in enumerate(examples):
        groups.setdefault(group_of(ex, stratify), []).append(i)
    names = sorted(groups)
    shares = allocate([len(groups[g]) for g in names], total)
    rng = np.random.default_rng(seed)
    picked = [rng.choice(np.asarray(groups[g]), size=k, replace=False) for g, k in zip(names, shares) if k]
    return np.sort(np.concatenate(picked)).astype(np.int64)
