"""Input formats: detect the format of each file, parse records, attach a stable id and provenance.

Supported: open-instruct ``messages``, Alpaca (``instruction``/``input``/``output``), ShareGPT
(``conversations`` with ``from``/``value``) and ``prompt``/``completion``; in ``.jsonl``, ``.json``
(array or object of records), ``.parquet``, each optionally gzipped (``.gz``); and Hugging Face
``datasets`` folders and hub ids (``data/hf_datasets.py``).
"""

from __future__ import annotations

import gzip
import json
import logging
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import UserError
from .example import Example
from .hf_datasets import is_dataset_source, open_source

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


def _check_turns(messages: list[dict[str, str]], field: str) -> list[dict[str, str]]:
    """A conversation needs an assistant turn, and every assistant turn needs text: an empty answer
    is refused here as an empty ``completion`` or ``output`` is (there is nothing to train on)."""
    if not messages:
        raise RecordError("conversation has no turns")
    if not any(m["role"] == "assistant" for m in messages):
        raise RecordError("conversation has no assistant turn (nothing to train on)")
    for i, m in enumerate(messages):
        if m["role"] == "assistant" and not m["content"].strip():
            raise RecordError(f"{field}[{i}] is an empty assistant turn (nothing to train on)")
    return messages


def parse_messages(record: dict) -> dict:
    msgs = record.get("messages")
    if not isinstance(msgs, list):
        raise RecordError("field 'messages' must be a list")
    out = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise RecordError(f"messages[{i}] must have 'role' and 'content'")
        if not isinstance(m["role"], str) or m["role"] not in VALID_ROLES:
            raise RecordError(f"messages[{i}].role {m['role']!r} is not system/user/assistant")
        if not isinstance(m["content"], str):
            raise RecordError(f"messages[{i}].content must be a string")
        out.append({"role": m["role"], "content": m["content"]})
    return {"messages": _check_turns(out, "messages")}


def parse_alpaca(record: dict) -> dict:
    instruction = _check_str(record, "instruction")
    inp = record.get("input") or ""
    if not isinstance(inp, str):
        raise RecordError("field 'input' must be a string")
    output = _check_str(record, "output")
    if not output.strip():
        raise RecordError("field 'output' is empty (nothing to train on)")
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
        role = SHAREGPT_ROLES.get(turn["from"].lower()) if isinstance(turn["from"], str) else None
        if role is None:
            raise RecordError(f"conversations[{i}].from {turn['from']!r} is not a known speaker")
        if not isinstance(turn["value"], str):
            raise RecordError(f"conversations[{i}].value must be a string")
        out.append({"role": role, "content": turn["value"]})
    return {"messages": _check_turns(out, "conversations")}


def parse_prompt_completion(record: dict) -> dict:
    prompt = _check_str(record, "prompt")
    completion = _check_str(record, "completion")
    if not completion.strip():
        raise RecordError("field 'completion' is empty (nothing to train on)")
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


def _base_suffix(path: Path) -> str:
    return Path(path.stem).suffix if path.suffix == ".gz" else path.suffix


GZIP_MAGIC = b"\x1f\x8b"
_UTF16_32_BOMS = (b"\x00\x00\xfe\xff", b"\xff\xfe\x00\x00", b"\xff\xfe", b"\xfe\xff")


def _check_text_start(path: Path, head: bytes) -> None:
    """Refuse, from its first bytes, a file that is not UTF-8 text: UTF-16/32, compressed, binary."""
    if head.startswith(_UTF16_32_BOMS):
        raise UserError(f"{path}: the file is UTF-16/UTF-32 text; save it as UTF-8")
    if head.startswith(GZIP_MAGIC):
        raise UserError(f"{path}: the file is gzip-compressed; name it {path.name}.gz")
    if b"\x00" in head:
        raise UserError(f"{path}: the file holds NUL bytes (binary data or UTF-16 text without a "
                        "byte order mark), not UTF-8 JSON text")


def _open_binary(path: Path):
    """The file's (decompressed) bytes as a binary stream, after checking it is readable text."""
    try:
        if path.suffix == ".gz":
            with open(path, "rb") as fh:
                if fh.read(2) != GZIP_MAGIC:
                    raise UserError(f"{path}: not gzip data (named .gz but it does not start with the "
                                    "gzip signature); drop the .gz from its name or compress it")
            fh = gzip.open(path, "rb")
        else:
            fh = open(path, "rb")
        head = fh.peek(4096)[:4096] if hasattr(fh, "peek") else b""
    except (OSError, zlib.error) as exc:  # permissions, a corrupt gzip header, ...
        what = "the gzip data is corrupt" if path.suffix == ".gz" and not isinstance(
            exc, PermissionError) else "cannot read the file"
        raise UserError(f"{path}: {what} ({exc})") from None
    except EOFError:
        raise UserError(f"{path}: the gzip data ends early (truncated file)") from None
    _check_text_start(path, head)
    return fh


def _decode(raw: bytes, first: bool) -> str:
    """One line (or file) as text; a UTF-8 byte order mark at the very start is dropped."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordError(f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at byte {exc.start + 1}); "
                          "save the file as UTF-8") from None
    return text[1:] if first and text.startswith("\ufeff") else text


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except RecursionError:
        raise RecordError("JSON nested too deeply") from None


def _iter_jsonl(path: Path) -> Iterator[tuple[int, Any, str | None]]:
    lineno = 0
    with _open_binary(path) as fh:
        try:
            for lineno, raw in enumerate(fh, 1):
                try:
                    line = _decode(raw, lineno == 1)
                    if not line.strip():
                        continue
                    yield lineno, _loads(line), None
                except json.JSONDecodeError as exc:
                    yield lineno, None, f"invalid JSON ({exc.msg} at column {exc.colno})"
                except RecordError as exc:
                    yield lineno, None, str(exc)
        except (OSError, EOFError, zlib.error) as exc:
            raise UserError(f"{path}:{lineno + 1}: the gzip data is corrupt or ends early (truncated "
                            f"file: {exc}); records after line {lineno} cannot be read") from None


def _iter_json(path: Path) -> Iterator[tuple[int, Any, str | None]]:
    with _open_binary(path) as fh:
        try:
            raw = fh.read()
        except (OSError, EOFError, zlib.error) as exc:
            raise UserError(f"{path}: the gzip data is corrupt or ends early (truncated file: {exc})") from None
    try:
        data = _loads(_decode(raw, True))
    except RecordError as exc:
        raise UserError(f"{path}: {exc}") from None
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


def _iter_parquet(path: Path) -> Iterator[tuple[int, Any, str | None]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise UserError(f"{path}: reading Parquet needs pyarrow "
                        "(pip install 'less-select[parquet]')") from None
    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for unreadable files
        raise UserError(f"{path}: not a readable Parquet file ({type(exc).__name__}: "
                        f"{str(exc)[:120]})") from None
    for pos, record in enumerate(rows, 1):
        yield pos, record, None


def iter_records(path: Path) -> Iterator[tuple[int, Any, str | None]]:
    """Yield (line_or_position, record, error) from a data file; ``error`` is the reason a JSON line
    could not be read (the record is then None). A file that cannot be read as a whole (not UTF-8,
    binary, not gzip, truncated) raises ``UserError`` even when records would be skipped, since how
    many records it lost is unknown."""
    suffix = _base_suffix(path)
    readers = {".jsonl": _iter_jsonl, ".json": _iter_json, ".parquet": _iter_parquet}
    if suffix not in readers:
        raise UserError(f"{path}: unsupported file type '{suffix}' "
                        "(use .jsonl, .json or .parquet, optionally .gz)")
    return readers[suffix](path)


MAX_NESTING = 64  # JSON deeper than this is refused: writing it back could hit Python's recursion limit


def _too_deep(obj: Any, limit: int = MAX_NESTING) -> bool:
    stack = [(obj, 1)]
    while stack:
        o, depth = stack.pop()
        if isinstance(o, (dict, list)):
            if depth > limit:
                return True
            stack.extend((v, depth + 1) for v in (o.values() if isinstance(o, dict) else o))
    return False


def _lone_surrogate(obj: Any, where: str = "") -> str | None:
    """Where a string of ``obj`` holds a lone UTF-16 surrogate (JSON allows ``"\\ud800"``; UTF-8
    text cannot hold it, so tokenizers and writers fail on it), else None."""
    if isinstance(obj, str):
        try:
            obj.encode("utf-8")  # C speed; fails exactly on surrogates
        except UnicodeEncodeError:
            return where or "a string"
        return None
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for k, v in items:
        key = (f"{where}.{k}" if where else k) if isinstance(k, str) else f"{where}[{k}]"
        found = _lone_surrogate(v, key)
        if found:
            return found
    return None


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


class _FileParser:
    """Turns the records of one file into examples: one format per file, unique ids."""

    def __init__(self, path: Path, subtask_field: str):
        self.path, self.subtask_field = path, subtask_field
        self.stem = path.name.split(".")[0]
        self.fmt_name: str | None = None
        self.seen_ids: set[str] = set()

    def parse(self, line: int, record: Any) -> Example:
        if not isinstance(record, dict):
            raise RecordError(f"record must be a JSON object, got {type(record).__name__}")
        name = detect_format(record)
        if name is None:
            raise RecordError("unknown format: expected one of the keys 'messages', "
                              "'conversations', 'instruction'/'output' or 'prompt'/'completion'")
        if self.fmt_name is None:
            self.fmt_name = name
        elif name != self.fmt_name:
            raise RecordError(f"format '{name}' differs from the file's format '{self.fmt_name}'")
        parsed = FORMATS[name][1](record)
        if _too_deep(record):
            raise RecordError(f"JSON nested deeper than {MAX_NESTING} levels")
        bad = _lone_surrogate(record)
        if bad:
            raise RecordError(f"{bad} holds a lone UTF-16 surrogate (e.g. \\ud800), which is not "
                              "valid Unicode text")
        rid = record.get("id")
        ex_id = str(rid) if rid is not None and str(rid) != "" else f"{self.stem}:{line}"
        if ex_id in self.seen_ids:  # ids must be unique in a file to serve as stable keys
            ex_id = f"{ex_id}@{self.stem}:{line}"
        self.seen_ids.add(ex_id)
        subtask = record.get(self.subtask_field)
        return Example(id=ex_id, messages=parsed["messages"], source=str(self.path), line=line,
                       format=name, subtask=str(subtask) if subtask is not None else None,
                       prompt=parsed.get("prompt"), completion=parsed.get("completion"), raw=record)


def load_file(path: str | Path, *, lenient: bool = False, report: LoadReport | None = None,
              subtask_field: str = "subtask", limit: int | None = None) -> list[Example]:
    """Parse one data file. A malformed record raises ``UserError('file:line: reason')`` unless
    ``lenient``, which skips it and counts it in ``report``. ``limit`` keeps the first N examples
    (every record is still checked). A file without any usable record is an error."""
    records = None
    if is_dataset_source(path):  # a datasets folder or hub id: source "name@split", line = row
        label, records = open_source(path)
        path = Path(label)
    path = Path(path)
    if records is None and path.is_dir():
        raise UserError(f"{path}: is a folder, not a data file (nor a datasets folder saved with "
                        "save_to_disk)")
    if records is None and not path.is_file():
        raise UserError(f"{path}: no such data file")
    report = report if report is not None else LoadReport()
    parser = _FileParser(path, subtask_field)
    examples: list[Example] = []
    skipped = 0
    first_skip = ""
    for line, record, error in records if records is not None else iter_records(path):
        try:
            if error:
                raise RecordError(error)
            examples.append(parser.parse(line, record))
        except RecordError as exc:
            if not lenient:
                raise UserError(f"{path}:{line}: {exc} (use --lenient to skip such records)") from None
            skipped += 1
            first_skip = first_skip or f"{path}:{line}: {exc}"
            if len(report.skipped_examples) < 20:
                report.skipped_examples.append(f"{path}:{line}: {exc}")
    if not examples:
        raise UserError(f"{path}: no usable record ({skipped} malformed, skipped; first: {first_skip})"
                        if skipped else f"{path}: the file holds no records")
    n_parsed = len(examples)
    if limit is not None and n_parsed > limit:
        examples = examples[:limit]
    report.read[str(path)] = len(examples)
    report.skipped[str(path)] = skipped
    if skipped:
        log.warning("%s: skipped %d malformed record(s) (lenient loading); first: %s",
                    path, skipped, first_skip)
    kept = f", kept the first {len(examples)} (max examples per file)" if len(examples) < n_parsed else ""
    log.info("read %d example(s) from %s (format %s%s)", n_parsed, path, parser.fmt_name, kept)
    return examples


def load_examples(paths: list[str | Path] | str | Path, *, lenient: bool = False,
                  max_per_file: int | None = None) -> tuple[list[Example], LoadReport]:
    """Load and concatenate several files; ``max_per_file`` keeps the first N of each (for quick runs).

    The same file named twice is refused (its rows would be duplicated)."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if not paths:
        raise UserError("no data files given")
    if max_per_file is not None and max_per_file < 0:
        raise UserError(f"the number of examples per file must be >= 0, got {max_per_file}")
    seen: dict[Path, str] = {}
    for p in paths:
        key = Path(p).resolve()
        if key in seen:
            raise UserError(f"{p}: data file given twice (also as {seen[key]}); name each file once")
        seen[key] = str(p)
    report = LoadReport()
    examples: list[Example] = []
    for p in paths:
        examples.extend(load_file(p, lenient=lenient, report=report, limit=max_per_file))
    return examples, report
