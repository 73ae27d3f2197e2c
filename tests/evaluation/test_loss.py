"""target_loss against a batch-size-1 reference computed with the model's own loss."""

from __future__ import annotations

import math

import pytest
import torch

from less_select.data.encode import encode_example
from less_select.data.example import Example
from less_select.errors import UserError
from less_select.evaluation.loss import target_loss


def _examples() -> list[Example]:
    texts = [("the cat sat on", " a mat", "a"), ("what is the sum of three and four", " seven", "a"),
             ("sort these words alpha beta", " alpha beta gamma delta", "b"),
             ("yes", " no", "b"), ("two dogs ran past quickly and one bird sang softly", " true", "b")]
    out = [Example(id=f"e{i}", messages=[], subtask=s, prompt=p, completion=c, append_eos=False)
           for i, (p, c, s) in enumerate(texts)]
    out.append(Example(id="msg", messages=[{"role": "user", "content": "so the answer is"},
                                           {"role": "assistant", "content": "false"}], subtask="c"))
    return out


def _reference(model, tokenizer, examples, max_len):
    ref = []
    for ex in examples:
        enc = encode_example(ex, tokenizer, max_len)
        if enc.n_completion_tokens == 0:
            ref.append(None)
            continue
        ids = torch.tensor([enc.input_ids])
        labels = torch.tensor([enc.labels])
        with torch.no_grad():
            ref.append(model(input_ids=ids, labels=labels).loss.item())
    return ref


def test_matches_batch_size_one_reference(tiny_model, tiny_tokenizer):
    exs = _examples()
    ref = _reference(tiny_model, tiny_tokenizer, exs, 2048)
    res = target_loss(tiny_model, tiny_tokenizer, exs, max_tokens_per_batch=40)
    got = [p["loss"] for p in res["predictions"]]
    assert got == pytest.approx(ref, rel=1e-5, abs=1e-5)
    a = (ref[0] + ref[1]) / 2
    b = (ref[2] + ref[3] + ref[4]) / 3
    c = ref[5]
    assert res["per_subtask"]["a"]["loss"] == pytest.approx(a, rel=1e-5)
    assert res["per_subtask"]["b"]["loss"] == pytest.approx(b, rel=1e-5)
    assert res["average"]["loss"] == pytest.approx((a + b + c) / 3, rel=1e-5)
    assert res["micro_average"]["loss"] == pytest.approx(sum(ref) / len(ref), rel=1e-5)
    assert res["n_excluded_no_completion"] == 0
    # one big batch gives the same numbers
    res2 = target_loss(tiny_model, tiny_tokenizer, exs, max_tokens_per_batch=100000)
    assert [p["loss"] for p in res2["predictions"]] == pytest.approx(got, rel=1e-5, abs=1e-5)


def test_examples_without_completion_are_counted_and_excluded(tiny_model, tiny_tokenizer):
    exs = _examples()
    n_prompt = len(tiny_tokenizer(exs[4].prompt)["input_ids"])
    res = target_loss(tiny_model, tiny_tokenizer, exs, max_seq_length=n_prompt)
    assert res["n_excluded_no_completion"] >= 1
    assert res["predictions"][4]["loss"] is None
    assert res["per_subtask"]["b"]["n_no_completion"] >= 1
    assert all(v["loss"] is None or math.isfinite(v["loss"]) for v in res["per_subtask"].values())
    assert math.isfinite(res["average"]["loss"])


def test_empty_target_is_a_user_error(tiny_model, tiny_tokenizer):
    with pytest.raises(UserError):
        target_loss(tiny_model, tiny_tokenizer, [])
