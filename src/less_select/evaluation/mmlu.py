"""MMLU: k-shot accuracy from the next-token probability of the answer letters (open-instruct protocol).

For each test question the prompt is the subject header, the first ``n_shot`` dev rows with their answers,
then the question ending in ``"Answer:"`` (no chat format, as LESS ran it). The prediction is the letter
whose token -- the last token of ``tokenizer.encode(" A")`` etc. -- has the highest probability right after
the prompt. Shots are dropped one at a time while a prompt exceeds ``max_prompt_tokens``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..errors import UserError
from .common import next_token_probs, summarize
from ..data.prompts import (MMLU_CHOICES, append_after_chat, eval_dir, mmlu_format_example, mmlu_header,
                      mmlu_subjects, read_mmlu_csv, tulu_user_prompt)

log = logging.getLogger(__name__)


def answer_token_ids(tokenizer) -> list[int]:
    """open-instruct: the last token of ``" " + letter`` (the space is expected after "Answer:")."""
    ids = []
    for c in MMLU_CHOICES:
        toks = tokenizer.encode(" " + c, add_special_tokens=False)
        if len(toks) != 1:
            log.debug("' %s' tokenizes to %d tokens; scoring its last one as open-instruct does", c,
                      len(toks))
        ids.append(toks[-1])
    if len(set(ids)) != len(ids):
        raise UserError("the tokenizer maps two MMLU answer letters to the same token; cannot score")
    return ids


def build_prompt(subject: str, dev_rows: list[list[str]], test_row: list[str], k: int,
                 chat_format: str) -> str:
    prompt = mmlu_header(subject) + "".join(mmlu_format_example(r) for r in dev_rows[:k])
    prompt += mmlu_format_example(test_row, include_answer=False)
    if chat_format == "tulu":
        prompt = append_after_chat(tulu_user_prompt(prompt), "The answer is:")
    return prompt


def sample_rows(n: int, k: int | None, seed: int) -> list[int]:
    """Row indices kept by ``DataFrame.sample(k, random_state=seed)`` (all rows when k is None/>= n)."""
    if k is None or k >= n:
        return list(range(n))
    return [int(i) for i in np.random.RandomState(seed).choice(n, size=k, replace=False)]


def evaluate_mmlu(model, tokenizer, data_dir: str | Path | None, *, n_shot: int = 5,
                  max_examples_per_subject: int | None = None, subjects: list[str] | None = None,
                  batch_size: int = 4, max_prompt_tokens: int = 2048, chat_format: str = "none",
                  seed: int = 42) -> dict:
    """Accuracy per subject (0-100), macro average over subjects and micro average over questions
    (the micro average is the number LESS/open-instruct report as ``average_acc``)."""
    root = eval_dir(data_dir, "mmlu", "test")
    all_subjects = mmlu_subjects(root)
    if subjects:
        unknown = sorted(set(subjects) - set(all_subjects))
        if unknown:
            raise UserError(f"--subtasks: unknown MMLU subject(s) {', '.join(unknown)}")
        all_subjects = [s for s in all_subjects if s in subjects]
    prompts, meta = [], []
    for subject in all_subjects:
        dev_path = root / "dev" / f"{subject}_dev.csv"
        if not dev_path.is_file():
            raise UserError(f"{dev_path}: not found (MMLU needs a dev file for each test subject)")
        dev = read_mmlu_csv(dev_path)[:n_shot]
        test_path = root / "test" / f"{subject}_test.csv"
        test = read_mmlu_csv(test_path)
        for r in sample_rows(len(test), max_examples_per_subject, seed):
            k = min(n_shot, len(dev))
            prompt = build_prompt(subject, dev, test[r], k, chat_format)
            while k > 0 and len(tokenizer(prompt, add_special_tokens=False)["input_ids"]) > max_prompt_tokens:
                k -= 1
                prompt = build_prompt(subject, dev, test[r], k, chat_format)
            prompts.append(prompt)
            meta.append({"id": f"mmlu/{subject}/{r}", "subtask": subject, "target": test[r][-1],
                         "n_shot": k})
    probs = next_token_probs(model, tokenizer, prompts, answer_token_ids(tokenizer), batch_size,
                             name="mmlu")
    rows = []
    for m, p in zip(meta, probs):
        pred = MMLU_CHOICES[int(np.argmax(p))]
        rows.append({**m, "prediction": pred, "probs": p, "accuracy": float(pred == m["target"])})
    return summarize("mmlu", ["accuracy"], rows, all_subjects, headline=("accuracy", "micro"))
