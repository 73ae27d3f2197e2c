"""Prompt strings and data readers shared by the target builders and the evaluators.

Everything here reproduces the *strings* (not the code) of the LESS validation-set builders
(``less/data_selection/get_validation_dataset.py``) and of the open-instruct evaluation scripts that LESS
ships under ``evaluation/eval``; docs/evaluation.md lists every place where we depart from them.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from ..errors import UserError

MMLU_CHOICES = ("A", "B", "C", "D")

# open-instruct eval/tydiqa/run_eval.py (also quoted by LESS): (instruction, passage, question, answer).
TYDIQA_TEMPLATES: dict[str, tuple[str, str, str, str]] = {
    "english": ("Answer the following question based on the information in the given passage.",
                "Passage:", "Question:", "Answer:"),
    "arabic": ("أجب على السؤال التالي بناءً على المعلومات في المقطع المعطى.", "المقطع:", "السؤال:",
               "الإجابة:"),
    "bengali": ("প্রদত্ত অধ্যায়ের তথ্যের উপর ভিত্তি করে নিম্নলিখিত প্রশ্নের উত্তর দিন।", "অধ্যায়:",
                "প্রশ্ন:", "উত্তর:"),
    "finnish": ("Vastaa seuraavaan kysymykseen annetun kappaleen tiedon perusteella.", "Kappale:",
                "Kysymys:", "Vastaus:"),
    "indonesian": ("Jawab pertanyaan berikut berdasarkan informasi di bagian yang diberikan.", "Bagian:",
                   "Pertanyaan:", "Jawaban:"),
    "korean": ("주어진 문단의 정보에 기반하여 다음 질문에 답하십시오.", "문단:", "질문:", "답변:"),
    "russian": ("Ответьте на следующий вопрос на основе информации в данном отрывке.", "Отрывок:",
                "Вопрос:", "Ответ:"),
    "swahili": ("Jibu swali lifuatalo kulingana na habari kwenye kifungu kilichotolewa.", "Kifungu:",
                "Swali:", "Jibu:"),
    "telugu": ("ఇచ్చిన పేరాలోని సమాచారం ఆధారంగా కింది ప్రశ్నకు సమాధానం ఇవ్వండి.", "పేరా:", "ప్రశ్న:",
               "సమాధానం:"),
}
# LESS's Chinese-instruction variant (``zh=True``) of the validation examples.
TYDIQA_TEMPLATE_ZH = ("根据所给文章中的信息回答以下问题。", "文章:", "问题:", "答案:")


def tulu_user_prompt(content: str) -> str:
    """open-instruct ``create_prompt_with_tulu_chat_format([user], add_bos=False)``."""
    return "<|user|>\n" + content + "\n" + "<|assistant|>\n"


def append_after_chat(prompt: str, text: str) -> str:
    """open-instruct's rule for the answer prefix after a chat-formatted prompt."""
    return prompt + text if prompt[-1] in ("\n", " ") else prompt + " " + text


# ----------------------------------------------------------------------------------- data layout

def eval_dir(data_dir: str | Path | None, task: str, needed: str) -> Path:
    """``<data_dir>/eval/<task>`` of the LESS layout (``data_dir`` may also point at ``eval/`` itself)."""
    if not data_dir:  # None or "" (the shared data_dir option's default)
        raise UserError(f"task '{task}' needs --data-dir: the LESS data folder holding eval/{task}/{needed}")
    root = Path(data_dir)
    if not root.is_dir():
        raise UserError(f"--data-dir {root}: no such folder (expected the LESS data folder holding "
                        f"eval/{task}/{needed})")
    for cand in (root / "eval" / task, root / task):
        if (cand / needed).exists():
            return cand
    raise UserError(f"{root / 'eval' / task / needed}: not found; point --data-dir at the LESS data "
                    "folder (the one containing eval/)")


def read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None


# ------------------------------------------------------------------------------------ MMLU CSVs

# pandas.read_csv's default missing-value strings: open-instruct reads the MMLU CSVs with pandas, so an
# answer option literally "None" becomes NaN and is printed as "nan" in its prompts. We reproduce that.
PANDAS_NA = frozenset(["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
                       "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"])


_BOOLS = {"True": True, "TRUE": True, "true": True, "False": False, "FALSE": False, "false": False}


def _is_int(s: str) -> bool:
    try:
        int(s)
        return True
    except ValueError:
        return False


def _is_float(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def read_mmlu_csv(path: Path) -> list[list[str]]:
    """Rows of an MMLU CSV (no header), each cell rendered as ``"{}".format(cell)`` would render the
    value pandas.read_csv(header=None) infers: NA strings -> "nan", all-boolean columns as
    True/False, all-integer columns as ints, all-numeric columns as floats ("1.0"), else verbatim."""
    with open(path, encoding="utf-8", newline="") as fh:
        rows = [r for r in csv.reader(fh)]
    rows = [r for r in rows if r]  # pandas skips blank lines
    if not rows:
        raise UserError(f"{path}: empty MMLU file")
    width = len(rows[0])
    if width < 3 or any(len(r) != width for r in rows):
        raise UserError(f"{path}: expected rows of question, options..., answer with the same number of "
                        "columns")
    for j in range(width):
        col = [r[j] for r in rows]
        values = [v for v in col if v not in PANDAS_NA]
        has_na = len(values) < len(col)
        if values and not has_na and all(v in _BOOLS for v in values):
            rendered = [str(_BOOLS[v]) for v in col]
        elif values and all(_is_int(v) for v in values) and not has_na:
            rendered = [str(int(v)) for v in col]
        elif values and all(_is_float(v) for v in values):
            rendered = [str(float(v)) if v not in PANDAS_NA else "nan" for v in col]
        else:
            rendered = ["nan" if v in PANDAS_NA else v for v in col]
        for r, v in zip(rows, rendered):
            r[j] = v
    return rows


def mmlu_subjects(mmlu_dir: Path) -> list[str]:
    """Sorted subject names from ``test/*_test.csv`` (what both LESS and open-instruct list)."""
    test = mmlu_dir / "test"
    if not test.is_dir():
        raise UserError(f"{test}: not found (MMLU needs dev/ and test/ folders of <subject>_*.csv)")
    return sorted(f.split("_test.csv")[0] for f in (p.name for p in test.iterdir()) if "_test.csv" in f)


def mmlu_format_subject(subject: str) -> str:
    # " abstract algebra": a leading space, hence the double space after "about" in the header.
    return "".join(" " + part for part in subject.split("_"))


def mmlu_header(subject: str) -> str:
    return ("The following are multiple choice questions (with answers) about {}.\n\n"
            .format(mmlu_format_subject(subject)))


def mmlu_format_example(row: list[str], include_answer: bool = True) -> str:
    k = len(row) - 2
    text = row[0]
    for j in range(k):
        text += "\n{}. {}".format(MMLU_CHOICES[j], row[j + 1])
    text += "\nAnswer:"
    if include_answer:
        text += " {}\n\n".format(row[k + 1])
    return text


# ----------------------------------------------------------------------------------------- BBH

def bbh_split_prompt(task: str, text: str, where: str) -> tuple[str, list[tuple[str, str]]]:
    """LESS's split of a three-shot CoT prompt: blocks separated by blank lines, the last three are
    the demonstrations, the rest is the task description; each demonstration splits at ``"\\nA:"``."""
    blocks = text.split("\n\n")
    if len(blocks) < 4:
        raise UserError(f"{where}: task '{task}' does not hold a description and three examples "
                        "separated by blank lines")
    exes = []
    for ex in blocks[-3:]:
        parts = ex.split("\nA:")
        if len(parts) != 2:
            raise UserError(f"{where}: an example of task '{task}' must contain '\\nA:' exactly once")
        exes.append((parts[0], parts[1]))
    return "\n\n".join(blocks[:-3]), exes

