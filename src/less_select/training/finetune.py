"""Final training (docs/method.md, "Final training and evaluation"): train any model on a data file
(usually the LESS selection) with LoRA (the paper's settings) or full fine-tuning, through the same
Trainer set-up as warmup (``training/trainer.py``). The target model is independent of the warmup model
(LESS-T).

``<output_dir>/`` gets the trained model: a PEFT adapter (``adapter_model.safetensors`` +
``adapter_config.json``) for ``method: lora`` (a merged full model with ``merge_lora``), the full
model for ``method: full``; plus the tokenizer, ``training_summary.json`` and ``stage.json``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..configs import option, positive, shared, validate
from ..data import load_examples
from ..errors import UserError
from ..stage_folder import stage_dir, stage_settings, write_atomic
from .trainer import TrainOptions, encode_for_training, load_for_training, make_trainer, training_arguments

log = logging.getLogger(__name__)
SUMMARY_FILE = "training_summary.json"


@dataclass(kw_only=True)
class FinetuneConfig(TrainOptions):
    """Train the target model on selected data (LoRA by default, or full fine-tuning)."""

    train_files: list[str] = option(help="training data files, e.g. the selection's top_p0.05.jsonl")
    method: Literal["lora", "full"] = option("lora", help="lora (adapter) or full fine-tuning")
    max_steps: int | None = option(None, help="stop after this many optimizer steps (quick runs)",
                                   check=positive)
    merge_lora: bool = option(False, help="with method lora: save the merged full model instead of "
                                          "the adapter")
    overwrite: bool = shared("overwrite")


def run_finetune(config: FinetuneConfig) -> Path:
    """Train and save the final model to ``output_dir``; skip if already done with these settings."""
    validate(config)
    if config.method not in ("lora", "full"):
        raise UserError(f"method {config.method!r} is not one of lora, full")
    out = Path(config.output_dir)
    settings = stage_settings(config, config.train_files)
    with stage_dir(out, "finetune", settings, overwrite=config.overwrite,
                   config=dataclasses.asdict(config)) as part:
        if part is None:
            return out
        examples, _ = load_examples(config.train_files, lenient=config.lenient)
        if config.max_train_examples is not None and len(examples) > config.max_train_examples:
            examples = examples[:config.max_train_examples]
            log.info("finetune: kept the first %d examples (max_train_examples)", len(examples))
        model, tokenizer = load_for_training(config, config.method)
        rows, _, dropped = encode_for_training(examples, tokenizer, config)
        args = training_arguments(config, part, save_strategy="no",
                                  max_steps=config.max_steps)
        log.info("finetune: %s training of %s on %d examples (%d dropped: no completion token)",
                 config.method, config.model, len(rows), dropped)
        trainer = make_trainer(model, tokenizer, rows, args, loss_reduction=config.loss_reduction)
        result = trainer.train()
        if config.method == "lora" and config.merge_lora:
            trainer.model.merge_and_unload().save_pretrained(part)
            tokenizer.save_pretrained(part)
        else:
            trainer.save_model(str(part))  # adapter for PEFT models, full weights otherwise; + tokenizer
        write_atomic(part / SUMMARY_FILE, json.dumps({
            "examples": len(rows), "dropped_no_completion": dropped, "steps": trainer.state.global_step,
            "train_loss": result.training_loss, "log_history": trainer.state.log_history}, indent=2))
    return out
