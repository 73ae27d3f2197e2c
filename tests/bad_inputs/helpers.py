"""Shared checks of the generated bad-input suite: run a command in-process and assert that it was
refused with exactly one line naming the file (and line or field), no traceback, and no output."""

from __future__ import annotations

import json
from pathlib import Path

from less_select.cli import main
from less_select.errors import UserError

USER = {"role": "user", "content": "what is two and two"}
ASSISTANT = {"role": "assistant", "content": "four"}
# one good record per input format (the files of a case are written in that format)
GOOD = {
    "messages": [{"messages": [USER, ASSISTANT], "id": f"m{i}", "task": "t"} for i in range(3)],
    "sharegpt": [{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]}
                 for _ in range(3)],
    "alpaca": [{"instruction": "add", "input": "2 2", "output": "4"} for _ in range(3)],
    "prompt_completion": [{"prompt": "2+2=", "completion": " 4"} for _ in range(3)],
}
BAD_LINE = 3  # every bad record sits on line 3: two good lines before it, one after


def write_case(path: Path, fmt: str, bad: str | bytes) -> Path:
    """A JSONL file of the format's good records with ``bad`` (text or raw bytes) as line 3."""
    good = [json.dumps(r).encode() for r in GOOD[fmt]]
    bad_bytes = bad if isinstance(bad, bytes) else bad.encode("utf-8", "surrogatepass")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\n".join([good[0], good[1], bad_bytes, good[2]]) + b"\n")
    return path


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    """``less-select ARGS`` in-process: (exit status, stderr). A Python exception escaping ``main``
    is exactly the traceback a user would see, so it fails the case."""
    capsys.readouterr()
    try:
        rc = main([str(a) for a in args])
    except UserError as exc:  # pragma: no cover - main must catch these
        raise AssertionError(f"UserError escaped the CLI: {exc}") from exc
    except Exception as exc:  # noqa: BLE001
        raise AssertionError(f"traceback instead of a one-line error: {type(exc).__name__}: {exc}") from exc
    return rc, capsys.readouterr().err


def assert_refused(rc: int, err: str, *needles: str) -> str:
    """Non-zero exit, exactly one line on stderr, no traceback, every needle in that line."""
    assert rc != 0, f"silently accepted (exit 0); stderr: {err!r}"
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err
    assert len(lines) == 1, f"expected one line, got {len(lines)}: {err!r}"
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def assert_user_error(exc: UserError, *needles: str) -> str:
    msg = str(exc)
    assert "\n" not in msg, f"multi-line error: {msg!r}"
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"
    return msg


def assert_no_output(*dirs: Path) -> None:
    """Neither the output folder nor its ``.part`` sibling exists."""
    for d in dirs:
        assert not d.exists(), f"{d} was written"
        part = d.with_name(d.name + ".part")
        assert not part.exists(), f"{part} was left behind"


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
