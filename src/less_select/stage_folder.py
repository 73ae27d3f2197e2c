"""Stage folders: write into ``<dir>.part``, rename when complete; skip when done with the same
settings, refuse (naming the differing settings) when done with other ones."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator

from . import __version__
from .errors import UserError

log = logging.getLogger(__name__)
STAGE_FILE = "stage.json"


def git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _diff(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    keys = sorted(set(old) | set(new))
    out = []
    for k in keys:
        a, b = old.get(k, "<unset>"), new.get(k, "<unset>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += _diff(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: {a!r} -> {b!r}")
    return out


def stage_status(out_dir: Path, settings: dict[str, Any]) -> str:
    """'missing', 'done' (same settings) or raises UserError naming what changed."""
    marker = out_dir / STAGE_FILE
    if not marker.is_file():
        return "missing"
    old = json.loads(marker.read_text())["settings"]
    new = json.loads(json.dumps(settings))  # normalize tuples/paths as JSON would
    for key in DERIVED_OUTPUTS:  # brought up to date on a finished stage (export.update_exports)
        old.pop(key, None)
        new.pop(key, None)
    diff = _diff(old, new)
    if diff:
        raise UserError(f"{out_dir} was made with other settings ({'; '.join(diff)}); "
                        "delete it or use --overwrite to rerun this stage")
    return "done"


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _barrier() -> None:
    try:
        import torch.distributed as dist
    except ImportError:
        return
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def stage_finished(out_dir: str | Path, name: str, settings: dict[str, Any]) -> bool:
    """True when ``out_dir`` is a finished ``name`` stage made with ``settings`` (skip it); False
    when it does not exist (run it). Refuses (``UserError``) one made with other settings, naming
    them, and a folder that is not a finished stage."""
    out = Path(out_dir)
    if stage_status(out, settings) == "done":
        log.info("%s: %s is up to date with these settings; skipping", name, out)
        return True
    if out.exists():
        raise UserError(f"{out} exists but is not a finished {name} stage; delete it or pass --overwrite")
    return False


def _record(name: str, settings: dict[str, Any], config: dict[str, Any] | None) -> str:
    """``stage.json``: the stage, its settings (the skip key) and, when given, its full config (what
    replays the run, run-only options such as batch sizes included)."""
    record = {"stage": name, "settings": settings, **({"config": config} if config is not None else {}),
              "version": __version__, "git_sha": git_sha()}
    return json.dumps(record, indent=2, default=str)


@contextlib.contextmanager
def stage_dir(out_dir: str | Path, name: str, settings: dict[str, Any], *,
              overwrite: bool = False, resume: bool = False,
              config: dict[str, Any] | None = None) -> Iterator[Path | None]:
    """Yield a ``.part`` folder to write into, or ``None`` when the stage is already done.

    On success the folder gets ``stage.json`` (``_record``: stage name, settings, the full
    ``config`` when given, version, git sha) and is renamed
    to ``out_dir``. With ``overwrite`` a finished ``out_dir`` is replaced only then, so a rerun that
    fails leaves the earlier output as it was. A ``UserError`` raised inside removes the ``.part``
    folder (kept with ``resume``, unless empty). With ``resume`` an existing ``.part`` folder is kept
    (for chunked stages).
    Under ``torchrun`` every rank writes into the same folder; only rank 0 cleans up and renames,
    after a barrier once the stage's work (e.g. the HF Trainer) has set up the process group.
    """
    out = Path(out_dir)
    main = _rank() == 0
    if not overwrite and stage_finished(out, name, settings):
        yield None
        return
    part = out.with_name(out.name + ".part")
    if part.exists() and not resume and main:
        shutil.rmtree(part)
    existed = part.exists()
    part.mkdir(parents=True, exist_ok=True)
    try:
        yield part
    except BaseException as exc:
        if main:
            _discard_part(part, everything=isinstance(exc, UserError) and not (resume and existed))
        raise
    _barrier()
    if not main:
        return
    (part / STAGE_FILE).write_text(_record(name, settings, config))
    _replace_dir(part, out)
    log.info("%s: wrote %s", name, out)


def _discard_part(part: Path, everything: bool) -> None:
    """After a failed stage: drop its ``.part`` folder entirely (a clear error: nothing in it is
    worth keeping) or only when it is empty (a crash: what it holds may help, and is redone anyway)."""
    if everything:
        shutil.rmtree(part, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            part.rmdir()  # only succeeds when empty


def _replace_dir(part: Path, out: Path) -> None:
    """Rename ``part`` to ``out``; an existing ``out`` is moved aside first and deleted after."""
    if not out.exists():
        part.rename(out)
        return
    old = out.with_name(out.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    out.rename(old)
    part.rename(out)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(path: str | Path, binary: bool = False):
    """A file written through a temporary sibling and renamed when the block completes, so no
    partial file is ever visible; the sibling's name is unique (two writers never share it) and it
    is removed if the block fails. Text mode is UTF-8 without newline translation."""
    import tempfile
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with (os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8", newline="")) as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Write a whole file atomically (:func:`atomic_file`)."""
    with atomic_file(path, binary=isinstance(data, bytes)) as fh:
        fh.write(data)


def finish_stage(part: Path, out: Path, name: str, settings: dict[str, Any],
                 config: dict[str, Any] | None = None) -> bool:
    """Mark a ``.part`` folder complete and rename it; False if another process already did."""
    write_atomic(part / STAGE_FILE, _record(name, settings, config))
    try:
        part.rename(out)
    except FileNotFoundError:
        return False
    log.info("%s: wrote %s", name, out)
    return True


def file_sha256(path: str | Path, block: int = 1 << 20) -> str:
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            h.update(chunk)
    return h.hexdigest()


# Options that name extra files derived from a stage's result (``--export``): a finished stage
# that differs only in them is not rerun or refused; the stage writes or removes those files.
DERIVED_OUTPUTS = ("export",)

# Options that change where a stage runs, not what it writes: never part of the skip key (the
# datastore's RUN_ONLY leaves ``device`` out the same way), so a GPU output is reused on the CPU.
RUN_ONLY = ("overwrite", "device")


def stage_settings(config, data_files: list[str], exclude: tuple[str, ...] = RUN_ONLY) -> dict[str, Any]:
    """A stage's settings for skip/refuse: its config plus the content hash of its data files, so a
    file rewritten in place (e.g. a new selection) never reuses an output made from the old one."""
    from dataclasses import asdict
    from .data.hf_datasets import source_sha256
    settings = {k: v for k, v in asdict(config).items() if k not in exclude}
    if not settings.get("export"):  # recorded only when asked for: older selections still match
        settings.pop("export", None)
    # files and datasets folders / hub ids alike (None: the source does not exist)
    settings["data_sha256"] = [source_sha256(f) for f in data_files]
    return settings
