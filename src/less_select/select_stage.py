"""The LESS ``select`` stage: score a pool datastore against target features with
:class:`~less_select.less_selector.LessSelector` (docs/method.md, "Influence"), take the top under
the budget and write the selection folder with the shared writer (``selection.write_selection``);
also re-reads the pool rows a store was built from, as its manifest records them.

Like every stage it skips itself when its folder was made with the same settings and refuses,
naming the setting, when it was made with other ones (``--overwrite`` reruns it). Its settings hold
the identity of the two stores it reads (the sha256 of their manifest and index), not the stores'
own build records.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from .configs import option, shared, to_dict
from .data import Example
from .errors import UserError
from .export import parse_formats, update_exports
from .selection import BudgetConfig, write_selection
from .subtask_rules import SubtaskRuleName

log = logging.getLogger(__name__)


@dataclass
class SelectConfig(BudgetConfig):
    """The LESS ``select`` stage: score the pool datastore against target features, take the top."""

    datastore: str = option("", help="Finished pool datastore folder.")
    targets: str = option("", help="Finished target-features folder (same checkpoints and projection).")
    output_dir: str = option("", help="Selection folder to write.")
    dim: int = shared("dim")
    subtask_rule: SubtaskRuleName = option("max", help=(
        "How per-subtask influence becomes one ranking: max (LESS: max over subtasks) or balanced "
        "(round-robin over subtasks, each by its own ranking; no subtask is starved)."))
    overwrite: bool = shared("overwrite")


def pool_examples_for_store(store) -> tuple[list[Example], list[tuple[Example, str]], int]:
    """Re-read the pool files a store was built from, as its manifest records them (files with
    their sha256, ``lenient``, ``max_examples``): (row-aligned examples, unscored, pool size).

    Refuses when a file changed since the store was built (rows would no longer match)."""
    from .data.hf_datasets import source_sha256
    from .data.pool_rows import PoolRows
    mf = store.manifest
    missing = [k for k in ("lenient", "max_examples") if k not in mf]
    if missing:
        raise UserError(f"{store.path}: its manifest records no {missing[0]} (a datastore from an "
                        f"older version); rebuild the datastore")
    files = [f["path"] for f in store.manifest["data_files"]]
    for f in store.manifest["data_files"]:
        sha = source_sha256(f["path"])  # a file, or a datasets folder / hub id
        if sha is None:
            raise UserError(f"{f['path']}: pool file of {store.path} is missing")
        if sha != f["sha256"]:
            raise UserError(f"{f['path']} changed since {store.path} was built; rebuild the datastore")
    # streamed (data/pool_rows.py): the selection writer fetches the selected examples in one pass
    rows = PoolRows(store.path, files, lenient=mf["lenient"], max_per_file=mf["max_examples"] or None,
                    n_examples=mf.get("n_examples"))
    return rows, rows.unscored, rows.n_examples


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


def store_identity(path: Path) -> dict:
    """What a selection depends on of a store: its path and the sha256 of its manifest and index."""
    from .datastore.store import INDEX, MANIFEST
    from .stage_folder import file_sha256
    return {"path": str(path), "manifest_sha256": file_sha256(path / MANIFEST),
            "index_sha256": file_sha256(path / INDEX)}


def run_select(config: SelectConfig) -> dict:
    """Score, select and write the selection folder (docs/method.md, "Influence", "Selection")."""
    from .configs import validate
    from .less_selector import LessSelector
    from .stage_folder import stage_dir
    validate(config)  # before any output is touched: a bad rerun leaves the old selection in place
    if not (config.datastore and config.targets and config.output_dir):
        raise UserError("select needs --datastore, --targets and --output-dir")
    selector = LessSelector(config.datastore, config.targets, config.dim or None)
    store, targets = selector.store, selector.targets
    settings = {"budget": [config.percentage, config.top_k], "dim": config.dim,
                **({"export": parse_formats(config.export)} if config.export else {}),
                "subtask_rule": config.subtask_rule,
                "datastore": store_identity(store.path), "targets": store_identity(targets.path)}
    with stage_dir(config.output_dir, "select", settings, overwrite=config.overwrite,
                   config=to_dict(config)) as part:
        if part is None:
            return update_exports(config.output_dir, config.export)
        selector.scores_file = part / "per_subtask_scores.npy"
        rows, unscored, n_pool = selector.pool_rows()
        target_examples = selector.target_examples()
        per_subtask, subtasks = selector.score_per_subtask(rows, target_examples)
        extra = {"datastore": str(store.path), "targets": str(targets.path), "subtasks": subtasks,
                 **_warnings(selector.last.noise, targets.manifest)}
        return write_selection(part, rows, None, config, "less", n_pool=n_pool,
                               unscored=unscored, extra=extra, per_subtask=per_subtask,
                               subtasks=subtasks, subtask_rule=config.subtask_rule,
                               target_examples=target_examples)


def _warnings(noise: dict, targets_manifest: dict) -> dict:
    """The projection-noise estimate, and a warning when noise drives the ranking or when a target
    subtask has no row."""
    extra = {"projection_noise": noise}
    if noise["noise_dominated"]:
        msg = (f"projection noise (std {noise['noise_std']:.3g} at d={noise['dim']}) is "
               f"{noise['noise_to_spread']:.2f}x the spread of the scores (std "
               f"{noise['score_std']:.3g}): the expected correlation of these scores with exact "
               f"ones is only {noise['expected_correlation_with_exact']:.2f}, so projection noise "
               f"drives much of the ranking; d >= {noise['dim_for_correlation_0.95']} would give 0.95")
        log.warning(msg)
        extra["noise_warning"] = msg
    lost = targets_manifest.get("subtasks_without_rows") or []
    if lost:
        msg = (f"{len(lost)} target subtask(s) had no usable example after truncation and are "
               f"not scored: {', '.join(lost)}")
        log.warning(msg)
        extra["missing_subtasks_warning"] = msg
    return extra
