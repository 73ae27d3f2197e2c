"""Golden of the ``chat_template_all`` path (data/encode.py): prompt/completion records through the
tokenizer's chat template as a user turn and an assistant turn (encoder ``chat-template-v1``), on the
fixed word-level tokenizer of test_encode_golden.py; ``auto`` and ``chat_template`` keep them raw."""

from __future__ import annotations

import pytest

from less_select.data import Example
from less_select.data.encode import IGNORE_INDEX, encode_example
from less_select.errors import UserError

from .test_encode_golden import CHAT_TEMPLATE, fixed_tokenizer, labelled_spans

M = IGNORE_INDEX
PC = Example(id="pc", messages=[{"role": "user", "content": "What is two plus three?"},
                                {"role": "assistant", "content": " Five."}],
             prompt="What is two plus three?", completion=" Five.", format="prompt_completion")


def test_prompt_completion_through_the_chat_template():
    tok = fixed_tokenizer(CHAT_TEMPLATE)
    enc = encode_example(PC, tok, 64, "chat_template_all")
    # <|user|> \n What _ is _ two _ plus _ three ? \n <|assistant|> \n _ Five . </s> \n  (no BOS:
    # the chat template's text is tokenized without special tokens; its content is not stripped)
    assert enc.input_ids == [5, 7, 11, 8, 12, 8, 13, 8, 14, 8, 15, 16, 7, 6, 7, 8, 17, 18, 2, 7]
    assert enc.labels == [M] * 15 + [8, 17, 18, 2, 7]
    assert labelled_spans(enc, tok) == [" Five.</s>\n"]
    assert (enc.encoding, enc.truncated, enc.n_completion_tokens) == ("chat-template-v1", False, 5)


def test_auto_and_chat_template_keep_prompt_completion_raw():
    tok = fixed_tokenizer(CHAT_TEMPLATE)
    for template in ("auto", "chat_template"):
        enc = encode_example(PC, tok, 64, template)
        assert enc.encoding == "raw-v1"
        assert enc.input_ids == [1, 11, 8, 12, 8, 13, 8, 14, 8, 15, 16, 8, 17, 18, 2]


def test_chat_template_all_needs_a_chat_template():
    with pytest.raises(UserError, match="template 'chat_template_all' requested but the tokenizer has "
                                        "no chat template"):
        encode_example(PC, fixed_tokenizer(), 64, "chat_template_all")
