"""progress.py: one switch (--progress, $LESS_SELECT_PROGRESS, auto) between a tqdm bar with rate and
ETA and periodic log lines."""

from __future__ import annotations

import io
import logging
import os

import pytest

from less_select import progress
from less_select.cli import main
from less_select.errors import UserError
from less_select.progress import Progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


LIBRARY_SWITCHES = ("HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS")


@pytest.fixture(autouse=True)
def _reset_mode(monkeypatch):
    """Each test starts in auto mode; what it switches (the CLI in log mode silences the libraries'
    bars) is switched back."""
    import datasets
    import huggingface_hub
    from transformers.utils import logging as hf_logging
    monkeypatch.delenv(progress.ENV_VAR, raising=False)
    before = {v: os.environ.get(v) for v in LIBRARY_SWITCHES}
    progress.set_mode(None)
    yield
    progress.set_mode(None)
    for var, value in before.items():
        if value is None:
            os.environ.pop(var, None)
    if before["HF_HUB_DISABLE_PROGRESS_BARS"] is None:
        huggingface_hub.utils.enable_progress_bars()
        hf_logging.enable_progress_bar()
    if before["HF_DATASETS_DISABLE_PROGRESS_BARS"] is None:
        datasets.enable_progress_bars()


def test_mode_precedence_flag_then_environment_then_auto(monkeypatch):
    assert progress.get_mode() == "auto"
    monkeypatch.setenv(progress.ENV_VAR, "BAR")
    assert progress.get_mode() == "bar"
    progress.set_mode("log")
    assert progress.get_mode() == "log" and not progress.bar_enabled(_Terminal())
    progress.set_mode(None)
    assert progress.bar_enabled(io.StringIO())  # forced bar even without a terminal


def test_auto_draws_a_bar_only_on_a_terminal():
    assert progress.bar_enabled(_Terminal())
    assert not progress.bar_enabled(io.StringIO())
    assert not progress.bar_enabled(object())  # a stream without isatty


def test_bad_mode_is_a_one_line_error(monkeypatch):
    with pytest.raises(UserError, match="--progress: progress mode 'fancy' is not one of auto, bar, log"):
        progress.set_mode("fancy")
    monkeypatch.setenv(progress.ENV_VAR, "always")
    with pytest.raises(UserError, match="LESS_SELECT_PROGRESS: progress mode 'always'"):
        progress.get_mode()


def test_log_mode_prints_periodic_lines_with_rate_and_eta(caplog, capsys):
    progress.set_mode("log")
    with caplog.at_level(logging.INFO, logger="less_select.progress"):
        with Progress("scoring", total=10, unit="rows", every_s=0.0) as p:
            for _ in range(10):
                p.update(1, extra=7)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 11  # one per update (every_s=0) and the final "done" line
    assert lines[4].startswith("scoring: 5/10 rows (50%), ETA ")
    assert "rows/s" in lines[4] and lines[4].endswith("tok/s")
    assert lines[-1].startswith("scoring: done, 10 rows in ")
    assert capsys.readouterr().err == ""  # no bar drawn


def test_bar_mode_draws_tqdm_with_rate_and_eta(monkeypatch, caplog):
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    with caplog.at_level(logging.INFO, logger="less_select.progress"):
        with Progress("features", total=4, unit="ex") as p:
            for _ in range(4):
                p.update(1)
    drawn = terminal.getvalue()
    assert "features: 100%" in drawn and "4/4" in drawn
    assert "ex/s]" in drawn and "<00:00" in drawn  # rate and remaining time (ETA)
    # no periodic lines while the bar is drawn, only the summary
    assert [r.getMessage().split(",")[0] for r in caplog.records] == ["features: done"]


def test_log_lines_go_above_the_bar_and_handlers_are_restored(monkeypatch):
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    root = logging.getLogger()
    console = logging.StreamHandler(terminal)
    before = list(root.handlers)
    root.addHandler(console)
    try:
        with Progress("outer", total=2) as outer:
            with Progress("inner", total=1) as inner:
                logging.getLogger("less_select.test").warning("a message from inside the loop")
                inner.update()
            assert console not in root.handlers  # swapped for the writer above the bar
            outer.update(2)
        assert root.handlers == before + [console]
    finally:
        root.removeHandler(console)
    assert "a message from inside the loop\n" in terminal.getvalue()


def test_cli_flag_sets_the_mode(monkeypatch, capsys):
    # the stage fails at once (no --data); the flag was applied before it ran
    assert main(["--progress", "bar", "tiny-model", "--output-dir", "o"]) == 2
    assert progress.get_mode() == "bar"
    monkeypatch.setenv(progress.ENV_VAR, "log")
    assert main(["tiny-model", "--output-dir", "o"]) == 2
    assert progress.get_mode() == "log"  # without the flag: the environment variable
    assert main(["--progress", "sometimes", "tiny-model"]) == 2
    assert "invalid choice: 'sometimes'" in capsys.readouterr().err


def test_quiet_loops_log_nothing_and_draw_no_bar_when_short(monkeypatch, caplog):
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    with caplog.at_level(logging.INFO, logger="less_select.progress"):
        with Progress("encoding", total=3, quiet_s=60.0) as p:
            p.update(3)
        progress.set_mode("log")
        with Progress("encoding", total=3, quiet_s=60.0) as p:
            p.update(3)
    assert terminal.getvalue() == "" and caplog.records == []


def test_log_mode_silences_the_libraries_bars(monkeypatch):
    import datasets
    from transformers.utils import logging as hf_logging
    for var in LIBRARY_SWITCHES:
        monkeypatch.delenv(var, raising=False)
    progress.silence_library_bars()
    assert not hf_logging.is_progress_bar_enabled() and not datasets.is_progress_bar_enabled()
    assert all(os.environ[var] == "1" for var in LIBRARY_SWITCHES)  # for libraries imported later
