"""Measured seconds of every stage a comparison runs, kept in ``<output_dir>/costs.json`` so that a
stage reused by a rerun reports the seconds measured when it ran."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Callable

from ..stage_folder import write_atomic

log = logging.getLogger(__name__)
COSTS_FILE = "costs.json"


class Costs:
    """Measured seconds per stage, persisted so that a reused stage keeps its original cost."""

    def __init__(self, path: Path):
        self.path = path
        self.data: dict[str, dict] = json.loads(path.read_text()) if path.is_file() else {}

    def timed(self, key: str, marker: Path, fn: Callable[[], Any]) -> tuple[Any, float, bool]:
        """Run ``fn``; (result, seconds, reused). A stage whose ``stage.json`` did not change
        was skipped: its seconds are the ones recorded when it ran."""
        before = _marker_state(marker)
        start = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - start
        reused = before is not None and before == _marker_state(marker)
        if reused and key in self.data:
            return result, float(self.data[key]["seconds"]), True
        if reused:
            log.warning("compare: %s was reused but its original cost is unknown (no %s entry); "
                        "reporting the %.1fs of this check", key, self.path.name, seconds)
        self.data[key] = {"seconds": seconds, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        write_atomic(self.path, json.dumps(self.data, indent=2))
        return result, seconds, reused


def _marker_state(marker: Path):
    try:
        return marker.stat().st_mtime_ns, marker.read_bytes()
    except FileNotFoundError:
        return None
