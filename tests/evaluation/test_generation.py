"""Batched left-padded generation and next-token scoring equal their batch-size-1 results."""

from __future__ import annotations

import pytest
import torch

from less_select.evaluation.common import (cut_at_stop, generate_greedy, length_batches, next_token_probs)
from less_select.evaluation.mmlu import answer_token_ids

PROMPTS = ["the cat sat on", "what is the sum of three and four answer",
           "so the answer is", "alpha beta gamma delta sort these words quickly and softly"]


def test_generate_batched_equals_unbatched(tiny_model, tiny_tokenizer):
    one = generate_greedy(tiny_model, tiny_tokenizer, PROMPTS, batch_size=1, max_new_tokens=8)
    many = generate_greedy(tiny_model, tiny_tokenizer, PROMPTS, batch_size=4, max_new_tokens=8)
    assert one == many
    assert all(isinstance(x, str) for x in one)


def test_generate_stops_and_cuts(tiny_model, tiny_tokenizer, monkeypatch):
    full = generate_greedy(tiny_model, tiny_tokenizer, PROMPTS[:2], batch_size=2, max_new_tokens=12)
    # pick a stop string that occurs in the first continuation: output is cut before it
    text = full[0]
    if len(text) < 3:
        pytest.skip("continuation too short to test a stop string")
    stop = text[2:4]
    cut = generate_greedy(tiny_model, tiny_tokenizer, PROMPTS[:2], batch_size=2, max_new_tokens=12,
                          stop=[stop])
    assert cut[0] == cut_at_stop(text, [stop]) and stop not in cut[0]
    assert cut[1] == cut_at_stop(full[1], [stop])


def test_cut_at_stop():
    assert cut_at_stop("a\n\nb\nc", ["\n\n", "\n"]) == "a"
    assert cut_at_stop("abc", ["x"]) == "abc"


def test_next_token_probs_batched_equals_unbatched(tiny_model, tiny_tokenizer):
    cands = answer_token_ids(tiny_tokenizer)
    one = next_token_probs(tiny_model, tiny_tokenizer, PROMPTS, cands, batch_size=1)
    many = next_token_probs(tiny_model, tiny_tokenizer, PROMPTS, cands, batch_size=3)
    assert torch.tensor(many).numpy() == pytest.approx(torch.tensor(one).numpy(), rel=1e-4, abs=1e-7)
    # reference: full forward of the unpadded prompt, softmax over the vocabulary
    ids = torch.tensor([tiny_tokenizer(PROMPTS[1])["input_ids"]])
    with torch.no_grad():
        ref = torch.softmax(tiny_model(input_ids=ids).logits[0, -1].float(), -1)[cands].tolist()
    assert one[1] == pytest.approx(ref, rel=1e-4)


def test_answer_token_ids_follow_open_instruct(tiny_tokenizer):
    ids = answer_token_ids(tiny_tokenizer)
    assert ids == [tiny_tokenizer.encode(" " + c, add_special_tokens=False)[-1] for c in "ABCD"]
    assert len(set(ids)) == 4


def test_length_batches_are_deterministic():
    assert length_batches([3, 9, 3, 5], 2) == [[1, 3], [0, 2]]
