"""MMLU / BBH / TydiQA evaluators: prompts, sampling, scoring (with oracle predictions), tiny-model runs."""

from __future__ import annotations

import json

import pytest

from less_select.errors import UserError
from less_select.evaluation import bbh as bbh_mod
from less_select.evaluation import mmlu as mmlu_mod
from less_select.evaluation import tydiqa as ty_mod
from less_select.evaluation.bbh import evaluate_bbh, load_bbh
from less_select.evaluation.mmlu import evaluate_mmlu, sample_rows
from less_select.evaluation.tydiqa import evaluate_tydiqa, load_tydiqa, truncate_context

from .conftest import BOOL_PROMPT


# -------------------------------------------------------------------------------------- MMLU

def test_mmlu_prompt_is_open_instruct_few_shot():
    dev = [["Q1?", "a", "b", "c", "d", "B"], ["Q2?", "e", "f", "g", "h", "C"]]
    test = ["Q3?", "i", "nan", "k", "l", "D"]
    assert mmlu_mod.build_prompt("college_physics", dev, test, 2, "none") == (
        "The following are multiple choice questions (with answers) about  college physics.\n\n"
        "Q1?\nA. a\nB. b\nC. c\nD. d\nAnswer: B\n\n"
        "Q2?\nA. e\nB. f\nC. g\nD. h\nAnswer: C\n\n"
        "Q3?\nA. i\nB. nan\nC. k\nD. l\nAnswer:")
    chat = mmlu_mod.build_prompt("college_physics", dev, test, 0, "tulu")
    assert chat.startswith("<|user|>\nThe following") and chat.endswith("Answer:\n<|assistant|>\nThe answer is:")


def test_mmlu_sampling_matches_pandas_sample():
    # DataFrame.sample(n, random_state=42) draws RandomState(42).choice(len, n, replace=False)
    import numpy as np
    assert sample_rows(10, 3, 42) == list(np.random.RandomState(42).permutation(10)[:3])
    assert sample_rows(4, None, 42) == [0, 1, 2, 3]
    assert sample_rows(4, 10, 42) == [0, 1, 2, 3]


def test_mmlu_oracle_scores_100(less_layout, tiny_tokenizer, monkeypatch):
    seen = {}

    def oracle(model, tokenizer, prompts, cands, batch_size=4, name=""):
        seen["prompts"] = prompts
        # the correct letter of test row i is "ABCD"[i % 4]; prompts come subject by subject, rows in order
        return [[1.0 if j == i % 4 else 0.0 for j in range(4)] for i in list(range(4)) * 2]

    monkeypatch.setattr(mmlu_mod, "next_token_probs", oracle)
    res = evaluate_mmlu(None, tiny_tokenizer, less_layout)
    assert res["per_subtask"]["abstract_algebra"] == {"accuracy": 100.0, "n": 4}
    assert res["average"]["accuracy"] == 100.0 and res["headline"]["averaging"] == "micro"
    assert "\nB. nan\n" in seen["prompts"][0]  # "None" is read as NaN, as pandas does
    assert seen["prompts"][0].count("Answer:") == 6  # 5 shots + the question


def test_mmlu_drops_shots_for_long_prompts(less_layout, tiny_tokenizer, monkeypatch):
    monkeypatch.setattr(mmlu_mod, "next_token_probs",
                        lambda m, t, prompts, c, batch_size=4, name="": [[1, 0, 0, 0]] * len(prompts))
    res = evaluate_mmlu(None, tiny_tokenizer, less_layout, max_prompt_tokens=60)
    assert all(p["n_shot"] < 5 for p in res["predictions"])


def test_mmlu_tiny_model(less_layout, tiny_model, tiny_tokenizer):
    res = evaluate_mmlu(tiny_model, tiny_tokenizer, less_layout, max_examples_per_subject=2,
                        subjects=["virology"], batch_size=2)
    assert list(res["per_subtask"]) == ["virology"] and res["n_examples"] == 2
    assert 0.0 <= res["average"]["accuracy"] <= 100.0
    assert all(len(p["probs"]) == 4 for p in res["predictions"])
    with pytest.raises(UserError, match="unknown MMLU subject"):
        evaluate_mmlu(tiny_model, tiny_tokenizer, less_layout, subjects=["astrology"])


# --------------------------------------------------------------------------------------- BBH

def test_bbh_prompt_and_sampling(less_layout):
    tasks, prompts = load_bbh(less_layout, max_examples_per_task=3, seed=42)
    assert prompts["boolean_expressions"] == BOOL_PROMPT  # the two canary lines are dropped
    assert [len(v) for v in tasks.values()] == [3, 3]
    again, _ = load_bbh(less_layout, max_examples_per_task=3, seed=42)
    assert tasks == again
    assert bbh_mod.build_prompt(BOOL_PROMPT, "True is") == BOOL_PROMPT + "\n\nQ: True is\nA:"
    assert bbh_mod.build_prompt(BOOL_PROMPT, "True is", "tulu").endswith(
        "Q: True is\n<|assistant|>\nA:")


def test_bbh_oracle_and_extraction(less_layout, tiny_tokenizer, monkeypatch):
    captured = {}

    def fake_generate(model, tokenizer, prompts, batch_size, max_new_tokens, stop, name):
        captured.update(stop=stop, max_new_tokens=max_new_tokens)
        outs = []
        for p in prompts:
            q = p.rsplit("Q: ", 1)[1]
            if q.startswith("Sort: "):
                a, b = q[len("Sort: "):].split("\n")[0].split()
                outs.append(f" Let's think. So the answer is {b} {a}.")
            else:
                outs.append(" So the answer is true." if q.count("not") % 2 == 0 else " no idea")
        return outs

    monkeypatch.setattr(bbh_mod, "generate_greedy", fake_generate)
    res = evaluate_bbh(None, tiny_tokenizer, less_layout, max_examples_per_task=None)
    assert captured == {"stop": ["\n\n"], "max_new_tokens": 512}
    assert res["per_subtask"]["word_sorting"]["exact_match"] == 100.0
    # true answers match case-insensitively; "no idea" never matches "False"
    assert res["per_subtask"]["boolean_expressions"]["exact_match"] == 60.0
    assert res["average"]["exact_match"] == 80.0 and res["headline"]["averaging"] == "macro"


def test_bbh_tiny_model(less_layout, tiny_model, tiny_tokenizer):
    res = evaluate_bbh(tiny_model, tiny_tokenizer, less_layout, max_examples_per_task=2,
                       tasks=["word_sorting"], batch_size=2, max_new_tokens=6)
    assert res["n_examples"] == 2 and list(res["per_subtask"]) == ["word_sorting"]
    assert all("\n\n" not in p["output"] for p in res["predictions"])


# ------------------------------------------------------------------------------------ TydiQA

def test_tydiqa_prompt_one_shot_tulu(less_layout):
    test, demos, source = load_tydiqa(less_layout, n_shot=1, max_examples_per_lang=2, seed=42)
    assert source.endswith("tydiqa-one-shot.json")
    assert sorted({e["lang"] for e in test}) == ["english", "finnish"] and len(test) == 3
    en = next(e for e in test if e["lang"] == "english")
    assert ty_mod.build_prompt(en, demos["english"]) == (
        "<|user|>\nAnswer the following question based on the information in the given passage.\n\n"
        "Passage: Paris is in France.\nQuestion: Where is Paris?\nAnswer: France\n\n"
        f"Passage: The cat sat on the mat.\nQuestion: {en['question']}\n\n<|assistant|>\nAnswer:")
    assert ty_mod.build_prompt(en, [], "none").endswith(f"Question: {en['question']}\nAnswer:")


def test_tydiqa_uses_train_file_when_present(less_layout):
    ty = less_layout / "eval" / "tydiqa"
    train = {"data": [{"title": "t", "paragraphs": [{"context": "c", "qas": [
        {"id": f"{lang}-train-{i}", "question": "q", "answers": [{"text": "a", "answer_start": 0}]}
        for lang in ("english", "finnish") for i in range(3)]}]}]}
    (ty / "tydiqa-goldp-v1.1-train.json").write_text(json.dumps(train), encoding="utf-8")
    _, demos, source = load_tydiqa(less_layout, n_shot=2)
    assert source.endswith("tydiqa-goldp-v1.1-train.json")
    assert all(len(v) == 2 and all(d["id"].startswith(k) for d in v) for k, v in demos.items())


def test_tydiqa_needs_demonstrations(less_layout):
    (less_layout / "eval" / "tydiqa" / "tydiqa-one-shot.json").unlink()
    with pytest.raises(UserError, match="tydiqa-goldp-v1.1-train.json"):
        load_tydiqa(less_layout, n_shot=1)
    assert load_tydiqa(less_layout, n_shot=0)[2] == "none"


def test_tydiqa_context_truncation(tiny_tokenizer):
    text = "the cat sat on a mat while two dogs ran past quickly " * 5
    short = truncate_context(tiny_tokenizer, text, 10)
    assert len(tiny_tokenizer.encode(short, add_special_tokens=False)) <= 10 and text.startswith(short)
    assert truncate_context(tiny_tokenizer, "the cat", 10) == "the cat"


def test_tydiqa_oracle(less_layout, tiny_tokenizer, monkeypatch):
    captured = {}

    def fake_generate(model, tokenizer, prompts, batch_size, max_new_tokens, stop, name):
        captured.update(stop=stop, max_new_tokens=max_new_tokens, n=len(prompts))
        return [" The Mat " if "The cat sat" in p else " matolla ja" for p in prompts]

    monkeypatch.setattr(ty_mod, "generate_greedy", fake_generate)
    res = evaluate_tydiqa(None, tiny_tokenizer, less_layout)
    assert captured == {"stop": ["\n"], "max_new_tokens": 50, "n": 4}
    en, fi = res["per_subtask"]["english"], res["per_subtask"]["finnish"]
    assert en["f1"] == pytest.approx(100 * 2 * (1 / 1) * (1 / 2) / (1 + 1 / 2))  # "mat" vs "on mat"
    assert en["exact_match"] == 0.0
    assert fi["f1"] == pytest.approx(100 * 2 * 0.5 * 1 / 1.5) and fi["exact_match"] == 0.0
    assert res["average"]["f1"] == pytest.approx((en["f1"] + fi["f1"]) / 2)


def test_tydiqa_tiny_model(less_layout, tiny_model, tiny_tokenizer):
    res = evaluate_tydiqa(tiny_model, tiny_tokenizer, less_layout, languages=["finnish"],
                          max_new_tokens=4, batch_size=4)
    assert res["n_examples"] == 1 and "\n" not in res["predictions"][0]["prediction"]
    assert 0.0 <= res["average"]["f1"] <= 100.0
