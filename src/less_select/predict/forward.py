"""Forward-pass features of every pool example: what one forward pass (no backward) of the base
model and of each warmup checkpoint says about the example, as cheap proxies of its LESS gradient.

For model m (the base model, then each checkpoint's adapter on it) and example i, over the
example's completion tokens t = 1..T (the positions LESS's loss, hence its gradient, covers), with
``p_t = softmax(z_t)`` the next-token distribution and ``y_t`` the true token:

* ``nll``      = mean_t -log p_t[y_t]   (the example's training loss);
* ``grad_sq``  = mean_t ||p_t - e_{y_t}||^2 = mean_t (sum_v p_t[v]^2 - 2 p_t[y_t] + 1), the squared
  norm of the loss's gradient with respect to the logits, per token (every parameter gradient LESS
  projects is this logit gradient pushed back through the network);
* ``entropy``  = mean_t -sum_v p_t[v] log p_t[v];
* ``grad_norm`` = sqrt(sum_t ||p_t - e_{y_t}||^2) / T, the logit-gradient norm of the mean loss.

Columns come model-major: ``[n, 4 * (1 + checkpoints)]`` in the order above. The cost is one
forward pass per example and model, counted in the stage's report (``forward_passes``) apart from
the gradient passes. Batching is by token budget, length-sorted and right-padded as everywhere
else, and statistics are taken in float32 over real completion tokens only, so a row never depends
on its batch. The features are cached in the run folder (``forward/``) like the others.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..data.batching import collate, token_budget_batches
from ..data.encode import IGNORE_INDEX, Encoded
from ..progress import Progress
from ..stage_folder import stage_dir

log = logging.getLogger(__name__)

STATS = ("nll", "grad_sq", "entropy", "grad_norm")


def token_stats(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``logits`` [B, L, V], ``labels`` [B, L] (unshifted, -100 = no loss) -> [B, 4] (STATS).

    Logits at position t predict the label at t + 1, as in the causal LM loss."""
    z = logits[:, :-1].float()
    y = labels[:, 1:]
    keep = (y != IGNORE_INDEX).float()
    logp = torch.log_softmax(z, dim=-1)
    p = logp.exp()
    yi = y.clamp(min=0).unsqueeze(-1)
    logp_y = logp.gather(-1, yi).squeeze(-1)
    grad_sq = (p * p).sum(-1) - 2.0 * logp_y.exp() + 1.0
    entropy = -(p * logp).sum(-1)
    n = keep.sum(1).clamp(min=1.0)
    return torch.stack([(-logp_y * keep).sum(1) / n, (grad_sq * keep).sum(1) / n,
                        (entropy * keep).sum(1) / n, (grad_sq * keep).sum(1).sqrt() / n], dim=1)


def model_stats(model, encoded: Sequence[Encoded], pad_id: int, max_tokens_per_batch: int,
                max_batch_size: int | None) -> np.ndarray:
    """float64 [len(encoded), 4]: :data:`STATS` of each encoded example under ``model``."""
    out = np.zeros((len(encoded), len(STATS)), np.float64)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            lengths = [len(e.input_ids) for e in encoded]
            with Progress("forward features", total=len(encoded)) as prog:
                for batch in token_budget_batches(lengths, max_tokens_per_batch, max_batch_size):
                    enc = collate([encoded[i] for i in batch], pad_id)
                    logits = model(input_ids=enc["input_ids"].to(device),
                                   attention_mask=enc["attention_mask"].to(device),
                                   use_cache=False).logits
                    out[batch] = token_stats(logits, enc["labels"].to(device)).cpu().numpy()
                    prog.update(len(batch), extra=int(enc["attention_mask"].sum()))
    finally:
        model.train(was_training)
    return out


def forward_features(model_path: str, checkpoints: Sequence[str], encoded: Sequence[Encoded],
                     pad_id: int, dtype: str, max_tokens_per_batch: int,
                     max_batch_size: int | None, device: str = "auto") -> np.ndarray:
    """float32 [n, 4 * (1 + len(checkpoints))]: :data:`STATS` under the base model, then under each
    checkpoint (its adapter on the base model), run on ``device`` (the shared ``--device``)."""
    from ..modeling import load_model_with_adapter, resolve_device
    blocks = []
    for adapter in [None, *checkpoints]:
        model = load_model_with_adapter(model_path, adapter, dtype, resolve_device(device))
        blocks.append(model_stats(model, encoded, pad_id, max_tokens_per_batch, max_batch_size))
        del model
        log.info("predict: forward features of %d example(s) under %s", len(encoded),
                 adapter or "the base model")
    return np.concatenate(blocks, axis=1).astype(np.float32)


def column_names(checkpoints: Sequence[str]) -> list[str]:
    names = ["base"] + [f"checkpoint{j}" for j in range(len(checkpoints))]
    return [f"{m}:{s}" for m in names for s in STATS]


def cached_forward(folder: Path, settings: dict, compute: Callable[[], np.ndarray]) -> tuple[np.ndarray, float, bool]:
    """``folder/forward.npy`` when it was made with ``settings``, else ``compute()`` written there.

    Returns (features, seconds measured when they were made, reused)."""
    from .features import _stale
    made = False
    with stage_dir(folder, "predict-forward", settings, overwrite=_stale(folder, settings)) as part:
        if part is not None:
            start = time.perf_counter()
            feats = compute()
            np.save(part / "forward.npy", feats)
            (part / "manifest.json").write_text(json.dumps(
                {"seconds": time.perf_counter() - start, "n_examples": len(feats)}, indent=2))
            made = True
    seconds = json.loads((folder / "manifest.json").read_text())["seconds"]
    return np.load(folder / "forward.npy"), seconds, not made
