"""Input formats: detect the format of each file, parse records, attach a stable id and provenance.

Supported: open-instruct ``messages``, Alpaca (``instruction``/``input``/``output``), ShareGPT
(``conversations`` with ``from``/``value``) and ``prompt``/``completion``; in ``.jsonl``, ``.json``
(array or object of records), ``.parquet``, each optionally gzipped (``.gz``).
"""

from __future__ import annotations

import gzip
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import UserError
from .example import Example

log = logging.getLogger(__name__)

SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "chatgpt": "assistant", "bing": "assistant", "bard": "assistant",
                  "model": "assistant", "system": "system"}
VALID_ROLES = {"system", "user", "assistant"}


class RecordError(ValueError):
    """A record that does not fit its file's format (reason in the message)."""


def _check_str(record: dict, key: str) -> str:
    value = record.get(key)
    if not isinstance(value, str):
        raise RecordError(f"field '{key}' must be a string, got {type(value).__name__}")
    return value


def _check_turns(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    if not messages:
        raise RecordError("conversation has no turns")
    if not any(m["role"] == "assistant" for m in messages):
        raise RecordError("conversation has no assistant turn (nothing to train on)")
    return messages


def parse_messages(record: dict) -> dict:
    msgs = record.get("messages")
    if not isinstance(msgs, list):
        raise RecordError("field 'messages' must be a list")
    out = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise RecordError(f"messages[{i}] must have 'role' and 'content'")
        if m["role"] not in VALID_ROLES:
            raise RecordError(f"messages[{i}].role {m['role']!r} is not system/user/assistant")
        if not isinstance(m["content"], str):
            raise RecordError(f"messages[{i}].content must be a string")
        out.append({"role": m["role"], "content": m["content"]})
    return {"messages": _check_turns(out)}


def parse_alpaca(record: dict) -> dict:
    instruction = _check_str(record, "instruction")
    inp = record.get("input") or ""
    if not isinstance(inp, str):
        raise RecordError("field 'input' must be a string")
    output = _check_str(record, "output")
    user = instruction + ("\n\n" + inp if inp.strip() else "")
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": output}]}


def parse_sharegpt(record: dict) -> dict:
    conv = record.get("conversations")
    if not isinstance(conv, list):
        raise RecordError("field 'conversations' must be a list")
    out = []
    for i, turn in enumerate(conv):
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            raise RecordError(f"conversations[{i}] must have 'from' and 'value'")
        role = SHAREGPT_ROLES.get(str(turn["from"]).lower())
        if role is None:
            raise RecordError(f"conversations[{i}].from {turn['from']!r} is not a known speaker")
        if not isinstance(turn["value"], str):
            raise RecordError(f"conversations[{i}].value must be a string")
        out.append({"role": role, "content": turn["value"]})
    return {"messages": _check_turns(out)}


def parse_prompt_completion(record: dict) -> dict:
    prompt = _check_str(record, "prompt")
    completion = _check_str(record, "completion")
    if not completion.strip():
        raise RecordError("field 'completion' is empty")
    return {"messages": [{"role": "user", "content": prompt},
                         {"role": "assistant", "content": completion}],
            "prompt": prompt, "completion": completion}


# Order matters: the first format whose key is present wins.
FORMATS: dict[str, tuple[str, Callable[[dict], dict]]] = {
    "messages": ("messages", parse_messages),
    "sharegpt": ("conversations", parse_sharegpt),
    "alpaca": ("instruction", parse_alpaca),
    "prompt_completion": ("prompt", parse_prompt_completion),
}


def detect_format(record: dict) -> str | None:
    for name, (key, _) in FORMATS.items():
        if key in record:
            return name
    return None


def _open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def _base_suffix(path: Path) -> str:
    return Path(path.stem).suffix if path.suffix == ".gz" else path.suffix


def iter_records(path: Path) -> Iterator[tuple[int, Any, str | None]]:
    """Yield (line_or_position, record, json_error) from a data file."""
    suffix = _base_suffix(path)
    if suffix == ".jsonl":
        with _open_text(path) as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    yield lineno, json.loads(line), None
                except json.JSONDecodeError as exc:
                    yield lineno, None, f"invalid JSON ({exc.msg} at column {exc.colno})"
    elif suffix == ".json":
        with _open_text(path) as fh:
            try:
                data = json.load(fh)
            except json.JSONDecodeError as exc:
                raise UserError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
        if isinstance(data, dict):
            for key in ("data", "examples", "instances"):
                if isinstance(data.get(key), list):
                    data = data[key]
                    break
        if not isinstance(data, list):
            raise UserError(f"{path}: a .json data file must hold a list of records "
                            "(or an object with a 'data'/'examples' list)")
        for pos, record in enumerate(data, 1):
            yield pos, record, None
    elif suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise UserError(f"{path}: reading Parquet needs pyarrow "
                            "(pip install 'less-select[parquet]')") from None
        for pos, record in enumerate(pq.read_table(path).to_pylist(), 1):
            yield pos, record, None
    else:
        raise UserError(f"{path}: unsupported file type '{suffix}' "
                        "(use .jsonl, .json or .parquet, optionally .gz)")


@dataclass
class LoadReport:
    """What loading read and skipped, per file."""

    read: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    skipped_examples: list[str] = field(default_factory=list)  # "file:line: reason", first 20

    @property
    def total_read(self) -> int:
        return sum(self.read.values())

    @property
    def total_skipped(self) -> int:
        return sum(self.skipped.values())


def load_file(path: str | Path, *, lenient: bool = False, report: LoadReport | None = None,
              subtask_field: str = "subtask") -> list[Example]:
    """Parse one data file. A malformed record raises ``UserError('file:line: reason')`` unless
    ``lenient``, which skips it and counts it in ``report``."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such data file")
    report = report if report is not None else LoadReport()
    examples: list[Example] = []
    fmt_name: str | None = None
    stem = path.name.split(".")[0]
    seen_ids: set[str] = set()
    skipped = 0
    for line, record, json_error in iter_records(path):
        try:
            if json_error:
                raise RecordError(json_error)
            if not isinstance(record, dict):
                raise RecordError(f"record must be a JSON object, got {type(record).__name__}")
            name = detect_format(record)
            if name is None:
                raise RecordError("unknown format: expected one of the keys 'messages', "
                                  "'conversations', 'instruction'/'output' or 'prompt'/'completion'")
            if fmt_name is None:
                fmt_name = name
            elif name != fmt_name:
                raise RecordError(f"format '{name}' differs from the file's format '{fmt_name}'")
            parsed = FORMATS[name][1](record)
            rid = record.get("id")
            ex_id = str(rid) if rid is not None and str(rid) != "" else f"{stem}:{line}"
            if ex_id in seen_ids:  # ids must be unique in a file to serve as stable keys
                ex_id = f"{ex_id}@{stem}:{line}"
            seen_ids.add(ex_id)
            subtask = record.get(subtask_field)
            examples.append(Example(
                id=ex_id, messages=parsed["messages"], source=str(path), line=line, format=name,
                subtask=str(subtask) if subtask is not None else None,
                prompt=parsed.get("prompt"), completion=parsed.get("completion"), raw=record))
        except RecordError as exc:
            if not lenient:
                raise UserError(f"{path}:{line}: {exc} (use --lenient to skip such records)") from None
            skipped += 1
            if len(report.skipped_examples) < 20:
                report.skipped_examples.append(f"{path}:{line}: {exc}")
    report.read[str(path)] = len(examples)
    report.skipped[str(path)] = skipped
    if skipped:
        log.warning("%s: skipped %d malformed record(s) (lenient loading); first: %s",
                    path, skipped, report.skipped_examples[0] if report.skipped_examples else "")
    log.info("read %d example(s) from %s (format %s)", len(examples), path, fmt_name)
    return examples


def load_examples(paths: list[str | Path] | str | Path, *, lenient: bool = False,
                  max_per_file: int | None = None) -> tuple[list[Example], LoadReport]:
    """Load and concatenate several files; ``max_per_file`` keeps the first N of each (for quick runs)."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if not paths:
        raise UserError("no data files given")
    report = LoadReport()
    examples: list[Example] = []
    for p in paths:
        got = load_file(p, lenient=lenient, report=report)
        if max_per_file is not None:
            got = got[:max_per_file]
            report.read[str(Path(p))] = len(got)
        examples.extend(got)
    return examples, report
