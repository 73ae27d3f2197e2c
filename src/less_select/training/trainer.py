"""The Hugging Face Trainer set-up shared by warmup and final training.

Owns the options both stages have in common (:class:`TrainOptions`, the paper's defaults), loading and
LoRA-wrapping the model, encoding the training data (examples with no completion token are dropped and
counted), the ``TrainingArguments`` (AdamW, linear schedule with warmup, effective batch), the loss and
the ``Trainer`` itself. Stages add their own callbacks and outputs on top.

The loss of an optimizer step (``loss_reduction``):

* ``example`` (default, what LESS optimized: per-device batch 1, gradient accumulation, each micro-batch
  loss the mean over its completion tokens):  L = (1/B) sum_b (1/T_b) sum_t CE(b, t), the mean over the
  B examples of the step of each example's mean token loss;
* ``token``: L = (1/sum_b T_b) sum_b sum_t CE(b, t), every completion token of the step weighted
  equally (what transformers 5's Trainer does by itself, passing ``num_items_in_batch``).
"""

from __future__ import annotations

import functools
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import torch

from ..configs import non_negative, option, positive, shared, unit_interval
from ..data import Example
from ..data.batching import collate, per_example_loss
from ..data.encode import Encoded, Template, encode_all, split_by_completion
from ..errors import UserError
from ..modeling import load_model, load_tokenizer, resolve_device, resolve_dtype
from ..progress import bar_enabled

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class TrainOptions:
    """Options shared by warmup and final training (defaults: LESS paper, Xia et al. 2024)."""

    model: str = option(help="base model: a Hugging Face hub id or a local model folder")
    output_dir: str = option(help="folder to write (written as <output_dir>.part, renamed when complete)")
    lenient: bool = shared("lenient")
    template: Template = shared("template")
    loss_reduction: Literal["example", "token"] = option(
        "example", help="loss of a step: example (mean over examples of each one's mean token loss, "
                        "as LESS trained) or token (mean over all completion tokens of the step)")
    max_seq_length: int = shared("max_seq_length")
    max_train_examples: int | None = option(None, help="train on at most N examples, the first N "
                                                        "of the training set (quick runs)", check=positive)
    dtype: str = shared("dtype")
    device: str = shared("device")
    epochs: int = option(4, help="number of training epochs", check=positive)
    learning_rate: float = option(2e-5, help="peak learning rate (linear decay after warmup)",
                                  check=positive)
    warmup_ratio: float = option(0.03, help="fraction of the optimizer steps spent in linear warmup",
                                 check=unit_interval)
    lr_scheduler: str = option("linear", help="HF scheduler name (linear, cosine, constant, ...)")
    adam_beta1: float = option(0.9, help="AdamW beta1", check=unit_interval)
    adam_beta2: float = option(0.999, help="AdamW beta2", check=unit_interval)
    adam_epsilon: float = option(1e-8, help="AdamW epsilon", check=positive)
    weight_decay: float = option(0.0, help="AdamW weight decay", check=non_negative)
    max_grad_norm: float = option(1.0, help="gradient clipping norm (0 disables)", check=non_negative)
    per_device_batch_size: int = option(1, help="examples per forward pass on each device",
                                        check=positive)
    effective_batch_size: int = option(128, help="examples per optimizer step over all devices; "
                                                 "sets gradient accumulation unless that is given",
                                       check=positive)
    gradient_accumulation_steps: int | None = option(
        None, help="micro-batches per optimizer step (default: derived from effective_batch_size)",
        check=positive)
    lora_r: int = option(128, help="LoRA rank", check=positive)
    lora_alpha: float = option(512, help="LoRA alpha", check=positive)
    lora_dropout: float = option(0.1, help="LoRA dropout", check=unit_interval)
    lora_target_modules: list[str] = option(help="modules that get LoRA adapters",
                                            factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    gradient_checkpointing: bool = option(False, help="recompute activations in the backward pass "
                                                      "(less memory, slower)")
    seed: int = shared("seed")  # the warmup subset, the LoRA init and the data order
    logging_steps: int = option(1, help="log loss and learning rate every N optimizer steps",
                                check=positive)
    report_to: str = option("none", help="HF Trainer reporting integration (none, tensorboard, wandb)")


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def accumulation_steps(opts: TrainOptions) -> int:
    """Micro-batches per optimizer step so that per_device x accumulation x devices ~= effective."""
    if opts.gradient_accumulation_steps is not None:
        if opts.gradient_accumulation_steps < 1:
            raise UserError("gradient_accumulation_steps must be at least 1")
        return opts.gradient_accumulation_steps
    if opts.per_device_batch_size < 1 or opts.effective_batch_size < 1:
        raise UserError("per_device_batch_size and effective_batch_size must be at least 1")
    per_step = opts.per_device_batch_size * world_size()
    steps = max(1, math.ceil(opts.effective_batch_size / per_step))
    if steps * per_step != opts.effective_batch_size:
        log.warning("effective batch %d is not a multiple of per_device_batch_size x devices (%d); "
                    "using %d", opts.effective_batch_size, per_step, steps * per_step)
    return steps


def encode_for_training(examples: Sequence[Example], tokenizer, opts: TrainOptions
                        ) -> tuple[list[Encoded], list[Example], int]:
    """Encode; drop (and count) examples with no completion token after truncation.

    Returns the training rows, the examples they came from, and how many were dropped.
    """
    encoded, _ = encode_all(examples, tokenizer, opts.max_seq_length, opts.template)
    keep, dropped_rows = split_by_completion(encoded)
    dropped = len(dropped_rows)
    if dropped:
        log.warning("dropped %d of %d training example(s) with no completion token after "
                    "truncation to %d tokens", dropped, len(encoded), opts.max_seq_length)
    if not keep:
        raise UserError(f"no training example has a completion token left after truncation to "
                        f"max_seq_length={opts.max_seq_length}; raise max_seq_length")
    return [encoded[i] for i in keep], [examples[i] for i in keep], dropped


def training_device(opts: TrainOptions) -> torch.device:
    """The device the HF Trainer will train on for ``opts.device``.

    The Trainer places the model itself: on the CPU (``use_cpu``) or on this process's GPU
    (``cuda:LOCAL_RANK`` under torchrun, ``cuda:0`` alone). So ``cuda:N`` must name that GPU; another
    one is chosen with ``CUDA_VISIBLE_DEVICES``.
    """
    device = resolve_device(opts.device)
    if device.type == "cuda":
        mine = int(os.environ.get("LOCAL_RANK", 0))
        if device.index != mine:
            raise UserError(f"--device {opts.device}: the Trainer trains on this process's GPU "
                            f"(cuda:{mine}); pick another GPU with CUDA_VISIBLE_DEVICES={device.index}")
    return device


def load_for_training(opts: TrainOptions, method: Literal["lora", "full"] = "lora"):
    """(model, tokenizer): the base model, LoRA-wrapped when ``method == 'lora'``.

    The seed is set first so the LoRA initialization is reproducible. The model is loaded on the
    CPU (the Trainer moves it to :func:`training_device`); ``dtype`` ``auto`` loads float32 weights,
    and bfloat16 mixed precision is switched on by :func:`training_arguments` when that device
    supports it.
    """
    from transformers import set_seed
    training_device(opts)  # refuse a missing GPU before loading anything
    set_seed(opts.seed)
    tokenizer = load_tokenizer(opts.model)
    model = load_model(opts.model, opts.dtype, device=torch.device("cpu"))
    if opts.gradient_checkpointing:
        enable = getattr(model, "activation_checkpointing_enable", None) \
            or model.gradient_checkpointing_enable  # transformers < 5 name
        enable()
        model.config.use_cache = False
        if method == "lora":
            model.enable_input_require_grads()  # frozen embeddings: make checkpointed blocks see grads
    if method == "lora":
        from peft import LoraConfig, TaskType, get_peft_model
        missing = [m for m in opts.lora_target_modules
                   if not any(n.split(".")[-1] == m for n, _ in model.named_modules())]
        if missing:
            raise UserError(f"lora_target_modules: {', '.join(missing)} not found in {opts.model}; "
                            "name modules of this architecture (e.g. q_proj,k_proj,v_proj,o_proj)")
        cfg = LoraConfig(task_type=TaskType.CAUSAL_LM, r=opts.lora_r, lora_alpha=opts.lora_alpha,
                         lora_dropout=opts.lora_dropout, target_modules=list(opts.lora_target_modules))
        model = get_peft_model(model, cfg)
    elif method != "full":
        raise UserError(f"method {method!r} is not one of lora, full")
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_all = sum(p.numel() for p in model.parameters())
    log.info("loaded %s (%s): %d of %d parameters trainable", opts.model, method, n_train, n_all)
    return model, tokenizer


def training_arguments(opts: TrainOptions, output_dir: str | Path, *, save_strategy: str = "no",
                       save_only_model: bool = True, max_steps: int | None = None):
    from transformers import TrainingArguments
    if not 0 <= opts.warmup_ratio < 1:
        raise UserError(f"warmup_ratio must be in [0, 1), got {opts.warmup_ratio}")
    device = training_device(opts)
    dtype = resolve_dtype(opts.dtype, device)
    return TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=opts.epochs,
        max_steps=max_steps if max_steps is not None else -1,
        learning_rate=opts.learning_rate,
        lr_scheduler_type=opts.lr_scheduler,
        warmup_steps=opts.warmup_ratio,  # transformers 5: a float below 1 is a ratio of the steps
        optim="adamw_torch",
        adam_beta1=opts.adam_beta1,
        adam_beta2=opts.adam_beta2,
        adam_epsilon=opts.adam_epsilon,
        weight_decay=opts.weight_decay,
        max_grad_norm=opts.max_grad_norm,
        per_device_train_batch_size=opts.per_device_batch_size,
        gradient_accumulation_steps=accumulation_steps(opts),
        bf16=dtype == torch.bfloat16,
        logging_strategy="steps",
        logging_steps=opts.logging_steps,
        save_strategy=save_strategy,
        save_only_model=save_only_model,
        report_to=opts.report_to,
        seed=opts.seed,
        remove_unused_columns=False,  # our rows are Encoded objects, not dict columns
        disable_tqdm=not bar_enabled(),  # the Trainer's bar follows --progress like every loop
        use_cpu=device.type == "cpu",
    )


def example_mean_loss(outputs, labels: torch.Tensor, num_items_in_batch=None) -> torch.Tensor:
    """Mean over the micro-batch's examples of each example's mean completion-token loss.

    The Trainer then divides by the accumulation steps, so a step's loss is the mean over all its
    examples of per-example means (``num_items_in_batch``, the step's token count, is ignored).
    """
    per_example, counts = per_example_loss(outputs["logits"], labels)
    return per_example[counts > 0].mean()


def make_trainer(model, tokenizer, dataset: list[Encoded], args, callbacks=(),
                 loss_reduction: str = "example"):
    """An HF ``Trainer`` over a list of :class:`Encoded` rows, padded by ``data.batching.collate``,
    with the step loss ``loss_reduction`` (see the module docstring)."""
    from transformers import Trainer
    if loss_reduction not in ("example", "token"):
        raise UserError(f"loss_reduction must be example or token, got {loss_reduction!r}")
    trainer = Trainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                      data_collator=functools.partial(collate, pad_token_id=tokenizer.pad_token_id),
                      callbacks=list(callbacks),
                      compute_loss_func=example_mean_loss if loss_reduction == "example" else None)
    if loss_reduction == "example":
        trainer.loss_is_scaled_for_ga = False  # a per-micro-batch mean: the Trainer divides by GA
        # With a compute_loss_func the Trainer assumes a loss divided by the step's token count summed
        # over ranks, and multiplies it by the world size to undo DDP's gradient averaging. Our
        # per-example mean is already a per-rank mean, so under DDP that made gradients (and the
        # logged loss) world-size times too large; without the token all-reduce nothing is rescaled.
        trainer.args.average_tokens_across_devices = False
    return trainer
