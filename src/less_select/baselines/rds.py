"""``rds`` and ``rds_plus``: representation-based selection by cosine similarity of LM embeddings.

* ``rds`` (the LESS paper's RDS baseline): embedding = final-layer hidden state of the last
  non-padding token of the encoded example.
* ``rds_plus`` (RDS+, Ivison et al. 2025, "Large-Scale Data Selection for Instruction Tuning"):
  embedding = position-weighted mean of the final-layer hidden states over the non-padding tokens,
  weights proportional to the position 1..T (SGPT weighting).

Both: pool and target examples are encoded exactly as for training
(:func:`~less_select.data.encode.encode_example`: prompt + completion with the chat/Tulu template, or
raw prompt/completion; truncated to ``max_seq_length``) and embedded by the model at ``model``
(optionally with the PEFT adapter at ``adapter``, not merged); embeddings are L2-normalized, the
cosine similarity matrix ``[n_pool, n_targets]`` is computed one embedding batch of pool rows at a
time (pool embeddings are never all held in memory), and each block is aggregated with
:func:`~less_select.baselines.aggregate.aggregate_by_subtask` (mean over each subtask's targets, max
over subtasks). See :mod:`less_select.baselines.embeddings`.

Deviation from Ivison et al.'s released script, on purpose: their weighted mean also weights padding
positions of a padded batch; here padding is excluded, so an embedding never depends on its batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..configs import option, shared
from ..data.encode import Template
from ..data.example import Example
from ..errors import UserError
from .aggregate import mean_by_subtask, subtask_names
from .base import check_inputs, finish
from .embeddings import Pooling, embed_examples, iter_embeddings, l2_normalize


@dataclass
class RDSConfig:
    model: str | None = option(None, help="model to embed with (hub id or local folder); required "
                                          "unless a loaded model is passed in Python")
    adapter: str | None = option(None, help="optional PEFT adapter folder applied to the model")
    template: Template = shared("template")
    max_seq_length: int = shared("max_seq_length")
    dtype: str = shared("dtype")
    device: str = shared("device")
    max_tokens_per_batch: int = shared("max_tokens_per_batch")
    max_batch_size: int = shared("max_batch_size")


class RDSSelector:
    """Cosine similarity of last-token final hidden states (``pooling`` overridable by subclasses)."""

    name = "rds"
    pooling: Pooling = "last"
    Config = RDSConfig

    def __init__(self, config: RDSConfig | None = None, *, model=None, tokenizer=None):
        self.config = config or self.Config()
        self._model, self._tokenizer = model, tokenizer

    def _load(self):
        if self._model is None or self._tokenizer is None:
            if not self.config.model:
                raise UserError(f"baseline '{self.name}': option 'model' is required (the model whose "
                                f"hidden states embed the examples)")
            from ..modeling import load_model_with_adapter, load_tokenizer, resolve_device
            if self._tokenizer is None:
                adapter = self.config.adapter
                # An adapter folder that ships its own tokenizer (added tokens) wins.
                src = adapter if adapter and _has_tokenizer(adapter) else self.config.model
                self._tokenizer = load_tokenizer(src)
            if self._model is None:
                self._model = load_model_with_adapter(self.config.model, self.config.adapter,
                                                      self.config.dtype,
                                                      resolve_device(self.config.device))
        return self._model, self._tokenizer

    def _embed_kwargs(self, what: str) -> dict:
        cfg = self.config
        return dict(pooling=self.pooling, max_seq_length=cfg.max_seq_length, template=cfg.template,
                    max_tokens_per_batch=cfg.max_tokens_per_batch,
                    max_batch_size=cfg.max_batch_size, name=f"{self.name} {what}")

    def embed(self, examples: list[Example], what: str = "examples") -> np.ndarray:
        """L2-normalized float32 embeddings ``[n, hidden]``."""
        model, tok = self._load()
        return l2_normalize(embed_examples(model, tok, examples, **self._embed_kwargs(what)))

    def score(self, pool: list[Example], targets: list[Example]) -> np.ndarray:
        check_inputs(self.name, pool, targets)
        if not pool:
            return np.zeros(0, dtype=np.float64)
        per_subtask, _ = self.score_per_subtask(pool, targets)
        return finish(self.name, per_subtask.max(axis=1), len(pool))

    def score_per_subtask(self, pool: list[Example], targets: list[Example]) -> tuple[np.ndarray, list[str]]:
        """``[n_pool, K]`` mean cosine to each subtask's target embeddings, and the subtask names."""
        check_inputs(self.name, pool, targets)
        target_emb = self.embed(targets, "targets").astype(np.float64)
        subtasks = [ex.subtask for ex in targets]
        names = subtask_names(subtasks)
        model, tok = self._load()
        out = np.full((len(pool), len(names)), np.nan, dtype=np.float64)
        # Pool embeddings are scored batch by batch and never all held: memory O(batch x hidden).
        for batch, emb in iter_embeddings(model, tok, pool, **self._embed_kwargs("pool")):
            sim = l2_normalize(emb).astype(np.float64) @ target_emb.T
            out[batch] = mean_by_subtask(sim, subtasks)
        return out, names


class RDSPlusSelector(RDSSelector):
    """RDS+: cosine similarity of position-weighted mean-pooled final hidden states."""

    name = "rds_plus"
    pooling: Pooling = "weighted_mean"


def _has_tokenizer(folder: str) -> bool:
    from pathlib import Path
    return any((Path(folder) / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json",
                                                       "tokenizer.model"))
