"""Top-k selection (docs/method.md, "Selection and ties") and its outputs, shared by LESS and every baseline.

Outputs in the selection folder:
  ``top_p0.05.jsonl`` (or ``top_k<k>.jsonl``): the selected records as they were in the input files,
  best first; ``scores.csv``: every pool example's score, rank, selected flag and provenance
  (examples that could not be scored are listed with their reason); ``selection.json``: counts,
  score statistics, per-source and per-task shares, warnings; with ``--export``, the exports of
  ``export.py`` (an HF datasets folder, a LLaMA-Factory ``dataset_info.json``).
"""

from __future__ import annotations

import collections
import csv
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .configs import fraction, non_negative, option
from .data import Example
from .errors import UserError
from .stage_folder import atomic_file, write_atomic
from .subtask_rules import get_rule, rank_order

log = logging.getLogger(__name__)


@dataclass
class BudgetConfig:
    """How many examples to select."""

    percentage: float = option(0.05, help="Fraction p of the pool to select: floor(p * |pool|).",
                               check=fraction)
    top_k: int = option(0, help="Select exactly this many instead (overrides --percentage when > 0).",
                        check=non_negative)
    export: list[str] = option(factory=list, help=(
        "Also write the selection for training tools (export.py): hf (a datasets folder, "
        "<stem>_hf/), llamafactory (dataset_info.json for LLaMA-Factory); e.g. --export hf,llamafactory. "
        "A finished selection rerun with other values only writes or removes its exports."))

    def __post_init__(self):
        from .export import parse_formats
        parse_formats(self.export)  # an unknown export is refused before any work

    def n_select(self, n_pool: int) -> int:
        if self.top_k > 0:
            return self.top_k
        if not 0 < self.percentage <= 1:
            raise UserError(f"percentage must be in (0, 1], got {self.percentage}")
        return int(math.floor(self.percentage * n_pool + 1e-9))

    @property
    def file_stem(self) -> str:
        return f"top_k{self.top_k}" if self.top_k > 0 else f"top_p{self.percentage:g}"


def _task_of(ex: Example) -> str | None:
    t = ex.raw.get("task") if isinstance(ex.raw, dict) else None
    return str(t) if t is not None else None


def write_selection(out_dir: str | Path, examples: Sequence[Example], scores: np.ndarray | None,
                    budget: BudgetConfig, method: str, *, n_pool: int | None = None,
                    unscored: Sequence[tuple[Example, str]] = (), best_subtask: Sequence[str] | None = None,
                    extra: dict | None = None, per_subtask: np.ndarray | None = None,
                    subtasks: Sequence[str] | None = None, subtask_rule: str = "max",
                    target_examples: Sequence[Example] = (), order: Sequence[int] | None = None) -> dict:
    """Rank ``examples`` and write the selection folder; returns the report.

    Either ``scores`` (one per example, ranked by descending score) or ``per_subtask`` ``[n, K]``
    with its ``subtasks`` names, ranked by ``subtask_rule`` (``subtask_rules.py``); the latter also
    writes ``per_subtask_scores.npy`` (unless already there) and each row's best subtask.
    ``target_examples`` feed the diagnostics (completion lengths of the targets). ``order`` (positions
    into ``examples``, best first; a permutation) replaces the ranking by score, for a method whose
    ranking is not one score's order (predict's cascade ranks its real scores before predictions)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rule = get_rule(subtask_rule)
    ranked = None
    if per_subtask is not None:
        scores, ranked, best_subtask = _from_per_subtask(out, examples, per_subtask, subtasks, rule,
                                                         best_subtask)
    if scores is None or len(examples) != len(scores):
        raise ValueError("examples and scores differ in length")
    n_pool = n_pool if n_pool is not None else len(examples) + len(unscored)
    k, warnings = _budget(budget, n_pool, len(examples))
    if order is not None:
        order = np.asarray(order, dtype=np.int64)
        if not np.array_equal(np.sort(order), np.arange(len(examples))):
            raise ValueError(f"order must be a permutation of the {len(examples)} example positions")
    else:
        order = rank_order(scores) if ranked is None else ranked
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(1, len(order) + 1)
    chosen = order[:k]
    if hasattr(examples, "fetch"):  # data/pool_rows.PoolRows: the pool files are streamed once, now
        examples.fetch(chosen)

    sel_path = out / f"{budget.file_stem}.jsonl"
    with atomic_file(sel_path) as jsonl:  # streamed to disk: a large selection is never one string
        for i in chosen:
            jsonl.write(json.dumps(examples[i].raw, ensure_ascii=False) + "\n")
    from .export import write_exports
    exports = write_exports(out, sel_path, [examples[i] for i in chosen], [scores[i] for i in chosen],
                            budget.export, method)
    _write_scores_csv(out / "scores.csv", examples, scores, order, rank, k, best_subtask, unscored)

    report = _report(examples, scores, chosen, method, n_pool, len(unscored), budget, sel_path.name,
                     rule.name, subtasks, warnings, exports, extra)
    report.update(_diagnostics(examples, chosen, best_subtask, subtasks, target_examples, warnings))
    for msg in report["warnings"]:
        log.warning(msg)
    write_atomic(out / "selection.json", json.dumps(report, indent=2))
    log.info("%s: selected %d of %d example(s) -> %s", method, k, n_pool, sel_path)
    return report


def _from_per_subtask(out: Path, examples, per_subtask, subtasks, rule, best_subtask):
    """Scores, ranking and best subtask of ``per_subtask`` ``[n, K]`` under the subtask rule; saves
    ``per_subtask_scores.npy`` unless already there."""
    per_subtask = np.asarray(per_subtask)
    if subtasks is None or per_subtask.shape != (len(examples), len(subtasks)):
        raise ValueError(f"per_subtask of shape {per_subtask.shape} does not match "
                         f"{len(examples)} examples x {len(subtasks or [])} subtasks")
    if len(subtasks) > 1 or best_subtask is None:
        best_subtask = [subtasks[j] for j in per_subtask.argmax(axis=1)]
    if not (out / "per_subtask_scores.npy").is_file():
        np.save(out / "per_subtask_scores.npy", per_subtask.astype(np.float32))
    return rule.score(per_subtask), rule.rank(per_subtask), best_subtask


def _budget(budget: BudgetConfig, n_pool: int, n_scored: int) -> tuple[int, list[str]]:
    """The number selected (the budget, capped at the scored examples) and the warning of a cap."""
    k = budget.n_select(n_pool)
    warnings = []
    if k > n_scored:
        warnings.append(f"budget {k} exceeds the {n_scored} scored examples; selecting all of them")
        k = n_scored
    if k <= 0:
        raise UserError(f"the budget selects no example from a pool of {n_pool}; raise --percentage or --top-k")
    return k, warnings


def _write_scores_csv(path: Path, examples, scores, order, rank, k: int, best_subtask, unscored) -> None:
    """Every pool example, best first, then the unscored ones with their reason."""
    with atomic_file(path) as table:
        w = csv.writer(table)
        # ``row``: the example's row in per_subtask_scores.npy (how ``fuse`` aligns methods)
        w.writerow(["rank", "score", "selected", "id", "file", "line", "task", "best_subtask", "status", "row"])
        for i in order:
            ex = examples[i]
            w.writerow([int(rank[i]), f"{scores[i]:.8g}", int(rank[i] <= k), ex.id, ex.source, ex.line,
                        _task_of(ex) or "", best_subtask[i] if best_subtask is not None else "", "scored", int(i)])
        for ex, reason in unscored:
            w.writerow(["", "", 0, ex.id, ex.source, ex.line, _task_of(ex) or "", "", reason, ""])


def _report(examples, scores, chosen, method: str, n_pool: int, n_unscored: int, budget: BudgetConfig,
            selected_file: str, rule_name: str, subtasks, warnings: list[str], exports, extra) -> dict:
    """``selection.json`` without its diagnostics: counts, score statistics, per-source/task shares."""
    sel = [examples[i] for i in chosen]
    by_source = collections.Counter(Path(e.source).name for e in sel)
    by_task = collections.Counter(_task_of(e) or "<none>" for e in sel)
    s = np.asarray(scores, dtype=np.float64)
    return {
        "method": method, "n_pool": n_pool, "n_scored": len(examples), "n_unscored": n_unscored,
        "n_selected": len(chosen), "budget": {"percentage": budget.percentage, "top_k": budget.top_k},
        "selected_file": selected_file,
        "score_stats": {"mean": float(s.mean()), "std": float(s.std()), "min": float(s.min()),
                        "max": float(s.max()), "threshold": float(s[chosen[-1]])},
        "selected_by_source": dict(by_source.most_common()),
        "selected_by_task": dict(by_task.most_common()),
        "subtask_rule": rule_name,
        **({"subtasks": list(subtasks)} if subtasks is not None else {}),
        "warnings": warnings, **({"exports": exports} if exports else {}), **(extra or {}),
    }


def _diagnostics(examples, chosen, best_subtask, subtasks, target_examples, warnings) -> dict:
    """The diagnostics numbers and all warnings (the budget's, then the diagnostics')."""
    from .diagnostics import selection_diagnostics
    diag = selection_diagnostics(examples, chosen, best_subtask, subtasks, target_examples)
    return {"diagnostics": diag["numbers"], "warnings": warnings + diag["warnings"]}
