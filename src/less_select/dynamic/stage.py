"""The ``dynamic-train`` stage: train on a pool with dynamic LESS re-selection against a target task.

Layout of ``<output_dir>/`` (written as ``<output_dir>.part``, renamed when training finished)::

    adapter_model.safetensors, adapter_config.json   (LoRA; the full model for method: full)
    selections/step_<N>.json                          one per selection (step 0: the random warmup)
    training_summary.json                             steps, loss, re-selection seconds, log history
    stage.json                                        settings, version, git sha

A run that stops part-way leaves ``<output_dir>.part`` with HF checkpoints every ``save_steps``;
running the same command again resumes from the last one and reuses the selections already made.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

from ..configs import option, shared, validate
from ..data import load_examples
from ..data.encode import encode_all, split_by_completion
from ..errors import UserError
from ..stage_folder import stage_dir, stage_settings, stage_status, write_atomic
from ..training.trainer import TrainOptions, encode_for_training, load_for_training, make_trainer, \
    training_arguments
from .config import DynamicOptions
from .selector import DynamicLessSelection, global_batch_of

log = logging.getLogger(__name__)
SUMMARY_FILE = "training_summary.json"
SETTINGS_FILE = "dynamic_settings.json"


@dataclass(kw_only=True)
class DynamicTrainConfig(TrainOptions, DynamicOptions):
    """Train with dynamic LESS selection: warmup on random pool examples, then re-select by influence
    on the target task from the live model and optimizer every update_step steps."""

    pool_files: list[str] = option(help="pool data files (JSONL/JSON/Parquet, optionally .gz)")
    task: str = option(help="target task: bbh, mmlu, tydiqa (LESS validation sets) or a data file")
    data_dir: str = shared("data_dir")
    method: Literal["lora", "full"] = option("lora", help="lora (adapter) or full fine-tuning")
    save_steps: int = option(0, help="save an HF checkpoint (for resume) every N optimizer steps "
                                     "(0: at every re-selection step)")
    overwrite: bool = shared("overwrite")


def _dynamic_options(config: DynamicTrainConfig) -> DynamicOptions:
    return DynamicOptions(**{f.name: getattr(config, f.name) for f in fields(DynamicOptions)})


def _targets(config: DynamicTrainConfig, tokenizer):
    """Encoded target rows and their subtasks; rows with no completion token are dropped (counted)."""
    from ..data.targets import build_target_examples
    examples = build_target_examples(config.task, config.data_dir or None)
    encoded, _ = encode_all(examples, tokenizer, config.max_seq_length, config.template)
    keep, _ = split_by_completion(encoded)
    lost = sorted({str(e.subtask) for e in examples} - {str(examples[i].subtask) for i in keep})
    if len(keep) < len(examples):
        log.warning("dynamic-train: %d of %d target example(s) keep no completion token at "
                    "max_seq_length=%d and are left out; subtasks lost: %s", len(examples) - len(keep),
                    len(examples), config.max_seq_length, ", ".join(lost) or "none")
    if not keep:
        raise UserError(f"no target example of {config.task!r} keeps a completion token at "
                        f"max_seq_length={config.max_seq_length}; raise max_seq_length")
    return [encoded[i] for i in keep], [str(examples[i].subtask) for i in keep]


def _check_partial(part: Path, settings: dict) -> None:
    """A partial run is resumed only with the settings it was started with."""
    f = part / SETTINGS_FILE
    text = json.dumps(settings, sort_keys=True, default=str)
    if f.is_file() and f.read_text() != text:
        raise UserError(f"{part} holds a partial dynamic-train run with other settings; delete it or "
                        "pass --overwrite")
    write_atomic(f, text)


def _inputs(config: DynamicTrainConfig):
    """Pool rows, their examples and target rows, checked against the schedule before any output."""
    from ..modeling import load_tokenizer
    from ..training.trainer import accumulation_steps, world_size
    examples, _ = load_examples(config.pool_files, lenient=config.lenient)
    if config.max_train_examples is not None and len(examples) > config.max_train_examples:
        examples = examples[:config.max_train_examples]
    tokenizer = load_tokenizer(config.model)
    rows, kept, dropped = encode_for_training(examples, tokenizer, config)
    targets, labels = _targets(config, tokenizer)
    global_batch = config.per_device_batch_size * accumulation_steps(config) * world_size()
    _dynamic_options(config).check(len(rows), global_batch)
    return rows, kept, dropped, targets, labels


def run_dynamic_train(config: DynamicTrainConfig) -> Path:
    """Train with dynamic LESS selection and save the model to ``output_dir`` (see module docstring)."""
    from transformers.trainer_utils import get_last_checkpoint
    validate(config)
    if not config.pool_files:
        raise UserError("no pool files given (--pool-files)")
    out = Path(config.output_dir)
    part = out.with_name(out.name + ".part")
    settings = stage_settings(config, config.pool_files)
    if not config.overwrite and stage_status(out, settings) == "done":
        log.info("dynamic-train: %s is up to date with these settings; skipping", out)
        return out
    rows, kept, dropped, targets, labels = _inputs(config)
    if config.overwrite and part.exists() and os.environ.get("RANK", "0") == "0":
        shutil.rmtree(part)
    with stage_dir(out, "dynamic-train", settings, overwrite=config.overwrite, resume=True,
                   config=dataclasses.asdict(config)) as part:
        if part is None:
            return out
        _check_partial(part, settings)
        model, tokenizer = load_for_training(config, config.method)
        opts = _dynamic_options(config)
        args = training_arguments(config, part, save_strategy="steps", save_only_model=False,
                                  max_steps=opts.total_steps)
        args.save_steps = config.save_steps or opts.update_step or opts.total_steps
        selector = DynamicLessSelection(
            rows, targets, labels, opts, global_batch=global_batch_of(args),
            pad_token_id=tokenizer.pad_token_id, selections_dir=part / "selections",
            pool_sources=[Path(e.source).name for e in kept])
        last = get_last_checkpoint(str(part))
        log.info("dynamic-train: %s training on a pool of %d (%d dropped: no completion token), "
                 "%d target rows in %d subtask(s), %d steps of %d examples, re-selection at steps %s%s",
                 config.method, len(rows), dropped, len(targets), len(set(labels)), opts.total_steps,
                 selector.global_batch, opts.selection_steps(),
                 f"; resuming from {last}" if last else "")
        trainer = make_trainer(model, tokenizer, selector.train_dataset, args, [selector],
                               loss_reduction=config.loss_reduction)
        result = trainer.train(resume_from_checkpoint=last)
        trainer.save_model(str(part))
        if trainer.is_world_process_zero():
            for ck in part.glob("checkpoint-*"):  # only for resuming; the final model is saved above
                shutil.rmtree(ck)
            (part / SETTINGS_FILE).unlink(missing_ok=True)
            write_atomic(part / SUMMARY_FILE, json.dumps({
                "pool_examples": len(rows), "dropped_no_completion": dropped,
                "target_rows": len(targets), "steps": trainer.state.global_step,
                "global_batch": selector.global_batch, "train_loss": result.training_loss,
                "resumed_from": Path(last).name if last else None, **selector.summary(),
                "log_history": trainer.state.log_history}, indent=2))
    return out
