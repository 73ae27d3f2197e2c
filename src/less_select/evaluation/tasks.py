"""The evaluation task kinds: what a task name (``bbh``, ``loss:FILE``, ...) runs, and its file name.

Each kind is one small object (:class:`TaskKind`) that knows how to evaluate a loaded model on
that task from an :class:`~less_select.evaluation.run.EvalConfig`; :func:`task_kind` finds it by
name, so adding a kind is adding an entry, not a branch.

* ``bbh``, ``mmlu``, ``tydiqa``: the LESS benchmarks, run as LESS ran them (batch sizes, generation
  limits and prompt wrapping in :data:`DEFAULT_BATCH`, :data:`DEFAULT_NEW_TOKENS`, :data:`DEFAULT_CHAT`).
* ``loss:X``: the mean completion loss on a target set (X = bbh, mmlu, tydiqa or a data file).
* ``exact_match:FILE``: greedy answers compared with each record's gold ``answer``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from ..data.targets import task_name
from ..errors import UserError

if TYPE_CHECKING:
    from .run import EvalConfig

BENCHMARKS = ("bbh", "mmlu", "tydiqa")
LOSS, EXACT_MATCH = "loss:", "exact_match:"
DEFAULT_BATCH = {"mmlu": 4, "bbh": 10, "tydiqa": 20,  # LESS's evaluation scripts
                 "exact_match": 64}
DEFAULT_NEW_TOKENS = {"bbh": 512, "tydiqa": 50, "exact_match": 128}
DEFAULT_CHAT = {"mmlu": "none", "bbh": "none", "tydiqa": "tulu"}  # how LESS ran each benchmark

Runner = Callable[["EvalConfig", object, object, str], dict]


@dataclass(frozen=True)
class TaskKind:
    """One kind of evaluation task: ``run(config, model, tokenizer, task)`` returns its result."""

    name: str
    run: Runner


def _cap(n: int | None) -> int | None:
    return n if n is not None and n > 0 else None


def _only_subtasks(examples: list, config: EvalConfig, task: str) -> list:
    subs = config.subtasks or None
    if not subs:
        return examples
    examples = [e for e in examples if e.subtask in subs]
    if not examples:
        raise UserError(f"--subtasks: no example of {task} has subtask {', '.join(subs)}")
    return examples


def _loss(config: EvalConfig, model, tokenizer, task: str) -> dict:
    from ..data.targets import build_target_examples
    from .loss import target_loss
    target = task[len(LOSS):]
    if target in BENCHMARKS:  # LESS built its target sets in the Tulu chat format
        opts = {"chat_format": "tulu" if config.chat_format == "default" else config.chat_format}
    else:
        opts = {"lenient": config.lenient}
    examples = _only_subtasks(build_target_examples(target, config.data_dir, **opts), config, target)
    result = target_loss(model, tokenizer, examples, config.max_seq_length,
                         config.max_tokens_per_batch, config.template)
    return dict(result, task=task)


def _exact_match(config: EvalConfig, model, tokenizer, task: str) -> dict:
    from ..data.targets import build_generic_targets
    from .exact_match import evaluate_exact_match
    examples = build_generic_targets(task[len(EXACT_MATCH):], lenient=config.lenient)
    examples = _only_subtasks(examples, config, task)
    result = evaluate_exact_match(
        model, tokenizer, examples, batch_size=config.batch_size or DEFAULT_BATCH["exact_match"],
        max_new_tokens=config.max_new_tokens or DEFAULT_NEW_TOKENS["exact_match"],
        template=config.template)
    return dict(result, task=task)


def _generation_options(config: EvalConfig, task: str) -> dict:
    """The options every benchmark takes, with LESS's defaults for this benchmark."""
    return {"batch_size": config.batch_size or DEFAULT_BATCH[task],
            "chat_format": DEFAULT_CHAT[task] if config.chat_format == "default" else config.chat_format,
            "seed": config.sample_seed}


def _mmlu(config: EvalConfig, model, tokenizer, task: str) -> dict:
    from .mmlu import evaluate_mmlu
    return evaluate_mmlu(model, tokenizer, config.data_dir, n_shot=config.mmlu_n_shot,
                         max_examples_per_subject=_cap(config.mmlu_max_per_subject),
                         subjects=config.subtasks or None,
                         max_prompt_tokens=config.mmlu_max_prompt_tokens,
                         **_generation_options(config, task))


def _bbh(config: EvalConfig, model, tokenizer, task: str) -> dict:
    from .bbh import evaluate_bbh
    return evaluate_bbh(model, tokenizer, config.data_dir,
                        max_examples_per_task=_cap(config.bbh_max_per_task), tasks=config.subtasks or None,
                        max_new_tokens=config.max_new_tokens or DEFAULT_NEW_TOKENS[task],
                        **_generation_options(config, task))


def _tydiqa(config: EvalConfig, model, tokenizer, task: str) -> dict:
    from .tydiqa import evaluate_tydiqa
    return evaluate_tydiqa(model, tokenizer, config.data_dir, n_shot=config.tydiqa_n_shot,
                           max_examples_per_lang=_cap(config.tydiqa_max_per_language),
                           languages=config.subtasks or None,
                           max_context_length=config.tydiqa_max_context_length,
                           max_new_tokens=config.max_new_tokens or DEFAULT_NEW_TOKENS[task],
                           **_generation_options(config, task))


BENCHMARK_KINDS = {"mmlu": TaskKind("mmlu", _mmlu), "bbh": TaskKind("bbh", _bbh),
                   "tydiqa": TaskKind("tydiqa", _tydiqa)}
PREFIX_KINDS = {LOSS: TaskKind("loss", _loss), EXACT_MATCH: TaskKind("exact_match", _exact_match)}


def task_kind(task: str) -> TaskKind:
    """The kind of ``task``; an unknown task is a :class:`UserError` listing the valid ones."""
    if task in BENCHMARK_KINDS:
        return BENCHMARK_KINDS[task]
    for prefix, kind in PREFIX_KINDS.items():
        if task.startswith(prefix) and len(task) > len(prefix):
            return kind
    raise UserError(f"--task {task!r}: use bbh, mmlu, tydiqa, loss:bbh, loss:mmlu, loss:tydiqa, "
                    "loss:FILE or exact_match:FILE")


def check_task(task: str) -> None:
    """Refuse an unknown task before any model is loaded."""
    task_kind(task)


def task_slug(task: str) -> str:
    """The file name of a task's results: ``loss:data/t.jsonl`` -> ``loss_t`` (the target's
    :func:`~less_select.data.targets.task_name`, made file-name safe), ``bbh`` -> ``bbh``."""
    for prefix, kind in PREFIX_KINDS.items():
        if task.startswith(prefix):
            return f"{kind.name}_" + re.sub(r"[^A-Za-z0-9_.-]+", "_", task_name(task[len(prefix):]))
    return task
