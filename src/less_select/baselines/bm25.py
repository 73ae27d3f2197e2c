"""``bm25``: lexical similarity of each pool example to each target example, with ``bm25s``.

Exact variant (all but the text fields are options of :class:`BM25Config`):

* **Text**: documents are the pool examples' ``Example.text`` (prompt text, a newline, completion
  text; no chat template), queries are the target examples' ``Example.text``.
* **Tokenization** (``bm25s.tokenization.Tokenizer``): lowercase; tokens are the matches of the regex
  ``(?u)\\b\\w\\w+\\b`` (words of 2+ word characters, as scikit-learn's default); bm25s' English
  stopword list removed; **no stemming**. The vocabulary is the pool's; query tokens absent from the
  pool contribute nothing (their BM25 weight would be 0 for every document anyway).
* **Scoring**: BM25 "lucene" variant of bm25s (Kamphuis et al. 2020): for query q and document d,
  ``sum_{t in q} idf(t) * tf(t,d) / (tf(t,d) + k1 * (1 - b + b * |d| / avgdl))`` with
  ``idf(t) = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))``, k1 = 1.5, b = 0.75. Query terms count with
  their multiplicity (a term appearing twice in the query adds its weight twice), as in Lucene's
  boolean query and ``rank_bm25``.
* **Aggregation**: the ``[n_pool, n_targets]`` score matrix goes through
  :func:`~less_select.baselines.aggregate.aggregate_by_subtask` (mean over each subtask's targets,
  max over subtasks), computed column by column so memory is ``n_pool x n_subtasks``. Raw BM25
  scores are not normalized per query (long target queries weigh more within a subtask's mean).

Scale: bm25s stores the index as a sparse token x document matrix of precomputed weights, and
scoring one query touches only the postings of its tokens, so a pool of a few hundred thousand
documents is indexed in seconds to a minute and scored in well under a second per target.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..configs import Bounds, non_negative, option, shared
from ..data.example import Example
from ..progress import Progress, bar_enabled
from .aggregate import SubtaskAccumulator, subtask_names
from .base import check_inputs, finish

log = logging.getLogger(__name__)

BM25Method = Literal["lucene", "robertson", "atire", "bm25l", "bm25+"]


@dataclass
class BM25Config:
    k1: float = option(1.5, help="BM25 term-frequency saturation k1", check=non_negative)
    b: float = option(0.75, help="BM25 document-length normalization b (0 = none, 1 = full)",
                      check=Bounds(low=0, high=1))
    method: BM25Method = option("lucene", help="bm25s scoring variant")
    stopwords: Literal["en", "none"] = option("en", help="remove bm25s' English stopword list ('en') "
                                                          "or keep every token ('none')")
    lowercase: bool = shared("lowercase")


class BM25Selector:
    name = "bm25"
    Config = BM25Config

    def __init__(self, config: BM25Config | None = None):
        self.config = config or BM25Config()

    def _tokenizer(self):
        from bm25s.tokenization import Tokenizer
        stop = "en" if self.config.stopwords == "en" else None
        return Tokenizer(lower=self.config.lowercase, stopwords=stop, stemmer=None)

    def score(self, pool: list[Example], targets: list[Example]) -> np.ndarray:
        check_inputs(self.name, pool, targets)
        if not pool:
            return np.zeros(0, dtype=np.float64)
        return finish(self.name, self._accumulate(pool, targets).result(), len(pool))

    def score_per_subtask(self, pool: list[Example], targets: list[Example]) -> tuple[np.ndarray, list[str]]:
        """``[n_pool, K]`` mean BM25 score of each subtask's queries, and the subtask names."""
        check_inputs(self.name, pool, targets)
        acc = self._accumulate(pool, targets)
        return acc.per_subtask(), subtask_names(acc.subtasks)

    def _accumulate(self, pool: list[Example], targets: list[Example]) -> SubtaskAccumulator:
        import bm25s

        cfg = self.config
        tok = self._tokenizer()
        bars = bar_enabled()  # bm25s' own bars (tokenizing, indexing a big pool) follow --progress
        doc_ids = tok.tokenize([ex.text for ex in pool], update_vocab=True, return_as="ids",
                               show_progress=bars)
        vocab = tok.get_vocab_dict()
        retriever = bm25s.BM25(k1=cfg.k1, b=cfg.b, method=cfg.method)
        # Index from (ids, vocab): bm25s then scores query token ids directly, no remapping.
        retriever.index((doc_ids, vocab), show_progress=bars)
        del doc_ids
        query_ids = tok.tokenize([ex.text for ex in targets], update_vocab=False, return_as="ids",
                                 show_progress=False)
        empty_id = vocab.get("")  # bm25s' placeholder token for texts with no token
        acc = SubtaskAccumulator(len(pool), [ex.subtask for ex in targets])
        n_empty = 0
        with Progress("bm25 queries", total=len(targets), unit="query") as prog:
            for j, q in enumerate(query_ids):
                q = [t for t in q if t != empty_id]
                if q:
                    col = retriever.get_scores_from_ids(q)
                else:
                    n_empty += 1
                    col = np.zeros(len(pool), dtype=np.float64)
                acc.add(j, col)
                prog.update(1)
        if n_empty:
            log.warning("bm25: %d of %d target(s) share no token with the pool; they score 0 "
                        "for every pool example", n_empty, len(targets))
        return acc
