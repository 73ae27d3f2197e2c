"""The evaluation stage: load a model (plus an optional adapter), run one benchmark or a target-set loss,
write ``<output_dir>/<task>.json`` (and the per-example predictions) atomically and return the result
(the CLI prints it with :func:`format_result`)."""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import torch

from ..configs import non_negative, option, positive, shared, to_dict, validate
from ..data.encode import Template
from ..stage_folder import write_atomic
from .common import format_table
from .tasks import check_task, task_kind, task_slug

log = logging.getLogger(__name__)


@dataclass
class EvalConfig:
    """Evaluate a model (optionally with a PEFT adapter): a LESS benchmark, a target-set loss, or
    exact match on a file of records with gold answers."""

    model: str = option(help="base model: hub id or local folder (with its tokenizer)")
    task: str = option(help="bbh | mmlu | tydiqa (benchmarks), or loss:bbh | loss:mmlu | loss:tydiqa | "
                            "loss:FILE (target-set loss on the LESS target set or on a data file), or "
                            "exact_match:FILE (greedy answers vs each record's gold 'answer')")
    adapter: Optional[str] = option(None, help="PEFT adapter folder to load on top of the model")
    tokenizer: Optional[str] = option(None, help="tokenizer folder or id (default: the model's)")
    data_dir: str = shared("data_dir")
    output_dir: str = option("eval_results", help="folder for <task>.json and <task>_predictions.jsonl")
    dtype: str = shared("dtype")
    device: str = shared("device")
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
                                                            "with sample_seed (default or 0: all)",
                                                 check=non_negative)
    mmlu_max_prompt_tokens: int = option(2048, help="drop MMLU shots while a prompt is longer",
                                         check=positive)
    bbh_max_per_task: Optional[int] = option(40, help="BBH examples per task, sampled with sample_seed "
                                                      "(LESS: 40; 0 = all)", check=non_negative)
    tydiqa_n_shot: int = option(1, help="TydiQA demonstrations per language (from the GoldP train file, "
                                        "else the one-shot file)", check=non_negative)
    tydiqa_max_per_language: Optional[int] = option(200, help="TydiQA dev questions per language, "
                                                              "sampled with sample_seed (LESS: 200; 0 = all)",
                                                    check=non_negative)
    tydiqa_max_context_length: int = option(512, help="TydiQA passages are cut to this many tokens",
                                            check=positive)
    max_seq_length: int = shared("max_seq_length")          # loss: tasks
    max_tokens_per_batch: int = shared("max_tokens_per_batch")  # loss: tasks
    template: Template = shared("template")                  # loss: and exact_match: tasks
    lenient: bool = shared("lenient")                        # loss:FILE and exact_match:FILE
    sample_seed: int = option(42, help="seed of the benchmark example sampling and of generation "
                                       "(42, open-instruct's, gives LESS's evaluation subsets)",
                              check=non_negative)


def evaluate_task(config: EvalConfig, model, tokenizer, task: str | None = None) -> dict:
    """Run one task on an already loaded model; returns the result dict (with ``predictions``)."""
    task = task or config.task
    return task_kind(task).run(config, model, tokenizer, task)


def write_result(config: EvalConfig, result: dict, task: str | None = None) -> Path:
    """``<output_dir>/<slug>.json`` (summary + config) and ``<slug>_predictions.jsonl``, atomically."""
    task = task or config.task
    out_dir = Path(config.output_dir)
    slug = task_slug(task)
    preds = result.pop("predictions", [])
    summary = dict(result, task=task, model=config.model, adapter=config.adapter,
                   config=dict(to_dict(config), task=task))
    path = out_dir / f"{slug}.json"
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(out_dir / f"{slug}_predictions.jsonl",
                 "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in preds))
    write_atomic(path, json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    result["predictions"] = preds
    return path


def load_for_eval(config: EvalConfig):
    from ..modeling import load_model_with_adapter, load_tokenizer, resolve_device
    tokenizer = load_tokenizer(config.tokenizer or config.model)
    model = load_model_with_adapter(config.model, config.adapter, config.dtype,
                                    resolve_device(config.device))
    model.eval()
    return model, tokenizer


def _seed(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def run_many(config: EvalConfig, tasks: list[str], model=None, tokenizer=None) -> dict[str, dict]:
    """Run several tasks with one model load (what a pipeline does after final training)."""
    validate(config)
    for t in tasks:
        check_task(t)
    if model is None or tokenizer is None:
        model, tokenizer = load_for_eval(config)
    results = {}
    for t in tasks:
        _seed(config.sample_seed)
        result = evaluate_task(config, model, tokenizer, t)
        write_result(config, result, t)
        results[t] = result
    return results


def run_eval(config: EvalConfig, model=None, tokenizer=None) -> dict:
    """Evaluate ``config.task``; writes ``<output_dir>/<task>.json`` and returns the result."""
    return run_many(config, [config.task], model, tokenizer)[config.task]


def format_result(config: EvalConfig, result: dict) -> str:
    """What ``less-select eval`` prints: the task and model, the result table, the file written."""
    path = Path(config.output_dir) / f"{task_slug(config.task)}.json"
    model = config.model + (f" + {config.adapter}" if config.adapter else "")
    return f"== {config.task} ({model})\n{format_table(result)}\nwrote {path}"
