"""The on-disk gradient store: a manifest, an index and row-normalized float16 feature chunks.

Layout of a store folder (pool datastore or target set alike)::

    manifest.json            model, checkpoints (+ adapter sha256, mean lr, weight), projector specs,
                             gradient type, data files (+ sha256), row/skip counts, encoding
    index.jsonl              one line per row: {"row", "id", "file", "line", "subtask", "n_tokens"}
    skipped.jsonl            examples that got no row (no completion token after truncation)
    <checkpoint>/dim<d>/chunk-<c>.npy   float16 [rows of chunk c, d], rows L2-normalized

A chunk covers rows [c * chunk_size, (c + 1) * chunk_size). It is written to a temporary file and
renamed, so a chunk file that exists is complete: that is what makes building resumable and
shardable (processes write disjoint chunks). ``.npy`` headers carry shape and dtype, and each chunk
can be memory-mapped; readers stream the chunks in order without ever concatenating them on disk.
``read_ahead`` is the fast path for scoring: a background thread reads the next chunk of every
checkpoint into reused buffers (with O_DIRECT where the file system allows it: no page-cache copy,
no memory-mapped pages in the reader's resident set) while the caller computes on the current one.

A store that does not read back as written (unparsable manifest or index, a row count that disagrees
with the index, a chunk missing, truncated or of the wrong shape) is refused with
"store X is corrupt (reason); rebuild it", never a traceback.
"""

from __future__ import annotations

import io
import json
import mmap
import os
import queue
import threading
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..errors import UserError
from ..stage_folder import atomic_file

MANIFEST = "manifest.json"
INDEX = "index.jsonl"
SKIPPED = "skipped.jsonl"
FORMAT_VERSION = 1


def chunk_path(root: Path, checkpoint: str, dim: int, chunk: int) -> Path:
    return root / checkpoint / f"dim{dim}" / f"chunk-{chunk:05d}.npy"


def write_chunk(root: Path, checkpoint: str, dim: int, chunk: int, rows: np.ndarray) -> None:
    """Write one chunk (float16) atomically: temp file, then rename."""
    path = chunk_path(root, checkpoint, dim, chunk)
    if not Path(root).is_dir():  # never recreate a folder another process finalized or removed
        raise UserError(f"{root}: the build folder disappeared (finished or deleted by another process)")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, binary=True) as fh:  # a unique temporary name: writers never share one
        np.save(fh, rows.astype(np.float16, copy=False))


def n_chunks(n_rows: int, chunk_size: int) -> int:
    return (n_rows + chunk_size - 1) // chunk_size


REQUIRED = {"format_version": int, "n_rows": int, "chunk_size": int, "projectors": list,
            "checkpoints": list}


class Datastore:
    """Read access to a finished store (pool datastore or target features)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        mf = self.path / MANIFEST
        if not mf.is_file():
            hint = " (it is still being built or was interrupted)" if \
                self.path.with_name(self.path.name + ".part").exists() else ""
            raise UserError(f"{self.path}: not a finished gradient store, no {MANIFEST}{hint}")
        try:
            self.manifest: dict[str, Any] = json.loads(mf.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise self.corrupt(f"{MANIFEST} is not valid JSON: {exc}") from None
        if not isinstance(self.manifest, dict):
            raise self.corrupt(f"{MANIFEST} is not a JSON object")
        if self.manifest.get("format_version") != FORMAT_VERSION:
            raise UserError(f"{mf}: store format {self.manifest.get('format_version')} is not "
                            f"supported (expected {FORMAT_VERSION}); rebuild it")
        for key, typ in REQUIRED.items():
            if not isinstance(self.manifest.get(key), typ) or isinstance(self.manifest.get(key), bool):
                raise self.corrupt(f"{MANIFEST} field {key!r} is missing or not a {typ.__name__}")
        if self.n_rows < 0 or self.chunk_size <= 0:
            raise self.corrupt(f"{MANIFEST} has n_rows={self.n_rows}, chunk_size={self.chunk_size}")
        try:
            self.dims, [str(c["name"]) for c in self.checkpoints]  # noqa: B018 (validation)
        except (KeyError, TypeError, ValueError) as exc:
            raise self.corrupt(f"{MANIFEST} lists a projector or checkpoint without {exc}") from None
        if not (self.path / "stage.json").is_file():
            raise self.corrupt("no stage.json, so it was never marked finished")
        if not (self.path / INDEX).is_file():
            raise self.corrupt(f"no {INDEX}")
        n_index = _count_lines(self.path / INDEX)
        if n_index != self.n_rows:
            raise self.corrupt(f"{INDEX} has {n_index} line(s), the manifest says n_rows={self.n_rows}")

    def corrupt(self, reason: str) -> UserError:
        return UserError(f"store {self.path} is corrupt ({reason}); rebuild it")

    @property
    def n_rows(self) -> int:
        return int(self.manifest["n_rows"])

    @property
    def dims(self) -> list[int]:
        return [int(p["dim"]) for p in self.manifest["projectors"]]

    @property
    def checkpoints(self) -> list[dict[str, Any]]:
        return self.manifest["checkpoints"]

    @property
    def chunk_size(self) -> int:
        return int(self.manifest["chunk_size"])

    def projector_spec(self, dim: int) -> dict[str, Any]:
        for spec in self.manifest["projectors"]:
            if int(spec["dim"]) == dim:
                return spec
        raise UserError(f"{self.path}: no features at dim {dim}; available: {self.dims}")

    def index(self) -> list[dict[str, Any]]:
        rows = []
        with open(self.path / INDEX, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                try:
                    row = json.loads(line)
                except ValueError:
                    raise self.corrupt(f"{INDEX} line {n} is not valid JSON (truncated?)") from None
                if not isinstance(row, dict) or row.get("row") != n - 1:
                    raise self.corrupt(f"{INDEX} line {n} is not row {n - 1}")
                rows.append(row)
        return rows

    def iter_blocks(self, checkpoint: str, dim: int) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (first_row, memory-mapped float16 block [rows, dim]) chunk by chunk."""
        self.projector_spec(dim)
        for c in range(n_chunks(self.n_rows, self.chunk_size)):
            yield c * self.chunk_size, self._chunk(checkpoint, dim, c)

    def _chunk(self, checkpoint: str, dim: int, c: int) -> np.ndarray:
        path = chunk_path(self.path, checkpoint, dim, c)
        rel = path.relative_to(self.path)
        if not path.is_file():
            raise self.corrupt(f"chunk {rel} is missing")
        try:
            block = np.load(path, mmap_mode="r")
        except (ValueError, OSError, EOFError) as exc:
            raise self.corrupt(f"chunk {rel} cannot be read: {str(exc).splitlines()[0][:120]}") from None
        want = (min(self.chunk_size, self.n_rows - c * self.chunk_size), dim)
        if block.shape != want or block.dtype != np.float16:
            raise self.corrupt(f"chunk {rel} holds {block.dtype} {tuple(block.shape)}, expected "
                               f"float16 {want}")
        return block

    def read_ahead(self, checkpoints: list[str], dim: int, depth: int = 2
                   ) -> Iterator[tuple[int, list[np.ndarray]]]:
        """Yield (first_row, [float16 block [rows, dim] of each checkpoint]) chunk by chunk, the next
        ``depth - 1`` chunks being read by a background thread meanwhile. A yielded block lives in
        a reused buffer: it is valid until the next item is asked for. Memory: ``depth`` chunks of
        every checkpoint, whatever the store size."""
        self.projector_spec(dim)
        free: queue.Queue = queue.Queue()
        for _ in range(depth):
            free.put([_Buffer() for _ in checkpoints])
        ready: queue.Queue = queue.Queue()
        stop = threading.Event()

        def reader() -> None:
            try:
                for c in range(n_chunks(self.n_rows, self.chunk_size)):
                    slot = free.get()
                    if stop.is_set():
                        return
                    ready.put((c, slot, [self._read_chunk(k, dim, c, b) for k, b in zip(checkpoints, slot)]))
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
                ready.put(exc)

        thread = threading.Thread(target=reader, name="chunk-reader", daemon=True)
        thread.start()
        try:
            for _ in range(n_chunks(self.n_rows, self.chunk_size)):
                item = ready.get()
                if isinstance(item, BaseException):
                    raise item
                c, slot, blocks = item
                yield c * self.chunk_size, blocks
                free.put(slot)
        finally:
            stop.set()
            free.put(None)  # wakes a reader waiting for a buffer
            thread.join()

    def _read_chunk(self, checkpoint: str, dim: int, c: int, buf: "_Buffer") -> np.ndarray:
        """One chunk file read into ``buf`` and checked as ``_chunk`` checks a mapped one."""
        path = chunk_path(self.path, checkpoint, dim, c)
        rel = path.relative_to(self.path)
        if not path.is_file():
            raise self.corrupt(f"chunk {rel} is missing")
        want = (min(self.chunk_size, self.n_rows - c * self.chunk_size), dim)
        try:
            data = buf.read(path)
            head = io.BytesIO(data[:4096])
            version = np.lib.format.read_magic(head)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(head)
        except (ValueError, OSError, EOFError) as exc:
            raise self.corrupt(f"chunk {rel} cannot be read: {str(exc).splitlines()[0][:120]}") from None
        if tuple(shape) != want or dtype != np.float16 or fortran:
            raise self.corrupt(f"chunk {rel} holds {dtype} {tuple(shape)}, expected float16 {want}")
        offset, nbytes = head.tell(), want[0] * want[1] * 2
        if len(data) < offset + nbytes:
            raise self.corrupt(f"chunk {rel} cannot be read: it is truncated ({len(data)} bytes)")
        return np.frombuffer(data, dtype=np.float16, count=want[0] * want[1], offset=offset).reshape(want)

    def load(self, checkpoint: str, dim: int) -> np.ndarray:
        """The whole [n_rows, dim] matrix as float32 in memory (small stores, tests)."""
        blocks = [np.asarray(b, dtype=np.float32) for _, b in self.iter_blocks(checkpoint, dim)]
        return np.concatenate(blocks) if blocks else np.zeros((0, dim), np.float32)


class _Buffer:
    """A page-aligned buffer that whole files are read into, grown when a file is larger.

    O_DIRECT (where the file system supports it) reads straight from the disk into the buffer:
    no copy through the page cache and no cached pages left behind; it needs an aligned buffer,
    offset and length, hence the anonymous mmap (page-aligned) and the length rounded up to pages."""

    ALIGN = 4096

    def __init__(self):
        self.mem: mmap.mmap | None = None

    def read(self, path: Path) -> memoryview:
        size = path.stat().st_size
        need = max(self.ALIGN, -(-size // self.ALIGN) * self.ALIGN)
        if self.mem is None or len(self.mem) < need:
            if self.mem is not None:
                self.mem.close()
            self.mem = mmap.mmap(-1, need)
        view = memoryview(self.mem)
        try:
            got = self._read(path, view[:need], size, direct=True)
        except OSError:  # no O_DIRECT here (tmpfs, some network file systems): the page cache
            got = self._read(path, view[:need], size, direct=False)
        return view[:got]

    @staticmethod
    def _read(path: Path, view: memoryview, size: int, direct: bool) -> int:
        fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECT", 0) if direct else 0))
        try:
            got = 0
            while got < size:
                n = os.preadv(fd, [view[got:]], got)
                if n <= 0:
                    break
                got += n
            return min(got, size)
        finally:
            os.close(fd)


def _count_lines(path: Path) -> int:
    n = 0
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            n += block.count(b"\n")
    return n
