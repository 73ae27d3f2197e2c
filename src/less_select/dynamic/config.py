"""Options of dynamic LESS selection (DataFlex's ``less`` selector): the schedule and the scoring.

Schedule (the seed's names): ``warmup_step`` optimizer steps on seeded random pool examples, then
``update_times`` re-selections, each choosing the next ``update_step x global_batch`` examples by
LESS influence computed from the live model and the live Adam state. Total optimizer steps:
``warmup_step + update_step x update_times``.

:class:`DynamicOptions` is what the Trainer component needs; the ``dynamic-train`` stage config
(``dynamic/stage.py``) adds data, target and training options on top of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..configs import option, shared
from ..errors import UserError
from ..gradients.features import AdamVariant

#: ``candidates = 0`` scores this many times the examples one re-selection needs
AUTO_CANDIDATE_FACTOR = 4


@dataclass(kw_only=True)
class DynamicOptions:
    """Dynamic LESS selection during training: schedule, candidates and scoring."""

    warmup_step: int = option(10, help="optimizer steps on seeded random pool examples before the "
                                       "first re-selection")
    update_step: int = option(10, help="optimizer steps trained on each re-selection")
    update_times: int = option(2, help="number of re-selections (total steps = warmup_step + "
                                       "update_step x update_times)")
    candidates: int = option(0, help="pool examples scored per re-selection, a seeded random subset "
                                     f"(0: {AUTO_CANDIDATE_FACTOR} x the examples needed; -1: the "
                                     "whole pool)")
    exclude_trained: bool = option(False, help="never select an example already trained on in this run")
    subtask_rule: Literal["max", "balanced"] = option("max", help=(
        "how per-subtask influence ranks the pool: max (LESS) or balanced (round-robin over subtasks)"))
    projector: str = shared("projector")
    proj_dim: int = option(8192, help="projection dimension d")
    projection_seed: int = shared("projection_seed")
    adam_variant: AdamVariant = shared("adam_variant")
    max_tokens_per_batch: int = shared("max_tokens_per_batch")
    max_batch_size: int = shared("max_batch_size")

    @property
    def total_steps(self) -> int:
        return self.warmup_step + self.update_step * self.update_times

    def selection_steps(self) -> list[int]:
        """Optimizer steps already taken when each re-selection runs (``global_step`` then)."""
        return [self.warmup_step + i * self.update_step for i in range(self.update_times)]

    def check(self, pool_size: int, global_batch: int) -> None:
        """One-line errors for a schedule the pool cannot fill."""
        for name in ("warmup_step", "update_step", "update_times"):
            if getattr(self, name) < 0:
                raise UserError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.update_times and self.update_step < 1:
            raise UserError("update_step must be >= 1 when update_times > 0")
        if self.total_steps < 1:
            raise UserError("warmup_step + update_step x update_times must be at least 1")
        if self.proj_dim < 1 or self.max_batch_size < 1 or self.max_tokens_per_batch < 1:
            raise UserError("proj_dim, max_batch_size and max_tokens_per_batch must be >= 1")
        need = self.update_step * global_batch
        if self.warmup_step * global_batch > pool_size:
            raise UserError(f"warmup_step x global batch = {self.warmup_step} x {global_batch} = "
                            f"{self.warmup_step * global_batch} exceeds the pool ({pool_size} examples)")
        if self.update_times and need > pool_size:
            raise UserError(f"update_step x global batch = {self.update_step} x {global_batch} = {need} "
                            f"exceeds the pool ({pool_size} examples); lower update_step or the batch")
        if self.update_times and self.candidates > 0 and need > self.candidates:
            raise UserError(f"update_step x global batch = {need} exceeds candidates = "
                            f"{self.candidates}; raise candidates (or -1 for the whole pool)")
        if self.exclude_trained and self.total_steps * global_batch > pool_size:
            raise UserError(f"exclude_trained needs {self.total_steps} steps x {global_batch} = "
                            f"{self.total_steps * global_batch} distinct examples; the pool has "
                            f"{pool_size}")

    def n_candidates(self, need: int, available: int) -> int:
        """How many of the ``available`` examples one re-selection scores."""
        if self.candidates < 0:
            return available
        want = self.candidates if self.candidates > 0 else AUTO_CANDIDATE_FACTOR * need
        return min(want, available)
