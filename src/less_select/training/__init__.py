"""Training stages: warmup LoRA training with name-keyed Adam checkpoints, final training (LoRA or full),
and reading checkpoints (ours, HF Trainer ``optimizer.pt``, FSDP ``optimizer.bin``)."""

from .checkpoints import (Checkpoint, canonical_param_name, checkpoint_weights, hf_param_order,
                          list_checkpoints, load_checkpoint)
from .finetune import FinetuneConfig, run_finetune
from .warmup import WarmupConfig, run_warmup, warmup_subset

__all__ = ["Checkpoint", "FinetuneConfig", "WarmupConfig", "canonical_param_name",
           "checkpoint_weights", "hf_param_order", "list_checkpoints", "load_checkpoint",
           "run_finetune", "run_warmup", "warmup_subset"]
