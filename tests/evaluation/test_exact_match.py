"""The ``exact_match:FILE`` task: answer rule, prompts as training encodes them, scoring, run_eval."""

from __future__ import annotations

import json

import pytest

from less_select.data.encode import encode_tulu_v1
from less_select.errors import UserError
from less_select.evaluation import exact_match as em
from less_select.evaluation.run import EvalConfig, run_eval
from less_select.evaluation.tasks import check_task, task_slug

from ..conftest import write_jsonl


def _records():
    recs = []
    for i, (a, b) in enumerate([(3, 4), (8, 5), (1, 1), (9, 9)]):
        recs.append({"id": f"q{i}", "answer": str(a + b), "subtask": "add" if i < 3 else "big",
                     "messages": [{"role": "user", "content": f"Q: What is {a} plus {b}?\nA:"},
                                  {"role": "assistant",
                                   "content": f"{a} + {b} = {a + b}. So the answer is {a + b}."}]})
    return recs


@pytest.mark.parametrize("text, expected", [
    ("8 + 5 = 13. So the answer is 13.", "13"),
    ("13", "13"),
    ("  So the answer is: Yes!\nmore text", "yes"),
    ("first line.\nsecond", "first line"),
    ("So the answer is 3. So the answer is 4.", "4"),  # the last one counts
    ("\n\n  March   5.", "march 5"),
    ("", ""),
])
def test_extract_answer(text, expected):
    assert em.extract_answer(text) == expected


def test_gold_answer_field_else_last_assistant_turn():
    rec = _records()[1]
    assert em.gold_answer(rec) == "13"
    del rec["answer"]
    assert em.gold_answer(rec) == "8 + 5 = 13. So the answer is 13."
    assert em.answers_match("So the answer is 13", em.gold_answer(rec))


def test_prompt_is_the_training_prefix(tiny_tokenizer):
    rec = _records()[0]
    text, special = em.generation_prompt(rec, tiny_tokenizer)
    assert special and text.endswith("<|assistant|>\n") and "So the answer" not in text
    prompt_ids = tiny_tokenizer(text)["input_ids"]
    full = encode_tulu_v1(rec["messages"], tiny_tokenizer, 512)
    assert full.input_ids[:len(prompt_ids)] == prompt_ids
    # the first unmasked (trained) position is right after the prompt
    assert all(x == -100 for x in full.labels[:len(prompt_ids)])
    assert full.labels[len(prompt_ids)] != -100


def test_score_predictions_per_subtask_and_macro():
    recs = _records()
    outputs = ["3 + 4 = 7. So the answer is 7.", "13", "So the answer is 3.", "18."]
    res = em.score_predictions(recs, outputs)
    assert res["per_subtask"]["add"]["exact_match"] == pytest.approx(200 / 3)
    assert res["per_subtask"]["big"]["exact_match"] == 100.0
    assert res["headline"] == {"metric": "exact_match", "averaging": "macro",
                               "value": pytest.approx((200 / 3 + 100) / 2)}
    assert res["micro_average"]["exact_match"] == 75.0
    assert [p["exact_match"] for p in res["predictions"]] == [1.0, 1.0, 0.0, 1.0]


def test_task_names():
    check_task("exact_match:data/test.jsonl")
    with pytest.raises(UserError, match="exact_match:FILE"):
        check_task("exact_match:")
    assert task_slug("exact_match:/a/b/my test.jsonl") == "exact_match_my_test"


def test_run_eval_exact_match_file(tiny_model, tiny_tokenizer, tmp_path, monkeypatch):
    path = write_jsonl(tmp_path / "test.jsonl", _records())
    cfg = EvalConfig(model="m", task=f"exact_match:{path}", output_dir=str(tmp_path / "out"),
                     max_new_tokens=3, batch_size=3)
    res = run_eval(cfg, model=tiny_model, tokenizer=tiny_tokenizer)
    assert res["n_examples"] == 4 and 0 <= res["headline"]["value"] <= 100
    summary = json.loads((tmp_path / "out" / "exact_match_test.json").read_text())
    assert summary["task"] == f"exact_match:{path}" and set(summary["per_subtask"]) == {"add", "big"}
    preds = (tmp_path / "out" / "exact_match_test_predictions.jsonl").read_text().splitlines()
    assert len(preds) == 4

    # a model that answers with the gold completion scores 100
    monkeypatch.setattr(em, "generate_predictions", lambda model, tok, exs, **kw: [
        e.messages[-1]["content"] for e in exs])
    res = run_eval(cfg, model=tiny_model, tokenizer=tiny_tokenizer)
    assert res["headline"]["value"] == 100.0
    cfg_sub = EvalConfig(model="m", task=f"exact_match:{path}", output_dir=str(tmp_path / "o2"),
                         subtasks=["big"])
    assert run_eval(cfg_sub, model=tiny_model, tokenizer=tiny_tokenizer)["n_examples"] == 1
