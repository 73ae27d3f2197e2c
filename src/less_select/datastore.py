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
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .errors import UserError

MANIFEST = "manifest.json"
INDEX = "index.jsonl"
SKIPPED = "skipped.jsonl"
FORMAT_VERSION = 1


def chunk_path(root: Path, checkpoint: str, dim: int, chunk: int) -> Path:
    return root / checkpoint / f"dim{dim}" / f"chunk-{chunk:05d}.npy"


def write_chunk(root: Path, checkpoint: str, dim: int, chunk: int, rows: np.ndarray) -> None:
    """Write one chunk (float16) atomically: temp file, then rename."""
    path = chunk_path(root, checkpoint, dim, chunk)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npy")
    np.save(tmp, rows.astype(np.float16, copy=False))
    tmp.replace(path)


def n_chunks(n_rows: int, chunk_size: int) -> int:
    return (n_rows + chunk_size - 1) // chunk_size


class Datastore:
    """Read access to a finished store (pool datastore or target features)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        mf = self.path / MANIFEST
        if not mf.is_file():
            hint = " (it is still being built or was interrupted)" if \
                self.path.with_name(self.path.name + ".part").exists() else ""
            raise UserError(f"{self.path}: not a finished gradient store, no {MANIFEST}{hint}")
        self.manifest: dict[str, Any] = json.loads(mf.read_text())
        if self.manifest.get("format_version") != FORMAT_VERSION:
            raise UserError(f"{mf}: store format {self.manifest.get('format_version')} is not "
                            f"supported (expected {FORMAT_VERSION}); rebuild it")

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
        with open(self.path / INDEX, encoding="utf-8") as fh:
            return [json.loads(line) for line in fh]

    def iter_blocks(self, checkpoint: str, dim: int) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (first_row, memory-mapped float16 block [rows, dim]) chunk by chunk."""
        self.projector_spec(dim)
        for c in range(n_chunks(self.n_rows, self.chunk_size)):
            path = chunk_path(self.path, checkpoint, dim, c)
            if not path.is_file():
                raise UserError(f"{path}: missing chunk; the store is incomplete, rebuild it")
            yield c * self.chunk_size, np.load(path, mmap_mode="r")

    def load(self, checkpoint: str, dim: int) -> np.ndarray:
        """The whole [n_rows, dim] matrix as float32 in memory (small stores, tests)."""
        blocks = [np.asarray(b, dtype=np.float32) for _, b in self.iter_blocks(checkpoint, dim)]
        return np.concatenate(blocks) if blocks else np.zeros((0, dim), np.float32)
