"""BBH: 3-shot chain-of-thought exact match (open-instruct protocol as LESS ran it).

Prompt: the task's CoT prompt (``cot-prompts/<task>.txt`` without its two header lines) stripped, a blank
line, ``"Q: " + input`` and ``"\\nA:"`` (no chat format by default, as LESS ran it). Greedy decoding up to
512 new tokens, stopped at the first blank line; the answer is what follows "So the answer is" up to the
next period, compared case- and punctuation-insensitively. At most ``max_examples_per_task`` (default 40)
examples per task, drawn with ``random.sample`` from one generator seeded 42, tasks in sorted order.
"""

from __future__ import annotations

import random
from pathlib import Path

from ..errors import UserError
from .common import generate_greedy, summarize
from .metrics import bbh_exact_match, extract_bbh_answer
from ..data.prompts import append_after_chat, eval_dir, read_json, tulu_user_prompt


def load_bbh(data_dir: str | Path | None, max_examples_per_task: int | None = 40,
             seed: int = 42) -> tuple[dict[str, list[dict]], dict[str, str]]:
    """Examples per task (sampled) and each task's CoT prompt."""
    root = eval_dir(data_dir, "bbh", "bbh")
    files = sorted((root / "bbh").glob("*.json"))
    if not files:
        raise UserError(f"{root / 'bbh'}: no <task>.json files")
    rng = random.Random(seed)
    tasks: dict[str, list[dict]] = {}
    for f in files:
        name = f.name.split(".")[0]
        data = read_json(f)
        examples = data.get("examples") if isinstance(data, dict) else None
        if not isinstance(examples, list):
            raise UserError(f"{f}: expected {{\"examples\": [{{\"input\", \"target\"}}, ...]}}")
        for i, ex in enumerate(examples):
            ex.setdefault("_index", i)
        if max_examples_per_task is not None and max_examples_per_task < len(examples):
            examples = rng.sample(examples, max_examples_per_task)
        tasks[name] = examples
    prompts: dict[str, str] = {}
    cot_dir = root / "cot-prompts"
    three_shot = root / "bbh-three-shot.json"
    fallback = read_json(three_shot) if three_shot.is_file() else {}
    for name in tasks:
        path = cot_dir / f"{name}.txt"
        if path.is_file():
            with open(path, encoding="utf-8") as fh:
                prompts[name] = "".join(fh.readlines()[2:])
        elif name in fallback:
            prompts[name] = fallback[name]
        else:
            raise UserError(f"{path}: not found (each BBH task needs its chain-of-thought prompt)")
    return tasks, prompts


def build_prompt(task_prompt: str, question: str, chat_format: str = "none") -> str:
    prompt = task_prompt.strip() + "\n\nQ: " + question
    if chat_format == "tulu":
        return append_after_chat(tulu_user_prompt(prompt), "A:")
    return prompt + "\nA:"


def evaluate_bbh(model, tokenizer, data_dir: str | Path | None, *, max_examples_per_task: int | None = 40,
                 tasks: list[str] | None = None, batch_size: int = 10, max_new_tokens: int = 512,
                 chat_format: str = "none", seed: int = 42) -> dict:
    """Exact match per task (0-100) and its macro average over tasks (LESS's ``average_exact_match``)."""
    all_tasks, task_prompts = load_bbh(data_dir, max_examples_per_task, seed)
    if tasks:
        unknown = sorted(set(tasks) - set(all_tasks))
        if unknown:
            raise UserError(f"--subtasks: unknown BBH task(s) {', '.join(unknown)}")
    names = [t for t in all_tasks if not tasks or t in tasks]
    prompts, meta = [], []
    for name in names:
        for ex in all_tasks[name]:
            prompts.append(build_prompt(task_prompts[name], ex["input"], chat_format))
            meta.append({"id": f"bbh/{name}/{ex['_index']}", "subtask": name, "target": ex["target"]})
    outputs = generate_greedy(model, tokenizer, prompts, batch_size=batch_size,
                              max_new_tokens=max_new_tokens, stop=["\n\n"], name="bbh")
    rows = []
    for m, out in zip(meta, outputs):
        pred = extract_bbh_answer(out)
        rows.append({**m, "output": out, "prediction": pred,
                     "exact_match": bbh_exact_match(pred, m["target"])})
    return summarize("bbh", ["exact_match"], rows, names, headline=("exact_match", "macro"))
