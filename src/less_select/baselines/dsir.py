"""``dsir``: Data Selection with Importance Resampling (Xie et al., NeurIPS 2023), hashed n-grams.

Exact variant (options of :class:`DSIRConfig` in brackets):

* **Text**: ``Example.text`` (prompt text, newline, completion text) of pool and target examples.
* **Features**: lowercase [``lowercase``], split into word and punctuation tokens with the regex
  ``\\w+|[^\\w\\s]+`` (what NLTK's ``WordPunctTokenizer`` does, the DSIR tokenizer), then every unigram
  and every adjacent bigram hashed into B = 10,000 buckets [``num_buckets``], as in the DSIR paper.
  Hashes are stable across runs and machines: each word gets the first 8 bytes of its BLAKE2b digest
  (a 64-bit integer h); a unigram goes to ``h mod B`` and a bigram (h1, h2) to
  ``((h1 * 0x100000001B3) XOR h2) mod 2^64 mod B`` (FNV prime mixing).
* **Models**: two bag-of-hashed-n-gram distributions: the target distribution from all target
  examples together (DSIR has one target distribution; subtasks are not used) and the raw
  distribution from the pool itself; add-alpha smoothing, ``p(b) = (count(b) + alpha) /
  (total + alpha * B)`` with alpha = 1 [``smoothing``].
* **Importance log-weight** of pool example x with bucket counts c_b(x):
  ``log w(x) = sum_b c_b(x) * (log p_target(b) - log p_pool(b))`` (no length normalization, as in the
  paper).
* **Resampling**: DSIR draws k examples without replacement with probabilities proportional to w.
  The Gumbel-top-k trick does exactly that: the score is ``log w(x) + G_x`` with i.i.d. standard
  Gumbel noise G from ``numpy.random.default_rng(seed)`` [``seed``], and the top-k of the scores is
  the resample. With ``resample: false`` the score is ``log w`` itself (deterministic top-k,
  DSIR's "top-k" ablation).

Scale: two streaming passes over the pool (histogram, then weights) in chunks, memory O(B + chunk).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

from ..configs import option, positive, shared
from ..data.example import Example
from ..errors import UserError
from ..progress import Progress
from .base import check_inputs, finish

_TOKEN = re.compile(r"\w+|[^\w\s]+")
_MIX = np.uint64(0x100000001B3)


@dataclass
class DSIRConfig:
    num_buckets: int = option(10000, help="hash buckets of the unigram+bigram features (DSIR: 10,000)",
                              check=positive)
    smoothing: float = option(1.0, help="add-alpha smoothing of both bucket distributions (1 = add-one)",
                              check=positive)
    lowercase: bool = shared("lowercase")
    resample: bool = option(True, help="add seeded Gumbel noise so that top-k = importance resampling "
                                       "without replacement; false: score = log importance weight")
    seed: int = shared("seed")
    chunk_size: int = option(4096, help="pool examples featurized per chunk (memory only)",
                             check=positive)


class HashedNgrams:
    """Text -> bucket ids of its unigrams and bigrams (stable hashing, cached per word)."""

    def __init__(self, num_buckets: int, lowercase: bool = True):
        if num_buckets < 1:
            raise UserError(f"dsir: num_buckets must be >= 1, got {num_buckets}")
        self.B = np.uint64(num_buckets)
        self.lowercase = lowercase
        self._cache: dict[str, int] = {}

    def _word_hash(self, word: str) -> int:
        h = self._cache.get(word)
        if h is None:
            h = int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little")
            self._cache[word] = h
        return h

    def buckets(self, text: str) -> np.ndarray:
        if self.lowercase:
            text = text.lower()
        words = _TOKEN.findall(text)
        if not words:
            return np.zeros(0, dtype=np.int64)
        h = np.fromiter((self._word_hash(w) for w in words), dtype=np.uint64, count=len(words))
        uni = h % self.B
        bi = ((h[:-1] * _MIX) ^ h[1:]) % self.B  # uint64 arithmetic wraps mod 2^64
        return np.concatenate([uni, bi]).astype(np.int64)

    def chunks(self, texts: list[str], size: int) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
        """(start, n, flat bucket ids, owning row within the chunk) for consecutive chunks."""
        for start in range(0, len(texts), max(1, size)):
            parts = [self.buckets(t) for t in texts[start:start + max(1, size)]]
            lens = np.array([len(p) for p in parts], dtype=np.int64)
            yield start, len(parts), np.concatenate(parts), np.repeat(np.arange(len(parts)), lens)

    def histogram(self, texts: Iterable[str]) -> np.ndarray:
        counts = np.zeros(int(self.B), dtype=np.float64)
        for t in texts:
            counts += np.bincount(self.buckets(t), minlength=int(self.B))
        return counts


def log_probs(counts: np.ndarray, alpha: float) -> np.ndarray:
    return np.log(counts + alpha) - np.log(counts.sum() + alpha * len(counts))


class DSIRSelector:
    name = "dsir"
    Config = DSIRConfig

    def __init__(self, config: DSIRConfig | None = None):
        self.config = config or DSIRConfig()

    def log_weights(self, pool: list[Example], targets: list[Example]) -> np.ndarray:
        cfg = self.config
        if cfg.smoothing <= 0:
            raise UserError(f"dsir: smoothing must be > 0 (log of empty buckets), got {cfg.smoothing}")
        feats = HashedNgrams(cfg.num_buckets, cfg.lowercase)
        B = cfg.num_buckets
        target_counts = feats.histogram(ex.text for ex in targets)
        texts = [ex.text for ex in pool]
        pool_counts = np.zeros(B, dtype=np.float64)
        with Progress("dsir pool histogram", total=len(texts)) as prog:
            for _, n, flat, _ in feats.chunks(texts, cfg.chunk_size):
                pool_counts += np.bincount(flat, minlength=B)
                prog.update(n)
        ratio = log_probs(target_counts, cfg.smoothing) - log_probs(pool_counts, cfg.smoothing)
        logw = np.zeros(len(texts), dtype=np.float64)
        with Progress("dsir importance weights", total=len(texts)) as prog:
            for start, n, flat, rows in feats.chunks(texts, cfg.chunk_size):
                logw[start:start + n] = np.bincount(rows, weights=ratio[flat], minlength=n)
                prog.update(n)
        return logw

    def score(self, pool: list[Example], targets: list[Example]) -> np.ndarray:
        check_inputs(self.name, pool, targets)
        logw = self.log_weights(pool, targets)
        if self.config.resample:
            logw = logw + np.random.default_rng(self.config.seed).gumbel(size=len(pool))
        return finish(self.name, logw, len(pool))
