"""The synthetic demo data: deterministic, loadable, correct answers, every family and template."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from less_select.data import load_examples
from less_select.demo.tasks import (ANSWER_PREFIX, DISTRACTOR_FAMILIES, FAMILIES, FAMILY_BY_NAME,
                                    RELEVANT_FAMILIES, TARGET_FAMILY, exact_match_answer,
                                    make_demo_data, read_jsonl)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_demo_data(tmp_path_factory.mktemp("demo"), seed=0, pool_size=600,
                          n_target_fewshot=8, n_test=50)


def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path, demo):
    again = make_demo_data(tmp_path / "again", seed=0, pool_size=600, n_target_fewshot=8, n_test=50)
    other = make_demo_data(tmp_path / "other", seed=1, pool_size=600, n_target_fewshot=8, n_test=50)
    for name in ("pool.jsonl", "target.jsonl", "test.jsonl"):
        assert (demo.out_dir / name).read_bytes() == (again.out_dir / name).read_bytes()
        assert (demo.out_dir / name).read_bytes() != (other.out_dir / name).read_bytes()


def test_sizes_and_roles(demo):
    assert len(read_jsonl(demo.pool)) == 600
    assert len(read_jsonl(demo.target)) == 8
    assert len(read_jsonl(demo.test)) == 50
    assert sum(demo.pool_counts.values()) == 600
    assert demo.target_family == TARGET_FAMILY in demo.relevant_families
    assert set(demo.relevant_families) == set(RELEVANT_FAMILIES)
    assert set(demo.distractor_families) == set(DISTRACTOR_FAMILIES)
    assert not set(demo.relevant_families) & set(demo.distractor_families)
    assert demo.other_families and all(demo.role(f) == "other" for f in demo.other_families)
    assert len(demo.families) >= 8


def test_every_record_parses(demo):
    examples, report = load_examples([demo.pool, demo.target, demo.test])
    assert len(examples) == 658 and report.total_skipped == 0
    assert all(ex.format == "messages" and ex.completion_text for ex in examples)
    target, _ = load_examples(demo.target)
    assert {ex.subtask for ex in target} == {TARGET_FAMILY}
    ids = [ex.id for ex in examples]
    assert len(set(ids)) == len(ids)


def test_every_family_and_template_present(demo):
    pool = read_jsonl(demo.pool)
    seen = {(r["task"], r["template"]) for r in pool}
    for fam in FAMILIES:
        assert 3 <= len(fam.templates) <= 4
        for t in range(len(fam.templates)):
            assert (fam.name, t) in seen, (fam.name, t)
    for r in pool:
        assert set(r) >= {"dataset", "id", "messages", "task"}


def test_held_out_sets_are_target_family_and_disjoint_from_pool(demo):
    pool_q = {r["messages"][0]["content"] for r in read_jsonl(demo.pool)}
    target, test = read_jsonl(demo.target), read_jsonl(demo.test)
    for r in target + test:
        assert r["task"] == TARGET_FAMILY
        assert r["messages"][0]["content"] not in pool_q
    assert not ({r["messages"][0]["content"] for r in target}
                & {r["messages"][0]["content"] for r in test})


def test_test_answers_are_correct(demo):
    for r in read_jsonl(demo.test):
        a, b = r["meta"]["a"], r["meta"]["b"]
        user, assistant = r["messages"][0]["content"], r["messages"][1]["content"]
        assert f" {a} " in user and f" {b} " in user
        assert r["answer"] == str(a + b)
        assert assistant.endswith(f"{ANSWER_PREFIX} {a + b}.")
        assert exact_match_answer(assistant) == exact_match_answer(r["answer"]) == str(a + b)


def _recompute(r):
    task, meta = r["task"], r["meta"]
    if task in ("add_word", "add_expr"):
        return str(meta["a"] + meta["b"])
    if task == "sub_word":
        return str(meta["a"] - meta["b"])
    if task == "compare_word":
        return meta["n1"] if meta["a"] > meta["b"] else meta["n2"]
    if task == "sort_words":
        return " ".join(sorted(meta["words"]))
    if task == "count_items":
        return str(len(meta["words"]))
    if task == "string_transform":
        return meta["word"][::-1] if meta["op"] == "reverse" else meta["word"].upper()
    if task == "date_add":
        d = dt.date(2023, meta["month"], meta["day"]) + dt.timedelta(days=meta["n"])
        return f"{d.strftime('%B')} {d.day}"
    if task == "bool_expr":
        return {"True": "True", "False": "False"}[str(eval(meta["expr"]))]  # noqa: S307
    return None


def test_pool_answers_recomputed(demo):
    checked = set()
    for r in read_jsonl(demo.pool):
        expected = _recompute(r)
        if expected is None:
            continue
        assert r["answer"] == expected, r
        assert exact_match_answer(r["messages"][1]["content"]) == exact_match_answer(expected) \
            or r["task"] == "add_expr", r  # add_expr answers are phrased "3 + 5 = 8" etc.
        checked.add(r["task"])
    assert checked >= {"add_word", "sub_word", "compare_word", "sort_words", "date_add",
                       "count_items", "string_transform", "bool_expr"}


def test_brackets_answers():
    import random
    fam = FAMILY_BY_NAME["brackets"]
    rng = random.Random(0)
    pairs = {"(": ")", "[": "]", "{": "}", "<": ">"}
    for i in range(200):
        _, _, ans, meta = fam.make(rng, i % 4)
        if i % 4 < 2:
            stack, ok = [], True
            for ch in meta["seq"]:
                if ch in pairs:
                    stack.append(ch)
                elif not stack or pairs[stack.pop()] != ch:
                    ok = False
                    break
            assert ans == ("yes" if ok and not stack else "no")
        else:
            assert ans == " ".join(pairs[o] for o in reversed(meta["seq"]))


def test_distractors_share_the_target_surface(demo):
    pool = read_jsonl(demo.pool)
    for fam in DISTRACTOR_FAMILIES:
        recs = [r for r in pool if r["task"] == fam]
        assert all(r["messages"][0]["content"].startswith("Q: ") for r in recs)
        assert all(ANSWER_PREFIX in r["messages"][1]["content"] for r in recs)


@pytest.mark.parametrize("text,expected", [
    ("3 + 5 = 8. So the answer is 8.", "8"),
    ("So the answer is Mia.\nmore text", "mia"),
    ("  13  \nsecond line", "13"),
    ("7 - 3 = 4. So the answer is: 4!", "4"),
    ("", ""),
    ("So the answer is", ""),
])
def test_exact_match_answer(text, expected):
    assert exact_match_answer(text) == expected


def test_records_are_plain_json(demo):
    line = demo.pool.read_text(encoding="utf-8").splitlines()[0]
    assert json.loads(line)["dataset"] == "demo"
