"""The pool examples behind a store's rows, for pools too large to hold as ``Example`` objects.

``PoolRows`` is a sequence aligned with the rows of a pool datastore. At first it holds only what
the store's ``index.jsonl`` and ``skipped.jsonl`` say of each row (id, file, line: a few dozen bytes
a row); ``fetch(rows)`` then streams the pool files once, record by record, keeps the whole
``Example`` of the rows asked for (the selection) and, of every row, only its ``task`` and
``dataset`` fields (what ``scores.csv`` and the selection diagnostics need). Any other row reads as
a light ``Example`` with those two fields in ``raw`` and no text. So a million-row selection holds
the selected examples plus a few columns, not the pool.

The rows must still be those of the files the store was built from: each row's file, line and id
are checked while streaming (ids of the examples kept), and a pool file that changed is refused with
an actionable error; the caller has checked that each file's sha256 is the one the store recorded.
"""

from __future__ import annotations

import json
from array import array
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..errors import UserError
from .example import Example
from .formats import RecordError, _FileParser, iter_records, load_file


class PoolRows(Sequence):
    """Row-aligned pool examples of the store at ``store_path``, fetched lazily (module docstring)."""

    def __init__(self, store_path: str | Path, files: list[str], *, lenient: bool = False,
                 max_per_file: int | None = None, n_examples: int | None = None):
        self.store_path = Path(store_path)
        self.files, self.lenient, self.max_per_file = [str(f) for f in files], lenient, max_per_file
        self._source: list[str] = []                      # distinct file names of the rows
        self.ids, self._fidx, self._line = self._read_rows(self.store_path / "index.jsonl", "row")
        skipped = self._read_rows(self.store_path / "skipped.jsonl", None)
        self._skip_ids, self._skip_fidx, self._skip_line, self.skip_reasons = skipped
        self._fields: dict[int, dict] = {}                # row -> {"task", "dataset"} (shared dicts)
        self._skip_fields: dict[int, dict] = {}
        self._kept: dict[int, Example] = {}
        # examples the builder read from the files: the pool size of the budget
        self.n_examples = len(self.ids) + len(self.skip_reasons) if n_examples is None else int(n_examples)
        self.unscored = [(self._stub(self._skip_ids[j], self._skip_fidx[j], self._skip_line[j], {}), why)
                         for j, why in enumerate(self.skip_reasons)]

    def _read_rows(self, path: Path, row_key: str | None):
        ids, fidx, line, reasons = [], array("i"), array("q"), []
        where = {s: i for i, s in enumerate(self._source)}
        with open(path, encoding="utf-8") as fh:
            for n, text in enumerate(fh, 1):
                try:
                    r = json.loads(text)
                    if row_key is not None and r.get(row_key) != n - 1:
                        raise ValueError
                    f = where.setdefault(str(r["file"]), len(where))
                    ids.append(str(r["id"]))
                    line.append(int(r["line"]))
                    reasons.append(str(r.get("reason", "")))
                except (ValueError, KeyError, TypeError, AttributeError):
                    raise UserError(f"store {self.store_path} is corrupt ({path.name} line {n} is not "
                                    f"{'row ' + str(n - 1) if row_key else 'a skipped example'} with "
                                    "id, file and line); rebuild it") from None
                if f == len(self._source):
                    self._source.append(str(r["file"]))
                fidx.append(f)
        fidx_a, line_a = np.array(fidx, dtype=np.int32), np.array(line, dtype=np.int64)
        return (ids, fidx_a, line_a) if row_key is not None else (ids, fidx_a, line_a, reasons)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = int(i)
        if i in self._kept:
            return self._kept[i]
        return self._stub(self.ids[i], self._fidx[i], self._line[i], self._fields.get(i, {}))

    def __iter__(self) -> Iterator[Example]:
        kept, fields = self._kept, self._fields
        for i in range(len(self)):
            ex = kept.get(i)
            yield ex if ex is not None else self._stub(self.ids[i], self._fidx[i], self._line[i], fields.get(i, {}))

    def _stub(self, ex_id: str, fidx: int, line: int, raw: dict) -> Example:
        return Example(id=ex_id, messages=[], source=self._source[fidx], line=int(line), raw=raw)

    def fetch(self, rows) -> None:
        """Stream the pool files once: keep the whole examples of ``rows`` (and of the unscored
        examples), the task/dataset fields of every row; check that rows and files still agree.

        Only the examples kept are parsed and validated; every other row's record is only decoded,
        since its file is the one the store was built from (same sha256, checked by the caller)."""
        want = {int(i) for i in rows}
        shared: dict[tuple, dict] = {}  # one raw dict per (task, dataset) pair
        for path in self.files:
            pending = self._pending(path)
            parser = _FileParser(Path(path), "subtask")
            for line, record in _records_of(path, self.lenient, self.max_per_file):
                hit = pending.match(line)
                if hit is None:
                    continue
                kind, r = hit
                ex = record if isinstance(record, Example) else None
                if ex is None and (kind == "skipped" or r in want):
                    try:
                        ex = parser.parse(line, record)
                    except RecordError as exc:
                        raise pending.changed(f"line {line} is no longer a usable record ({exc})") from None
                if ex is not None:
                    pending.check_id(kind, r, ex)
                else:  # what parse() would have done for the ids of the records after this one
                    parser.seen_ids.add(self.ids[r])
                raw = record.raw if isinstance(record, Example) else record
                raw = raw if isinstance(raw, dict) else {}
                key = (raw.get("task"), raw.get("dataset"))
                fields = shared.setdefault(key, {k: v for k, v in zip(("task", "dataset"), key) if v is not None})
                if kind == "row":
                    self._fields[r] = fields
                    if r in want:
                        self._kept[r] = ex
                else:
                    self.unscored[r] = (ex, self.skip_reasons[r])
                if pending.done():
                    break
            pending.check_done()

    def _pending(self, path: str) -> "_Pending":
        f = self._source.index(path) if path in self._source else -1
        return _Pending(self, path, np.flatnonzero(self._fidx == f), np.flatnonzero(self._skip_fidx == f))


class _Pending:
    """The rows (and unscored examples) of one file, in file order, matched as its records stream by."""

    def __init__(self, pool: PoolRows, path: str, rows: np.ndarray, skipped: np.ndarray):
        self.pool, self.path = pool, path
        self.rows, self.skipped = rows, skipped
        for name, idx, lines in (("rows", rows, pool._line), ("skipped", skipped, pool._skip_line)):
            if np.any(np.diff(lines[idx]) <= 0):  # the builder writes both in file order
                raise UserError(f"store {pool.store_path} is corrupt (its {name} of {path} are not in "
                                "file order); rebuild it")
        self.p = self.q = 0

    def match(self, line: int) -> tuple[str, int] | None:
        """("row" | "skipped", index) when ``line`` is the next row or unscored example of the file."""
        if self.p < len(self.rows) and self.pool._line[self.rows[self.p]] == line:
            self.p += 1
            return "row", int(self.rows[self.p - 1])
        if self.q < len(self.skipped) and self.pool._skip_line[self.skipped[self.q]] == line:
            self.q += 1
            return "skipped", int(self.skipped[self.q - 1])
        return None

    def check_id(self, kind: str, r: int, ex: Example) -> None:
        want = (self.pool.ids if kind == "row" else self.pool._skip_ids)[r]
        if ex.id != want:
            raise self.changed(f"line {ex.line} holds id {ex.id!r}, the store's row has {want!r}")

    def done(self) -> bool:
        return self.p == len(self.rows) and self.q == len(self.skipped)

    def check_done(self) -> None:
        if self.p < len(self.rows):
            r = int(self.rows[self.p])
            raise self.changed(f"row {r} (line {self.pool._line[r]}) is no longer a usable record")
        if self.q < len(self.skipped):
            raise self.changed(f"line {self.pool._skip_line[self.skipped[self.q]]} is no longer a usable record")

    def changed(self, what: str) -> UserError:
        return UserError(f"{self.path}: {what}; the file changed since {self.pool.store_path} was built, "
                         "rebuild the datastore")


def _records_of(path: str, lenient: bool, limit: int | None) -> Iterator[tuple[int, object]]:
    """(line, decoded record) of a plain file, streamed; a datasets folder or hub id is loaded whole
    by ``load_file`` and gives (line, Example). Lines that do not decode are passed over: they are
    either lenient skips of the build or, if a row's, reported as no longer usable by the caller."""
    p = Path(path)
    if not p.is_file():
        for ex in load_file(path, lenient=lenient, limit=limit):
            yield ex.line, ex
        return
    for line, record, error in iter_records(p):
        if not error:
            yield line, record
