"""A memory budget for the feature stages: the batch token budget derived from ``--max-memory``
and the model, so the peak resident memory of a datastore/targets build stays under the budget.

Peak memory of a build = fixed part + (tokens in one batch) x (bytes per token):

* fixed: the process itself (Python, torch, transformers: ``BASE_BYTES``), the model weights, the
  checkpoint's Adam moments (2 x P float32), each projector's index cache, and the chunk of output
  rows (``chunk_size`` x sum(d) float32, plus the float16 copy written to disk);
* per token of a batch, per decoder layer, the activations autograd keeps for the backward of a
  Llama-style block (about 14 hidden-wide and 5 intermediate-wide vectors, LoRA's r-wide ones, and
  the attention probabilities of the math attention kernel, heads x sequence length per token), all
  in the model dtype; plus the vocabulary-wide logits of the loss positions, in float32.

The coefficients are upper estimates; ``benchmarks/bench_memory.py`` measures peak RSS against the
budget (docs/performance.md). The per-example gradient of one LoRA matrix at a time (N x r x width)
is small next to the activations and is covered by ``SAFETY``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from ..errors import UserError

BASE_BYTES = 600 << 20      # interpreter + torch + transformers + peft + tokenizer, measured ~450-550 MB
SAFETY = 1.15               # allocator slack and short-lived temporaries
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "g": 1 << 30,
          "gb": 1 << 30, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30}


def parse_bytes(text: str, what: str = "--max-memory") -> int:
    """``"6GB"``, ``"1500MB"``, ``"2.5g"`` -> bytes (powers of 1024); a one-line error otherwise."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    if not m or m.group(2).lower() not in _UNITS:
        raise UserError(f"{what}: {text!r} is not a memory size such as 6GB or 1500MB")
    value = float(m.group(1)) * _UNITS[m.group(2).lower()]
    if value <= 0:
        raise UserError(f"{what}: must be positive, got {text!r}")
    return int(value)


@dataclass(frozen=True)
class MemoryModel:
    """Byte counts of one build; ``peak(tokens)`` is the estimated peak RSS of a batch of ``tokens``."""

    fixed_bytes: int
    bytes_per_token: int
    max_seq_length: int

    def peak(self, tokens: int) -> int:
        return int(SAFETY * (self.fixed_bytes + tokens * self.bytes_per_token))

    def tokens_for(self, budget: int) -> int:
        """The most tokens per batch whose estimated peak stays within ``budget``."""
        return int((budget / SAFETY - self.fixed_bytes) // self.bytes_per_token)


def memory_model(model: torch.nn.Module, lora_params: int, dims: list[int], chunk_size: int,
                 max_seq_length: int, projector_cache_bytes: int = 0) -> MemoryModel:
    """The memory model of a feature build of ``model`` (a PEFT model with its LoRA adapter)."""
    cfg = model.config
    hidden = int(getattr(cfg, "hidden_size", 0) or 0)
    layers = int(getattr(cfg, "num_hidden_layers", 0) or 0)
    inter = int(getattr(cfg, "intermediate_size", 0) or 4 * hidden)
    heads = int(getattr(cfg, "num_attention_heads", 0) or 1)
    vocab = int(getattr(cfg, "vocab_size", 0) or 0)
    if not (hidden and layers and vocab):
        raise UserError(f"--max-memory: the model config lacks hidden_size/num_hidden_layers/vocab_size "
                        f"({type(cfg).__name__}); give --max-tokens-per-batch instead")
    elt = next(model.parameters()).element_size()
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    rank = _max_lora_rank(model)
    per_layer = (14 * hidden + 5 * inter + 14 * rank + heads * max_seq_length) * elt
    # logits of a loss position: float32 logits, their log-softmax and its gradient
    per_token = layers * per_layer + 3 * vocab * 4 + 4 * hidden * elt
    out_rows = chunk_size * sum(dims) * (4 + 2)
    fixed = BASE_BYTES + weights + 2 * lora_params * 4 + projector_cache_bytes + out_rows
    return MemoryModel(int(fixed), int(per_token), max_seq_length)


def batch_tokens_for_budget(mem: MemoryModel, budget: int, max_tokens_per_batch: int) -> int:
    """Token budget of a batch under a memory budget: at most ``max_tokens_per_batch``, and room for
    at least one sequence of ``max_seq_length`` tokens (else a :class:`UserError` saying what fits)."""
    tokens = min(mem.tokens_for(budget), max_tokens_per_batch)
    if tokens < mem.max_seq_length:
        need = mem.peak(mem.max_seq_length)
        raise UserError(f"--max-memory {budget / (1 << 30):.2f} GiB is too small for this model: one "
                        f"{mem.max_seq_length}-token sequence needs about {need / (1 << 30):.2f} GiB "
                        f"(fixed {mem.fixed_bytes / (1 << 30):.2f} GiB: weights, Adam moments, output "
                        f"chunk); raise it, or lower --max-seq-length or --chunk-size")
    return tokens


def _max_lora_rank(model: torch.nn.Module) -> int:
    ranks = [m.weight.shape[0] for n, m in model.named_modules()
             if n.split(".")[-2:-1] == ["lora_A"] and hasattr(m, "weight")]
    return max(ranks, default=0)
