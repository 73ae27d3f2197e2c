"""Golden token ids and labels of the encoder versions ``tulu-v1``, ``chat-template-v1`` and
``raw-v1`` (data/encode.py) on a fixed tokenizer.

The tokenizer is built here from a fixed word-level vocabulary (no training, nothing downloaded),
so the ids below depend on the encoders alone: a change to the text an encoder renders or to the
tokens it masks changes them. Each golden is also read back as text (the labelled spans), so a
reader can check it by eye. ``tulu-v2`` has its own golden tests (tests/data/test_encode.py).
"""

from __future__ import annotations

import pytest

from less_select.data import Example
from less_select.data.encode import (IGNORE_INDEX, encode_chat_template_v1, encode_example,
                                     encode_raw_v1, encode_tulu_v1)
from less_select.errors import UserError

SPECIAL = ["<unk>", "<s>", "</s>", "<pad>"]
VOCAB = SPECIAL + ["<|system|>", "<|user|>", "<|assistant|>", "\n", " ", "Be", "brief", "What",
                   "is", "two", "plus", "three", "?", "Five", ".", "And", "times", "Six", "Q", ":",
                   "A", "So", "the", "answer", "5"]
#: a Tulu-like chat template; string literals so Jinja's whitespace trimming cannot touch newlines
CHAT_TEMPLATE = ("{% for m in messages %}{{ '<|' + m['role'] + '|>\\n' + m['content'] }}"
                 "{% if m['role'] == 'assistant' %}{{ '</s>' }}{% endif %}{{ '\\n' }}{% endfor %}"
                 "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}")

ONE_TURN = [{"role": "user", "content": "What is two plus three?"},
            {"role": "assistant", "content": "Five."}]
MULTI_TURN = [{"role": "system", "content": "Be brief."}, *ONE_TURN,
              {"role": "user", "content": "And two times three?"},
              {"role": "assistant", "content": "Six."}]
M = IGNORE_INDEX


def fixed_tokenizer(chat_template: str | None = None):
    """Word-level tokenizer: ``<|role|>`` markers, words, single whitespace and punctuation
    characters are one token each; a BOS ``<s>`` is prepended, as Llama's tokenizer does."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(VOCAB)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"<\|[a-z]+\|>|\w+|\s|[^\w\s]"), behavior="isolated")
    tok.add_special_tokens(SPECIAL)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", 1)])
    tok.decoder = decoders.Fuse()
    out = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                  unk_token="<unk>", pad_token="<pad>")
    if chat_template is not None:
        out.chat_template = chat_template
    return out


@pytest.fixture(scope="module")
def tok():
    return fixed_tokenizer()


@pytest.fixture(scope="module")
def chat_tok():
    return fixed_tokenizer(CHAT_TEMPLATE)


def labelled_spans(enc, tokenizer) -> list[str]:
    """The text of each run of labelled tokens; labels must equal the ids they sit on."""
    spans, run = [], []
    for i, label in zip(enc.input_ids, enc.labels):
        if label == M:
            if run:
                spans.append(tokenizer.decode(run))
            run = []
        else:
            assert label == i
            run.append(i)
    if run:
        spans.append(tokenizer.decode(run))
    return spans


def test_fixed_tokenizer_is_the_vocabulary(tok):
    ids = tok("<|user|>\nWhat is two?</s>")["input_ids"]
    assert ids == [1, 5, 7, 11, 8, 12, 8, 13, 16, 2]
    assert tok.convert_ids_to_tokens(ids) == ["<s>", "<|user|>", "\n", "What", " ", "is", " ", "two",
                                              "?", "</s>"]
    assert tok("zebra")["input_ids"] == [1, 0]  # unknown words are <unk>, never split


def test_tulu_v1_one_turn(tok):
    enc = encode_tulu_v1(ONE_TURN, tok, 64)
    # <s> <|user|> \n What _ is _ two _ plus _ three ? \n <|assistant|> \n Five . </s>
    assert enc.input_ids == [1, 5, 7, 11, 8, 12, 8, 13, 8, 14, 8, 15, 16, 7, 6, 7, 17, 18, 2]
    assert enc.labels == [M] * 16 + [17, 18, 2]
    assert labelled_spans(enc, tok) == ["Five.</s>"]
    assert (enc.encoding, enc.truncated, enc.n_completion_tokens) == ("tulu-v1", False, 3)


def test_tulu_v1_system_and_two_exchanges(tok):
    enc = encode_tulu_v1(MULTI_TURN, tok, 64)
    assert enc.input_ids == [1, 4, 7, 9, 8, 10, 18, 7, 5, 7, 11, 8, 12, 8, 13, 8, 14, 8, 15, 16, 7, 6,
                             7, 17, 18, 2, 7, 5, 7, 19, 8, 13, 8, 20, 8, 15, 16, 7, 6, 7, 21, 18, 2]
    assert enc.labels == [M] * 23 + [17, 18, 2, 7] + [M] * 13 + [21, 18, 2]
    # the newline after an inner </s> is labelled (open-instruct); the stripped text ends at </s>
    assert labelled_spans(enc, tok) == ["Five.</s>\n", "Six.</s>"]
    assert enc.n_completion_tokens == 7


def test_tulu_v1_truncation(tok):
    enc = encode_tulu_v1(ONE_TURN, tok, 17)
    assert enc.input_ids == [1, 5, 7, 11, 8, 12, 8, 13, 8, 14, 8, 15, 16, 7, 6, 7, 17]
    assert enc.labels == [M] * 16 + [17] and enc.truncated and enc.n_completion_tokens == 1
    cut = encode_tulu_v1(ONE_TURN, tok, 16)  # the whole answer is cut off: nothing to learn
    assert cut.truncated and cut.n_completion_tokens == 0 and len(cut.input_ids) == 16


def test_chat_template_v1_one_turn(chat_tok):
    enc = encode_chat_template_v1(ONE_TURN, chat_tok, 64)
    # no BOS: the chat template's text is tokenized without special tokens
    assert enc.input_ids == [5, 7, 11, 8, 12, 8, 13, 8, 14, 8, 15, 16, 7, 6, 7, 17, 18, 2, 7]
    assert enc.labels == [M] * 15 + [17, 18, 2, 7]
    assert labelled_spans(enc, chat_tok) == ["Five.</s>\n"]
    assert (enc.encoding, enc.n_completion_tokens) == ("chat-template-v1", 4)


def test_chat_template_v1_system_and_two_exchanges(chat_tok):
    enc = encode_chat_template_v1(MULTI_TURN, chat_tok, 64)
    assert enc.input_ids == [4, 7, 9, 8, 10, 18, 7, 5, 7, 11, 8, 12, 8, 13, 8, 14, 8, 15, 16, 7, 6, 7,
                             17, 18, 2, 7, 5, 7, 19, 8, 13, 8, 20, 8, 15, 16, 7, 6, 7, 21, 18, 2, 7]
    assert enc.labels == [M] * 22 + [17, 18, 2, 7] + [M] * 13 + [21, 18, 2, 7]
    assert labelled_spans(enc, chat_tok) == ["Five.</s>\n", "Six.</s>\n"]


def test_raw_v1_adds_a_separating_space_and_eos(tok):
    enc = encode_raw_v1("Q: What is two plus three?", "A: Five.", tok, 64, append_eos=True)
    assert enc.input_ids == [1, 22, 23, 8, 11, 8, 12, 8, 13, 8, 14, 8, 15, 16, 8, 24, 23, 8, 17, 18, 2]
    assert enc.labels == [M] * 14 + [8, 24, 23, 8, 17, 18, 2]
    assert labelled_spans(enc, tok) == [" A: Five.</s>"]  # the inserted space is the completion's
    assert enc.encoding == "raw-v1"


def test_raw_v1_no_space_after_a_newline(tok):
    enc = encode_raw_v1("Q: What is two plus three?\n", "A: Five.", tok, 64, append_eos=True)
    assert enc.input_ids == [1, 22, 23, 8, 11, 8, 12, 8, 13, 8, 14, 8, 15, 16, 7, 24, 23, 8, 17, 18, 2]
    assert enc.labels == [M] * 15 + [24, 23, 8, 17, 18, 2]


def test_raw_v1_as_the_less_target_sets_use_it(tok):
    # append_eos=False: prompt + completion concatenated, no EOS (LESS's validation sets)
    enc = encode_raw_v1("Q: What is two plus three?\nA:", " So the answer is 5.", tok, 64,
                        append_eos=False)
    assert enc.input_ids == [1, 22, 23, 8, 11, 8, 12, 8, 13, 8, 14, 8, 15, 16, 7, 24, 23, 8, 25, 8,
                             26, 8, 27, 8, 12, 8, 28, 18]
    assert enc.labels == [M] * 17 + [8, 25, 8, 26, 8, 27, 8, 12, 8, 28, 18]
    assert labelled_spans(enc, tok) == [" So the answer is 5."]


def test_encode_example_picks_the_version(tok, chat_tok):
    chat = Example(id="c", messages=ONE_TURN)
    raw = Example(id="r", messages=ONE_TURN, prompt="Q: What is two plus three?", completion="A: Five.")
    assert encode_example(chat, tok, 64, "tulu_stripped").input_ids == encode_tulu_v1(ONE_TURN, tok, 64).input_ids
    assert encode_example(chat, chat_tok, 64, "auto").encoding == "chat-template-v1"
    assert encode_example(chat, chat_tok, 64, "chat_template").labels == \
        encode_chat_template_v1(ONE_TURN, chat_tok, 64).labels
    assert encode_example(chat, chat_tok, 64, "tulu_stripped").encoding == "tulu-v1"
    assert encode_example(chat, tok, 64, "auto").encoding.startswith("tulu-")
    # prompt/completion records are raw text whatever the template
    for template in ("auto", "tulu_stripped", "chat_template"):
        assert encode_example(raw, chat_tok, 64, template).encoding == "raw-v1"
    with pytest.raises(UserError, match="no chat template"):
        encode_example(chat, tok, 64, "chat_template")
