"""Diagnostics of a selection: is it dominated by one source, one subtask or one length band?

Written into ``selection.json`` (``diagnostics``) and logged as warnings for every method, LESS and
baselines alike. The three failure modes are the ones the quality benchmark found
(docs/quality.md): LESS's max over subtasks letting one or two subtasks take the whole budget, one
source file or ``dataset`` filling most of it, and answers far shorter (or longer) than the targets'.
"""

from __future__ import annotations

import collections
import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from .data import Example

log = logging.getLogger(__name__)

DOMINANT_SOURCE_SHARE = 0.8   # one source file or dataset holding more than this share
FEW_PER_SUBTASK = 0.25        # a subtask with fewer than this fraction of its equal share
LENGTH_RATIO = 4.0            # median completion length this far from the targets' (either way)


def completion_words(ex: Example) -> int:
    """Words of the completion: the assistant turns, or ``completion``."""
    if ex.messages:
        return sum(len(str(m.get("content", "")).split()) for m in ex.messages
                   if m.get("role") == "assistant")
    return len(str(ex.completion or "").split())


def _dataset(ex: Example) -> str:
    raw = ex.raw if isinstance(ex.raw, dict) else {}
    return str(raw.get("dataset") or Path(ex.source).name)


def selection_diagnostics(examples: Sequence[Example], chosen: np.ndarray,
                          best_subtask: Sequence[str] | None, subtasks: Sequence[str] | None,
                          targets: Sequence[Example] = ()) -> dict:
    """``{"numbers": {...}, "warnings": [...]}`` for the selected rows ``chosen`` of ``examples``."""
    k = len(chosen)
    numbers: dict = {}
    warnings: list[str] = []
    sel = [examples[i] for i in chosen]
    for what, key in (("source file", lambda e: Path(e.source).name), ("dataset", _dataset)):
        counts = collections.Counter(map(key, sel))
        name, top = counts.most_common(1)[0]
        numbers[f"top_{what.replace(' ', '_')}"] = {"name": name, "share": top / k}
        n_kinds = len({key(e) for e in examples})
        if n_kinds > 1 and top / k > DOMINANT_SOURCE_SHARE:
            warnings.append(f"{top / k:.0%} of the selection comes from one {what} ({name})")
    if best_subtask is not None and subtasks and len(subtasks) > 1:
        counts = collections.Counter(best_subtask[i] for i in chosen)
        per = {s: counts.get(s, 0) for s in subtasks}
        numbers["selected_by_best_subtask"] = per
        fair = k / len(subtasks)
        few = sorted(s for s, c in per.items() if c < FEW_PER_SUBTASK * fair)
        numbers["subtasks_with_few_selected"] = few
        top_two = sum(sorted(per.values(), reverse=True)[:2])
        if few:
            warnings.append(f"{len(few)} of {len(subtasks)} subtask(s) are best served by fewer than "
                            f"{FEW_PER_SUBTASK:.0%} of an equal share of the selection: "
                            f"{', '.join(few[:10])}{' ...' if len(few) > 10 else ''} (consider "
                            f"--subtask-rule balanced)")
        numbers["top_two_subtasks_share"] = top_two / k
    sel_len = float(np.median([completion_words(e) for e in sel]))
    numbers["median_completion_words"] = sel_len
    if targets:
        tgt_len = float(np.median([completion_words(e) for e in targets]))
        numbers["target_median_completion_words"] = tgt_len
        lo, hi = sorted((max(sel_len, 1.0), max(tgt_len, 1.0)))
        if hi / lo > LENGTH_RATIO:
            warnings.append(f"selected completions have a median of {sel_len:.0f} word(s), the "
                            f"targets' {tgt_len:.0f}: the selection may follow answer length or "
                            "format rather than the task")
    return {"numbers": numbers, "warnings": warnings}
