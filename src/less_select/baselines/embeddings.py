"""Sequence embeddings from a causal LM's final-layer hidden states (shared by ``rds`` and ``rds_plus``).

Each example is encoded with :func:`less_select.data.encode.encode_example` (the same template and
truncation as training: prompt and completion, chat template or Tulu template, or raw
prompt/completion), batched by token budget (length-sorted, right-padded with attention mask 0), and
run through the model's decoder (``model.get_decoder()``: the final hidden states after the last
norm, no LM head). Pooling over the **non-padding** tokens of each row:

* ``last``: the hidden state of the last non-padding token (RDS);
* ``weighted_mean``: ``sum_t w_t h_t`` with ``w_t = t / sum_{s=1..T} s`` for positions t = 1..T of the
  T real tokens (SGPT position weighting, RDS+ of Ivison et al. 2025);
* ``mean``: plain mean over the T real tokens.

Pooling is done in float32 whatever the model dtype; the embeddings come back in the input order.
Padding never changes an embedding: positions are 1..T per row and padded keys are masked.
"""

from __future__ import annotations

import logging
from typing import Iterator, Literal, Sequence

import numpy as np
import torch

from ..data.batching import collate, token_budget_batches
from ..data.encode import Template, encode_example
from ..data.example import Example
from ..progress import Progress

log = logging.getLogger(__name__)

Pooling = Literal["last", "weighted_mean", "mean"]


def pool_hidden(hidden: torch.Tensor, mask: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    """``hidden`` [B, L, H], ``mask`` [B, L] (1 = real token, right padding) -> [B, H] float32."""
    hidden = hidden.float()
    mask = mask.to(hidden.device)
    lengths = mask.sum(dim=1)
    if pooling == "last":
        idx = (lengths - 1).clamp(min=0)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), idx]
    if pooling == "weighted_mean":
        pos = torch.arange(1, hidden.shape[1] + 1, device=hidden.device, dtype=torch.float32)
        w = pos.unsqueeze(0) * mask.float()
    elif pooling == "mean":
        w = mask.float()
    else:
        raise ValueError(f"unknown pooling {pooling!r}")
    w = w / w.sum(dim=1, keepdim=True).clamp(min=1e-12)
    return torch.einsum("bl,blh->bh", w, hidden)


def _final_hidden(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    if decoder is not None and decoder is not model:
        return decoder(input_ids=input_ids, attention_mask=attention_mask,
                       use_cache=False).last_hidden_state
    out = model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True,
                use_cache=False)
    return out.hidden_states[-1]


def iter_embeddings(model, tokenizer, examples: Sequence[Example], *, pooling: Pooling,
                    max_seq_length: int = 2048, template: Template = "auto",
                    max_tokens_per_batch: int = 16384, max_batch_size: int | None = 64,
                    name: str = "embeddings") -> Iterator[tuple[list[int], np.ndarray]]:
    """Yield ``(indices, float32 [len(indices), hidden])`` per batch (length-sorted order), so a
    caller can consume embeddings without holding all of them."""
    encoded = [encode_example(ex, tokenizer, max_seq_length, template) for ex in examples]
    n_trunc = sum(e.truncated for e in encoded)
    if n_trunc:
        log.info("%s: %d of %d example(s) truncated to max_seq_length=%d", name, n_trunc,
                 len(encoded), max_seq_length)
    lengths = [len(e.input_ids) for e in encoded]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), Progress(name, total=len(encoded)) as prog:
            for batch in token_budget_batches(lengths, max_tokens_per_batch, max_batch_size):
                enc = collate([encoded[i] for i in batch], pad_id)
                ids = enc["input_ids"].to(device)
                mask = enc["attention_mask"].to(device)
                emb = pool_hidden(_final_hidden(model, ids, mask), mask, pooling).cpu().numpy()
                prog.update(len(batch), extra=int(mask.sum()))
                yield batch, emb
    finally:
        model.train(was_training)


def embed_examples(model, tokenizer, examples: Sequence[Example], *, pooling: Pooling,
                   **kwargs) -> np.ndarray:
    """float32 ``[len(examples), hidden]`` pooled final hidden states (not normalized), input order.

    Keyword arguments as :func:`iter_embeddings`."""
    out: np.ndarray | None = None
    for batch, emb in iter_embeddings(model, tokenizer, examples, pooling=pooling, **kwargs):
        if out is None:
            out = np.zeros((len(examples), emb.shape[1]), dtype=np.float32)
        out[batch] = emb
    if out is None:
        hidden = getattr(getattr(model, "config", None), "hidden_size", 0)
        out = np.zeros((0, hidden), dtype=np.float32)
    return out


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)
