"""The evaluation stage: load a model (plus an optional adapter), run one benchmark or a target-set loss,
write ``<output_dir>/<task>.json`` (and the per-example predictions) atomically, print a table."""

from __future__ import annotations

import json
import logging
import os
import random
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import torch

from ..configs import non_negative, option, positive, to_dict, validate
from ..errors import UserError
from .common import format_table

log = logging.getLogger(__name__)

BENCHMARKS = ("bbh", "mmlu", "tydiqa")
EXACT_MATCH = "exact_match:"
DEFAULT_BATCH = {"mmlu": 4, "bbh": 10, "tydiqa": 20,  # LESS's evaluation scripts
                 "exact_match": 64}
DEFAULT_NEW_TOKENS = {"bbh": 512, "tydiqa": 50, "exact_match": 128}
DEFAULT_CHAT = {"mmlu": "none", "bbh": "none", "tydiqa": "tulu"}  # how LESS ran each benchmark


@dataclass
class EvalConfig:
    model: str = option(help="base model: hub id or local folder (with its tokenizer)")
    task: str = option(help="bbh | mmlu | tydiqa (benchmarks), or loss:bbh | loss:mmlu | loss:tydiqa | "
                            "loss:FILE (target-set loss on the LESS target set or on a data file), or "
                            "exact_match:FILE (greedy answers vs each record's gold 'answer')")
    adapter: Optional[str] = option(None, help="PEFT adapter folder to load on top of the model")
    tokenizer: Optional[str] = option(None, help="tokenizer folder or id (default: the model's)")
    data_dir: Optional[str] = option(None, help="LESS data folder holding eval/bbh, eval/mmlu, "
                                                "eval/tydiqa (needed by every task but loss:FILE and "
                                                "exact_match:FILE)")
    output_dir: str = option("eval_results", help="folder for <task>.json and <task>_predictions.jsonl")
    dtype: str = option("auto", help="model dtype: auto (bf16 on a GPU that has it, else fp32), "
                                     "float32, bfloat16, float16")
    batch_size: Optional[int] = option(None, help="prompts per batch for benchmarks (default as LESS: "
                                                  "mmlu 4, bbh 10, tydiqa 20; exact_match: 64)",
                                       check=positive)
    max_new_tokens: Optional[int] = option(None, help="generation limit (default: bbh 512, tydiqa 50, "
                                                      "exact_match 128)", check=positive)
    chat_format: Literal["default", "tulu", "none"] = option(
        "default", help="prompt wrapping: default = as LESS ran each benchmark (tydiqa Tulu chat, "
                        "mmlu/bbh plain); for loss: targets, default = tulu as LESS built them")
    subtasks: Optional[list[str]] = option(None, help="only these BBH tasks / MMLU subjects / TydiQA "
                                                      "languages / target subtasks")
    mmlu_n_shot: int = option(5, help="MMLU in-context examples (first dev rows)", check=non_negative)
    mmlu_max_per_subject: Optional[int] = option(None, help="MMLU test questions per subject, sampled "
                                                            "with the seed (default or 0: all)",
                                                 check=non_negative)
    mmlu_max_prompt_tokens: int = option(2048, help="drop MMLU shots while a prompt is longer",
                                         check=positive)
    bbh_max_per_task: Optional[int] = option(40, help="BBH examples per task, sampled with the seed "
                                                      "(LESS: 40; 0 = all)", check=non_negative)
    tydiqa_n_shot: int = option(1, help="TydiQA demonstrations per language (from the GoldP train file, "
                                        "else the one-shot file)", check=non_negative)
    tydiqa_max_per_language: Optional[int] = option(200, help="TydiQA dev questions per language, "
                                                              "sampled with the seed (LESS: 200; 0 = all)",
                                                    check=non_negative)
    tydiqa_max_context_length: int = option(512, help="TydiQA passages are cut to this many tokens",
                                            check=positive)
    max_seq_length: int = option(2048, help="loss: truncation length of target examples",
                                 check=positive)
    max_tokens_per_batch: int = option(16384, help="loss: padded tokens per batch", check=positive)
    template: Literal["auto", "tulu", "chat_template"] = option(
        "auto", help="loss: and exact_match: template for conversation-format files")
    lenient: bool = option(False, help="loss:FILE, exact_match:FILE: skip malformed records instead "
                                       "of failing")
    seed: int = option(42, help="seed of the example sampling (open-instruct uses 42)",
                       check=non_negative)


def _cap(n: int | None) -> int | None:
    return n if n is not None and n > 0 else None


def task_slug(task: str) -> str:
    """File-name-safe task name: ``loss:data/t.jsonl`` -> ``loss_t``."""
    if task.startswith("loss:"):
        target = task[5:]
        name = target if target in BENCHMARKS else Path(target).name.split(".")[0]
        return "loss_" + re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
    if task.startswith(EXACT_MATCH):
        return "exact_match_" + re.sub(r"[^A-Za-z0-9_.-]+", "_",
                                       Path(task[len(EXACT_MATCH):]).name.split(".")[0])
    return task


def _check_task(task: str) -> None:
    if task in BENCHMARKS or (task.startswith("loss:") and len(task) > 5) or \
            (task.startswith(EXACT_MATCH) and len(task) > len(EXACT_MATCH)):
        return
    raise UserError(f"--task {task!r}: use bbh, mmlu, tydiqa, loss:bbh, loss:mmlu, loss:tydiqa, "
                    "loss:FILE or exact_match:FILE")


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def evaluate_task(config: EvalConfig, model, tokenizer, task: str | None = None) -> dict:
    """Run one task on an already loaded model; returns the result dict (with ``predictions``)."""
    task = task or config.task
    _check_task(task)
    chat = config.chat_format
    subs = config.subtasks or None
    if task.startswith("loss:"):
        from .loss import target_loss
        from ..data.targets import build_target_examples
        target = task[5:]
        opts: dict = {}
        if target in BENCHMARKS:
            opts["chat_format"] = "tulu" if chat == "default" else chat
        else:
            opts["lenient"] = config.lenient
        examples = build_target_examples(target, config.data_dir, **opts)
        if subs:
            examples = [e for e in examples if e.subtask in subs]
            if not examples:
                raise UserError(f"--subtasks: no example of {target} has subtask {', '.join(subs)}")
        result = target_loss(model, tokenizer, examples, config.max_seq_length,
                             config.max_tokens_per_batch, config.template)
        result["task"] = task
        return result
    if task.startswith(EXACT_MATCH):
        from .exact_match import evaluate_exact_match
        from ..data.targets import build_generic_targets
        examples = build_generic_targets(task[len(EXACT_MATCH):], lenient=config.lenient)
        if subs:
            examples = [e for e in examples if e.subtask in subs]
            if not examples:
                raise UserError(f"--subtasks: no example of {task} has subtask {', '.join(subs)}")
        result = evaluate_exact_match(model, tokenizer, examples,
                                      batch_size=config.batch_size or DEFAULT_BATCH["exact_match"],
                                      max_new_tokens=config.max_new_tokens
                                      or DEFAULT_NEW_TOKENS["exact_match"],
                                      template=config.template)
        result["task"] = task
        return result
    batch = config.batch_size or DEFAULT_BATCH[task]
    chat = DEFAULT_CHAT[task] if chat == "default" else chat
    new_tokens = config.max_new_tokens or DEFAULT_NEW_TOKENS.get(task, 0)
    if task == "mmlu":
        from .mmlu import evaluate_mmlu
        return evaluate_mmlu(model, tokenizer, config.data_dir, n_shot=config.mmlu_n_shot,
                             max_examples_per_subject=_cap(config.mmlu_max_per_subject), subjects=subs,
                             batch_size=batch, max_prompt_tokens=config.mmlu_max_prompt_tokens,
                             chat_format=chat, seed=config.seed)
    if task == "bbh":
        from .bbh import evaluate_bbh
        return evaluate_bbh(model, tokenizer, config.data_dir,
                            max_examples_per_task=_cap(config.bbh_max_per_task), tasks=subs,
                            batch_size=batch, max_new_tokens=new_tokens, chat_format=chat,
                            seed=config.seed)
    from .tydiqa import evaluate_tydiqa
    return evaluate_tydiqa(model, tokenizer, config.data_dir, n_shot=config.tydiqa_n_shot,
                           max_examples_per_lang=_cap(config.tydiqa_max_per_language), languages=subs,
                           max_context_length=config.tydiqa_max_context_length, batch_size=batch,
                           max_new_tokens=new_tokens, chat_format=chat, seed=config.seed)


def write_result(config: EvalConfig, result: dict, task: str | None = None) -> Path:
    """``<output_dir>/<slug>.json`` (summary + config) and ``<slug>_predictions.jsonl``, atomically."""
    task = task or config.task
    out_dir = Path(config.output_dir)
    slug = task_slug(task)
    preds = result.pop("predictions", [])
    summary = dict(result, task=task, model=config.model, adapter=config.adapter,
                   config=dict(to_dict(config), task=task))
    path = out_dir / f"{slug}.json"
    atomic_write_text(out_dir / f"{slug}_predictions.jsonl",
                      "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in preds))
    atomic_write_text(path, json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    result["predictions"] = preds
    return path


def load_for_eval(config: EvalConfig):
    from ..modeling import load_model_with_adapter, load_tokenizer
    tokenizer = load_tokenizer(config.tokenizer or config.model)
    model = load_model_with_adapter(config.model, config.adapter, config.dtype)
    model.eval()
    return model, tokenizer


def _seed(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def run_many(config: EvalConfig, tasks: list[str], model=None, tokenizer=None,
             quiet: bool = False) -> dict[str, dict]:
    """Run several tasks with one model load (what a pipeline does after final training)."""
    validate(config)
    for t in tasks:
        _check_task(t)
    if model is None or tokenizer is None:
        model, tokenizer = load_for_eval(config)
    results = {}
    for t in tasks:
        _seed(config.seed)
        result = evaluate_task(config, model, tokenizer, t)
        path = write_result(config, result, t)
        if not quiet:
            print(f"== {t} ({config.model}{' + ' + config.adapter if config.adapter else ''})")
            print(format_table(result))
            print(f"wrote {path}")
        results[t] = result
    return results


def run_eval(config: EvalConfig, model=None, tokenizer=None, quiet: bool = False) -> dict:
    """Evaluate ``config.task``; writes ``<output_dir>/<task>.json`` and prints a table."""
    return run_many(config, [config.task], model, tokenizer, quiet)[config.task]
