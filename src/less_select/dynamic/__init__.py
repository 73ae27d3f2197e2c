"""Dynamic LESS selection during training (re-selection from the live model and Adam state)."""

from .config import DynamicOptions
from .selector import DynamicLessSelection, StepDataset, global_batch_of

__all__ = ["DynamicOptions", "DynamicLessSelection", "StepDataset", "global_batch_of"]
