"""The LESS ``select`` stage: score a pool datastore against target features (docs/method.md,
"Influence"), take the top under the budget and write the selection folder with the shared writer
(``selection.write_selection``); also re-reads the pool rows a store was built from."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from .configs import non_negative, option
from .data import Example
from .errors import UserError
from .selection import BudgetConfig, write_selection
from .subtask_rules import SubtaskRuleName

log = logging.getLogger(__name__)


@dataclass
class SelectConfig(BudgetConfig):
    """The LESS ``select`` stage: score the pool datastore against target features, take the top."""

    datastore: str = option("", help="Finished pool datastore folder.")
    targets: str = option("", help="Finished target-features folder (same checkpoints and projection).")
    output_dir: str = option("", help="Selection folder to write.")
    dim: int = option(0, help="Projection dimension to score with (0: the store's first).",
                      check=non_negative)
    subtask_rule: SubtaskRuleName = option("max", help=(
        "How per-subtask influence becomes one ranking: max (LESS: max over subtasks) or balanced "
        "(round-robin over subtasks, each by its own ranking; no subtask is starved)."))


def pool_examples_for_store(store) -> tuple[list[Example], list[tuple[Example, str]], int]:
    """Re-read the pool files a store was built from: (row-aligned examples, unscored, pool size).

    Refuses when a file changed since the store was built (rows would no longer match)."""
    from .data import load_examples
    from .stage_folder import file_sha256
    settings = json.loads((store.path / "stage.json").read_text())["settings"]
    cfg = settings["config"]
    files = [f["path"] for f in store.manifest["data_files"]]
    for f in store.manifest["data_files"]:
        if not Path(f["path"]).is_file():
            raise UserError(f"{f['path']}: pool file of {store.path} is missing")
        if file_sha256(f["path"]) != f["sha256"]:
            raise UserError(f"{f['path']} changed since {store.path} was built; rebuild the datastore")
    examples, _ = load_examples(files, lenient=cfg.get("lenient", False),
                                max_per_file=cfg.get("max_examples") or None)
    by_key = {(e.source, e.line): e for e in examples}
    rows = [by_key[(r["file"], r["line"])] for r in store.index()]
    with open(store.path / "skipped.jsonl", encoding="utf-8") as fh:
        unscored = [(by_key[(r["file"], r["line"])], r["reason"]) for r in map(json.loads, fh)]
    return rows, unscored, len(examples)


def target_examples_for_store(targets) -> list[Example]:
    """The target examples a target store was built from (for the length diagnostics), rebuilt from
    its manifest's task and data folder; empty (no length diagnostic) when they cannot be rebuilt."""
    from .data.targets import build_target_examples
    task = targets.manifest.get("task")
    if not task:
        return []
    try:
        return build_target_examples(task, targets.manifest.get("data_dir") or None)
    except (UserError, OSError, ValueError) as exc:
        log.info("length diagnostics skipped: target examples of %s not rebuilt (%s)", targets.path, exc)
        return []


def run_select(config: SelectConfig) -> dict:
    """Score, select and write the selection folder (docs/method.md, "Influence", "Selection")."""
    from .datastore.store import Datastore
    from .scoring import compute_scores
    from .configs import validate
    from .stage_folder import stage_dir, stage_status
    validate(config)  # before any output is touched: a bad rerun leaves the old selection in place
    if not (config.datastore and config.targets and config.output_dir):
        raise UserError("select needs --datastore, --targets and --output-dir")
    store, targets = Datastore(config.datastore), Datastore(config.targets)
    settings = {"budget": [config.percentage, config.top_k], "dim": config.dim,
                "subtask_rule": config.subtask_rule,
                "datastore": str(store.path), "targets": str(targets.path),
                "datastore_stage": json.loads((store.path / "stage.json").read_text())["settings"],
                "targets_stage": json.loads((targets.path / "stage.json").read_text())["settings"]}
    try:  # selections are cheap and derived: same settings skip, other settings rerun
        changed = stage_status(Path(config.output_dir), settings) != "done"
    except UserError:
        changed = True
    with stage_dir(config.output_dir, "select", settings, overwrite=changed) as part:
        if part is None:
            return json.loads((Path(config.output_dir) / "selection.json").read_text())
        scores = compute_scores(store.path, targets.path, config.dim or None,
                                out_file=part / "per_subtask_scores.npy")
        rows, unscored, n_pool = pool_examples_for_store(store)
        noise = scores.noise
        extra = {"datastore": str(store.path), "targets": str(targets.path),
                 "subtasks": scores.subtasks, "projection_noise": noise}
        if noise["noise_dominated"]:
            msg = (f"projection noise (std {noise['noise_std']:.3g} at d={noise['dim']}) is "
                   f"{noise['noise_to_spread']:.2f}x the spread of the scores (std "
                   f"{noise['score_std']:.3g}): the expected correlation of these scores with exact "
                   f"ones is only {noise['expected_correlation_with_exact']:.2f}, so projection noise "
                   f"drives much of the ranking; d >= {noise['dim_for_correlation_0.95']} would give 0.95")
            log.warning(msg)
            extra["noise_warning"] = msg
        lost = targets.manifest.get("subtasks_without_rows") or []
        if lost:
            msg = (f"{len(lost)} target subtask(s) had no usable example after truncation and are "
                   f"not scored: {', '.join(lost)}")
            log.warning(msg)
            extra["missing_subtasks_warning"] = msg
        return write_selection(part, rows, None, config, "less", n_pool=n_pool,
                               unscored=unscored, extra=extra, per_subtask=scores.per_subtask,
                               subtasks=scores.subtasks, subtask_rule=config.subtask_rule,
                               target_examples=target_examples_for_store(targets))
