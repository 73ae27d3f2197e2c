"""``exact_match:FILE``: greedy generation on a data file whose records carry a gold answer.

Each record of FILE (any supported format) is one question: the conversation up to its last assistant
turn is the prompt, rendered exactly as training encodes it (the tokenizer's chat template if it has
one, else the Tulu template ``<|user|>\\n...\\n<|assistant|>\\n``; prompt/completion records: the raw
prompt), and the gold answer is the record's ``answer`` field, else its last assistant turn (or
completion). The model decodes greedily (stopping at EOS or a blank line); the predicted answer is what
follows the last "So the answer is" in the output, else its first non-empty line. Prediction and gold
are compared after :func:`extract_answer` (case-insensitive, surrounding punctuation, quotes and extra
whitespace dropped), so ``"8 + 5 = 13. So the answer is 13."`` matches the gold ``"13"``.

Scores are 0-100 per subtask (a record's ``subtask``, else the file's stem), macro-averaged like BBH.
"""

from __future__ import annotations

import re
from typing import Sequence

from ..data.encode import tulu_concat
from ..data.example import Example

ANSWER_PREFIX = "So the answer is"
STOP = ("\n\n",)
_SPACES = re.compile(r"\s+")


def extract_answer(text: str) -> str:
    """Normalised answer of a model output or gold answer.

    Takes what follows the last ``So the answer is`` (or, without it, the first non-empty line), up
    to the end of that line; drops surrounding whitespace, trailing ``.``/``!``/``,``/``;``, quotes,
    collapses whitespace and lowercases. ``"8 + 5 = 13. So the answer is 13."`` and ``"13"`` both
    give ``"13"``.
    """
    text = text or ""
    idx = text.rfind(ANSWER_PREFIX)
    if idx >= 0:
        rest = text[idx + len(ANSWER_PREFIX):].lstrip(" :")
        line = rest.splitlines()[0] if rest.splitlines() else ""
    else:
        lines = [ln for ln in text.splitlines() if ln.strip()]
        line = lines[0] if lines else ""
    line = line.strip().strip("\"'").rstrip(".!,;").strip().strip("\"'")
    return _SPACES.sub(" ", line).lower()


def answers_match(prediction: str, gold: str) -> bool:
    return extract_answer(prediction) == extract_answer(gold)


def _messages(ex) -> list[dict]:
    return ex["messages"] if isinstance(ex, dict) else ex.messages


def gold_answer(ex) -> str:
    """The record's ``answer`` field, else its last assistant turn (or raw completion)."""
    raw = ex if isinstance(ex, dict) else (ex.raw or {})
    if isinstance(raw, dict) and raw.get("answer") is not None:
        return str(raw["answer"])
    if not isinstance(ex, dict) and ex.completion is not None:
        return ex.completion
    return next(m["content"] for m in reversed(_messages(ex)) if m["role"] == "assistant")


def tulu_prompt(ex, eos_token: str = "</s>") -> str:
    """Every turn before the last assistant turn in the Tulu template, then ``<|assistant|>\\n``:
    exactly the prefix the ``tulu-v1`` training encoding puts before the answer."""
    msgs = _messages(ex)
    last = max(i for i, m in enumerate(msgs) if m["role"] == "assistant")
    return tulu_concat(msgs[:last], eos_token) + "<|assistant|>\n"


def generation_prompt(ex, tokenizer, template: str = "auto") -> tuple[str, bool]:
    """(prompt text, add_special_tokens) as the training encoding (``data/encode.py``) renders it."""
    if not isinstance(ex, dict) and ex.prompt is not None and ex.completion is not None \
            and template != "chat_template_all":
        return ex.prompt, True
    use_chat = template in ("chat_template", "chat_template_all") or (
        template == "auto" and getattr(tokenizer, "chat_template", None))
    if use_chat:
        msgs = _messages(ex)
        last = max(i for i, m in enumerate(msgs) if m["role"] == "assistant")
        text = tokenizer.apply_chat_template(list(msgs[:last]), tokenize=False,
                                             add_generation_prompt=True)
        return text, False
    return tulu_prompt(ex, tokenizer.eos_token or ""), True


def generate_predictions(model, tokenizer, examples: Sequence, *, batch_size: int = 64,
                         max_new_tokens: int = 128, template: str = "auto",
                         name: str = "exact-match generation") -> list[str]:
    """Greedy generations for each example's prompt (records or :class:`Example` objects)."""
    from .common import generate_greedy
    prompts = [generation_prompt(e, tokenizer, template) for e in examples]
    outputs: list[str] = [""] * len(examples)
    for special in (True, False):  # chat-template prompts already hold their special tokens
        idx = [i for i, (_, s) in enumerate(prompts) if s == special]
        if not idx:
            continue
        gen = generate_greedy(model, tokenizer, [prompts[i][0] for i in idx], batch_size=batch_size,
                              max_new_tokens=max_new_tokens, stop=STOP, name=name,
                              add_special_tokens=special)
        for i, text in zip(idx, gen):
            outputs[i] = text
    return outputs


def score_predictions(examples: Sequence, outputs: Sequence[str], default_subtask: str = "all"
                      ) -> dict:
    """The result dict (``common.summarize``: 0-100 per subtask, macro headline) of given outputs."""
    from .common import summarize
    rows, order = [], []
    for i, (ex, out) in enumerate(zip(examples, outputs)):
        if isinstance(ex, dict):
            ex_id, sub = str(ex.get("id", i)), ex.get("subtask")
        else:
            ex_id, sub = ex.id, ex.subtask
        sub = str(sub) if sub is not None else default_subtask
        if sub not in order:
            order.append(sub)
        gold = gold_answer(ex)
        pred = extract_answer(out)
        rows.append({"id": ex_id, "subtask": sub, "output": out, "prediction": pred,
                     "gold": extract_answer(gold), "exact_match": float(pred == extract_answer(gold))})
    return summarize("exact_match", ["exact_match"], rows, order, headline=("exact_match", "macro"))


def evaluate_exact_match(model, tokenizer, examples: Sequence[Example | dict], *, batch_size: int = 64,
                         max_new_tokens: int = 128, template: str = "auto") -> dict:
    """Exact match (0-100) of greedy answers, per subtask and macro-averaged (see the module doc)."""
    from ..errors import UserError
    if not examples:
        raise UserError("exact match: no examples to evaluate")
    outputs = generate_predictions(model, tokenizer, examples, batch_size=batch_size,
                                   max_new_tokens=max_new_tokens, template=template)
    return score_predictions(examples, outputs)
