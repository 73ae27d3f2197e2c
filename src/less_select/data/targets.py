"""Target (validation) sets: the LESS builders for BBH, MMLU and TydiQA, and generic target files.

The built-in builders rebuild, string for string, the validation sets of LESS's
``get_validation_dataset.py`` from the LESS data layout:

* ``bbh``: ``eval/bbh/bbh-three-shot.json``, 27 tasks x 3 examples; each example is one of the three
  chain-of-thought demonstrations, with the other two as in-context examples (leave-one-out 2-shot).
* ``mmlu``: ``eval/mmlu/dev/<subject>_dev.csv``, 57 subjects (listed from ``test/``) x the first 5 rows,
  zero-shot.
* ``tydiqa``: ``eval/tydiqa/tydiqa-one-shot.json``, 9 languages x 1 example.

Each is an :class:`Example` with raw ``prompt``/``completion`` and ``append_eos=False``, which
``data/encode.py`` encodes as LESS does (prompt + completion, BOS, loss on the completion only).
"""

from __future__ import annotations

from pathlib import Path

from .example import Example
from .formats import load_examples
from ..errors import UserError
from .prompts import (TYDIQA_TEMPLATE_ZH, TYDIQA_TEMPLATES, bbh_split_prompt, eval_dir, mmlu_format_example,
                      mmlu_header, mmlu_subjects, read_json, read_mmlu_csv)

BUILTIN_TARGETS = ("bbh", "mmlu", "tydiqa")
CHAT_FORMATS = ("tulu", "none")
DATA_SUFFIXES = (".gz", ".jsonl", ".json", ".parquet")


def task_name(task: str) -> str:
    """The name of a target task, used for its folders, result files and default subtask: a built-in
    task's name, or a file's name without its data suffixes and leading dots (``dir/.hidden.jsonl``
    -> ``hidden``, ``a.v1.jsonl`` -> ``a.v1``)."""
    if "/" not in task and "." not in task:
        return task
    name = Path(task).name
    for suffix in DATA_SUFFIXES:
        name = name.removesuffix(suffix)
    name = name.lstrip(".")
    if not name or name in (".", ".."):
        raise UserError(f"target task {task!r} does not name a data file (or bbh, mmlu, tydiqa)")
    return name


def _check_chat_format(chat_format: str) -> None:
    if chat_format not in CHAT_FORMATS:
        raise UserError(f"chat_format {chat_format!r} is not one of {', '.join(CHAT_FORMATS)}")


def _raw(id_: str, subtask: str, prompt: str, completion: str, source: Path, line: int,
         fmt: str) -> Example:
    return Example(id=id_, messages=[{"role": "user", "content": prompt},
                                     {"role": "assistant", "content": completion}],
                   source=str(source), line=line, format=fmt, subtask=subtask, prompt=prompt,
                   completion=completion, append_eos=False)


def build_bbh_targets(data_dir: str | Path | None, chat_format: str = "tulu",
                      tasks: list[str] | None = None) -> list[Example]:
    """27 tasks x 3 leave-one-out 2-shot CoT examples (LESS ``get_bbh_dataset``)."""
    _check_chat_format(chat_format)
    path = eval_dir(data_dir, "bbh", "bbh-three-shot.json") / "bbh-three-shot.json"
    prompts = read_json(path)
    if not isinstance(prompts, dict):
        raise UserError(f"{path}: expected an object {{task: prompt text}}")
    out: list[Example] = []
    for task, text in prompts.items():  # file order, as LESS iterates the dict
        if tasks and task not in tasks:
            continue
        description, exes = bbh_split_prompt(task, text, str(path))
        for i, (question, answer) in enumerate(exes):
            icl = "".join(q + "\nA:" + a + "\n\n" for j, (q, a) in enumerate(exes) if j != i)
            if chat_format == "tulu":
                prompt = ("<|user|>\n" + description.strip() + "\n\n" + icl + question
                          + "\n<|assistant|>\nA:")
            else:  # LESS's non-chat branch (no in-context examples there)
                prompt = description.strip() + "\n\n" + question + "\nA:"
            out.append(_raw(f"bbh/{task}/{i}", task, prompt, answer, path, i + 1, "bbh"))
    return out


def build_mmlu_targets(data_dir: str | Path | None, chat_format: str = "tulu", k: int = 5,
                       subjects: list[str] | None = None) -> list[Example]:
    """57 subjects x the first ``k`` dev rows, zero-shot (LESS ``get_mmlu_dataset``)."""
    _check_chat_format(chat_format)
    root = eval_dir(data_dir, "mmlu", "dev")
    out: list[Example] = []
    for subject in mmlu_subjects(root):
        if subjects and subject not in subjects:
            continue
        path = root / "dev" / f"{subject}_dev.csv"
        if not path.is_file():
            raise UserError(f"{path}: not found (every MMLU subject in test/ needs a dev file)")
        rows = read_mmlu_csv(path)[:k]
        for i, row in enumerate(rows):
            if len(row) > 6:
                raise UserError(f"{path}:{i + 1}: more than four answer options")
            prompt = mmlu_header(subject) + mmlu_format_example(row, include_answer=False)
            answer = " " + row[-1]
            if chat_format == "tulu":
                prompt = "<|user|>\n" + prompt + "\n<|assistant|>\nThe answer is:"
            out.append(_raw(f"mmlu/{subject}/{i}", subject, prompt, answer, path, i + 1, "mmlu"))
    return out


def build_tydiqa_targets(data_dir: str | Path | None, chat_format: str = "tulu",
                         zh: bool = False, languages: list[str] | None = None) -> list[Example]:
    """9 languages x 1 example from the one-shot file (LESS ``get_tydiqa_dataset``)."""
    _check_chat_format(chat_format)
    name = "tydiqa-one-shot-zh.json" if zh else "tydiqa-one-shot.json"
    path = eval_dir(data_dir, "tydiqa", name) / name
    data = read_json(path)
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected an object {{language: [examples]}}")
    out: list[Example] = []
    for pos, (lang, items) in enumerate(data.items(), 1):
        if languages and lang not in languages:
            continue
        if lang not in TYDIQA_TEMPLATES:
            raise UserError(f"{path}: language {lang!r} has no TydiQA template "
                            f"(known: {', '.join(TYDIQA_TEMPLATES)})")
        if not items:
            raise UserError(f"{path}: language {lang!r} has no example")
        ex = items[0]
        instruction, p_t, q_t, a_t = TYDIQA_TEMPLATE_ZH if zh else TYDIQA_TEMPLATES[lang]
        # No separator between the instruction and the passage label: LESS concatenates them directly.
        prompt = (instruction + p_t + " " + format(ex["context"]) + "\n" + q_t + " "
                  + format(ex["question"]) + "\n")
        answer = " " + format(ex["answers"][0]["text"])
        if chat_format == "tulu":
            # The prompt already ends in "\n", so the assistant header follows without a blank line.
            prompt = "<|user|>\n" + prompt + "<|assistant|>\n" + a_t
        else:
            prompt = prompt + a_t
        out.append(_raw(f"tydiqa/{lang}/{ex.get('id', pos)}", lang, prompt, answer, path, pos,
                        "tydiqa"))
    return out


def build_generic_targets(path: str | Path, lenient: bool = False,
                          subtask: str | None = None) -> list[Example]:
    """Any supported data file; rows may carry ``subtask`` (default: the file's stem)."""
    from .hf_datasets import is_dataset_source
    p = Path(path)
    if not p.is_file() and not is_dataset_source(path):  # a file, a datasets folder or an hf: id
        raise UserError(f"{p}: target file not found (give bbh, mmlu, tydiqa or a data file)")
    examples, _ = load_examples(str(path), lenient=lenient)
    default = subtask or task_name(str(p))
    for ex in examples:
        if ex.subtask is None:
            ex.subtask = default
    return examples


def build_target_examples(task: str, data_dir: str | Path | None = None, **opts) -> list[Example]:
    """Target examples for ``task``: ``bbh``, ``mmlu``, ``tydiqa`` (LESS-exact) or a data-file path.

    Options: ``chat_format`` ("tulu" (default, what LESS used) or "none") for the built-ins;
    ``tasks``/``subjects``/``languages`` to keep a subset; ``zh`` (TydiQA Chinese instructions);
    ``lenient`` and ``subtask`` (default subtask name) for a generic file.
    """
    if task == "bbh":
        return build_bbh_targets(data_dir, **opts)
    if task == "mmlu":
        return build_mmlu_targets(data_dir, **opts)
    if task == "tydiqa":
        return build_tydiqa_targets(data_dir, **opts)
    return build_generic_targets(task, **opts)
