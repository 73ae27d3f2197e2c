"""Influence prediction: LESS-quality selection with real gradients for only part of the pool.

Real LESS scores for a seeded sample (``sampling``), cheap features of every example (``features``),
predictors fitted and measured out of fold (``models``, ``report``), and the ``predicted`` and
``cascade`` selection modes (``modes``); the stage and its config are in ``stage``.
"""

from .stage import PredictConfig, run_predict

__all__ = ["PredictConfig", "run_predict"]
