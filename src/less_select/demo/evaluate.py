"""Demo evaluation: exact match of greedy generations, and the mean completion loss of examples."""

from __future__ import annotations

import logging
from typing import Sequence

import torch

from ..data.batching import collate
from ..data.encode import IGNORE_INDEX, encode_example
from ..data.example import Example
from ..evaluation.exact_match import generate_predictions, score_predictions, tulu_prompt

log = logging.getLogger(__name__)


def prompt_text(ex, eos_token: str = "</s>") -> str:
    """The Tulu-rendered prompt (every turn before the last assistant turn + ``<|assistant|>\\n``),
    exactly the prefix the ``tulu-v1`` training encoding puts before the answer."""
    return tulu_prompt(ex, eos_token)


def generate_answers(model, tokenizer, examples: Sequence, max_new_tokens: int = 24,
                     batch_size: int = 64) -> list[str]:
    """Greedy generations (decoded, special tokens dropped) for each example's prompt."""
    return generate_predictions(model, tokenizer, examples, batch_size=batch_size,
                                max_new_tokens=max_new_tokens)


def exact_match_accuracy(model, tokenizer, test_examples: Sequence, max_new_tokens: int = 24,
                         batch_size: int = 64, return_predictions: bool = False):
    """Share of examples whose greedy answer equals the gold ``answer`` after normalisation.

    ``test_examples`` are records (dicts with ``messages`` and ``answer``, as in ``test.jsonl``) or
    ``Example`` objects (gold from ``raw['answer']``, else the last assistant turn). The rule is the
    ``exact_match:FILE`` evaluation task's (:mod:`less_select.evaluation.exact_match`). With
    ``return_predictions`` returns ``(accuracy, predictions)`` where predictions are the raw
    generations.
    """
    if not test_examples:
        raise ValueError("exact_match_accuracy needs at least one example")
    preds = generate_answers(model, tokenizer, test_examples, max_new_tokens, batch_size)
    acc = score_predictions(test_examples, preds)["micro_average"]["exact_match"] / 100.0
    return (acc, preds) if return_predictions else acc


def _as_example(ex, i: int) -> Example:
    if isinstance(ex, Example):
        return ex
    return Example(id=str(ex.get("id", i)), messages=ex["messages"], raw=ex)


@torch.no_grad()
def completion_loss(model, tokenizer, examples: Sequence, batch_size: int = 64,
                    max_seq_length: int = 256) -> float:
    """Mean over examples of each example's mean cross-entropy on its completion tokens (Tulu
    template, as LESS defines the loss of one example); examples without completion tokens are
    skipped."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    encs = [encode_example(_as_example(e, i), tokenizer, max_seq_length, template="tulu")
            for i, e in enumerate(examples)]
    encs = [e for e in encs if e.n_completion_tokens > 0]
    total, n = 0.0, 0
    try:
        for s in range(0, len(encs), batch_size):
            batch = collate(encs[s:s + batch_size], tokenizer.pad_token_id)
            batch = {k: v.to(device) for k, v in batch.items()}
            logits = model(input_ids=batch["input_ids"],
                           attention_mask=batch["attention_mask"]).logits[:, :-1].float()
            labels = batch["labels"][:, 1:]
            ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels,
                                                   ignore_index=IGNORE_INDEX, reduction="none")
            valid = (labels != IGNORE_INDEX).float()
            per_ex = (ce * valid).sum(1) / valid.sum(1)
            total += float(per_ex.sum())
            n += len(per_ex)
    finally:
        model.train(was_training)
    return total / max(n, 1)
