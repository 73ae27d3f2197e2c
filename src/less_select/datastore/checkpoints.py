"""The warmup checkpoints a store is built from: finding them, their learning rates and weights
(docs/method.md, "Influence with checkpoint weights"), and loading each one's LoRA adapter onto the base model."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import UserError
from ..gradients.features import gradient_feature
from ..modeling import adapter_fit_errors
from ..training.checkpoints import META_FILE, Checkpoint, _lr_from_trainer_state, _trainer_state, \
    checkpoint_weights, list_checkpoints, load_checkpoint


def resolve_checkpoints(paths: list[str]) -> list[Path]:
    if not paths:
        raise UserError("no checkpoints given (--checkpoints)")
    if len(paths) == 1 and not (Path(paths[0]) / "adapter_config.json").is_file():
        found = list_checkpoints(paths[0])
    else:
        found = [Path(p) for p in paths]
    for p in found:
        if not (p / "adapter_model.safetensors").is_file():
            raise UserError(f"{p}: not a checkpoint with a LoRA adapter (no adapter_model.safetensors)")
    return found


def _ckpt_name(path: Path) -> str:
    return path.name


def store_weights(ckpts: list[Checkpoint]) -> list[float | None]:
    """The checkpoint weights a store records: ``training.checkpoints.checkpoint_weights`` (which
    refuses a checkpoint without a learning rate; a pool store's always have one, see
    ``read_checkpoint``), or ``None`` each for a target store whose checkpoints record none: scoring
    takes the weights from the pool store and never reads a target store's."""
    if any(c.mean_lr is None for c in ckpts):
        return [None] * len(ckpts)
    return checkpoint_weights(ckpts)


def read_checkpoint(path: Path, gradient_type: str, mean_lr: float | None, lr_required: bool) -> Checkpoint:
    """A checkpoint with its mean learning rate; plain (sgd) features need no optimizer moments,
    but a pool store's checkpoint weights still come from the learning rates, as for Adam."""
    if gradient_feature(gradient_type).needs_moments:
        return load_checkpoint(path, mean_lr=mean_lr)
    if mean_lr is None:
        meta = path / META_FILE
        mean_lr = json.loads(meta.read_text()).get("mean_lr") if meta.is_file() else \
            _lr_from_trainer_state(_trainer_state(path))
    if mean_lr is None and lr_required:
        raise UserError(f"{path}: the checkpoint records no learning rate; give each checkpoint's "
                        "mean learning rate with --mean-lrs")
    return Checkpoint(path=path, adapter_dir=path, step=_step_of(path), epoch=None,
                      mean_lr=None if mean_lr is None else float(mean_lr), exp_avg={}, exp_avg_sq={})


def _step_of(path: Path) -> int:
    meta = path / META_FILE
    if meta.is_file():
        return int(json.loads(meta.read_text()).get("step", 0))
    tail = path.name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _attach_adapter(model, adapter_dir: Path, model_name: str):
    from peft import PeftModel
    with adapter_fit_errors(adapter_dir, model_name):
        return PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=False)


def _load_adapter_weights(peft_model, adapter_dir: Path, model_name: str) -> None:
    """Load this checkpoint's LoRA weights, checking every LoRA matrix was replaced."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file
    state = load_file(str(Path(adapter_dir) / "adapter_model.safetensors"))
    with adapter_fit_errors(adapter_dir, model_name):
        result = set_peft_model_state_dict(peft_model, state)
    missing = [k for k in getattr(result, "missing_keys", []) if "lora_" in k]
    if missing:
        raise UserError(f"{adapter_dir}: adapter lacks {len(missing)} LoRA weight(s), e.g. {missing[0]}")


def _total_lora_params(peft_model) -> int:
    from ..gradients.per_example import lora_layout
    last = lora_layout(peft_model)[-1]
    return last.offset + last.numel
