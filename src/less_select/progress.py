"""Progress of long loops: a tqdm bar (count, rate, ETA) on a terminal, periodic log lines elsewhere.

One switch chooses how, for every loop of every stage: the mode ``auto`` (a bar when stderr is a
terminal, log lines otherwise: batch jobs, CI, log files), ``bar`` or ``log``. It is set by the
command line's ``--progress`` (:func:`set_mode`), else by the environment variable
``LESS_SELECT_PROGRESS``, else ``auto``. The HF Trainer's own bar follows it too
(:func:`bar_enabled`), and in log mode the command line turns off the bars of huggingface_hub,
transformers and datasets (:func:`silence_library_bars`).
"""

from __future__ import annotations

import io
import logging
import os
import sys
import time
from typing import Literal

from .errors import UserError

log = logging.getLogger("less_select.progress")

Mode = Literal["auto", "bar", "log"]
MODES: tuple[str, ...] = ("auto", "bar", "log")
ENV_VAR = "LESS_SELECT_PROGRESS"
_mode: str | None = None  # set by set_mode(); None: the environment variable, else auto


def _checked(mode: str, where: str) -> str:
    if mode not in MODES:
        raise UserError(f"{where}: progress mode {mode!r} is not one of {', '.join(MODES)}")
    return mode


def set_mode(mode: str | None) -> None:
    """Choose the progress mode for this process (``None``: back to the environment / auto)."""
    global _mode
    _mode = None if mode is None else _checked(mode, "--progress")


def get_mode() -> str:
    """The chosen mode: :func:`set_mode`'s, else ``$LESS_SELECT_PROGRESS``, else ``auto``."""
    if _mode is not None:
        return _mode
    env = os.environ.get(ENV_VAR, "").strip().lower()
    return _checked(env, ENV_VAR) if env else "auto"


def bar_enabled(stream=None) -> bool:
    """Whether loops draw a bar: mode ``bar``, or ``auto`` with ``stream`` (stderr) a terminal."""
    mode = get_mode()
    if mode != "auto":
        return mode == "bar"
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def silence_library_bars() -> None:
    """Turn off the bars huggingface_hub, transformers (loading weights) and datasets (saving,
    loading) draw themselves, so log mode's output is lines, not bar redraws: their environment
    switches for modules not imported yet, their functions for those already imported."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers follows the hub's
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    if "huggingface_hub" in sys.modules:
        sys.modules["huggingface_hub"].utils.disable_progress_bars()
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging
        hf_logging.disable_progress_bar()
    if "datasets" in sys.modules:
        sys.modules["datasets"].disable_progress_bars()


def _width(stream) -> dict:
    """tqdm's size options: follow the terminal, or 80 x 24 where it reports no size (a bare
    pseudo-terminal says 0 x 0, and tqdm would then draw nothing)."""
    try:
        if os.get_terminal_size(stream.fileno()).columns > 0:
            return {"dynamic_ncols": True}
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        pass
    return {"ncols": 80, "nrows": 24}


class _BarLogHandler(logging.Handler):
    """Writes log records above the bar (``tqdm.write``) instead of through it."""

    def __init__(self, original: logging.StreamHandler):
        super().__init__(original.level)
        self.original = original
        self.setFormatter(original.formatter)
        for f in original.filters:
            self.addFilter(f)

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm
        try:
            tqdm.write(self.format(record), file=self.original.stream)
        except Exception:  # noqa: BLE001 - logging must never break the loop it reports on
            self.handleError(record)


class _LogsAboveBar:
    """While a bar is drawn, the root logger's console handlers write above it (nesting-safe: only
    the outermost bar swaps them). Handlers of files and notebooks' own handlers are left alone."""

    depth = 0
    saved: list[logging.Handler] | None = None

    @classmethod
    def enter(cls) -> None:
        cls.depth += 1
        if cls.depth > 1:
            return
        root = logging.getLogger()
        cls.saved = list(root.handlers)
        root.handlers = [_BarLogHandler(h) if type(h) is logging.StreamHandler and
                         h.stream in (sys.stderr, sys.stdout) else h for h in root.handlers]

    @classmethod
    def exit(cls) -> None:
        cls.depth -= 1
        if cls.depth == 0 and cls.saved is not None:
            logging.getLogger().handlers = cls.saved
            cls.saved = None


class Progress:
    """``with Progress("datastore", total=n, unit="ex") as p: ... p.update(k)``

    Bar mode: a tqdm bar on stderr with count, rate and ETA (and tokens/s when ``extra`` counts
    tokens). Log mode: an INFO line at most every ``every_s`` seconds with the same numbers. Both
    end with one "done" line giving the count, time and rate. A loop that is often short (encoding a
    few targets) passes ``quiet_s``: no bar and no "done" line unless it runs that long."""

    def __init__(self, name: str, total: int | None, unit: str = "ex", every_s: float = 5.0,
                 quiet_s: float = 0.0):
        self.name, self.total, self.unit, self.every_s = name, total, unit, every_s
        self.quiet_s = quiet_s
        self.done = 0
        self.extra = 0  # a second counter (e.g. tokens)
        self.start = self.last = time.perf_counter()
        self.bar = None

    def __enter__(self):
        if bar_enabled():
            from tqdm import tqdm
            self.bar = tqdm(total=self.total or None, desc=self.name, unit=self.unit, file=sys.stderr,
                            mininterval=0.5, smoothing=0.1, delay=self.quiet_s, **_width(sys.stderr))
            _LogsAboveBar.enter()
        self.start = self.last = time.perf_counter()
        return self

    def update(self, n: int = 1, extra: int = 0) -> None:
        self.done += n
        self.extra += extra
        now = time.perf_counter()
        if self.bar is not None:
            if self.extra and now - self.last >= 1.0:
                self.last = now
                self.bar.set_postfix_str(f"{self.extra / max(now - self.start, 1e-9):.0f} tok/s",
                                         refresh=False)
            self.bar.update(n)
        elif now - self.last >= self.every_s:
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
        if self.bar is not None:
            self.bar.close()
            self.bar = None
            _LogsAboveBar.exit()
        if exc[0] is None and self.elapsed >= self.quiet_s:
            log.info("%s: done, %d %s in %.1fs (%.1f %s/s)", self.name, self.done, self.unit,
                     self.elapsed, self.rate, self.unit)
