"""Hybrid selection: reciprocal rank fusion of several methods' per-subtask scores.

For methods m (LESS, RDS+, BM25, ...) scoring the same pool rows against the same subtasks,
the fused score of row i for subtask j is

    F[i, j] = sum_m w_m / (c + r_mj(i)),     r_mj(i) = rank of row i by method m's column j (1 = best)

(Cormack et al. 2009, c = 60). Rank fusion needs no score calibration across methods (a BM25 score
and a cosine live on different scales) and rewards rows that several methods rank high. The fused
``[n, K]`` matrix is then ranked by a subtask rule like any other (``subtask_rules.py``).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .configs import option, shared
from .errors import UserError
from .export import update_exports
from .selection import BudgetConfig
from .subtask_rules import SubtaskRuleName, rank_order

RRF_CONSTANT = 60.0


def column_ranks(column: np.ndarray) -> np.ndarray:
    """1-based rank of every row by descending score, ties by row index (as selection breaks them)."""
    order = rank_order(column)
    ranks = np.empty(len(order), dtype=np.float64)
    ranks[order] = np.arange(1, len(order) + 1)
    return ranks


def reciprocal_rank_fusion(per_subtask: Sequence[np.ndarray], weights: Sequence[float] | None = None,
                           constant: float = RRF_CONSTANT) -> np.ndarray:
    """``[n, K]`` fused scores of several ``[n, K]`` matrices (same rows, same subtask columns)."""
    if not per_subtask:
        raise ValueError("nothing to fuse")
    shapes = {np.shape(m) for m in per_subtask}
    if len(shapes) != 1:
        raise ValueError(f"matrices to fuse differ in shape: {sorted(shapes)}")
    weights = list(weights) if weights is not None else [1.0] * len(per_subtask)
    if len(weights) != len(per_subtask) or any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"need one non-negative weight per method, got {weights}")
    n, k = shapes.pop()
    fused = np.zeros((n, k), dtype=np.float64)
    for m, w in zip(per_subtask, weights):
        m = np.asarray(m, dtype=np.float64)
        for j in range(k):
            fused[:, j] += w / (constant + column_ranks(m[:, j]))
    return fused


def align_columns(per_subtask: np.ndarray, names: Sequence[str], wanted: Sequence[str]) -> np.ndarray:
    """The columns of ``per_subtask`` reordered to ``wanted`` subtask names (all must be present)."""
    missing = [w for w in wanted if w not in names]
    if missing:
        raise ValueError(f"subtasks {missing} missing from {list(names)}")
    idx = [list(names).index(w) for w in wanted]
    return np.asarray(per_subtask)[:, idx]


# --------------------------------------------------------------------------- the ``fuse`` stage

@dataclass
class FuseConfig(BudgetConfig):
    """Hybrid selection: rank fusion of finished selection folders of the same pool and targets
    (LESS from ``select``, baselines from ``baseline``), ranked by a subtask rule."""

    selections: list[str] = option(factory=list, help=(
        "Selection folders to fuse (each with per_subtask_scores.npy and scores.csv), e.g. a LESS "
        "selection and an rds_plus baseline selection of the same pool and targets."))
    weights: list[float] = option(factory=list, help="One weight per selection (default: all 1).")
    output_dir: str = option("", help="Selection folder to write.")
    subtask_rule: SubtaskRuleName = option("balanced", help=(
        "max (over subtasks) or balanced (round-robin over subtasks) on the fused scores."))
    overwrite: bool = shared("overwrite")


def _read_selection(folder: Path) -> tuple[np.ndarray, list[str], dict[tuple[str, int], int]]:
    """(per-subtask scores, subtask names, (file, line) -> row) of one selection folder."""
    for name in ("per_subtask_scores.npy", "scores.csv", "selection.json"):
        if not (folder / name).is_file():
            raise UserError(f"{folder}: not a finished selection folder (no {name})")
    per_subtask = np.load(folder / "per_subtask_scores.npy")
    names = json.loads((folder / "selection.json").read_text()).get("subtasks") or ["all"]
    rows = {}
    with open(folder / "scores.csv", encoding="utf-8", newline="") as fh:
        for r in csv.DictReader(fh):
            if r["status"] == "scored":
                if not r.get("row"):
                    raise UserError(f"{folder}/scores.csv has no row column; rerun that selection")
                rows[(str(Path(r["file"]).resolve()), int(r["line"]))] = int(r["row"])
    if len(rows) != per_subtask.shape[0] or len(names) != per_subtask.shape[1]:
        raise UserError(f"{folder}: scores.csv, selection.json and per_subtask_scores.npy disagree; "
                        "rerun that selection")
    return per_subtask, [str(n) for n in names], rows


def run_fuse(config: FuseConfig) -> dict:
    """Fuse the selections' per-subtask ranks and write a selection folder like any method's."""
    from .data import load_examples
    from .selection import write_selection
    from .stage_folder import stage_dir, stage_settings
    if len(config.selections) < 2 or not config.output_dir:
        raise UserError("fuse needs at least two --selections and --output-dir")
    weights = config.weights or [1.0] * len(config.selections)
    if len(weights) != len(config.selections) or not all(math.isfinite(w) and w >= 0 for w in weights) \
            or sum(weights) <= 0:
        raise UserError(f"--weights needs one finite non-negative weight per selection, got {weights}")
    parts = [_read_selection(Path(s)) for s in config.selections]
    subtasks = parts[0][1]
    keys = sorted(parts[0][2])
    for folder, (_, names, rows) in zip(config.selections[1:], parts[1:]):
        if sorted(rows) != keys:
            raise UserError(f"{folder} scored other pool examples than {config.selections[0]}; "
                            "fuse selections of the same pool")
        if sorted(names) != sorted(subtasks) and names != ["all"]:
            raise UserError(f"{folder}: subtasks {names} differ from {subtasks}")
    mats = []
    for m, names, rows in parts:
        m = m[[rows[k] for k in keys]]
        mats.append(np.repeat(m, len(subtasks), axis=1) if names == ["all"] else
                    align_columns(m, names, subtasks))
    fused = reciprocal_rank_fusion(mats, weights)
    files = sorted({k[0] for k in keys})
    settings = stage_settings(config, files)
    with stage_dir(config.output_dir, "fuse", settings, overwrite=config.overwrite) as part:
        if part is None:
            return update_exports(config.output_dir, config.export)
        examples, _ = load_examples(files)
        by_key = {(str(Path(e.source).resolve()), e.line): e for e in examples}
        rows = [by_key[k] for k in keys]
        scored = set(keys)
        unscored = [(e, "not scored by the fused selections") for k, e in by_key.items()
                    if k not in scored]
        return write_selection(part, rows, None, config, "hybrid", n_pool=len(examples),
                               unscored=unscored, per_subtask=fused, subtasks=subtasks,
                               subtask_rule=config.subtask_rule,
                               extra={"fused": list(config.selections), "weights": weights})
