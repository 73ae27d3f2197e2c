"""A small synthetic LESS data layout (eval/bbh, eval/mmlu, eval/tydiqa) for fast evaluator tests."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

REAL_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
if not (REAL_DATA / "eval").is_dir():
    REAL_DATA = Path("/work/shared/data")


def real_data_dir() -> Path:
    if not (REAL_DATA / "eval" / "bbh" / "bbh-three-shot.json").is_file():
        pytest.skip(f"real LESS data not found at {REAL_DATA} (golden tests need ../shared/data)")
    return REAL_DATA


BOOL_PROMPT = (
    "Evaluate the result of a random Boolean expression.\n\n"
    "Q: not True is\nA: Let's think step by step.\nnot True = False. So the answer is False.\n\n"
    "Q: True and True is\nA: Let's think step by step.\nTrue and True = True. So the answer is True.\n\n"
    "Q: False or True is\nA: Let's think step by step.\nFalse or True = True. So the answer is True.")
SORT_PROMPT = (
    "Sort a list of words.\n\nMore text of the description.\n\n"
    "Q: Sort: b a\nA: Let's think step by step.\na comes first. So the answer is a b.\n\n"
    "Q: Sort: d c\nA: Let's think step by step.\nc comes first. So the answer is c d.\n\n"
    "Q: Sort: f e\nA: Let's think step by step.\ne comes first. So the answer is e f.")


def _write_csv(path: Path, rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows(rows)


def _squad(qas_by_ctx: list[tuple[str, list[dict]]]) -> dict:
    return {"data": [{"title": "t", "paragraphs": [{"context": c, "qas": q} for c, q in qas_by_ctx]}]}


@pytest.fixture
def less_layout(tmp_path) -> Path:
    root = tmp_path / "data"
    bbh = root / "eval" / "bbh"
    (bbh / "cot-prompts").mkdir(parents=True)
    (bbh / "bbh").mkdir()
    prompts = {"boolean_expressions": BOOL_PROMPT, "word_sorting": SORT_PROMPT}
    (bbh / "bbh-three-shot.json").write_text(json.dumps(prompts), encoding="utf-8")
    for name, text in prompts.items():
        (bbh / "cot-prompts" / f"{name}.txt").write_text("canary line\n-----\n" + text, encoding="utf-8")
    (bbh / "bbh" / "boolean_expressions.json").write_text(json.dumps({"examples": [
        {"input": f"{'not ' * i}True is", "target": "True" if i % 2 == 0 else "False"}
        for i in range(5)]}), encoding="utf-8")
    (bbh / "bbh" / "word_sorting.json").write_text(json.dumps({"examples": [
        {"input": f"Sort: z{i} y{i}", "target": f"y{i} z{i}"} for i in range(4)]}), encoding="utf-8")

    mmlu = root / "eval" / "mmlu"
    for subject in ("abstract_algebra", "virology"):
        _write_csv(mmlu / "dev" / f"{subject}_dev.csv",
                   [[f"{subject} dev question {i}?", "w", "x", "y", "z", "ABCD"[i % 4]] for i in range(5)])
        _write_csv(mmlu / "test" / f"{subject}_test.csv",
                   [[f"{subject} test question {i}?", "one", "None", "three", "four", "ABCD"[i % 4]]
                    for i in range(4)])

    ty = root / "eval" / "tydiqa"
    ty.mkdir(parents=True)
    one_shot = {
        "english": [{"id": "english-demo-0", "lang": "english", "context": "Paris is in France.",
                     "question": "Where is Paris?", "answers": [{"text": "France", "answer_start": 12}]}],
        "finnish": [{"id": "finnish-demo-0", "lang": "finnish", "context": "Helsinki on Suomessa.",
                     "question": "Missä Helsinki on?", "answers": [{"text": "Suomessa",
                                                                    "answer_start": 12}]}],
    }
    (ty / "tydiqa-one-shot.json").write_text(json.dumps(one_shot, ensure_ascii=False), encoding="utf-8")
    dev = _squad([
        ("The cat sat on the mat.", [{"id": f"english-q{i}", "question": f"Where did the cat sit {i}?",
                                      "answers": [{"text": "on the mat", "answer_start": 12}]}
                                     for i in range(3)]),
        ("Kissa istui matolla.", [{"id": "finnish-q0", "question": "Missä kissa istui?",
                                   "answers": [{"text": "matolla", "answer_start": 12}]}]),
    ])
    (ty / "tydiqa-goldp-v1.1-dev.json").write_text(json.dumps(dev, ensure_ascii=False), encoding="utf-8")
    return root
