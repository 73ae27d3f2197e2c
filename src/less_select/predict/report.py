"""Which predictor to trust, measured: out-of-fold metrics of every predictor and of each single
feature used alone, the choice, and the plain verdict when the learned model adds nothing.

Single features are ranked exactly as their baselines rank the pool: the RDS+ cosine and BM25 per
subtask, aggregated by the same subtask rule (so "RDS+ alone" is the ``rds_plus`` baseline on the
sample), and the completion length broadcast to every subtask, in the direction (shorter or longer
first) that correlates with the real scores of the sample.
"""

from __future__ import annotations

import logging

import numpy as np

from .features import PoolFeatures
from .models import PREDICTORS, out_of_fold, rank_metrics

log = logging.getLogger(__name__)


def single_features(feats: PoolFeatures, y: np.ndarray, rule) -> dict[str, tuple[np.ndarray, str]]:
    """name -> (per-subtask score matrix [m, K] of the labelled rows, description)."""
    from scipy.stats import spearmanr
    k = y.shape[1]
    length = feats.completion_tokens.astype(np.float64)
    rho = spearmanr(length, rule.score(y))[0] if np.ptp(length) > 0 else 0.0
    sign, word = (-1.0, "shorter") if not rho > 0 else (1.0, "longer")
    return {
        "rds_plus_cosine": (feats.cosine.astype(np.float64), "RDS+ cosine to each subtask's targets"),
        "bm25": (feats.bm25.astype(np.float64), "BM25 against each subtask's targets"),
        "length": (np.repeat((sign * length)[:, None], k, axis=1),
                   f"completion tokens, {word} first (direction fitted on the sample)"),
    }


def evaluate_predictors(names: list[str], x_rows: np.ndarray, y: np.ndarray, feats: PoolFeatures,
                        rule, subtasks: list[str], *, folds: int, transform: str, seed: int,
                        top_fraction: float, cascade_factor: float) -> dict:
    """Out-of-fold metrics of each predictor and each single feature; the chosen predictor.

    The choice is the predictor with the highest out-of-fold Spearman of the final score (stable at
    small samples, unlike the top-p% overlap of a few rows); ties go to the simpler model (listed
    first)."""
    def metrics(pred):
        return rank_metrics(y, pred, rule, subtasks, top_fraction, cascade_factor)

    learned = {n: metrics(out_of_fold(n, x_rows, y, folds, transform, seed)) for n in names}
    chosen = max(names, key=lambda n: (learned[n]["spearman"], -names.index(n)))
    single = {}
    for name, (mat, what) in single_features(feats, y, rule).items():
        single[name] = {"description": what, **metrics(mat)}
    best_single = max(single, key=lambda n: single[n]["spearman"])
    c, b = learned[chosen], single[best_single]
    better = c["spearman"] > b["spearman"] and c["top"]["recall"] >= b["top"]["recall"]
    verdict = (f"the learned predictor ({chosen}) beats its best single feature ({best_single}) out "
               f"of fold: Spearman {c['spearman']:.3f} vs {b['spearman']:.3f}, top-"
               f"{top_fraction:.0%} recall {c['top']['recall']:.2f} vs {b['top']['recall']:.2f}")
    if not better:
        verdict = (f"the learned predictor ({chosen}) is NOT better than its best single feature "
                   f"({best_single}) out of fold: Spearman {c['spearman']:.3f} vs "
                   f"{b['spearman']:.3f}, top-{top_fraction:.0%} recall {c['top']['recall']:.2f} vs "
                   f"{b['top']['recall']:.2f} (it must win on both to count as better; "
                   f"otherwise {best_single} alone ranks as well)")
        log.warning("predict: %s", verdict)
    else:
        log.info("predict: %s", verdict)
    return {"folds": folds, "label_transform": transform, "chosen": chosen,
            "choice_rule": "highest out-of-fold Spearman of the final score",
            "predictors": learned, "single_features": single, "best_single_feature": best_single,
            "better_than_best_single_feature": bool(better), "verdict": verdict}


def known_predictors() -> list[str]:
    return list(PREDICTORS)


def costs(n_pool: int, n_sample: int, n_cascade: int, n_checkpoints: int, n_target_rows: int,
          seconds: dict[str, float], n_forward_models: int = 0) -> dict:
    """Gradient passes against full LESS, and wall seconds with full LESS's extrapolated.

    A gradient pass is one example's per-example gradient at one checkpoint. Full LESS needs every
    pool example at every checkpoint; both need the targets' passes, which are counted apart. The
    forward features cost one forward pass (no backward, no projection) per pool example and model
    (``n_forward_models``: the base model and each checkpoint), counted apart as well. Full
    LESS's datastore seconds are extrapolated linearly from the sample store's seconds per row (the
    datastore's time grows linearly with rows: docs/performance.md)."""
    passes = (n_sample + n_cascade) * n_checkpoints
    full = n_pool * n_checkpoints
    per_row = seconds.get("sample_gradients", 0.0) / max(n_sample, 1)
    full_seconds = per_row * n_pool + seconds.get("targets", 0.0)
    ours = sum(seconds.values())
    return {"pool_gradient_passes": passes, "full_less_pool_gradient_passes": full,
            "gradient_pass_fraction": passes / full if full else 0.0,
            "target_gradient_passes": n_target_rows * n_checkpoints,
            "pool_forward_passes": n_pool * n_forward_models,
            "seconds": seconds, "seconds_total": ours,
            "full_less_seconds_estimated": full_seconds,
            "seconds_saved_estimated": full_seconds - ours,
            "estimate": "full LESS seconds = sample store seconds per row x pool rows + targets seconds"}
