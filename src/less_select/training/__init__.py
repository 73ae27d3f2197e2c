"""Training stages: warmup LoRA training with name-keyed Adam checkpoints, final training (LoRA or full),
and reading checkpoints (ours, HF Trainer ``optimizer.pt``, FSDP ``optimizer.bin``).

The stage modules are imported on first use (PEP 562): reading a checkpoint, which every later
stage does, must not pay for importing the HF ``Trainer`` (about a second)."""

from importlib import import_module

_EXPORTS = {
    "Checkpoint": "checkpoints", "canonical_param_name": "checkpoints", "checkpoint_weights": "checkpoints",
    "hf_param_order": "checkpoints", "list_checkpoints": "checkpoints", "load_checkpoint": "checkpoints",
    "FinetuneConfig": "finetune", "run_finetune": "finetune",
    "WarmupConfig": "warmup", "run_warmup": "warmup", "warmup_subset": "warmup",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
