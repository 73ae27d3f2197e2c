"""One (suite, seed) of the quality benchmark through the product's own stages.

warmup -> pool datastores (loss over completion tokens, as LESS, and over the whole sequence) ->
target stores (mismatched and matched formats) -> ``select`` with each subtask rule -> every
baseline -> rank-fusion hybrids -> LoRA training on each method's selection -> held-out loss.
Every stage skips itself when its output exists with the same settings, so a rerun only computes
what is missing.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class Scale:
    """Model-scale settings shared by every stage of the benchmark (CPU, tiny base model)."""

    max_seq_length: int = 256
    target_max_seq_length: int = 512
    warmup_epochs: int = 2
    lora_r: int = 8
    lora_alpha: float = 32
    learning_rate: float = 5e-4
    batch_size: int = 8
    train_epochs: int = 3
    dims: list[int] = field(default_factory=lambda: [8192])


def _train_options(scale: Scale, seed: int) -> dict:
    return dict(max_seq_length=scale.max_seq_length, lora_r=scale.lora_r, lora_alpha=scale.lora_alpha,
                learning_rate=scale.learning_rate, effective_batch_size=scale.batch_size,
                per_device_batch_size=scale.batch_size, seed=seed, logging_steps=1000)


def warmup(model: str, pool: Path, out: Path, scale: Scale, seed: int) -> Path:
    from less_select.training.warmup import WarmupConfig, run_warmup
    return Path(run_warmup(WarmupConfig(model=model, pool_files=[str(pool)], output_dir=str(out),
                                        epochs=scale.warmup_epochs, **_train_options(scale, seed))))


def pool_store(model: str, pool: Path, ckpts: Path, out: Path, scale: Scale, seed: int,
               loss_tokens: str) -> Path:
    from less_select.datastore.build import DatastoreConfig, run_datastore
    return Path(run_datastore(DatastoreConfig(
        model=model, checkpoints=[str(ckpts)], data=[str(pool)], output_dir=str(out),
        dims=scale.dims, projection_seed=seed, max_seq_length=scale.max_seq_length,
        loss_tokens=loss_tokens)))


def target_store(store: Path, targets: Path, out: Path, scale: Scale) -> Path:
    from less_select.datastore.build import TargetsConfig, run_targets
    return Path(run_targets(TargetsConfig(task=str(targets), datastore=str(store), output_dir=str(out),
                                          max_seq_length=scale.target_max_seq_length)))


def less_select(store: Path, targets: Path, out: Path, rule: str, percentage: float) -> Path:
    from less_select.select_stage import SelectConfig, run_select
    run_select(SelectConfig(datastore=str(store), targets=str(targets), output_dir=str(out),
                            percentage=percentage, subtask_rule=rule))
    return out


def baseline_select(method: str, model: str, pool: Path, targets: Path, out: Path, scale: Scale,
                    seed: int, rule: str, percentage: float) -> Path:
    from less_select.baselines.stage import BaselineConfig, run_baseline
    run_baseline(BaselineConfig(method=method, data=[str(pool)], task=str(targets), output_dir=str(out),
                                seed=seed, model=model if method in ("rds", "rds_plus") else "",
                                tokenizer=model, max_seq_length=scale.max_seq_length,
                                percentage=percentage, subtask_rule=rule))
    return out


def selection_matrix(folder: Path, pool_ids: list[str]) -> tuple[np.ndarray, list[str], list[str]]:
    """(per-subtask scores [n, K], subtask names, row ids) of a selection folder.

    Rows are the scored examples in pool order (LESS's store rows and a baseline's trainable rows
    both are: examples without a completion token are left out by both)."""
    report = json.loads((folder / "selection.json").read_text())
    per_subtask = np.load(folder / "per_subtask_scores.npy")
    import csv
    with open(folder / "scores.csv", encoding="utf-8") as fh:
        scored = {r["id"] for r in csv.DictReader(fh) if r["status"] == "scored"}
    rows = [i for i in pool_ids if i in scored]
    if len(rows) != per_subtask.shape[0]:
        raise RuntimeError(f"{folder}: {per_subtask.shape[0]} score rows for {len(rows)} scored ids")
    return per_subtask, report.get("subtasks") or ["all"], rows


def fused_select(parts: list[tuple[np.ndarray, list[str], list[str]]], weights: list[float],
                 pool_examples: dict, tasks: list[str], out: Path, rule: str, percentage: float) -> Path:
    """A hybrid selection folder: rank fusion of the given methods' per-subtask matrices."""
    from less_select.fusion import align_columns, reciprocal_rank_fusion
    from less_select.selection import BudgetConfig, write_selection
    if (out / "selection.json").is_file():
        return out
    rows = parts[0][2]
    if any(p[2] != rows for p in parts):
        raise RuntimeError("methods to fuse score different rows")
    mats = [align_columns(m, names, tasks) for m, names, _ in parts]
    fused = reciprocal_rank_fusion(mats, weights)
    tmp = out.with_name(out.name + ".part")
    write_selection(tmp, [pool_examples[i] for i in rows], None, BudgetConfig(percentage=percentage),
                    "hybrid", n_pool=len(pool_examples), per_subtask=fused, subtasks=tasks,
                    subtask_rule=rule)
    tmp.rename(out)
    return out


def train_and_eval(model: str, selection: Path, out: Path, heldout: dict[str, Path], scale: Scale,
                   seed: int) -> dict:
    """LoRA-train on a selection, then the held-out target loss (macro over tasks, and per task)."""
    from less_select.training.finetune import FinetuneConfig, run_finetune
    result_file = out / "heldout_loss.json"
    if result_file.is_file():
        return json.loads(result_file.read_text())
    sel = next(selection.glob("top_*.jsonl"))
    start = time.perf_counter()
    adapter = run_finetune(FinetuneConfig(model=model, train_files=[str(sel)], output_dir=str(out / "adapter"),
                                          epochs=scale.train_epochs, **_train_options(scale, seed)))
    result = heldout_loss(model, str(adapter), heldout, scale)
    result["train_seconds"] = time.perf_counter() - start
    result_file.write_text(json.dumps(result, indent=2))
    return result


def heldout_loss(model: str, adapter: str | None, heldout: dict[str, Path], scale: Scale) -> dict:
    from less_select.evaluation.loss import target_loss
    from less_select.data.targets import build_target_examples
    from less_select.modeling import load_model_with_adapter, load_tokenizer
    m = load_model_with_adapter(model, adapter, "float32")
    tok = load_tokenizer(model)
    out = {}
    for name, path in heldout.items():
        res = target_loss(m, tok, build_target_examples(str(path)), scale.target_max_seq_length)
        out[name] = {"macro": res["average"]["loss"],
                     "per_task": {k: v["loss"] for k, v in res["per_subtask"].items()}}
    return out
