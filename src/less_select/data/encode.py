"""Tokenization and loss masking: one versioned function per template, pinned by golden tests.

Loss is taken only on assistant tokens (labels are -100 elsewhere). The encodings:

* ``tulu-v2`` (template ``tulu``, the default without a chat template): the Tulu template exactly as
  LESS's ``encode_with_messages_format`` builds it (``<|user|>\\n...\\n<|assistant|>\\n...</s>\\n``),
  the joined text *not* stripped, so an untruncated example ends in ``</s>`` and a labelled newline;
  each non-assistant turn is masked together with the ``<|assistant|>\\n`` header that follows it.
* ``tulu-v1`` (template ``tulu_stripped``): the same with the joined text stripped, ending at
  ``</s>`` (open-instruct's variant, and this package's encoding before ``tulu-v2``). Stores record
  which one they used and are never mixed.
* ``chat-template-v1``: the tokenizer's own chat template; assistant spans found by rendering
  prefixes with ``add_generation_prompt=True``. Template ``chat_template_all`` renders
  prompt/completion records with it too, as a user turn and an assistant turn (template
  ``chat_template`` and ``auto`` keep them raw, as LESS encodes its targets).
* ``raw-v1``: prompt/completion records as raw text (open-instruct ``encode_with_prompt_completion``:
  a space between prompt and completion when neither has one, then EOS); examples built by the LESS
  target loaders set ``append_eos=False`` and are the plain concatenation, as the original does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal, Sequence

from ..errors import UserError
from .example import Example

log = logging.getLogger(__name__)

IGNORE_INDEX = -100
Template = Literal["auto", "tulu", "tulu_stripped", "chat_template", "chat_template_all"]
CHAT_TEMPLATES = ("chat_template", "chat_template_all")  # the templates that need a chat template


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    truncated: bool
    encoding: str

    @property
    def n_completion_tokens(self) -> int:
        # The first label is never predicted (labels shift by one inside the loss).
        return sum(1 for x in self.labels[1:] if x != IGNORE_INDEX)


def tulu_concat(messages: Sequence[dict[str, str]], eos_token: str) -> str:
    text = ""
    for m in messages:
        if m["role"] == "system":
            text += "<|system|>\n" + m["content"].strip() + "\n"
        elif m["role"] == "user":
            text += "<|user|>\n" + m["content"].strip() + "\n"
        elif m["role"] == "assistant":
            text += "<|assistant|>\n" + m["content"].strip() + eos_token + "\n"
        else:
            raise UserError(f"unknown role {m['role']!r}")
    return text


def _ids(tokenizer, text: str, add_special_tokens: bool = True) -> list[int]:
    return list(tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"])


def _finish(ids: list[int], labels: list[int], max_len: int, encoding: str) -> Encoded:
    truncated = len(ids) > max_len
    return Encoded(ids[:max_len], labels[:max_len], truncated, encoding)


def encode_tulu_v2(messages, tokenizer, max_seq_length: int) -> Encoded:
    """LESS's Tulu encoding, token for token (the joined text is not stripped)."""
    return _encode_tulu(messages, tokenizer, max_seq_length, strip=False)


def encode_tulu_v1(messages, tokenizer, max_seq_length: int) -> Encoded:
    """The Tulu encoding with the joined text stripped (no trailing newline after the last ``</s>``)."""
    return _encode_tulu(messages, tokenizer, max_seq_length, strip=True)


def _encode_tulu(messages, tokenizer, max_seq_length: int, strip: bool) -> Encoded:
    eos = tokenizer.eos_token or ""
    text = tulu_concat(messages, eos)
    ids = _ids(tokenizer, text.strip() if strip else text)
    labels = list(ids)
    for idx, m in enumerate(messages):
        if m["role"] == "assistant":
            continue
        start = 0 if idx == 0 else len(_ids(tokenizer, tulu_concat(messages[:idx], eos)))
        so_far = tulu_concat(messages[: idx + 1], eos)
        if idx + 1 < len(messages) and messages[idx + 1]["role"] == "assistant":
            so_far += "<|assistant|>\n"
        end = len(_ids(tokenizer, so_far))
        for j in range(start, min(end, len(labels))):
            labels[j] = IGNORE_INDEX
    return _finish(ids, labels, max_seq_length, "tulu-v1" if strip else "tulu-v2")


def encode_chat_template_v1(messages, tokenizer, max_seq_length: int) -> Encoded:
    def render(msgs, gen_prompt: bool) -> list[int]:
        text = tokenizer.apply_chat_template(list(msgs), tokenize=False,
                                             add_generation_prompt=gen_prompt)
        return _ids(tokenizer, text, add_special_tokens=False)

    ids = render(messages, False)
    labels = [IGNORE_INDEX] * len(ids)
    for idx, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        start = len(render(messages[:idx], True))
        end = len(render(messages[: idx + 1], False))
        labels[start:end] = ids[start:end]
    return _finish(ids, labels, max_seq_length, "chat-template-v1")


def encode_raw_v1(prompt: str, completion: str, tokenizer, max_seq_length: int,
                  append_eos: bool) -> Encoded:
    if append_eos:
        sep = "" if prompt.endswith((" ", "\n", "\t")) or completion.startswith((" ", "\n", "\t")) else " "
        text = prompt + sep + completion + (tokenizer.eos_token or "")
    else:
        text = prompt + completion
    ids = _ids(tokenizer, text)
    n_prompt = len(_ids(tokenizer, prompt))
    labels = [IGNORE_INDEX] * min(n_prompt, len(ids)) + ids[n_prompt:]
    return _finish(ids, labels, max_seq_length, "raw-v1")


def encode_example(example: Example, tokenizer, max_seq_length: int,
                   template: Template = "auto") -> Encoded:
    """Token ids and labels (-100 outside assistant turns) of one example."""
    if template in CHAT_TEMPLATES and not getattr(tokenizer, "chat_template", None):
        raise UserError(f"template '{template}' requested but the tokenizer has no chat template")
    if example.prompt is not None and example.completion is not None \
            and template != "chat_template_all":
        return encode_raw_v1(example.prompt, example.completion, tokenizer, max_seq_length,
                             example.append_eos)
    use_chat = template in CHAT_TEMPLATES or (
        template == "auto" and getattr(tokenizer, "chat_template", None))
    if use_chat:
        return encode_chat_template_v1(example.messages, tokenizer, max_seq_length)
    if template == "tulu_stripped":
        return encode_tulu_v1(example.messages, tokenizer, max_seq_length)
    return encode_tulu_v2(example.messages, tokenizer, max_seq_length)


def tulu_encoding(template: str) -> str:
    """The Tulu encoding version a template option selects (recorded in store settings, so a
    store or partial build made with another version is never reused or mixed)."""
    return "tulu-v1" if template == "tulu_stripped" else "tulu-v2"


def split_by_completion(encoded: Sequence[Encoded]) -> tuple[list[int], list[int]]:
    """(kept, dropped): the indices of the examples that keep at least one completion token after
    truncation, and of those that keep none (they have no loss, so no gradient and no score)."""
    kept = [i for i, e in enumerate(encoded) if e.n_completion_tokens > 0]
    dropped = [i for i, e in enumerate(encoded) if e.n_completion_tokens == 0]
    return kept, dropped


@dataclass
class EncodeReport:
    total: int = 0
    truncated: int = 0
    no_completion: int = 0
    encodings: tuple[str, ...] = ()


def encode_all(examples: Sequence[Example], tokenizer, max_seq_length: int,
               template: Template = "auto") -> tuple[list[Encoded], EncodeReport]:
    """Encode every example; report how many were truncated and how many kept no completion token."""
    from ..progress import Progress
    out = []
    with Progress("encoding", total=len(examples), quiet_s=2.0) as prog:  # a big pool takes minutes
        for ex in examples:
            out.append(encode_example(ex, tokenizer, max_seq_length, template))
            prog.update()
    rep = EncodeReport(total=len(out), truncated=sum(e.truncated for e in out),
                       no_completion=sum(e.n_completion_tokens == 0 for e in out),
                       encodings=tuple(sorted({e.encoding for e in out})))
    if rep.truncated:
        log.info("%d of %d example(s) truncated to max_seq_length=%d", rep.truncated, rep.total,
                 max_seq_length)
    if rep.no_completion:
        log.warning("%d of %d example(s) have no completion token left after truncation; they get "
                    "no gradient and no score", rep.no_completion, rep.total)
    return out, rep
