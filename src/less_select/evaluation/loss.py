"""Target-set loss: what LESS's influence estimates try to lower.

The loss of one example is the mean cross-entropy over its completion tokens (docs/method.md,
"Per-example loss"); a subtask's loss is the mean over its examples, and the macro average is the mean
over subtasks. Examples that keep no completion token after truncation have no loss: they are counted
and left out, never NaN.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from typing import Sequence

import torch

from ..configs import SHARED
from ..data.batching import collate, per_example_loss, token_budget_batches
from ..data.encode import Template, encode_all, split_by_completion
from ..data.example import Example
from ..errors import UserError
from ..progress import Progress
from .common import model_device, pad_id

log = logging.getLogger(__name__)


@torch.no_grad()
def example_losses(model, tokenizer, examples: Sequence[Example],
                   max_seq_length: int = SHARED["max_seq_length"].default,
                   max_tokens_per_batch: int = SHARED["max_tokens_per_batch"].default,
                   template: Template = "auto",
                   max_batch_size: int | None = None) -> tuple[list[float | None], dict]:
    """Loss of each example (None where no completion token is left) and an encoding report."""
    if not examples:
        raise UserError("target loss: no examples to evaluate")
    encoded, report = encode_all(examples, tokenizer, max_seq_length, template)
    pad = pad_id(tokenizer)
    losses: list[float | None] = [None] * len(examples)
    keep, _ = split_by_completion(encoded)
    lengths = [len(encoded[i].input_ids) for i in keep]
    device = model_device(model)
    was_training = model.training
    model.eval()
    try:
        with Progress("target loss", total=len(keep), unit="ex") as prog:
            for batch in token_budget_batches(lengths, max_tokens_per_batch, max_batch_size):
                idx = [keep[b] for b in batch]
                inputs = collate([encoded[i] for i in idx], pad)
                inputs = {k: v.to(device) for k, v in inputs.items()}
                logits = model(input_ids=inputs["input_ids"],
                               attention_mask=inputs["attention_mask"]).logits
                loss, _ = per_example_loss(logits, inputs["labels"])
                for i, value in zip(idx, loss.tolist()):
                    losses[i] = value
                prog.update(len(idx), extra=int(inputs["attention_mask"].sum()))
    finally:
        model.train(was_training)
    info = {"n_truncated": report.truncated, "n_no_completion": report.no_completion,
            "encodings": list(report.encodings)}
    return losses, info


def target_loss(model, tokenizer, examples: Sequence[Example],
                max_seq_length: int = SHARED["max_seq_length"].default,
                max_tokens_per_batch: int = SHARED["max_tokens_per_batch"].default,
                template: Template = "auto",
                max_batch_size: int | None = None) -> dict:
    """Mean per-example completion loss per subtask, macro- and micro-averaged.

    Returns ``{"task": "loss", "metrics": ["loss"], "per_subtask": {name: {"loss", "n",
    "n_no_completion"}}, "average": {"loss": macro}, "micro_average": {"loss": ...}, ...}``;
    ``predictions`` holds each example's loss (None when it kept no completion token).
    """
    losses, info = example_losses(model, tokenizer, examples, max_seq_length, max_tokens_per_batch,
                                  template, max_batch_size)
    groups: dict[str, list[float]] = defaultdict(list)
    missing: dict[str, int] = defaultdict(int)
    order: list[str] = []
    for ex, loss in zip(examples, losses):
        name = ex.subtask if ex.subtask is not None else "all"
        if name not in order:
            order.append(name)
        if loss is None:
            missing[name] += 1
        else:
            groups[name].append(loss)
    per = {}
    for name in order:
        vals = groups.get(name, [])
        per[name] = {"loss": sum(vals) / len(vals) if vals else None, "n": len(vals),
                     "n_no_completion": missing.get(name, 0)}
    scored = [v["loss"] for v in per.values() if v["loss"] is not None]
    all_losses = [x for x in losses if x is not None]
    if info["n_no_completion"]:
        log.warning("target loss: %d example(s) kept no completion token after truncation to %d "
                    "tokens and were left out", info["n_no_completion"], max_seq_length)
    return {
        "task": "loss",
        "metrics": ["loss"],
        "per_subtask": per,
        "average": {"loss": sum(scored) / len(scored) if scored else None},
        "micro_average": {"loss": sum(all_losses) / len(all_losses) if all_losses else None},
        "n_examples": len(examples),
        "n_scored": len(all_losses),
        "n_excluded_no_completion": info["n_no_completion"],
        "n_truncated": info["n_truncated"],
        "encodings": info["encodings"],
        "predictions": [{"id": ex.id, "subtask": ex.subtask, "loss": loss,
                         "perplexity": math.exp(loss) if loss is not None and loss < 700 else None}
                        for ex, loss in zip(examples, losses)],
    }
