"""Golden token ids of the Tulu encodings on a fixed tokenizer built here (one token per character,
so the ids never depend on a trained vocabulary), and tulu-v2 against a reference re-implementation
of LESS's ``encode_with_messages_format`` (unstripped text, masks by prefix lengths, truncation)."""

from __future__ import annotations

import random

import pytest

from less_select.data import Example
from less_select.data.encode import IGNORE_INDEX, encode_example, encode_tulu_v1, encode_tulu_v2, \
    tulu_concat

CHARS = "\n <>|/abcdefghijklmnopqrstuvwxyz?."
M = IGNORE_INDEX


@pytest.fixture(scope="module")
def char_tokenizer():
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "<pad>": 3, **{c: 4 + i for i, c in enumerate(CHARS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", pad_token="<pad>")


ONE_TURN = [{"role": "user", "content": "hi?"}, {"role": "assistant", "content": "ok."}]
# <s> "<|user|>\nhi?\n<|assistant|>\n" then "ok." </s> ("\n" = 4, "</s>" = 2)
PREFIX = [1, 6, 8, 30, 28, 14, 27, 8, 7, 4, 17, 18, 36, 4, 6, 8, 10, 28, 28, 18, 28, 29, 10, 23, 29, 8, 7, 4]


def test_golden_one_turn(char_tokenizer):
    v2 = encode_tulu_v2(ONE_TURN, char_tokenizer, 100)
    assert v2.input_ids == PREFIX + [24, 20, 37, 2, 4]          # ends in </s> and a newline ...
    assert v2.labels == [M] * 28 + [24, 20, 37, 2, 4]           # ... which is labelled, as in LESS
    assert v2.encoding == "tulu-v2" and not v2.truncated
    v1 = encode_tulu_v1(ONE_TURN, char_tokenizer, 100)
    assert v1.input_ids == PREFIX + [24, 20, 37, 2]             # stripped: ends at </s>
    assert v1.labels == [M] * 28 + [24, 20, 37, 2]
    assert v1.encoding == "tulu-v1"


SYSTEM_TWO_TURNS = [{"role": "system", "content": "be"}, {"role": "user", "content": "a"},
                    {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"},
                    {"role": "assistant", "content": "d"}]
TWO_TURN_IDS = [1, 6, 8, 28, 34, 28, 29, 14, 22, 8, 7, 4, 11, 14, 4, 6, 8, 30, 28, 14, 27, 8, 7, 4, 10, 4,
                6, 8, 10, 28, 28, 18, 28, 29, 10, 23, 29, 8, 7, 4, 11, 2, 4, 6, 8, 30, 28, 14, 27, 8, 7, 4,
                12, 4, 6, 8, 10, 28, 28, 18, 28, 29, 10, 23, 29, 8, 7, 4, 13, 2]


def test_golden_system_and_two_turns_and_truncation(char_tokenizer):
    v2 = encode_tulu_v2(SYSTEM_TWO_TURNS, char_tokenizer, 100)
    assert v2.input_ids == TWO_TURN_IDS + [4]
    # each assistant turn keeps "<answer></s>\n"; system/user turns and the headers are masked
    assert v2.labels == [M] * 40 + [11, 2, 4] + [M] * 25 + [13, 2, 4]
    v1 = encode_tulu_v1(SYSTEM_TWO_TURNS, char_tokenizer, 100)
    assert v1.input_ids == TWO_TURN_IDS
    assert v1.labels == [M] * 40 + [11, 2, 4] + [M] * 25 + [13, 2]
    for enc in (encode_tulu_v1, encode_tulu_v2):  # truncated inside the first assistant header
        t = enc(SYSTEM_TWO_TURNS, char_tokenizer, 30)
        assert t.truncated and t.input_ids == TWO_TURN_IDS[:30] and t.labels == [M] * 30


def test_template_names_select_the_versions(char_tokenizer):
    ex = Example(id="x", messages=ONE_TURN)
    assert encode_example(ex, char_tokenizer, 100).encoding == "tulu-v2"           # auto, no chat template
    assert encode_example(ex, char_tokenizer, 100, "tulu").encoding == "tulu-v2"
    assert encode_example(ex, char_tokenizer, 100, "tulu_stripped").encoding == "tulu-v1"


def less_reference(messages, tokenizer, max_len):
    """LESS's encode_with_messages_format as it behaves: tokenize the unstripped joined text with
    truncation; for every non-assistant turn mask [len(tokens of the turns before it),
    len(tokens up to and including it, plus the next assistant header)), stopping at max_len."""
    def n_tokens(text):
        return tokenizer(text, return_tensors="pt", max_length=max_len, truncation=True).input_ids.shape[1]

    eos = tokenizer.eos_token
    ids = tokenizer(tulu_concat(messages, eos), return_tensors="pt", max_length=max_len,
                    truncation=True).input_ids[0]
    labels = ids.clone()
    for i, m in enumerate(messages):
        if m["role"] == "assistant":
            continue
        start = 0 if i == 0 else n_tokens(tulu_concat(messages[:i], eos))
        so_far = tulu_concat(messages[:i + 1], eos)
        if i + 1 < len(messages) and messages[i + 1]["role"] == "assistant":
            so_far += "<|assistant|>\n"
        end = n_tokens(so_far)
        labels[start:end] = IGNORE_INDEX
        if end >= max_len:
            break
    return ids.tolist(), labels.tolist()


def test_tulu_v2_equals_the_less_reference_on_random_conversations(tiny_tokenizer):
    rng = random.Random(0)
    words = "the cat sat on a mat so the answer is yes no alpha beta".split()
    for trial in range(60):
        turns = []
        if rng.random() < 0.3:
            turns.append({"role": "system", "content": " ".join(rng.choices(words, k=rng.randint(1, 4)))})
        for _ in range(rng.randint(1, 3)):
            turns.append({"role": "user", "content": " " + " ".join(rng.choices(words, k=rng.randint(1, 9)))})
            turns.append({"role": "assistant", "content": " ".join(rng.choices(words, k=rng.randint(1, 9))) + " "})
        max_len = rng.choice([8, 16, 24, 512])
        got = encode_tulu_v2(turns, tiny_tokenizer, max_len)
        want_ids, want_labels = less_reference(turns, tiny_tokenizer, max_len)
        assert (got.input_ids, got.labels) == (want_ids, want_labels), (trial, turns, max_len)
