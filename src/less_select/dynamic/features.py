"""LESS features and influence scores from the live training state (one re-selection).

The static pipeline reads the Adam moments of saved warmup checkpoints; here they come from the
optimizer the Trainer is running, at the current weights:

    Gamma(z)   = m' / sqrt(v' + eps),  m' = b1 m + (1-b1) g(z),  v' = b2 v + (1-b2) g(z)^2
    Inf(z, V_k) = mean_{z' in V_k} cos(Pi Gamma(z), Pi grad(z'))

with ``m``/``v`` the optimizer's current ``exp_avg``/``exp_avg_sq`` and betas/eps of its param group.
LoRA models use the batched per-example gradients and ``datastore.build.chunk_features`` of the
static datastore (same projection, same Adam formula, rows unit-normalized); a model without LoRA
layers (full fine-tuning) gets exact per-example gradients one example at a time.

Under ``torch.distributed`` each rank computes a disjoint shard of the rows and the results are
gathered in rank order, so every rank holds the same scores.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.batching import collate
from ..data.encode import Encoded
from ..errors import UserError
from ..datastore.build import FeatureConfig, chunk_features
from ..gradients.features import gradient_feature
from ..gradients.per_example import lora_layout, lora_modules, per_example_loss
from ..progress import Progress
from ..projection import Projector, make_projector
from ..scoring import unit_rows
from ..training.checkpoints import Checkpoint, canonical_param_name, moments_by_name, unwrap_optimizer
from .config import DynamicOptions

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- distributed helpers

def rank_world() -> tuple[int, int]:
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_in_rank_order(obj) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (``[obj]`` without a process group)."""
    rank, world = rank_world()
    if world == 1:
        return [obj]
    out = [None] * world
    torch.distributed.all_gather_object(out, obj)
    return out


# --------------------------------------------------------------------------- live state

def is_lora(model) -> bool:
    try:
        lora_modules(model)
        return True
    except UserError:
        return False


def live_checkpoint(model, optimizer, step: int) -> Checkpoint:
    """The optimizer's current moments (by canonical parameter name), betas, eps and lr."""
    exp_avg, exp_avg_sq = moments_by_name(model, optimizer)
    group = unwrap_optimizer(optimizer).param_groups[0]
    return Checkpoint(path=Path(f"<live state at step {step}>"), adapter_dir=Path("."), step=step,
                      epoch=None, mean_lr=float(group["lr"]), exp_avg=exp_avg, exp_avg_sq=exp_avg_sq,
                      betas=tuple(group["betas"]), eps=float(group["eps"]),
                      weight_decay=group.get("weight_decay"))


def _trainable(model) -> list[tuple[str, torch.nn.Parameter]]:
    return [(canonical_param_name(n), p) for n, p in model.named_parameters() if p.requires_grad]


def gradient_dim(model) -> int:
    """P: the length of the gradient vector the projection maps (LoRA matrices, or every trainable)."""
    if is_lora(model):
        last = lora_layout(model)[-1]
        return last.offset + last.numel
    return sum(p.numel() for _, p in _trainable(model))


def build_projector(model, opts: DynamicOptions) -> Projector:
    device = next(model.parameters()).device
    return make_projector(opts.projector, gradient_dim(model), opts.proj_dim, opts.projection_seed,
                          device=device)


# --------------------------------------------------------------------------- features

def features(model, rows: list[Encoded], ckpt: Checkpoint | None, projector: Projector,
             opts: DynamicOptions, pad_id: int) -> np.ndarray:
    """Unit-norm projected features float32 [len(rows), d]: Adam features when ``ckpt`` is given,
    plain gradients otherwise."""
    if not rows:
        return np.zeros((0, projector.dim), np.float32)
    device = next(model.parameters()).device
    feature = gradient_feature("adam" if ckpt is not None else "sgd", opts.adam_variant)
    with Progress(f"dynamic {feature.name} features", total=len(rows)) as prog:
        if is_lora(model):
            cfg = FeatureConfig(dims=[projector.dim], max_tokens_per_batch=opts.max_tokens_per_batch,
                                max_batch_size=opts.max_batch_size)
            ck = ckpt or Checkpoint(path=Path("<targets>"), adapter_dir=Path("."), step=0, epoch=None,
                                    mean_lr=None, exp_avg={}, exp_avg_sq={})
            out = chunk_features(model, rows, ck, cfg, {projector.dim: projector}, feature.name,
                                 opts.adam_variant, pad_id, device, prog)
            return out[projector.dim]
        return _full_features(model, rows, ckpt, projector, feature, pad_id, device, prog)


def _full_features(model, rows, ckpt, projector, feature, pad_id, device, prog) -> np.ndarray:
    """Full fine-tuning: exact per-example gradients of every trainable parameter, one example per
    backward (no batched per-example trick exists for arbitrary layers here)."""
    params = _trainable(model)
    offsets = np.cumsum([0] + [p.numel() for _, p in params]).tolist()
    out = np.zeros((len(rows), projector.dim), np.float32)
    transform = feature.for_checkpoint(ckpt, [name for name, _ in params], device)
    was_training = model.training
    model.eval()  # dropout off: the gradient of the deterministic model
    try:
        for i, row in enumerate(rows):
            batch = {k: v.to(device) for k, v in collate([row], pad_id).items()}
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                           use_cache=False).logits
            loss, _ = per_example_loss(logits, batch["labels"])
            grads = torch.autograd.grad(loss.sum(), [p for _, p in params])   # no .grad touched
            acc = projector.accumulator()
            for (name, _), g, off in zip(params, grads, offsets):
                acc.add(transform(name, g.reshape(1, -1).float()), off)
            out[i] = torch.nn.functional.normalize(acc.result(), dim=1).cpu().numpy()[0]
            prog.update(1)
    finally:
        model.train(was_training)
    return out


# --------------------------------------------------------------------------- scores

@dataclass
class LiveScores:
    per_subtask: np.ndarray      # float32 [n_candidates, K], candidate order
    subtasks: list[str]
    seconds: dict[str, float]    # targets, candidates (feature time, this rank), total; cpu: process
                                 # CPU seconds of this rank (robust to other load on a shared machine)


def subtask_sums(rows: np.ndarray, labels: list[str], subtasks: list[str]) -> np.ndarray:
    """[K, d] sum of the unit rows of each subtask (means are formed after gathering the shards)."""
    sums = np.zeros((len(subtasks), rows.shape[1]), np.float64)
    pos = {s: k for k, s in enumerate(subtasks)}
    for r, lab in zip(unit_rows(rows), labels):
        sums[pos[lab]] += r
    return sums


def live_scores(model, optimizer, step: int, candidates: list[Encoded], targets: list[Encoded],
                target_labels: list[str], projector: Projector, opts: DynamicOptions,
                pad_id: int) -> LiveScores:
    """Influence of every candidate on every target subtask at the current weights and moments.

    Each rank takes rows ``rank::world`` of the targets and of the candidates; subtask sums and
    candidate scores are gathered so every rank returns the same [n_candidates, K] matrix.
    """
    rank, world = rank_world()
    subtasks = sorted(set(target_labels))
    t0, c0 = time.perf_counter(), time.process_time()
    # targets: plain gradients at the current weights, mean unit row per subtask
    mine_t = list(range(rank, len(targets), world))
    t_rows = features(model, [targets[i] for i in mine_t], None, projector, opts, pad_id)
    parts = gather_in_rank_order((subtask_sums(t_rows, [target_labels[i] for i in mine_t], subtasks),
                                  np.bincount([subtasks.index(target_labels[i]) for i in mine_t],
                                              minlength=len(subtasks))))
    sums = sum(p[0] for p in parts)
    counts = sum(p[1] for p in parts)
    means = (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)          # [K, d]
    t1 = time.perf_counter()
    # candidates: Adam features from the live moments, scored against every subtask mean
    ckpt = live_checkpoint(model, optimizer, step)
    mine_c = list(range(rank, len(candidates), world))
    c_rows = features(model, [candidates[i] for i in mine_c], ckpt, projector, opts, pad_id)
    local = unit_rows(c_rows) @ means.T if len(c_rows) else np.zeros((0, len(subtasks)), np.float32)
    t2 = time.perf_counter()
    per_subtask = np.zeros((len(candidates), len(subtasks)), np.float32)
    for r, block in enumerate(gather_in_rank_order(local.astype(np.float32))):
        per_subtask[r::world] = block
    if not np.isfinite(per_subtask).all():
        raise UserError(f"re-selection at step {step}: non-finite influence scores (the model or the "
                        "optimizer state holds NaN/inf)")
    return LiveScores(per_subtask, subtasks, {"targets": t1 - t0, "candidates": t2 - t1,
                                              "total": time.perf_counter() - t0,
                                              "cpu": time.process_time() - c0})
