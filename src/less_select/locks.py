"""Owner-named lock files: who holds a folder's build or finalize step, and taking over dead owners.

A lock is a small JSON file ``{"pid", "host", "started", "proc_start", "purpose"}`` created
atomically (written under a unique name, then hard-linked into place, so a lock file that exists is
always complete). Another process finding it asks whether the owner is alive: an owner on this host
whose pid is gone (or reused by a process started later) is dead, and its lock is taken over. An
owner on another host is always treated as alive, since its pid cannot be checked from here.

Take-overs are serialized by an ``flock`` on the lock's folder, so two processes finding the same
dead owner cannot both take the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any, Iterator

log = logging.getLogger(__name__)


def _proc_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), or None where /proc is absent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after its closing ')'
    return stat.rsplit(")", 1)[1].split()[19]


def owner_record(purpose: str) -> dict[str, Any]:
    pid = os.getpid()
    return {"pid": pid, "host": socket.gethostname(), "proc_start": _proc_start(pid),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "purpose": purpose}


def read_owner(path: Path) -> dict[str, Any] | None:
    """The owner recorded in a lock file; ``{}`` for an unreadable (pre-owner-info) lock, None if gone."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        owner = json.loads(text)
        return owner if isinstance(owner, dict) else {}
    except ValueError:
        return {}


def owner_alive(owner: dict[str, Any]) -> bool:
    """False only when the owner provably ran on this host and is gone."""
    if not owner or "pid" not in owner:
        return False  # an empty lock (left by an older version or a crash mid-write) has no owner
    if owner.get("host") != socket.gethostname():
        return True
    pid = int(owner["pid"])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    recorded, now = owner.get("proc_start"), _proc_start(pid)
    return recorded is None or now is None or recorded == now  # else the pid was reused


def describe(owner: dict[str, Any] | None) -> str:
    if not owner:
        return "an unknown process"
    return f"pid {owner.get('pid')} on {owner.get('host')} (started {owner.get('started')})"


@contextlib.contextmanager
def _folder_guard(folder: Path) -> Iterator[None]:
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def try_acquire(path: str | Path, purpose: str) -> tuple[bool, dict[str, Any] | None]:
    """Take the lock at ``path`` (its folder must exist). Returns (taken, owner found if not taken).

    A lock whose owner is dead is taken over (logged with the dead owner's details).
    """
    path = Path(path)
    me = owner_record(purpose)
    tmp = path.with_name(f".{path.name}.{me['pid']}.{time.monotonic_ns()}.tmp")
    tmp.write_text(json.dumps(me))
    try:
        for _ in range(3):
            try:
                os.link(tmp, path)  # atomic: fails if the lock exists
                return True, None
            except FileExistsError:
                pass
            with _folder_guard(path.parent):
                owner = read_owner(path)
                if owner is None:
                    continue  # released meanwhile: try again
                if owner_alive(owner):
                    return False, owner
                log.warning("%s: taking over the lock of %s, which is no longer running", path,
                            describe(owner))
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        return False, read_owner(path)
    finally:
        tmp.unlink(missing_ok=True)


def release(path: str | Path) -> None:
    """Remove the lock if this process holds it (a lock taken over from us is left alone)."""
    path = Path(path)
    owner = read_owner(path)
    if owner and owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def live_locks(folder: str | Path) -> list[tuple[Path, dict[str, Any]]]:
    """Lock files (``*.lock``) in ``folder`` whose owners are alive."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    out = []
    for p in sorted(folder.glob("*.lock")):
        owner = read_owner(p)
        if owner is not None and owner_alive(owner) and not (
                owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname()):
            out.append((p, owner))
    return out
