"""The ``<store>.part`` folder of a chunked store build: who may write into it, and who finalizes it.

Several processes may build one store, each its own shard of the chunks (``torchrun`` ranks or
``--num-shards``/``--shard-index``). Each holds a build lock ``build-shard-<r>-of-<w>.lock`` in the
folder naming its owner (pid, host, start time; see :mod:`less_select.locks`):

* a second process for the same shard is refused, naming the owner, and so is a process with
  another shard layout while any shard of the first layout runs (their chunks would overlap);
* a lock whose owner died (a killed build) is taken over, and the build resumes;
* the first process to see every chunk present takes ``finalizing.lock``, writes manifest and index
  and renames the folder; others wait for the rename (or take over from a dead finalizer).
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import time
from pathlib import Path
from typing import Iterator

from .. import locks
from ..errors import UserError
from ..stage_folder import finish_stage, write_atomic

log = logging.getLogger(__name__)
SETTINGS = "settings.json"
FINALIZE_LOCK = "finalizing.lock"
FINALIZE_WAIT_S = 600.0
_SHARD_LOCK = re.compile(r"build-shard-(\d+)-of-(\d+)\.lock")


def shard_lock_name(rank: int, world: int) -> str:
    return f"build-shard-{rank:03d}-of-{world:03d}.lock"


@contextlib.contextmanager
def build_lock(part: Path, rank: int, world: int, settings_json: str) -> Iterator[None]:
    """Hold this shard's build lock in ``part`` (created if needed) with its settings recorded.

    A partial build with other settings is cleared when no other process is building it (a single
    process), else refused.
    """
    part.mkdir(parents=True, exist_ok=True)
    lock = part / shard_lock_name(rank, world)
    taken, owner = locks.try_acquire(lock, f"build shard {rank} of {world}")
    if not taken:
        raise UserError(f"{part.with_suffix('')} is already being built by {locks.describe(owner)} "
                        f"(shard {rank} of {world}); wait for it to finish or stop it "
                        f"(a lock whose owner is gone is taken over)")
    try:
        others = [(p, o) for p, o in locks.live_locks(part) if p != lock]
        clash = [(p, o) for p, o in others if (m := _SHARD_LOCK.fullmatch(p.name)) and int(m[2]) != world]
        if clash:
            raise UserError(f"{part} is being built with another shard layout ({clash[0][0].name}) by "
                            f"{locks.describe(clash[0][1])}; use the same --num-shards or wait")
        _check_settings(part, lock, settings_json, world, others)
        yield
    finally:
        locks.release(lock)


def _check_settings(part: Path, lock: Path, settings_json: str, world: int, others) -> None:
    settings_file = part / SETTINGS
    recorded = settings_file.read_text(encoding="utf-8") if settings_file.is_file() else None
    has_chunks = any(p.is_dir() for p in part.iterdir())
    if recorded == settings_json or (recorded is None and not has_chunks):
        if recorded is None:
            write_atomic(settings_file, settings_json)
        return
    if world > 1 or others:
        who = f" (being built by {locks.describe(others[0][1])})" if others else ""
        raise UserError(f"{part} holds a partial build with other settings{who}; delete it first")
    log.warning("%s holds a partial build with other settings; starting over", part)
    for p in part.iterdir():
        if p == lock:
            continue
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    write_atomic(settings_file, settings_json)


def take_finalize_lock(part: Path, out: Path, wait_s: float = FINALIZE_WAIT_S) -> bool:
    """True if this process is to finalize; False once another process has finished the store.

    While a live process finalizes we wait for its rename; a dead finalizer's lock is taken over.
    """
    deadline = time.monotonic() + wait_s
    while True:
        if not part.is_dir():
            if out.is_dir():
                return False
            raise UserError(f"{part} disappeared during the build and {out} was not written; rerun")
        taken, owner = locks.try_acquire(part / FINALIZE_LOCK, "finalize")
        if taken:
            return True
        if time.monotonic() > deadline:
            raise UserError(f"{out}: {locks.describe(owner)} has been finalizing it for over "
                            f"{wait_s:.0f} s; if it hangs, stop it and rerun")
        log.info("%s is being finalized by %s; waiting", out, locks.describe(owner))
        time.sleep(0.2)


def finish_locked(part: Path, out: Path, settings: dict, config: dict | None = None) -> None:
    """Rename the completed folder (holding the finalize lock) and drop the build bookkeeping;
    ``stage.json`` records ``settings`` (the skip key) and the full ``config``."""
    for p in part.iterdir():  # other shards' locks (their chunks are all written) and stray temps
        if p.name != FINALIZE_LOCK and (_SHARD_LOCK.fullmatch(p.name) or p.name.endswith(".tmp")):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
    finish_stage(part, out, "datastore", settings, config)
    # after the rename: a kill before it leaves these for the resumed finalize to reuse
    for name in (SETTINGS, FINALIZE_LOCK):
        with contextlib.suppress(FileNotFoundError):
            (out / name).unlink()
