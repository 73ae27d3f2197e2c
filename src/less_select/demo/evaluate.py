"""Demo evaluation: exact match of greedy generations, and the mean completion loss of examples."""

from __future__ import annotations

import logging
from typing import Sequence

import torch

from ..data.batching import collate
from ..data.encode import IGNORE_INDEX, encode_example, tulu_concat
from ..data.example import Example
from ..progress import Progress
from .tasks import exact_match_answer

log = logging.getLogger(__name__)


def _messages(ex) -> list[dict]:
    return ex["messages"] if isinstance(ex, dict) else ex.messages


def _gold(ex) -> str:
    if isinstance(ex, dict):
        if "answer" in ex:
            return str(ex["answer"])
        raw = ex
    else:
        raw = ex.raw or {}
        if "answer" in raw:
            return str(raw["answer"])
    msgs = _messages(ex) if isinstance(ex, dict) else ex.messages
    return next(m["content"] for m in reversed(msgs) if m["role"] == "assistant")


def prompt_text(ex, eos_token: str = "</s>") -> str:
    """The Tulu-rendered prompt (every turn before the last assistant turn + ``<|assistant|>\\n``),
    exactly the prefix the ``tulu-v1`` training encoding puts before the answer."""
    msgs = _messages(ex)
    last = max(i for i, m in enumerate(msgs) if m["role"] == "assistant")
    return tulu_concat(msgs[:last], eos_token) + "<|assistant|>\n"


@torch.no_grad()
def generate_answers(model, tokenizer, examples: Sequence, max_new_tokens: int = 24,
                     batch_size: int = 64) -> list[str]:
    """Greedy generations (decoded, special tokens dropped) for each example's prompt."""
    was_training = model.training
    model.eval()
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    device = next(model.parameters()).device
    outs: list[str] = []
    try:
        with Progress("exact-match generation", total=len(examples)) as prog:
            for s in range(0, len(examples), batch_size):
                chunk = examples[s:s + batch_size]
                enc = tokenizer([prompt_text(e, tokenizer.eos_token or "") for e in chunk],
                                return_tensors="pt", padding=True)
                enc = {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
                gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                     pad_token_id=tokenizer.pad_token_id,
                                     eos_token_id=tokenizer.eos_token_id)
                new = gen[:, enc["input_ids"].shape[1]:]
                outs.extend(tokenizer.batch_decode(new, skip_special_tokens=True))
                prog.update(len(chunk))
    finally:
        tokenizer.padding_side = old_side
        model.train(was_training)
    return outs


def exact_match_accuracy(model, tokenizer, test_examples: Sequence, max_new_tokens: int = 24,
                         batch_size: int = 64, return_predictions: bool = False):
    """Share of examples whose greedy answer equals the gold ``answer`` after normalisation.

    ``test_examples`` are records (dicts with ``messages`` and ``answer``, as in ``test.jsonl``) or
    ``Example`` objects (gold from ``raw['answer']``, else the last assistant turn). The prediction is
    what follows "So the answer is" in the generation, else its first line
    (:func:`~less_select.demo.tasks.exact_match_answer`). With ``return_predictions`` returns
    ``(accuracy, predictions)`` where predictions are the raw generations.
    """
    if not test_examples:
        raise ValueError("exact_match_accuracy needs at least one example")
    preds = generate_answers(model, tokenizer, test_examples, max_new_tokens, batch_size)
    hits = sum(exact_match_answer(p) == exact_match_answer(_gold(e))
               for p, e in zip(preds, test_examples))
    acc = hits / len(test_examples)
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
