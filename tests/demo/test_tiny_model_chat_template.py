"""demo/tiny_model.py: ``tiny-model`` writes the Tulu chat template, which encodes (and prompts)
token for token as the ``tulu`` encoding does, so a tiny model's data keeps its encoding."""

from __future__ import annotations

import json

import pytest

from less_select.data import Example
from less_select.data.encode import encode_chat_template_v1, encode_example, encode_tulu_v2
from less_select.demo.tiny_model import TULU_CHAT_TEMPLATE, TinyModelConfig, run_tiny_model
from less_select.evaluation.exact_match import generation_prompt, tulu_prompt

from ..conftest import make_pool_records, write_jsonl
from ..data.test_encode_golden import MULTI_TURN, ONE_TURN, fixed_tokenizer

TWO_USER_TURNS = [{"role": "user", "content": "  What is two? "}, {"role": "user", "content": "And three?"},
                  {"role": "assistant", "content": "Five.\n"}]


@pytest.fixture(scope="module")
def chat_tokenizers(tiny_tokenizer):
    import copy
    bpe = copy.deepcopy(tiny_tokenizer)
    bpe.chat_template = TULU_CHAT_TEMPLATE
    return [fixed_tokenizer(TULU_CHAT_TEMPLATE), bpe]


@pytest.mark.parametrize("messages", [ONE_TURN, MULTI_TURN, TWO_USER_TURNS],
                         ids=["one-turn", "system+two-exchanges", "two-user-turns"])
def test_tulu_chat_template_encodes_as_tulu_v2(chat_tokenizers, messages):
    for tok in chat_tokenizers:
        chat = encode_chat_template_v1(messages, tok, 256)
        tulu = encode_tulu_v2(messages, tok, 256)
        assert chat.input_ids == tulu.input_ids
        # labels[0] is never predicted (the loss shifts by one); every other label agrees
        assert chat.labels[1:] == tulu.labels[1:] and chat.n_completion_tokens == tulu.n_completion_tokens


def test_tulu_chat_template_generation_prompt_is_the_tulu_prompt(chat_tokenizers):
    ex = Example(id="e", messages=MULTI_TURN)
    for tok in chat_tokenizers:
        text, special = generation_prompt(ex, tok, "auto")
        assert tok(text, add_special_tokens=special)["input_ids"] == \
            tok(tulu_prompt(ex, tok.eos_token))["input_ids"]


def test_tiny_model_writes_the_chat_template(tmp_path):
    from transformers import AutoTokenizer
    pool = write_jsonl(tmp_path / "pool.jsonl", make_pool_records(12))
    common = dict(data=[str(pool)], vocab_size=300, hidden_size=16, intermediate_size=32, num_heads=2,
                  pretrain_steps=0)
    out = run_tiny_model(TinyModelConfig(output_dir=str(tmp_path / "m"), **common))
    tok = AutoTokenizer.from_pretrained(str(out))
    assert tok.chat_template == TULU_CHAT_TEMPLATE
    # auto now takes the chat template for conversations, with the same tokens as tulu
    ex = Example(id="e", messages=make_pool_records(1, seed=7)[0]["messages"])
    auto, tulu = encode_example(ex, tok, 256, "auto"), encode_example(ex, tok, 256, "tulu")
    assert auto.encoding == "chat-template-v1" and auto.input_ids == tulu.input_ids
    # prompt/completion data can use it when asked (--template chat_template_all)
    pc = Example(id="p", messages=[{"role": "user", "content": "the cat"},
                                   {"role": "assistant", "content": "sat"}],
                 prompt="the cat", completion="sat")
    assert encode_example(pc, tok, 256, "chat_template_all").input_ids == \
        encode_tulu_v2(pc.messages, tok, 256).input_ids
    bare = run_tiny_model(TinyModelConfig(output_dir=str(tmp_path / "bare"), chat_template="none", **common))
    assert not AutoTokenizer.from_pretrained(str(bare)).chat_template
    assert not json.loads((bare / "tokenizer_config.json").read_text()).get("chat_template")
