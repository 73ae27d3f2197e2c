"""The warmup stage (docs/method.md, "Warmup"): LoRA-train the base model on a seeded random fraction of the pool
and save, after every epoch, the adapter, the AdamW moments keyed by parameter name and the mean
learning rate actually used in that epoch.

Layout of ``<output_dir>/``::

    checkpoint-<step>/            one per epoch, <step> = optimizer steps so far
        adapter_model.safetensors, adapter_config.json     (PEFT save_pretrained)
        optimizer_moments.safetensors                      (<name>.exp_avg, <name>.exp_avg_sq)
        less_checkpoint.json                               (epoch, step, mean_lr, step_lrs, betas, ...)
        trainer_state.json, tokenizer files                (the HF Trainer's own save)
        optimizer.pt, scheduler.pt, ...                    (only with save_hf_optimizer)
    warmup_subset.jsonl           the pool examples drawn for warmup (id, source, line, trained)
    stage.json                    settings, version, git sha
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path

from transformers import TrainerCallback

from ..configs import fraction, option, shared, validate
from ..data import load_examples
from ..errors import UserError
from ..stage_folder import stage_dir, stage_settings, write_atomic
from .checkpoints import MOMENTS_FILE, unwrap_optimizer, list_checkpoints, moments_by_name, \
    save_moments, write_meta
from .trainer import TrainOptions, encode_for_training, load_for_training, make_trainer, training_arguments

log = logging.getLogger(__name__)
SUBSET_FILE = "warmup_subset.jsonl"


@dataclass(kw_only=True)
class WarmupConfig(TrainOptions):
    """Warmup LoRA training on a random fraction of the pool (LESS step 1)."""

    pool_files: list[str] = option(help="pool data files (JSONL/JSON/Parquet, optionally .gz)")
    percentage: float = option(0.05, help="fraction of the pool drawn (seeded) for warmup training",
                               check=fraction)
    save_hf_optimizer: bool = option(False, help="also keep the HF Trainer's optimizer.pt/scheduler.pt "
                                                 "in each checkpoint (large; not needed by LESS)")
    overwrite: bool = shared("overwrite")


def warmup_subset(n: int, percentage: float, seed: int) -> list[int]:
    """Indices (sorted) of floor(percentage * n) pool examples (at least one), drawn with ``seed``."""
    if not 0 < percentage <= 1:
        raise UserError(f"percentage must be in (0, 1], got {percentage}")
    k = max(1, int(n * percentage))
    return sorted(random.Random(seed).sample(range(n), k))


class LessCheckpointCallback(TrainerCallback):
    """Records the learning rate of every optimizer step and, whenever the Trainer saves a checkpoint,
    adds the name-keyed Adam moments and ``less_checkpoint.json`` to it."""

    def __init__(self, base_model: str):
        self.base_model = base_model
        self.epoch_lrs: list[float] = []

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.epoch_lrs = []

    def on_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        # Called after optimizer.step() and before lr_scheduler.step(): this is the lr just used.
        self.epoch_lrs.append(float(unwrap_optimizer(optimizer).param_groups[0]["lr"]))

    def on_save(self, args, state, control, model=None, optimizer=None, **kwargs):
        if not state.is_world_process_zero:
            return
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        exp_avg, exp_avg_sq = moments_by_name(model, optimizer)
        save_moments(folder / MOMENTS_FILE, exp_avg, exp_avg_sq)
        group = unwrap_optimizer(optimizer).param_groups[0]
        lrs = self.epoch_lrs
        write_meta(folder, {
            "epoch": round(state.epoch, 6), "step": state.global_step,
            "mean_lr": sum(lrs) / len(lrs) if lrs else None, "step_lrs": lrs,
            "betas": list(group["betas"]), "eps": group["eps"], "weight_decay": group["weight_decay"],
            "base_model": self.base_model})
        log.info("warmup: wrote %s (epoch %.2f, %d parameters' moments, mean lr %.3g)", folder,
                 state.epoch, len(exp_avg), sum(lrs) / len(lrs) if lrs else float("nan"))


def run_warmup(config: WarmupConfig) -> Path:
    """Train, write ``<output_dir>/checkpoint-*/`` (see the module docstring); skip if already done."""
    validate(config)
    out = Path(config.output_dir)
    settings = stage_settings(config, config.pool_files)
    with stage_dir(out, "warmup", settings, overwrite=config.overwrite,
                   config=dataclasses.asdict(config)) as part:
        if part is None:
            return out
        examples, _ = load_examples(config.pool_files, lenient=config.lenient)
        chosen = [examples[i] for i in warmup_subset(len(examples), config.percentage, config.seed)]
        log.info("warmup: drew %d of %d pool examples (percentage %g, seed %d)", len(chosen),
                 len(examples), config.percentage, config.seed)
        if config.max_train_examples is not None and len(chosen) > config.max_train_examples:
            chosen = chosen[:config.max_train_examples]
            log.info("warmup: kept the first %d (max_train_examples)", len(chosen))
        model, tokenizer = load_for_training(config, "lora")
        rows, kept, dropped = encode_for_training(chosen, tokenizer, config)
        trained = {id(e) for e in kept}
        write_atomic(part / SUBSET_FILE, "".join(
            json.dumps({"id": e.id, "source": e.source, "line": e.line, "trained": id(e) in trained}) + "\n"
            for e in chosen))
        args = training_arguments(config, part, save_strategy="epoch",
                                  save_only_model=not config.save_hf_optimizer)
        log.info("warmup: training on %d examples (%d dropped: no completion token), %d epoch(s), "
                 "batch %d x %d accumulation", len(rows), dropped, config.epochs,
                 args.per_device_train_batch_size, args.gradient_accumulation_steps)
        trainer = make_trainer(model, tokenizer, rows, args, [LessCheckpointCallback(config.model)],
                               loss_reduction=config.loss_reduction)
        trainer.train()
        ckpts = list_checkpoints(part)
        if len(ckpts) != config.epochs:
            log.warning("warmup: %d checkpoint(s) for %d epoch(s)", len(ckpts), config.epochs)
        log.info("warmup: checkpoints %s", ", ".join(p.name for p in ckpts))
    return out
