"""``random``: seeded uniform scores; the top-k of them is a uniform random subset of size k.

Scores are i.i.d. U[0, 1) from ``numpy.random.default_rng(seed)`` in pool order, so the same pool
order and seed give the same selection, and a different seed gives a different one. Targets are
ignored (they may be empty).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..configs import shared
from ..data.example import Example
from .base import finish


@dataclass
class RandomConfig:
    seed: int = shared("seed")


class RandomSelector:
    name = "random"
    Config = RandomConfig

    def __init__(self, config: RandomConfig | None = None):
        self.config = config or RandomConfig()

    def score(self, pool: list[Example], targets: list[Example]) -> np.ndarray:
        rng = np.random.default_rng(self.config.seed)
        return finish(self.name, rng.random(len(pool)), len(pool))
