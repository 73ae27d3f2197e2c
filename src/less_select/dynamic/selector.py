"""The Trainer component: a callback that re-selects the training data by LESS as training runs,
plus the dataset it feeds the Trainer through. No training loop is copied: any ``transformers.Trainer``
trains on :attr:`DynamicLessSelection.train_dataset` with the callback added::

    sel = DynamicLessSelection(pool_rows, target_rows, target_subtasks, DynamicOptions(...),
                               global_batch=global_batch_of(args), pad_token_id=tok.pad_token_id,
                               selections_dir=f"{args.output_dir}/selections")
    args.max_steps = sel.total_steps
    Trainer(model, args, train_dataset=sel.train_dataset, data_collator=..., callbacks=[sel]).train()

How: the dataset has exactly one global batch (``per_device x accumulation x processes`` examples),
so the Trainer's epoch is one optimizer step and it re-creates its data iterator before every step
(nothing is prefetched across a step). At each ``on_epoch_begin`` the callback points the dataset at
the slice of the current phase's selection for this step; at the steps ``warmup_step + i x update_step``
it first re-selects from the live model and optimizer. The Trainer's own sampler only permutes the
examples within a step (seeded by epoch = step, so a resumed run sees the same order).

Every selection is written to ``selections_dir/step_<N>.json`` (indices, scores, shares, seconds) and
reused when present with the same settings, so a resumed run trains on exactly what it would have.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from transformers import TrainerCallback

from ..configs import to_dict
from ..data.encode import Encoded, split_by_completion
from ..errors import UserError
from ..stage_folder import write_atomic
from ..subtask_rules import get_rule
from .config import DynamicOptions
from .features import build_projector, gather_in_rank_order, live_scores, rank_world

log = logging.getLogger(__name__)


def global_batch_of(args) -> int:
    """Examples per optimizer step over all processes for these ``TrainingArguments``."""
    return args.per_device_train_batch_size * args.gradient_accumulation_steps * max(1, args.world_size)


def as_encoded(item: Any, where: str) -> Encoded:
    """A pool/target item for scoring: an :class:`Encoded`, or a mapping with input_ids and labels."""
    if isinstance(item, Encoded):
        return item
    try:
        ids, labels = item["input_ids"], item["labels"]
    except (KeyError, TypeError, IndexError):
        raise UserError(f"{where}: expected an Encoded row or a mapping with input_ids and labels") from None
    to_list = (lambda x: x.tolist() if hasattr(x, "tolist") else list(x))
    return Encoded(to_list(ids), to_list(labels), False, "given")


class StepDataset(torch.utils.data.Dataset):
    """One global batch: item ``i`` is the pool item at position ``i`` of the current step's slice."""

    def __init__(self, pool: Sequence[Any], global_batch: int):
        self.pool, self.global_batch = pool, global_batch
        self.current: list[int] | None = None

    def __len__(self) -> int:
        return self.global_batch

    def __getitem__(self, i: int):
        if self.current is None:
            raise RuntimeError("StepDataset has no selection yet: add its DynamicLessSelection to the "
                               "Trainer's callbacks")
        return self.pool[self.current[i]]


def _digest(rows: Sequence[Encoded], labels: Sequence[str] = ()) -> str:
    h = hashlib.sha256()
    for r in rows:
        h.update(np.asarray(r.input_ids, np.int64).tobytes() + b"|")
        h.update(np.asarray(r.labels, np.int64).tobytes() + b"#")
    h.update(json.dumps(list(labels)).encode())
    return h.hexdigest()


class DynamicLessSelection(TrainerCallback):
    """Re-select training data by LESS from the live training state (see the module docstring)."""

    def __init__(self, pool: Sequence[Any], targets: Sequence[Any], target_subtasks: Sequence[str],
                 options: DynamicOptions, *, global_batch: int, pad_token_id: int,
                 selections_dir: str | Path, pool_sources: Sequence[str] | None = None):
        self.options, self.global_batch, self.pad_id = options, global_batch, pad_token_id
        self.pool = pool
        self.pool_rows = [as_encoded(x, f"pool item {i}") for i, x in enumerate(pool)]
        self.target_rows = [as_encoded(x, f"target item {i}") for i, x in enumerate(targets)]
        self.target_labels = [str(s) for s in target_subtasks]
        self.sources = list(pool_sources) if pool_sources is not None else None
        self.selections_dir = Path(selections_dir)
        if len(self.target_labels) != len(self.target_rows):
            raise UserError(f"{len(self.target_rows)} targets but {len(self.target_labels)} subtask labels")
        if options.update_times and not self.target_rows:
            raise UserError("no target examples: dynamic LESS needs a target set")
        for what, rows in (("pool", self.pool_rows), ("target", self.target_rows)):
            bad = split_by_completion(rows)[1]
            if bad:
                raise UserError(f"{len(bad)} {what} item(s) (first: {bad[0]}) have no completion token; "
                                "drop them before dynamic selection")
        get_rule(options.subtask_rule)
        options.check(len(self.pool_rows), global_batch)
        self.train_dataset = StepDataset(pool, global_batch)
        self.seed = 0
        self.fingerprint = ""
        self.phases: dict[int, list[int]] = {}     # phase start step -> pool indices, training order
        self.records: list[dict] = []              # what each selection made in this process
        self._projector = None

    @property
    def total_steps(self) -> int:
        return self.options.total_steps

    # ------------------------------------------------------------------ Trainer events

    def on_train_begin(self, args, state, control, **kwargs):
        if args.max_steps != self.total_steps:
            raise UserError(f"TrainingArguments.max_steps is {args.max_steps}; dynamic selection needs "
                            f"warmup_step + update_step x update_times = {self.total_steps}")
        if global_batch_of(args) != self.global_batch:
            raise UserError(f"the Trainer's global batch is {global_batch_of(args)} (per device x "
                            f"accumulation x processes), the selection was built for {self.global_batch}")
        self.seed = int(args.seed)
        self.fingerprint = hashlib.sha256(json.dumps({
            "options": to_dict(self.options), "seed": self.seed, "global_batch": self.global_batch,
            "pool": _digest(self.pool_rows), "targets": _digest(self.target_rows, self.target_labels),
        }, sort_keys=True).encode()).hexdigest()

    def on_epoch_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        step = state.global_step
        start = self.phase_start(step)
        if start not in self.phases:
            self.phases[start] = self._phase_selection(start, model, optimizer)
        lo = (step - start) * self.global_batch
        self.train_dataset.current = self.phases[start][lo:lo + self.global_batch]

    # ------------------------------------------------------------------ schedule

    def phase_start(self, step: int) -> int:
        """First step of the phase ``step`` belongs to (0 for warmup)."""
        o = self.options
        if step < o.warmup_step or o.update_times == 0:
            return 0
        return o.warmup_step + min((step - o.warmup_step) // o.update_step, o.update_times - 1) * o.update_step

    def _phase_selection(self, start: int, model, optimizer) -> list[int]:
        if start == 0 and self.options.warmup_step > 0:
            return self._warmup_selection()
        cached = self._load(start)
        if all(gather_in_rank_order(cached is not None)):  # every rank must agree: scoring is collective
            log.info("dynamic LESS: reusing %s", self._path(start))
            return cached
        return self.reselect(start, model, optimizer)

    def _warmup_selection(self) -> list[int]:
        n = self.options.warmup_step * self.global_batch
        rng = np.random.default_rng([self.seed, 0])
        chosen = sorted(rng.choice(len(self.pool_rows), size=n, replace=False).tolist())
        self._write(0, {"method": "random", "indices": chosen, "scores": None, "seconds": 0.0,
                        "per_source_share": self._source_shares(chosen)})
        return chosen

    def _trained_before(self, start: int) -> set[int]:
        """Pool indices of every phase before ``start`` (recomputed or read back after a resume)."""
        out: set[int] = set()
        for s in [0] + self.options.selection_steps():
            if s >= start or (s == 0 and self.options.warmup_step == 0):
                continue
            if s not in self.phases:
                got = self._warmup_selection() if s == 0 else self._load(s)
                if got is None:
                    raise UserError(f"{self._path(s)} is missing; exclude_trained needs every earlier "
                                    "selection (delete the run's output to start over)")
                self.phases[s] = got
            out.update(self.phases[s])
        return out

    # ------------------------------------------------------------------ one re-selection

    def reselect(self, step: int, model, optimizer) -> list[int]:
        o = self.options
        need = o.update_step * self.global_batch
        excluded = self._trained_before(step) if o.exclude_trained else set()
        available = np.array([i for i in range(len(self.pool_rows)) if i not in excluded], np.int64)
        n_cand = o.n_candidates(need, len(available))
        rng = np.random.default_rng([self.seed, step])
        cand = np.sort(rng.choice(available, size=n_cand, replace=False)) if n_cand < len(available) \
            else available
        if self._projector is None:
            self._projector = build_projector(model, o)
        scores = live_scores(model, optimizer, step, [self.pool_rows[i] for i in cand], self.target_rows,
                             self.target_labels, self._projector, o, self.pad_id)
        rule = get_rule(o.subtask_rule)
        order = rule.rank(scores.per_subtask)[:need]
        chosen = cand[order].tolist()
        best = scores.per_subtask[order].argmax(axis=1)
        shares = np.bincount(best, minlength=len(scores.subtasks)) / max(len(order), 1)
        lr = float(optimizer.param_groups[0]["lr"]) if optimizer is not None else None
        log.info("dynamic LESS at step %d: scored %d candidates (of %d available) against %d targets "
                 "(%d subtasks) in %.2fs (targets %.2fs, candidates %.2fs on this rank); chose %d",
                 step, len(cand), len(available), len(self.target_rows), len(scores.subtasks),
                 scores.seconds["total"], scores.seconds["targets"], scores.seconds["candidates"], need)
        self._write(step, {
            "method": "less", "indices": chosen,
            "scores": [round(float(s), 7) for s in rule.score(scores.per_subtask)[order]],
            "n_candidates": int(len(cand)), "n_available": int(len(available)),
            "n_excluded": len(excluded), "learning_rate": lr,
            "per_subtask_share": {s: float(v) for s, v in zip(scores.subtasks, shares)},
            "per_source_share": self._source_shares(chosen),
            "seconds": scores.seconds["total"], "seconds_detail": scores.seconds})
        return chosen

    def _source_shares(self, chosen: list[int]) -> dict[str, float] | None:
        if self.sources is None:
            return None
        names, counts = np.unique([self.sources[i] for i in chosen], return_counts=True)
        return {str(n): float(c) / len(chosen) for n, c in zip(names, counts)}

    # ------------------------------------------------------------------ selection files

    def _path(self, step: int) -> Path:
        return self.selections_dir / f"step_{step}.json"

    def _write(self, step: int, record: dict) -> None:
        record = {"step": step, "fingerprint": self.fingerprint, **record}
        self.records.append(record)
        if rank_world()[0] != 0:
            return
        self.selections_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self._path(step), json.dumps(record, indent=1))

    def _load(self, step: int) -> list[int] | None:
        path = self._path(step)
        if not path.is_file():
            return None
        try:
            record = json.loads(path.read_text())
        except json.JSONDecodeError:
            raise UserError(f"{path}: not valid JSON; delete it to recompute this selection") from None
        if record.get("fingerprint") != self.fingerprint:
            raise UserError(f"{path} was made with other settings, data or seed; delete "
                            f"{self.selections_dir} (or use another output folder) to reselect")
        return [int(i) for i in record["indices"]]

    def summary(self) -> dict:
        """Selections made (not reused) in this process: steps and seconds per re-selection."""
        less = [r for r in self.records if r["method"] == "less"]
        return {"reselection_steps": [r["step"] for r in less],
                "reselection_seconds": [round(r["seconds"], 4) for r in less],
                "selection_steps": self.options.selection_steps()}
