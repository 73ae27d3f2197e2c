"""Brief causal-LM pretraining of the demo's tiny model, so the demo does not start from random weights.

The demo needs a base model that already knows the chat format and the pool's vocabulary but does not
yet solve the target task, so that fine-tuning on well-chosen data shows a measurable gain. We build
the offline BPE tokenizer (``tiny_model.build_tokenizer``) and a tiny Llama (``tiny_model.build_tiny_llama``)
and train it for a short while as a plain causal LM (loss on every token) on texts rendered with the
Tulu template. This is a plain torch loop on purpose: it is pretraining, not one of the pipeline's
(Trainer-based) training stages.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import torch

from ..data.encode import tulu_concat
from .tiny_model import build_tiny_llama, build_tokenizer
from ..progress import Progress
from .tasks import RELEVANT_FAMILIES

log = logging.getLogger(__name__)

SPECIAL_TOKENS = ("<s>", "</s>", "<pad>", "<unk>")


def tulu_texts(records: Iterable[dict], eos_token: str = "</s>") -> list[str]:
    """Render ``messages`` records (or ``Example`` objects) with the Tulu template, as the pipeline's
    ``tulu-v1`` encoding does (``<|user|>\\n...\\n<|assistant|>\\n...</s>``)."""
    out = []
    for r in records:
        messages = r["messages"] if isinstance(r, dict) else r.messages
        out.append(tulu_concat(messages, eos_token).strip())
    return out


def pretraining_texts(pool_records: Iterable[dict],
                      exclude_tasks: Sequence[str] = RELEVANT_FAMILIES) -> list[str]:
    """Tulu texts of the pool records whose ``task`` is not in ``exclude_tasks``.

    The demo pretrains on the pool *without* the skill-relevant families, so that the base model
    learns the format, the vocabulary and copying numbers (from the distractors) but not addition:
    fine-tuning on the right selection then has something to teach."""
    return tulu_texts(r for r in pool_records if r.get("task") not in set(exclude_tasks))


@dataclass
class PretrainResult:
    """What :func:`pretrain_tiny_model` did."""

    model_dir: Path
    seconds: float
    steps: int
    n_params: int
    first_loss: float        # mean training loss of the first 10% of steps
    final_loss: float        # mean training loss of the last 10% of steps
    losses: list[float] = field(default_factory=list)  # per step
    num_threads: int = 1


def _strip_special(text: str) -> str:
    for tok in SPECIAL_TOKENS:
        text = text.replace(tok, " ")
    return text


def pretrain_tiny_model(out_dir: str | Path, texts: Sequence[str], *, seed: int = 0,
                        steps: int | None = None, epochs: float = 4.0, batch_size: int = 32,
                        lr: float = 3e-3, warmup_ratio: float = 0.05, weight_decay: float = 0.0,
                        vocab_size: int = 640, hidden_size: int = 128, num_layers: int = 2,
                        num_heads: int = 4, intermediate_size: int = 256,
                        max_seq_length: int = 128, tokenizer_texts: Sequence[str] | None = None,
                        num_threads: int | None = None, max_seconds: float | None = None,
                        log_every_s: float = 5.0) -> PretrainResult:
    """Build a tokenizer and tiny Llama, pretrain it on ``texts`` and save both to ``out_dir``.

    ``texts`` are plain strings (render ``messages`` records with :func:`tulu_texts`). The tokenizer
    is trained on ``tokenizer_texts`` (default: ``texts``). Training runs ``steps`` optimizer steps
    (default: ``epochs`` passes over ``texts``) of AdamW with linear warmup and cosine decay, in a
    seeded order; ``max_seconds`` stops early (the result reports the steps done). The folder is
    loadable with ``modeling.load_model``/``load_tokenizer`` like any hub model.
    """
    if not texts:
        raise ValueError("pretrain_tiny_model needs at least one text")
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    tok = build_tokenizer([_strip_special(t) for t in (tokenizer_texts or texts)],
                          vocab_size=vocab_size)
    model = build_tiny_llama(len(tok), hidden_size=hidden_size, num_layers=num_layers,
                             num_heads=num_heads, intermediate_size=intermediate_size,
                             max_positions=max(512, max_seq_length), seed=seed, tokenizer=tok)
    n_params = sum(p.numel() for p in model.parameters())
    encoded = [ids[:max_seq_length] for ids in tok(list(texts))["input_ids"]]

    n_batches_per_epoch = math.ceil(len(encoded) / batch_size)
    total = steps if steps is not None else max(1, round(epochs * n_batches_per_epoch))
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), eps=1e-8,
                            weight_decay=weight_decay)
    log.info("pretraining a %d-parameter tiny Llama on %d texts for %d steps (batch %d, %d threads)",
             n_params, len(encoded), total, batch_size, torch.get_num_threads())
    schedule = _warmup_cosine(lr, total, int(warmup_ratio * total))
    batches = _seeded_batches(encoded, batch_size, tok.pad_token_id, seed)
    deadline = None if max_seconds is None else start + max_seconds
    losses = _train(model, opt, batches, schedule, total, deadline, log_every_s)

    model.eval()
    tok.save_pretrained(out)
    model.save_pretrained(out)
    k = max(1, len(losses) // 10)
    seconds = time.perf_counter() - start
    result = PretrainResult(model_dir=out, seconds=seconds, steps=len(losses), n_params=n_params,
                            first_loss=sum(losses[:k]) / k, final_loss=sum(losses[-k:]) / k,
                            losses=losses, num_threads=torch.get_num_threads())
    log.info("pretrain: %d steps in %.1fs, loss %.3f -> %.3f; saved to %s", result.steps, seconds,
             result.first_loss, result.final_loss, out)
    return result


def _warmup_cosine(lr: float, total: int, warmup: int):
    """Learning rate at a step: linear warmup to ``lr`` over ``warmup`` steps, then cosine to 0."""
    def lr_at(step: int) -> float:
        if step < warmup:
            return lr * (step + 1) / max(1, warmup)
        frac = (step - warmup) / max(1, total - warmup)
        return lr * 0.5 * (1.0 + math.cos(math.pi * frac))
    return lr_at


def _seeded_batches(encoded: list[list[int]], batch_size: int, pad: int, seed: int):
    """Endless padded batches ``(ids, mask)`` in a seeded order: each epoch a fresh permutation,
    a batch may span two epochs."""
    order_rng = random.Random(seed)
    order: list[int] = []
    while True:
        if len(order) < batch_size:
            perm = list(range(len(encoded)))
            order_rng.shuffle(perm)
            order.extend(perm)
        idx, order = order[:batch_size], order[batch_size:]
        batch = [encoded[i] for i in idx]
        width = max(len(b) for b in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)           # [B, S]
        mask = torch.zeros((len(batch), width), dtype=torch.long)              # [B, S]
        for i, b in enumerate(batch):
            ids[i, :len(b)] = torch.tensor(b)
            mask[i, :len(b)] = 1
        yield ids, mask


def _train(model, opt, batches, lr_at, total: int, deadline: float | None,
           log_every_s: float) -> list[float]:
    """``total`` causal-LM optimizer steps (gradient clipping at 1.0); stops early at ``deadline``
    (a ``time.perf_counter()`` value). Returns the loss of every step done."""
    model.train()
    losses: list[float] = []
    with Progress("pretrain", total=total, unit="step", every_s=log_every_s) as prog:
        for step in range(total):
            ids, mask = next(batches)
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            loss = model(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            losses.append(float(loss.detach()))
            prog.update(1, extra=int(mask.sum()))
            if deadline is not None and time.perf_counter() > deadline:
                log.info("pretrain: stopping after %d of %d steps (max_seconds)", step + 1, total)
                break
    return losses
