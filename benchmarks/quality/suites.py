"""The benchmark's suites: real pools with planted examples of known target tasks.

Each suite takes K target tasks from a real source, plants ``n_plant`` examples of each among
``n_background`` unrelated real pool examples (cot, t0, alpaca_gpt4), and writes:

- ``pool.jsonl``: background + planted, shuffled (messages format; ``task`` names the source task,
  ``id`` starts with ``planted/`` for planted rows; no method sees the ids);
- ``targets_mismatch.jsonl``: the target examples as a user would have them, in a different answer
  format from the planted ones (the realistic case);
- ``targets_match.jsonl``: the control, targets in the planted examples' own format;
- ``heldout.jsonl``: held-out examples of each task in the targets' (user's) format, for the loss
  check; ``heldout_planted_format.jsonl``: the same questions in the planted format.

Suites (every one has the format mismatch the issue asks for):

- ``bbh``: 3 BBH multiple-choice tasks planted with the option's text as the answer and 3 Yes/No
  tasks planted with True/False; targets are BBH's own three chain-of-thought exemplars per task
  (letter / Yes-No answers after "So the answer is"), as in LESS's BBH validation set.
- ``cot``: 6 FLAN chain-of-thought sub-datasets planted answer-only; targets are CoT
  (rationale + "So the answer is ..."). The background keeps gsm8k's CoT examples, which share the
  targets' answer phrasing but not their skill.
- ``mmlu``: 6 MMLU subjects planted from the test split with the option's text as the answer;
  targets are LESS's MMLU validation rows (first 5 dev rows, letter answer after "The answer is:").
"""

from __future__ import annotations

import csv
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

BBH_MC_TASKS = ("date_understanding", "logical_deduction_three_objects", "movie_recommendation")
BBH_YN_TASKS = ("navigate", "web_of_lies", "sports_understanding")
COT_TASKS = ("ecqa", "creak", "qasc", "sensemaking", "strategyqa", "aqua")
MMLU_SUBJECTS = ("high_school_psychology", "nutrition", "marketing", "sociology",
                 "high_school_geography", "us_foreign_policy")
SUITES = ("bbh", "cot", "mmlu")


@dataclass
class SuiteSizes:
    n_background: int = 1800
    n_plant: int = 30
    n_heldout: int = 20
    n_match_targets: int = 3


@dataclass
class Suite:
    name: str
    tasks: list[str]
    pool: list[dict] = field(default_factory=list)
    targets_mismatch: list[dict] = field(default_factory=list)
    targets_match: list[dict] = field(default_factory=list)
    heldout: list[dict] = field(default_factory=list)
    heldout_planted_format: list[dict] = field(default_factory=list)

    def write(self, folder: Path) -> dict[str, Path]:
        folder.mkdir(parents=True, exist_ok=True)
        paths = {}
        for name in ("pool", "targets_mismatch", "targets_match", "heldout", "heldout_planted_format"):
            path = folder / f"{name}.jsonl"
            tmp = path.with_suffix(".tmp")
            with open(tmp, "w", encoding="utf-8") as fh:
                for rec in getattr(self, name):
                    fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            tmp.replace(path)
            paths[name] = path
        return paths


def _msg(id_: str, dataset: str, task: str, prompt: str, answer: str, **extra) -> dict:
    return {"dataset": dataset, "id": id_, "task": task,
            "messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}],
            **extra}


def _read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def background(data_dir: Path, n: int, rng: random.Random, exclude_tasks: set[str]) -> list[dict]:
    """``n`` real pool examples: 40% cot, 50% t0, 10% alpaca_gpt4 (tasks in ``exclude_tasks`` out)."""
    root = data_dir / "train" / "processed"
    parts = (("cot/cot_data.jsonl", 0.4), ("t0/t0_data.jsonl", 0.5),
             ("alpaca_gpt4/alpaca_gpt4_data.jsonl", 0.1))
    out: list[dict] = []
    for rel, share in parts:
        recs = [r for r in _read_jsonl(root / rel) if r.get("task") not in exclude_tasks]
        take = n - len(out) if rel.startswith("alpaca") else int(round(share * n))
        out.extend(rng.sample(recs, min(take, len(recs))))
    return out


def _split(items: list, rng: random.Random, sizes: SuiteSizes, n_targets: int) -> tuple[list, list, list]:
    """Disjoint (planted, held-out, match-targets) draws of one task's examples."""
    items = list(items)
    rng.shuffle(items)
    need = sizes.n_plant + sizes.n_heldout + n_targets
    if len(items) < need:
        raise SystemExit(f"a task has {len(items)} examples, {need} needed")
    return (items[:sizes.n_plant], items[sizes.n_plant:sizes.n_plant + sizes.n_heldout],
            items[sizes.n_plant + sizes.n_heldout:need])


# ----------------------------------------------------------------------------- BBH

_OPTION = re.compile(r"^\(([A-R])\) (.*)$")


def _bbh_planted_form(task: str, ex: dict) -> tuple[str, str]:
    """(prompt, answer) in the planted format: option text, or True/False for Yes/No tasks."""
    question, target = ex["input"], ex["target"]
    if task in BBH_YN_TASKS:
        q = question.replace("Options:\n- Yes\n- No", "Answer True or False.")
        if "Answer True or False." not in q:
            q = q + "\nAnswer True or False."
        return q, "True" if target.strip().lower() == "yes" else "False"
    options = dict(m.groups() for m in map(_OPTION.match, question.splitlines()) if m)
    letter = target.strip("()")
    return question, options[letter]


def _bbh_native_form(task: str, ex: dict) -> tuple[str, str]:
    """(prompt, answer) as BBH writes them: a letter, or Yes/No (sports_understanding: yes/no)."""
    return ex["input"], ex["target"]


def _bbh_cot_exemplars(three_shot: str) -> list[tuple[str, str]]:
    """The three (question, CoT answer) pairs of a BBH three-shot prompt."""
    blocks = three_shot.split("\n\nQ: ")[1:]
    out = []
    for block in blocks:
        q, a = block.split("\nA: ", 1)
        out.append((q.strip(), a.strip()))
    return out


def bbh_suite(data_dir: Path, sizes: SuiteSizes, seed: int = 0) -> Suite:
    rng = random.Random(seed)
    tasks = [*BBH_MC_TASKS, *BBH_YN_TASKS]
    suite = Suite("bbh", tasks)
    three_shot = json.loads((data_dir / "eval" / "bbh" / "bbh-three-shot.json").read_text())
    planted = []
    for task in tasks:
        examples = json.loads((data_dir / "eval" / "bbh" / "bbh" / f"{task}.json").read_text())["examples"]
        plant, held, match = _split(examples, rng, sizes, sizes.n_match_targets)
        for i, ex in enumerate(plant):
            planted.append(_msg(f"planted/{task}/{i}", "bbh", task, *_bbh_planted_form(task, ex)))
        for i, ex in enumerate(held):
            suite.heldout.append(_msg(f"heldout/{task}/{i}", "bbh", task, *_bbh_native_form(task, ex),
                                      subtask=task))
            suite.heldout_planted_format.append(_msg(f"heldout/{task}/{i}", "bbh", task,
                                                     *_bbh_planted_form(task, ex), subtask=task))
        for i, ex in enumerate(match):
            suite.targets_match.append(_msg(f"target/{task}/{i}", "bbh", task,
                                            *_bbh_planted_form(task, ex), subtask=task))
        for i, (q, a) in enumerate(_bbh_cot_exemplars(three_shot[task])):
            suite.targets_mismatch.append(_msg(f"target/{task}/cot{i}", "bbh", task, q, a, subtask=task))
    suite.pool = background(data_dir, sizes.n_background, rng, set()) + planted
    rng.shuffle(suite.pool)
    return suite


# ----------------------------------------------------------------------------- CoT

def _answer_only(rec: dict) -> str:
    text = rec["messages"][-1]["content"]
    tail = text.rsplit("So the answer is ", 1)[-1].strip()
    return tail[:-1] if tail.endswith(".") else tail


def cot_suite(data_dir: Path, sizes: SuiteSizes, seed: int = 0) -> Suite:
    rng = random.Random(seed)
    suite = Suite("cot", list(COT_TASKS))
    by_task: dict[str, list[dict]] = {}
    for r in _read_jsonl(data_dir / "train" / "processed" / "cot" / "cot_data.jsonl"):
        if r.get("task") in COT_TASKS and "So the answer is " in r["messages"][-1]["content"]:
            by_task.setdefault(r["task"], []).append(r)
    planted = []

    def prompt(r: dict) -> str:
        return r["messages"][0]["content"]

    for task in COT_TASKS:
        plant, held, match = _split(by_task[task], rng, sizes, 2 * sizes.n_match_targets)
        for i, r in enumerate(plant):
            planted.append(_msg(f"planted/{task}/{i}", "cot", task, prompt(r), _answer_only(r)))
        for i, r in enumerate(held):
            suite.heldout.append(_msg(f"heldout/{task}/{i}", "cot", task, prompt(r),
                                      r["messages"][-1]["content"], subtask=task))
            suite.heldout_planted_format.append(_msg(f"heldout/{task}/{i}", "cot", task, prompt(r),
                                                     _answer_only(r), subtask=task))
        n = sizes.n_match_targets
        for i, r in enumerate(match[:n]):
            suite.targets_mismatch.append(_msg(f"target/{task}/{i}", "cot", task, prompt(r),
                                               r["messages"][-1]["content"], subtask=task))
        for i, r in enumerate(match[n:]):
            suite.targets_match.append(_msg(f"target/{task}/m{i}", "cot", task, prompt(r),
                                            _answer_only(r), subtask=task))
    suite.pool = background(data_dir, sizes.n_background, rng, set(COT_TASKS)) + planted
    rng.shuffle(suite.pool)
    return suite


# ----------------------------------------------------------------------------- MMLU

def _mmlu_rows(path: Path) -> list[list[str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return [row for row in csv.reader(fh) if len(row) == 6]


def _subject_name(subject: str) -> str:
    return subject.replace("_", " ")


def _mmlu_question(row: list[str]) -> str:
    return row[0].strip() + "".join(f"\n{letter}. {row[i + 1].strip()}" for i, letter in enumerate("ABCD"))


def _mmlu_letter_form(subject: str, row: list[str]) -> tuple[str, str]:
    """LESS's MMLU validation format: header, question, options, 'Answer:'; the letter answer."""
    prompt = (f"The following are multiple choice questions (with answers) about "
              f"{_subject_name(subject)}.\n\n{_mmlu_question(row)}\nAnswer:")
    return prompt, row[5].strip()


def _mmlu_text_form(subject: str, row: list[str]) -> tuple[str, str]:
    return _mmlu_question(row), row["ABCD".index(row[5].strip()) + 1].strip()


def mmlu_suite(data_dir: Path, sizes: SuiteSizes, seed: int = 0) -> Suite:
    rng = random.Random(seed)
    suite = Suite("mmlu", list(MMLU_SUBJECTS))
    planted = []
    for subject in MMLU_SUBJECTS:
        test = _mmlu_rows(data_dir / "eval" / "mmlu" / "test" / f"{subject}_test.csv")
        plant, held, match = _split(test, rng, sizes, sizes.n_match_targets)
        for i, row in enumerate(plant):
            planted.append(_msg(f"planted/{subject}/{i}", "mmlu", subject, *_mmlu_text_form(subject, row)))
        for i, row in enumerate(held):
            suite.heldout.append(_msg(f"heldout/{subject}/{i}", "mmlu", subject,
                                      *_mmlu_letter_form(subject, row), subtask=subject))
            suite.heldout_planted_format.append(_msg(f"heldout/{subject}/{i}", "mmlu", subject,
                                                     *_mmlu_text_form(subject, row), subtask=subject))
        for i, row in enumerate(match):
            suite.targets_match.append(_msg(f"target/{subject}/m{i}", "mmlu", subject,
                                            *_mmlu_text_form(subject, row), subtask=subject))
        dev = _mmlu_rows(data_dir / "eval" / "mmlu" / "dev" / f"{subject}_dev.csv")[:5]
        for i, row in enumerate(dev):
            suite.targets_mismatch.append(_msg(f"target/{subject}/{i}", "mmlu", subject,
                                               *_mmlu_letter_form(subject, row), subtask=subject))
    suite.pool = background(data_dir, sizes.n_background, rng, set()) + planted
    rng.shuffle(suite.pool)
    return suite


BUILDERS = {"bbh": bbh_suite, "cot": cot_suite, "mmlu": mmlu_suite}


def build_suite(name: str, data_dir: Path, sizes: SuiteSizes, seed: int = 0) -> Suite:
    return BUILDERS[name](data_dir, sizes, seed)
