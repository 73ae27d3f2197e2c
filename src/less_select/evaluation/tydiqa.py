"""TydiQA GoldP: 1-shot F1 and exact match with SQuAD normalisation (open-instruct protocol as LESS ran it).

Up to ``max_examples_per_lang`` (default 200) dev questions per language, drawn with ``random.sample`` from
one generator seeded 42, languages in sorted order; ``n_shot`` demonstrations per language sampled from
``tydiqa-goldp-v1.1-train.json`` with the same generator, or, when that file is absent, taken from
``tydiqa-one-shot.json``. Contexts are cut to ``max_context_length`` tokens. Prompt: instruction, blank
line, demonstrations, passage/question, Tulu chat wrapping, then the answer label; greedy decoding of at
most 50 tokens, stopped at the first newline.
"""

from __future__ import annotations

import random
from pathlib import Path

from ..errors import UserError
from .common import generate_greedy, summarize
from .metrics import best_over, squad_exact, squad_f1
from ..data.prompts import TYDIQA_TEMPLATES, append_after_chat, eval_dir, read_json, tulu_user_prompt

DEV_FILE = "tydiqa-goldp-v1.1-dev.json"
TRAIN_FILE = "tydiqa-goldp-v1.1-train.json"
ONE_SHOT_FILE = "tydiqa-one-shot.json"


def read_squad(path: Path) -> list[dict]:
    data = read_json(path)
    out = []
    try:
        for article in data["data"]:
            for paragraph in article["paragraphs"]:
                for qa in paragraph["qas"]:
                    out.append({"id": qa["id"], "lang": qa["id"].split("-")[0],
                                "context": paragraph["context"], "question": qa["question"],
                                "answers": qa["answers"]})
    except (KeyError, TypeError):
        raise UserError(f"{path}: expected SQuAD-1.1 JSON ({{\"data\": [{{\"paragraphs\": [{{\"context\", "
                        "\"qas\"}}]}}]}})") from None
    return out


def truncate_context(tokenizer, context: str, max_tokens: int | None) -> str:
    if not max_tokens:
        return context
    ids = tokenizer.encode(context, add_special_tokens=False)
    if len(ids) <= max_tokens:
        return context
    return tokenizer.decode(ids[:max_tokens], skip_special_tokens=True)


def build_prompt(example: dict, demos: list[dict], chat_format: str = "tulu") -> str:
    instruction, p_t, q_t, a_t = TYDIQA_TEMPLATES[example["lang"]]
    prompt = instruction + "\n\n"
    if demos:
        prompt += "\n\n".join(p_t + " " + d["context"] + "\n" + q_t + " " + d["question"] + "\n" + a_t
                              + " " + d["answers"][0]["text"] for d in demos) + "\n\n"
    prompt += p_t + " " + format(example["context"]) + "\n" + q_t + " " + format(example["question"]) + "\n"
    if chat_format == "tulu":
        return append_after_chat(tulu_user_prompt(prompt), a_t)
    return prompt + a_t


def load_tydiqa(data_dir: str | Path | None, n_shot: int = 1, max_examples_per_lang: int | None = 200,
                seed: int = 42) -> tuple[list[dict], dict[str, list[dict]], str]:
    """Test examples, demonstrations per language, and where the demonstrations came from."""
    root = eval_dir(data_dir, "tydiqa", DEV_FILE)
    test = read_squad(root / DEV_FILE)
    langs = sorted({e["lang"] for e in test})
    unknown = [lang for lang in langs if lang not in TYDIQA_TEMPLATES]
    if unknown:
        raise UserError(f"{root / DEV_FILE}: no prompt template for language(s) {', '.join(unknown)}")
    rng = random.Random(seed)
    sampled = []
    for lang in langs:
        rows = [e for e in test if e["lang"] == lang]
        if max_examples_per_lang is not None and len(rows) > max_examples_per_lang:
            rows = rng.sample(rows, max_examples_per_lang)
        sampled += rows
    demos: dict[str, list[dict]] = {lang: [] for lang in langs}
    source = "none"
    if n_shot > 0:
        if (root / TRAIN_FILE).is_file():
            source = str(root / TRAIN_FILE)
            train = read_squad(root / TRAIN_FILE)
            for lang in langs:
                pool = [e for e in train if e["lang"] == lang]
                if len(pool) < n_shot:
                    raise UserError(f"{root / TRAIN_FILE}: only {len(pool)} {lang} example(s) for "
                                    f"{n_shot}-shot prompts")
                demos[lang] = rng.sample(pool, n_shot)
        elif (root / ONE_SHOT_FILE).is_file():
            source = str(root / ONE_SHOT_FILE)
            one = read_json(root / ONE_SHOT_FILE)
            for lang in langs:
                if len(one.get(lang, [])) < n_shot:
                    raise UserError(f"{root / ONE_SHOT_FILE}: fewer than {n_shot} {lang} example(s); "
                                    f"use --tydiqa-n-shot 1 or add {TRAIN_FILE}")
                demos[lang] = [dict(d) for d in one[lang][:n_shot]]
        else:
            raise UserError(f"{root / TRAIN_FILE}: not found (nor {ONE_SHOT_FILE}); "
                            "few-shot TydiQA needs one of them, or use --tydiqa-n-shot 0")
    return sampled, demos, source


def evaluate_tydiqa(model, tokenizer, data_dir: str | Path | None, *, n_shot: int = 1,
                    max_examples_per_lang: int | None = 200, languages: list[str] | None = None,
                    max_context_length: int | None = 512, batch_size: int = 20,
                    max_new_tokens: int = 50, chat_format: str = "tulu", seed: int = 42) -> dict:
    """F1 and exact match per language (0-100) and their macro averages (LESS reports average F1)."""
    test, demos, source = load_tydiqa(data_dir, n_shot, max_examples_per_lang, seed)
    all_langs = sorted(demos)
    if languages:
        unknown = sorted(set(languages) - set(all_langs))
        if unknown:
            raise UserError(f"--subtasks: unknown TydiQA language(s) {', '.join(unknown)}")
        test = [e for e in test if e["lang"] in languages]
    names = [lang for lang in all_langs if not languages or lang in languages]
    for lang in names:
        for d in demos[lang]:
            d["context"] = truncate_context(tokenizer, d["context"], max_context_length)
    prompts = []
    for e in test:
        e = dict(e, context=truncate_context(tokenizer, e["context"], max_context_length))
        prompts.append(build_prompt(e, demos[e["lang"]], chat_format))
    outputs = generate_greedy(model, tokenizer, prompts, batch_size=batch_size,
                              max_new_tokens=max_new_tokens, stop=["\n"], name="tydiqa")
    rows = []
    for e, out in zip(test, outputs):
        pred = out.strip()
        golds = [a["text"] for a in e["answers"]]
        rows.append({"id": e["id"], "subtask": e["lang"], "prediction": pred, "answers": golds,
                     "f1": best_over(squad_f1, pred, golds),
                     "exact_match": best_over(squad_exact, pred, golds)})
    result = summarize("tydiqa", ["f1", "exact_match"], rows, names, headline=("f1", "macro"))
    result["demonstrations_from"] = source
    return result
