"""Predictors of per-subtask LESS scores, label scaling, and honest out-of-fold measurement.

Labels are the real LESS scores of the sample, ``Y`` [m, K]. Scores of different subtasks live on
different scales, so each subtask's column is put on a common scale before fitting and mapped back
after predicting, which keeps the max over subtasks (or the balanced rule) of the predictions
comparable with real scores:

* ``zscore``: z = (y - mean_k) / std_k, inverted as y = mean_k + std_k z;
* ``rank``: u = (rank - 0.5) / m in (0, 1), inverted through the sample's own quantile function of
  subtask k (so a prediction lands on a real score of that subtask's distribution).

Predictors (scikit-learn): ``ridge`` (standardized inputs, ridge penalty chosen by leave-one-out
over a log grid) and ``hgb`` (histogram gradient boosting, fixed seed, no early stopping, so a fit is
deterministic). :func:`out_of_fold` fits on k - 1 folds of the sample's examples (all subtasks of an
example stay in one fold) and predicts the held-out fold, so every reported number is measured on
examples the model never saw.
"""

from __future__ import annotations

from typing import Callable, Literal

import numpy as np

Transform = Literal["zscore", "rank"]


class LabelScale:
    """Per-subtask scaling of labels, fitted on one set of labelled rows."""

    def __init__(self, kind: Transform):
        self.kind = kind

    def fit(self, y: np.ndarray) -> "LabelScale":
        y = np.asarray(y, np.float64)
        self.mean = y.mean(axis=0)
        self.std = np.where(y.std(axis=0) > 0, y.std(axis=0), 1.0)
        self.sorted = np.sort(y, axis=0)
        return self

    def transform(self, y: np.ndarray) -> np.ndarray:
        y = np.asarray(y, np.float64)
        if self.kind == "zscore":
            return (y - self.mean) / self.std
        from scipy.stats import rankdata
        return (rankdata(y, axis=0) - 0.5) / len(y)

    def inverse(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z, np.float64)
        if self.kind == "zscore":
            return self.mean + self.std * z
        m = len(self.sorted)
        grid = (np.arange(m) + 0.5) / m      # the u of each sorted label
        return np.stack([np.interp(z[:, k], grid, self.sorted[:, k]) for k in range(z.shape[1])], axis=1)


def make_ridge(seed: int):
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    return make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 4, 15)))


def make_hgb(seed: int):
    from sklearn.ensemble import HistGradientBoostingRegressor
    return HistGradientBoostingRegressor(max_iter=200, learning_rate=0.05, max_leaf_nodes=15,
                                         min_samples_leaf=20, l2_regularization=1.0,
                                         early_stopping=False, random_state=seed)


PREDICTORS: dict[str, Callable] = {"ridge": make_ridge, "hgb": make_hgb}


class SubtaskPredictor:
    """One regressor over (example, subtask) rows; predicts [n, K] raw per-subtask scores."""

    def __init__(self, name: str, transform: Transform, seed: int):
        self.name, self.transform, self.seed = name, transform, seed

    def fit(self, x_rows: np.ndarray, y: np.ndarray) -> "SubtaskPredictor":
        """``x_rows`` [m * K, F] (row i * K + k), ``y`` [m, K] raw labels."""
        self.k = y.shape[1]
        self.scale = LabelScale(self.transform).fit(y)
        self.model = PREDICTORS[self.name](self.seed).fit(x_rows, self.scale.transform(y).reshape(-1))
        return self

    def predict(self, x_rows: np.ndarray) -> np.ndarray:
        z = self.model.predict(x_rows).reshape(-1, self.k)
        return self.scale.inverse(z)


def example_rows(idx: np.ndarray, k: int) -> np.ndarray:
    """Design-matrix rows of examples ``idx`` (each example owns K consecutive rows)."""
    return (np.asarray(idx)[:, None] * k + np.arange(k)[None, :]).reshape(-1)


def out_of_fold(name: str, x_rows: np.ndarray, y: np.ndarray, folds: int, transform: Transform,
                seed: int) -> np.ndarray:
    """Out-of-fold predictions [m, K] of the labelled examples (shuffled, seeded k-fold)."""
    from sklearn.model_selection import KFold
    m, k = y.shape
    out = np.zeros((m, k), np.float64)
    for train, held in KFold(n_splits=folds, shuffle=True, random_state=seed).split(np.arange(m)):
        model = SubtaskPredictor(name, transform, seed).fit(x_rows[example_rows(train, k)], y[train])
        out[held] = model.predict(x_rows[example_rows(held, k)])
    return out


def rank_metrics(true_ps: np.ndarray, pred_ps: np.ndarray, rule, subtasks: list[str],
                 top_fraction: float, cascade_factor: float) -> dict:
    """How well ``pred_ps`` ranks like ``true_ps`` ([m, K] each), per subtask and after the rule.

    ``top``: the true top p% of the rows (by the rule's ranking) against the predicted top p% (the
    sets have equal size, so precision equals recall) and against the predicted top c x p% (the
    share of the true top that a cascade with factor c would still hold)."""
    from scipy.stats import kendalltau, spearmanr

    def corr(a, b):
        if np.ptp(a) == 0 or np.ptp(b) == 0:
            return 0.0, 0.0
        return float(spearmanr(a, b)[0]), float(kendalltau(a, b)[0])

    per_subtask = {}
    for j, name in enumerate(subtasks):
        s, t = corr(true_ps[:, j], pred_ps[:, j])
        per_subtask[name] = {"spearman": s, "kendall": t}
    s, t = corr(rule.score(true_ps), rule.score(pred_ps))
    m = len(true_ps)
    n_top = max(1, int(round(top_fraction * m)))
    n_wide = min(m, max(n_top, int(np.ceil(cascade_factor * n_top))))
    true_top = set(rule.rank(true_ps)[:n_top].tolist())
    order = rule.rank(pred_ps)
    hit = len(true_top & set(order[:n_top].tolist()))
    hit_wide = len(true_top & set(order[:n_wide].tolist()))
    return {"spearman": s, "kendall": t,
            "mean_subtask_spearman": float(np.mean([v["spearman"] for v in per_subtask.values()])),
            "top": {"fraction": top_fraction, "n_true_top": n_top, "precision": hit / n_top,
                    "recall": hit / n_top, "cascade_factor": cascade_factor,
                    "recall_within_cascade": hit_wide / n_top},
            "per_subtask": per_subtask}
