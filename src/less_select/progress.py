"""Progress logging for long loops: count, rate (items/s), ETA, at most every few seconds."""

from __future__ import annotations

import logging
import time

log = logging.getLogger("less_select.progress")


class Progress:
    """``with Progress("datastore", total=n, unit="ex") as p: ... p.update(k)``"""

    def __init__(self, name: str, total: int | None, unit: str = "ex", every_s: float = 5.0):
        self.name, self.total, self.unit, self.every_s = name, total, unit, every_s
        self.done = 0
        self.extra = 0  # a second counter (e.g. tokens)
        self.start = self.last = time.perf_counter()

    def __enter__(self):
        return self

    def update(self, n: int = 1, extra: int = 0) -> None:
        self.done += n
        self.extra += extra
        now = time.perf_counter()
        if now - self.last >= self.every_s:
            self.last = now
            self._emit(now)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    @property
    def rate(self) -> float:
        return self.done / max(self.elapsed, 1e-9)

    def _emit(self, now: float) -> None:
        rate = self.rate
        msg = f"{self.name}: {self.done}"
        if self.total:
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            msg += f"/{self.total} {self.unit} ({100 * self.done / self.total:.0f}%), ETA {eta:.0f}s"
        else:
            msg += f" {self.unit}"
        msg += f", {rate:.1f} {self.unit}/s"
        if self.extra:
            msg += f", {self.extra / max(now - self.start, 1e-9):.0f} tok/s"
        log.info(msg)

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            log.info("%s: done, %d %s in %.1fs (%.1f %s/s)", self.name, self.done, self.unit,
                     self.elapsed, self.rate, self.unit)
