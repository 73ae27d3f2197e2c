"""Batched greedy generation with stop strings, next-token scoring, and result tables.

Both run in batches of prompts sorted by length (less padding), LEFT-padded so that every row's last
prompt token sits in the last column; position ids follow the attention mask, so a batched result equals
the batch-size-1 result up to floating-point noise.
"""

from __future__ import annotations

import logging
from typing import Sequence

import torch

from ..errors import UserError
from ..progress import Progress

log = logging.getLogger(__name__)


def model_device(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover - a model without parameters
        return torch.device("cpu")


def pad_id(tokenizer) -> int:
    pid = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pid is None:
        raise UserError("the tokenizer has neither a pad nor an EOS token; set one before evaluating")
    return pid


def left_pad(rows: Sequence[Sequence[int]], pad: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            ids[i, width - len(r):] = torch.tensor(list(r), dtype=torch.long)
            mask[i, width - len(r):] = 1
    return ids.to(device), mask.to(device)


def positions(mask: torch.Tensor) -> torch.Tensor:
    return (mask.cumsum(-1) - 1).clamp(min=0)


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Fixed-size batches of indices, longest first (ties by index: deterministic)."""
    if batch_size < 1:
        raise UserError(f"batch_size must be at least 1, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def encode_prompts(tokenizer, prompts: Sequence[str], add_special_tokens: bool = True) -> list[list[int]]:
    return [list(tokenizer(p, add_special_tokens=add_special_tokens)["input_ids"]) for p in prompts]


@torch.no_grad()
def next_token_probs(model, tokenizer, prompts: Sequence[str], candidate_ids: Sequence[int],
                     batch_size: int = 4, name: str = "scoring") -> list[list[float]]:
    """Probability (softmax over the whole vocabulary) of each candidate token right after each prompt."""
    enc = encode_prompts(tokenizer, prompts)
    device = model_device(model)
    pad = pad_id(tokenizer)
    out: list[list[float] | None] = [None] * len(prompts)
    cand = torch.tensor(list(candidate_ids), dtype=torch.long, device=device)
    with Progress(name, total=len(prompts), unit="prompt") as prog:
        for batch in length_batches([len(e) for e in enc], batch_size):
            ids, mask = left_pad([enc[i] for i in batch], pad, device)
            kwargs = dict(input_ids=ids, attention_mask=mask, position_ids=positions(mask))
            try:
                logits = model(**kwargs, logits_to_keep=1).logits[:, -1, :]
            except TypeError:  # a model whose forward has no logits_to_keep
                logits = model(**kwargs).logits[:, -1, :]
            probs = torch.softmax(logits.float(), dim=-1)[:, cand]
            for i, row in zip(batch, probs.tolist()):
                out[i] = row
            prog.update(len(batch), extra=int(mask.sum()))
    return out  # type: ignore[return-value]


class _StopOnStrings:
    """Per-row stopping: a row is done once its generated text contains any stop string."""

    def __init__(self, tokenizer, prompt_width: int, stops: Sequence[str]):
        self.tokenizer, self.start, self.stops = tokenizer, prompt_width, list(stops)

    def __call__(self, input_ids: torch.LongTensor, scores=None, **kwargs) -> torch.BoolTensor:
        done = []
        for row in input_ids[:, self.start:].tolist():
            text = self.tokenizer.decode(row, skip_special_tokens=True)
            done.append(any(s in text for s in self.stops))
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def _stopping_list(criterion):
    from transformers import StoppingCriteria, StoppingCriteriaList

    class _Wrapped(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return criterion(input_ids, scores, **kwargs)

    return StoppingCriteriaList([_Wrapped()])


def cut_at_stop(text: str, stops: Sequence[str]) -> str:
    cut = len(text)
    for s in stops:
        k = text.find(s)
        if k != -1:
            cut = min(cut, k)
    return text[:cut]


@torch.no_grad()
def generate_greedy(model, tokenizer, prompts: Sequence[str], *, batch_size: int = 8,
                    max_new_tokens: int = 256, stop: Sequence[str] = (), name: str = "generation",
                    add_special_tokens: bool = True) -> list[str]:
    """Greedy continuations of ``prompts``, each cut before its first stop string.

    As open-instruct does, a continuation is ``decode(prompt + new tokens)`` minus ``decode(prompt)``
    (so a leading space survives), with special tokens skipped; generation also ends at EOS.
    """
    from transformers import GenerationConfig

    enc = encode_prompts(tokenizer, prompts, add_special_tokens)
    device = model_device(model)
    pad = pad_id(tokenizer)
    base_cfg = getattr(model, "generation_config", None)
    eos = getattr(base_cfg, "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    eos_ids = set(eos if isinstance(eos, (list, tuple)) else ([eos] if eos is not None else []))
    gen_cfg = GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=max_new_tokens,
                               pad_token_id=pad, eos_token_id=eos,
                               bos_token_id=getattr(base_cfg, "bos_token_id", None))
    outputs: list[str | None] = [None] * len(prompts)
    was_training = model.training
    model.eval()
    try:
        with Progress(name, total=len(prompts), unit="prompt") as prog:
            for batch in length_batches([len(e) for e in enc], batch_size):
                ids, mask = left_pad([enc[i] for i in batch], pad, device)
                width = ids.shape[1]
                kwargs = {}
                if stop:
                    kwargs["stopping_criteria"] = _stopping_list(_StopOnStrings(tokenizer, width, stop))
                seqs = model.generate(input_ids=ids, attention_mask=mask, generation_config=gen_cfg,
                                      **kwargs)
                new_tokens = 0
                for row, i in enumerate(batch):
                    new = seqs[row, width:].tolist()
                    for k, t in enumerate(new):  # everything after EOS is padding
                        if t in eos_ids:
                            new = new[:k]
                            break
                    new_tokens += len(new)
                    prompt_text = tokenizer.decode(enc[i], skip_special_tokens=True)
                    full = tokenizer.decode(enc[i] + new, skip_special_tokens=True)
                    text = full[len(prompt_text):] if full.startswith(prompt_text) else \
                        tokenizer.decode(new, skip_special_tokens=True)
                    outputs[i] = cut_at_stop(text, stop)
                prog.update(len(batch), extra=new_tokens)
    finally:
        model.train(was_training)
    return outputs  # type: ignore[return-value]


# ------------------------------------------------------------------------------------- results

def summarize(task: str, metrics: Sequence[str], per_example: Sequence[dict], order: Sequence[str],
              headline: tuple[str, str]) -> dict:
    """Per-subtask means (0-100 scale for accuracy-like metrics), macro and micro averages."""
    per: dict[str, dict] = {}
    for name in order:
        rows = [r for r in per_example if r["subtask"] == name]
        if not rows:
            continue
        per[name] = {m: 100.0 * sum(r[m] for r in rows) / len(rows) for m in metrics}
        per[name]["n"] = len(rows)
    macro = {m: sum(v[m] for v in per.values()) / len(per) if per else None for m in metrics}
    micro = {m: 100.0 * sum(r[m] for r in per_example) / len(per_example) if per_example else None
             for m in metrics}
    metric, averaging = headline
    value = (macro if averaging == "macro" else micro)[metric]
    return {"task": task, "metrics": list(metrics), "per_subtask": per, "average": macro,
            "micro_average": micro, "n_examples": len(per_example),
            "headline": {"metric": metric, "averaging": averaging, "value": value},
            "predictions": list(per_example)}


def format_table(result: dict) -> str:
    """A plain-text table: one row per subtask, then the macro (and micro) average."""
    metrics = result["metrics"]
    per = result["per_subtask"]
    name_w = max([len("macro average")] + [len(k) for k in per])
    head = f"{'subtask':<{name_w}}  " + "  ".join(f"{m:>12}" for m in metrics) + f"  {'n':>6}"
    lines = [head, "-" * len(head)]

    def fmt(v):
        return f"{v:12.4f}" if isinstance(v, (int, float)) else f"{'-':>12}"

    for name, vals in per.items():
        lines.append(f"{name:<{name_w}}  " + "  ".join(fmt(vals.get(m)) for m in metrics)
                     + f"  {vals.get('n', 0):>6}")
    lines.append("-" * len(head))
    lines.append(f"{'macro average':<{name_w}}  " + "  ".join(fmt(result['average'].get(m))
                                                            for m in metrics)
                 + f"  {result.get('n_examples', 0):>6}")
    if result.get("micro_average"):
        lines.append(f"{'micro average':<{name_w}}  " + "  ".join(
            fmt(result['micro_average'].get(m)) for m in metrics))
    if result.get("headline"):
        h = result["headline"]
        lines.append(f"headline ({h['averaging']} {h['metric']}, as LESS reports it): "
                     + (f"{h['value']:.4f}" if h["value"] is not None else "-"))
    return "\n".join(lines)
