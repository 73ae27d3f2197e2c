"""Influence scores streamed over the memory-mapped pool store (docs/method.md, "Influence with
checkpoint weights").

    Inf(z, V_k) = (1/|V_k|) sum_{z' in V_k} sum_i w_i cos(Pi Gamma_i(z), Pi grad_i(z'))
    s(z)        = max_k Inf(z, V_k)

Rows are unit vectors, so the cosine is a dot product and the mean over a subtask is the dot product
with the subtask's mean target row: per checkpoint we form M_i [K, d] (mean unit target row of each
subtask, subtasks of any size) and stream the pool in blocks, S[block] += w_i X_i[block] @ M_i^T.
Memory is one block plus the [n, K] result on disk, whatever the pool size.

Speed (docs/performance.md, "Scoring"): a reader thread reads the next chunk of every checkpoint
while worker threads score the current one in blocks of ``BLOCK_ELEMENTS`` floats, each in its own
preallocated float32 buffers (conversion, renormalization and the matmul happen in cache, with no
whole-chunk temporaries). Every row goes through the same float operations in the same order as
``unit_rows(block) @ M^T`` (numpy's row norm, IEEE division, the same BLAS call on a sub-block of
rows), so the scores are bit-identical to the whole-chunk computation; tests/test_scoring.py checks it.
"""

from __future__ import annotations

import logging
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .datastore.store import Datastore
from .errors import UserError
from .progress import Progress

log = logging.getLogger(__name__)


@dataclass
class Scores:
    per_subtask: np.ndarray   # float32 [n_rows, K]
    subtasks: list[str]
    noise: dict               # projection-noise estimate (see projection_noise)

    @property
    def score(self) -> np.ndarray:
        """s(z) = max over subtasks, float64 [n_rows]."""
        return self.per_subtask.max(axis=1).astype(np.float64)

    @property
    def best_subtask(self) -> np.ndarray:
        return self.per_subtask.argmax(axis=1)


def check_compatible(pool: Datastore, targets: Datastore, dim: int) -> None:
    """Pool and targets must come from the same checkpoints and the same projection."""
    for store, kind, flag in ((pool, "pool", "--datastore"), (targets, "targets", "--targets")):
        if store.manifest.get("kind", kind) != kind:
            raise UserError(f"{store.path} holds {store.manifest.get('kind')} features; {flag} needs "
                            f"a {kind} store")
    pc = [(c["name"], c["adapter_sha256"]) for c in pool.checkpoints]
    tc = [(c["name"], c["adapter_sha256"]) for c in targets.checkpoints]
    if pc != tc:
        raise UserError(f"{targets.path}: target features were computed at other checkpoints than "
                        f"{pool.path} ({[n for n, _ in tc]} vs {[n for n, _ in pc]}, or other adapter "
                        "weights); rebuild the targets with the datastore's checkpoints")
    from .modeling import identity_mismatch
    if what := identity_mismatch(pool.manifest.get("model_identity"), targets.manifest.get("model_identity")):
        raise UserError(f"{targets.path}: target features were computed with another base model than "
                        f"{pool.path} (the {what} differ); rebuild the targets with the datastore's model")
    tulu = [sorted(e for e in s.manifest.get("encodings", []) if e.startswith("tulu-")) for s in (pool, targets)]
    if tulu[0] and tulu[1] and tulu[0] != tulu[1]:
        raise UserError(f"{targets.path}: encoded with {', '.join(tulu[1])} but {pool.path} with "
                        f"{', '.join(tulu[0])}; rebuild the targets with the datastore's --template "
                        f"({'tulu_stripped' if tulu[0] == ['tulu-v1'] else 'tulu'})")
    pl, tl = pool.manifest.get("loss_tokens", "completion"), targets.manifest.get("loss_tokens", "completion")
    if pl != tl:
        raise UserError(f"{targets.path}: target features use loss_tokens={tl} but {pool.path} uses "
                        f"{pl}; rebuild the targets with --loss-tokens {pl}")
    ps, ts = pool.projector_spec(dim), targets.projector_spec(dim)
    if ps != ts:
        raise UserError(f"{targets.path}: projection {ts} differs from the datastore's {ps}; "
                        "use the same --projector, --projection-seed and model")
    if pool.manifest.get("gradient_type") != "adam":
        log.warning("%s holds %s features, not the Adam features LESS uses", pool.path,
                    pool.manifest.get("gradient_type"))


def unit_rows(block: np.ndarray) -> np.ndarray:
    """float32 rows renormalized: float16 storage leaves norms off by ~1e-3, the cosine must not be."""
    x = np.asarray(block, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def subtask_means(targets: Datastore, checkpoint: str, dim: int) -> tuple[np.ndarray, list[str]]:
    """M [K, dim]: mean of each subtask's unit target rows (subtask sizes may differ)."""
    rows = unit_rows(targets.load(checkpoint, dim))                     # [m, d]
    labels = [str(r["subtask"]) for r in targets.index()]
    subtasks = sorted(set(labels))
    means = np.stack([rows[[j for j, s in enumerate(labels) if s == k]].mean(axis=0)
                      for k in subtasks])                                # [K, d]
    return means.astype(np.float32), subtasks


BLOCK_ELEMENTS = 1 << 21  # floats of one worker's block: 256 rows at d = 8192 (8 MB, in L2/L3)
# A block's matmul must take the BLAS's code path for large matrices, as the whole chunk's did:
# OpenBLAS switches to a "small matrix" kernel (another summation order) below M*N*K = 1e6, so
# blocks never go below MIN_BLOCK_MNK; and they start at multiples of ROW_ALIGN rows of the chunk so
# that every row sits at the same place in the kernels' row tiles (unrolled by up to 16 or 32).
MIN_BLOCK_MNK = 1 << 22
ROW_ALIGN = 64


def block_bounds(rows: int, dim: int, k: int) -> list[tuple[int, int]]:
    """[lo, hi) row blocks of a chunk: ``BLOCK_ELEMENTS`` floats each, at least ``MIN_BLOCK_MNK``
    multiply-adds, a multiple of ``ROW_ALIGN`` rows; a short remainder joins the block before it."""
    step = max(BLOCK_ELEMENTS // dim, -(-MIN_BLOCK_MNK // (dim * max(k, 1))), 1)
    step = -(-step // ROW_ALIGN) * ROW_ALIGN
    starts = list(range(0, rows, step))
    if len(starts) > 1 and rows - starts[-1] < step:
        starts.pop()
    return [(lo, hi) for lo, hi in zip(starts, starts[1:] + [rows])]


def compute_scores(pool_path: str | Path, targets_path: str | Path, dim: int | None = None,
                   out_file: str | Path | None = None, threads: int | None = None) -> Scores:
    """Influence of every pool row on every target subtask, then the LESS score (max over subtasks).

    ``threads``: worker threads (default: torch's thread count, which ``--threads`` sets)."""
    pool, targets = Datastore(pool_path), Datastore(targets_path)
    dim = dim or pool.dims[0]
    check_compatible(pool, targets, dim)
    weights = [float(c["weight"]) for c in pool.checkpoints]
    means = {}
    subtasks: list[str] = []
    for c in pool.checkpoints:
        means[c["name"]], subtasks = subtask_means(targets, c["name"], dim)
    n, k = pool.n_rows, len(subtasks)
    if out_file is not None:
        result = np.lib.format.open_memmap(str(out_file), mode="w+", dtype=np.float32, shape=(n, k))
    else:
        result = np.zeros((n, k), np.float32)
    scorer = _BlockScorer([means[c["name"]].T for c in pool.checkpoints], weights, dim)
    chunks = pool.read_ahead([c["name"] for c in pool.checkpoints], dim)
    with Progress("scoring", total=n, unit="rows") as prog, _worker_pool(threads) as workers:
        for start, blocks in chunks:
            bounds = block_bounds(blocks[0].shape[0], dim, k)
            jobs = [workers.submit(scorer.score, blocks, lo, hi) for lo, hi in bounds]
            for job, (lo, hi) in zip(jobs, bounds):
                result[start + lo:start + hi] = job.result()
            prog.update(blocks[0].shape[0])
    if out_file is not None:
        result.flush()
    if not np.isfinite(result).all():
        raise UserError(f"{pool.path}: non-finite scores; the store is corrupt, rebuild it")
    noise = projection_noise(means, weights, pool.checkpoints, dim, np.asarray(result).max(axis=1),
                             pool.projector_spec(dim).get("kind"))
    return Scores(np.asarray(result), subtasks, noise)


class _BlockScorer:
    """acc = sum_i w_i unit_rows(X_i[lo:hi]) @ M_i^T for a block of rows, in per-thread buffers.

    Bit-identical to the whole-chunk expression: float16 -> float32 is exact whatever does it;
    the norm is numpy's (sqrt of add.reduce of x * x along the row, as ``np.linalg.norm`` computes
    it, whose pairwise summation runs per row); the division is IEEE-exact in numpy and torch alike;
    the matmul is the same BLAS call on fewer rows (each output element's sum runs over d the same
    way). torch does the float16 conversion and the squares (several times faster than numpy's),
    numpy the broadcast division (faster than torch's).

    Speed: the elementwise passes run ``SUB_ROWS`` rows at a time, so the squares and the row being
    normalized stay in the core's L2 cache (1.3x over whole-block passes); only the unit rows [r, d]
    go out to memory, once, for the matmul. M^T is zero-padded to a multiple of ``PAD_COLUMNS``
    columns, which OpenBLAS's kernels tile without a remainder (1.2x); the padded columns are
    dropped. Padding leaves every kept output bit for bit as it was as long as the call stays on
    the large-matrix code path, so it is used only when the unpadded block is on it already
    (``MIN_BLOCK_MNK``) and never for a matrix-vector product (K = 1)."""

    SUB_ROWS = 16
    PAD_COLUMNS = 16

    def __init__(self, means_t: list[np.ndarray], weights: list[float], dim: int):
        self.k = means_t[0].shape[1]
        padded = -(-self.k // self.PAD_COLUMNS) * self.PAD_COLUMNS if self.k > 1 else self.k
        self.means_t = means_t
        self.padded_t = [np.pad(m, ((0, 0), (0, padded - self.k))) for m in means_t]
        self.weights, self.dim = weights, dim
        self.local = threading.local()

    def _buffers(self, rows: int):
        b = getattr(self.local, "buffers", None)
        if b is None or b[0].shape[0] < rows:
            x = np.empty((rows, self.dim), np.float32)
            sq = np.empty((self.SUB_ROWS, self.dim), np.float32)
            norms = np.empty((self.SUB_ROWS, 1), np.float32)
            b = self.local.buffers = (x, sq, norms, torch.from_numpy(x), torch.from_numpy(sq))
        return b

    def score(self, blocks: list[np.ndarray], lo: int, hi: int) -> np.ndarray:
        r = hi - lo
        x, sq, norms, tx, tsq = self._buffers(r)
        x, tx = x[:r], tx[:r]
        means_t = self.padded_t if r * self.dim * self.k >= MIN_BLOCK_MNK else self.means_t
        acc = np.zeros((r, self.k), np.float32)
        for block, mt, w in zip(blocks, means_t, self.weights):
            for s in range(0, r, self.SUB_ROWS):
                e = min(s + self.SUB_ROWS, r)
                rows, sq_s, n_s = tx[s:e], sq[:e - s], norms[:e - s]
                rows.copy_(torch.from_numpy(block[lo + s:lo + e]))       # float16 -> float32, exact
                torch.mul(rows, rows, out=tsq[:e - s])
                np.add.reduce(sq_s, axis=1, keepdims=True, out=n_s)      # |x|^2 per row, numpy's order
                np.sqrt(n_s, out=n_s)
                np.maximum(n_s, 1e-12, out=n_s)
                np.divide(x[s:e], n_s, out=x[s:e])                       # unit rows
            acc += w * (x @ mt)[:, :self.k]                              # [r,d] @ [d,K'] -> [r,K]
        return acc


class _worker_pool:
    """Worker threads for the duration of scoring, with BLAS and torch at one thread each inside them
    (the parallelism is across blocks; nested thread pools would only oversubscribe the cores)."""

    def __init__(self, threads: int | None):
        self.threads = max(1, threads or torch.get_num_threads())

    def __enter__(self) -> ThreadPoolExecutor:
        from threadpoolctl import threadpool_limits
        self.saved = torch.get_num_threads()
        self.limits = threadpool_limits(1, user_api="blas")
        torch.set_num_threads(1)
        self.pool = ThreadPoolExecutor(self.threads, thread_name_prefix="scoring",
                                       initializer=torch.set_num_threads, initargs=(1,))
        return self.pool

    def __exit__(self, *exc) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(self.saved)
        self.limits.restore_original_limits()


def projection_noise(means: dict[str, np.ndarray], weights: list[float], checkpoints: list[dict],
                     dim: int, scores: np.ndarray, kind: str | None) -> dict:
    """How much of the score spread a random projection of this d could explain.

    The projected score for subtask k at checkpoint i is <Pi x_i, Pi m_ik> for a unit x_i and the
    mean target row m_ik; a JL map makes its error e_ik ~ |m_ik| / sqrt(d) (one standard deviation).
    The same Pi is applied at every checkpoint and the checkpoints' features are close to each other,
    so the e_ik are strongly correlated across i (0.7-0.93 measured on warmup checkpoints; averaging
    them as independent made the estimate 1.5x too small). We take them as fully correlated:

        sigma = max_k sum_i w_i |m_ik| / sqrt(d)

    (an upper bound, close when checkpoints are alike; tests/test_projection_noise.py measures it
    against exact scores), and compare it with the standard deviation of the scores over the pool.
    """
    if kind == "identity":
        sigma = 0.0
    else:
        per_subtask = sum(w * np.linalg.norm(means[c["name"]], axis=1)
                          for c, w in zip(checkpoints, weights))      # [K]: sum_i w_i |m_ik|
        sigma = float(np.max(per_subtask)) / math.sqrt(dim)
    spread = float(np.std(scores)) if scores.size else 0.0
    ratio = sigma / spread if spread > 0 else float("inf")
    # If projected = exact + independent noise, corr(projected, exact) = 1 / sqrt(1 + ratio^2); the
    # benchmark (docs/performance.md) measured rank correlations at or slightly above this.
    expected_corr = 1.0 / math.sqrt(1.0 + ratio ** 2) if math.isfinite(ratio) else 0.0
    return {"dim": dim, "projector": kind, "noise_std": sigma, "score_std": spread,
            "noise_to_spread": ratio, "expected_correlation_with_exact": expected_corr,
            "noise_dominated": bool(expected_corr < 0.85),
            "dim_for_correlation_0.95": _dim_for(dim, ratio, 0.95) if sigma > 0 and spread > 0 else dim}


def _dim_for(dim: int, ratio: float, corr: float) -> int:
    """Smallest d whose noise (which shrinks as 1/sqrt(d)) gives the wanted expected correlation."""
    target_ratio = math.sqrt(1.0 / corr ** 2 - 1.0)
    return int(math.ceil(dim * (ratio / target_ratio) ** 2))
