"""Cheap features of every pool example, computed once and cached in the run folder.

Per pool example i and target subtask k (subtasks in sorted order, as in scoring):

* ``embedding`` [n, H]: the base model's RDS+ embedding (position-weighted mean of the final hidden
  states, unit length; :class:`~less_select.baselines.rds.RDSPlusSelector`);
* ``cosine`` [n, K]: mean cosine of that embedding to subtask k's target embeddings, i.e. the dot
  product with the mean of the unit target embeddings (max over k is exactly the ``rds_plus``
  baseline's score);
* ``bm25`` [n, K]: mean BM25 score against subtask k's targets
  (:class:`~less_select.baselines.bm25.BM25Selector` run on that subtask's targets alone, so max over
  k is exactly the ``bm25`` baseline's score);
* ``prompt_tokens``, ``completion_tokens`` [n]: token counts after encoding and truncation, as the
  datastore encodes the example;
* ``source`` [n]: index into ``sources`` (the example's file name);
* ``forward`` [n, F] (optional): forward-pass statistics under the base model and each checkpoint
  (loss, logit-gradient norm, entropy: forward.py), cached apart in ``forward/``.

The cache is a folder of ``.npy`` files and ``manifest.json`` (subtasks, sources, ids, seconds),
written through :func:`~less_select.stage_folder.stage_dir` so a finished cache is reused only with the
same settings. :func:`design_matrix` turns the features into the predictor's input rows, one per
(example, subtask).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..data.example import Example
from ..stage_folder import stage_dir

log = logging.getLogger(__name__)

ARRAYS = ("embedding", "cosine", "bm25", "prompt_tokens", "completion_tokens", "source")


@dataclass
class PoolFeatures:
    embedding: np.ndarray          # float32 [n, H], unit rows
    cosine: np.ndarray             # float32 [n, K]
    bm25: np.ndarray               # float32 [n, K]
    prompt_tokens: np.ndarray      # int64 [n]
    completion_tokens: np.ndarray  # int64 [n]
    source: np.ndarray             # int64 [n], index into ``sources``
    sources: list[str]
    subtasks: list[str]
    seconds: float = 0.0
    forward: np.ndarray | None = None  # float32 [n, F] forward-pass features (forward.py)

    def columns(self, subtasks: Sequence[str]) -> "PoolFeatures":
        """The same features with the per-subtask columns restricted/reordered to ``subtasks``."""
        missing = [s for s in subtasks if s not in self.subtasks]
        if missing:
            raise ValueError(f"features lack subtask(s) {missing}")
        cols = [self.subtasks.index(s) for s in subtasks]
        return PoolFeatures(self.embedding, self.cosine[:, cols], self.bm25[:, cols],
                            self.prompt_tokens, self.completion_tokens, self.source, self.sources,
                            list(subtasks), self.seconds, self.forward)

    def rows(self, idx: np.ndarray) -> "PoolFeatures":
        return PoolFeatures(self.embedding[idx], self.cosine[idx], self.bm25[idx],
                            self.prompt_tokens[idx], self.completion_tokens[idx], self.source[idx],
                            self.sources, self.subtasks, self.seconds,
                            None if self.forward is None else self.forward[idx])


def subtask_labels(targets: Sequence[Example]) -> list[str]:
    return [str(t.subtask) for t in targets]


def compute_features(pool: Sequence[Example], targets: Sequence[Example], token_counts: np.ndarray,
                     rds_config) -> PoolFeatures:
    """All features of ``pool`` against ``targets``; ``token_counts`` [n, 2] = (prompt, completion)."""
    from ..baselines.bm25 import BM25Selector
    from ..baselines.rds import RDSPlusSelector
    start = time.perf_counter()
    labels = subtask_labels(targets)
    subtasks = sorted(set(labels))
    rds = RDSPlusSelector(rds_config)
    pool_emb = rds.embed(list(pool), "pool")
    target_emb = rds.embed(list(targets), "targets")
    # mean over a subtask's unit target embeddings: its dot product is the mean cosine
    means = np.stack([target_emb[[j for j, s in enumerate(labels) if s == k]].mean(axis=0)
                      for k in subtasks])
    cosine = (pool_emb.astype(np.float64) @ means.T.astype(np.float64)).astype(np.float32)
    bm25 = np.zeros((len(pool), len(subtasks)), np.float32)
    for c, k in enumerate(subtasks):
        bm25[:, c] = BM25Selector().score(list(pool), [t for t, s in zip(targets, labels) if s == k])
    sources = sorted({Path(ex.source).name for ex in pool})
    code = {s: i for i, s in enumerate(sources)}
    return PoolFeatures(embedding=pool_emb.astype(np.float32), cosine=cosine, bm25=bm25,
                        prompt_tokens=np.asarray(token_counts[:, 0], np.int64),
                        completion_tokens=np.asarray(token_counts[:, 1], np.int64),
                        source=np.asarray([code[Path(ex.source).name] for ex in pool], np.int64),
                        sources=sources, subtasks=subtasks, seconds=time.perf_counter() - start)


def cached_features(folder: Path, settings: dict, pool: Sequence[Example], targets: Sequence[Example],
                    token_counts: np.ndarray, rds_config) -> tuple[PoolFeatures, bool]:
    """Load the cache in ``folder`` when made with ``settings``, else compute and write it.

    Returns (features, reused). The seconds are those measured when the cache was made."""
    made = False
    with stage_dir(folder, "predict-features", settings, overwrite=_stale(folder, settings)) as part:
        if part is not None:
            feats = compute_features(pool, targets, token_counts, rds_config)
            for name in ARRAYS:
                np.save(part / f"{name}.npy", getattr(feats, name))
            (part / "manifest.json").write_text(json.dumps(
                {"sources": feats.sources, "subtasks": feats.subtasks, "seconds": feats.seconds,
                 "ids": [ex.id for ex in pool], "n_examples": len(pool)}, indent=2))
            made = True
    feats = load_features(folder)
    if len(feats.source) != len(pool):
        raise RuntimeError(f"{folder}: cached features cover {len(feats.source)} examples, not {len(pool)}")
    return feats, not made


def _stale(folder: Path, settings: dict) -> bool:
    """A cache made with other settings is derived data: replace it rather than refuse."""
    from ..errors import UserError
    from ..stage_folder import stage_status
    try:
        return stage_status(folder, settings) != "done" and folder.exists()
    except UserError:
        return True


def load_features(folder: Path) -> PoolFeatures:
    mf = json.loads((folder / "manifest.json").read_text())
    arrays = {name: np.load(folder / f"{name}.npy") for name in ARRAYS}
    return PoolFeatures(**arrays, sources=mf["sources"], subtasks=mf["subtasks"], seconds=mf["seconds"])


class Reducer:
    """PCA of the pool embeddings (fit once on the pool: unsupervised, no label is used)."""

    def __init__(self, dims: int, seed: int, max_fit_rows: int = 20000):
        self.dims, self.seed, self.max_fit_rows = dims, seed, max_fit_rows
        self.pca = None

    def fit(self, embedding: np.ndarray) -> "Reducer":
        from sklearn.decomposition import PCA
        dims = min(self.dims, embedding.shape[1], embedding.shape[0])
        if dims <= 0:
            return self
        rows = embedding
        if len(rows) > self.max_fit_rows:  # a seeded subset is plenty for the leading directions
            pick = np.random.default_rng(self.seed).choice(len(rows), self.max_fit_rows, replace=False)
            rows = rows[np.sort(pick)]
        self.pca = PCA(n_components=dims, svd_solver="full").fit(rows.astype(np.float64))
        return self

    def transform(self, embedding: np.ndarray) -> np.ndarray:
        if self.pca is None:
            return np.zeros((len(embedding), 0))
        return self.pca.transform(embedding.astype(np.float64))


def n_design_columns(feats: PoolFeatures, reducer: Reducer) -> int:
    pca = reducer.pca.n_components_ if reducer.pca is not None else 0
    fwd = 0 if feats.forward is None else 2 * feats.forward.shape[1]
    return pca + 2 + len(feats.sources) + fwd + 2 + len(feats.subtasks)


def design_matrix(feats: PoolFeatures, reducer: Reducer) -> np.ndarray:
    """Predictor input, float64 [n * K, F]: row i * K + k is example i against subtask k.

    Columns: PCA of the embedding, log(1 + prompt/completion tokens), source one-hot, the forward
    features and their logarithms (all shared by the K rows of an example), then the cosine and log(1 + BM25) against subtask k and subtask k's
    one-hot. One model over all subtasks shares what the subtasks have in common (the example's
    length and kind drive much of every subtask's score) and sees each subtask's own similarity.
    """
    n, k = feats.cosine.shape
    shared = np.concatenate([
        reducer.transform(feats.embedding),
        np.log1p(feats.prompt_tokens)[:, None], np.log1p(feats.completion_tokens)[:, None],
        np.eye(len(feats.sources))[feats.source],
        *forward_columns(feats.forward, n),
    ], axis=1)
    per_sub = np.stack([feats.cosine.astype(np.float64),
                        np.log1p(np.maximum(feats.bm25.astype(np.float64), 0.0))], axis=2)  # [n, K, 2]
    rows = np.concatenate([
        np.repeat(shared, k, axis=0),
        per_sub.reshape(n * k, 2),
        np.tile(np.eye(k), (n, 1)),
    ], axis=1)
    return rows


def forward_columns(forward: np.ndarray | None, n: int) -> list[np.ndarray]:
    """The forward features and their logarithms (all are positive; the scores relate to their
    ratios, e.g. checkpoint loss over base loss, which a linear model sees as a log difference)."""
    if forward is None:
        return [np.zeros((n, 0))]
    f = np.asarray(forward, np.float64)
    return [f, np.log(np.maximum(f, 0.0) + 1e-6)]
