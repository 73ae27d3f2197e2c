"""Hugging Face ``datasets`` as input, next to data files: a folder written by ``save_to_disk`` or a
hub dataset id, each naming one split.

How a data source is written (wherever a data file is accepted):

* ``FOLDER`` or ``FOLDER@SPLIT``: a folder saved with ``Dataset.save_to_disk`` (it holds
  ``state.json``) or ``DatasetDict.save_to_disk`` (it holds ``dataset_dict.json``; name the split
  unless it has only one);
* ``hf:ID``, ``hf:ID@SPLIT``, ``hf:ID:CONFIG@SPLIT``: a dataset on the Hugging Face hub (or in the
  local HF cache), loaded with ``datasets.load_dataset(ID, CONFIG, split=SPLIT)``; this needs
  network access unless the dataset is already cached.

Rows are read in any of the file formats' record shapes (messages, Alpaca, ShareGPT,
prompt/completion). Provenance is kept as for files: an example's ``source`` names the dataset and
its split (``/abs/pool@train``, ``hf:org/name:config@train``) and its ``line`` is the 1-based row
(``line`` N is ``dataset[N - 1]``), which index.jsonl and scores.csv record as file and line.
A split's content hash (:func:`source_sha256`) covers its Arrow files, as a file's covers its bytes,
so stages notice a dataset that changed.
"""

from __future__ import annotations

import datetime
import decimal
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..errors import UserError

log = logging.getLogger(__name__)

HUB_PREFIX = "hf:"
DATASET_MARKERS = ("state.json", "dataset_dict.json")  # what save_to_disk writes at a folder's top
BATCH_ROWS = 1024


@dataclass(frozen=True)
class DatasetSource:
    """One split of a dataset: a ``save_to_disk`` folder (``hub=False``) or a hub id."""

    name: str                 # the folder path or the hub id
    hub: bool
    config: str | None = None
    split: str | None = None

    def label(self, split: str | None = None) -> str:
        """The source text examples carry (and that reads the same split back)."""
        split = split if split is not None else self.split
        text = (HUB_PREFIX + self.name + (f":{self.config}" if self.config else "")) if self.hub \
            else self.name
        return text + (f"@{split}" if split else "")


def _is_dataset_folder(path: Path) -> bool:
    return path.is_dir() and any((path / m).is_file() for m in DATASET_MARKERS)


def parse_source(text: str | Path) -> DatasetSource | None:
    """The dataset a data source names, or None for a plain data file."""
    text = str(text)
    if text.startswith(HUB_PREFIX):
        rest = text[len(HUB_PREFIX):]
        rest, _, split = rest.partition("@")
        name, _, config = rest.partition(":")
        if not name or (split == "" and text.endswith("@")) or (config == "" and rest.endswith(":")):
            raise UserError(f"{text}: a hub dataset is written hf:ID, hf:ID@SPLIT or "
                            "hf:ID:CONFIG@SPLIT (e.g. hf:tatsu-lab/alpaca@train)")
        return DatasetSource(name, hub=True, config=config or None, split=split or None)
    if _is_dataset_folder(Path(text)):
        return DatasetSource(text, hub=False)
    folder, sep, split = text.rpartition("@")
    if sep and split and "/" not in split and _is_dataset_folder(Path(folder)):
        return DatasetSource(folder, hub=False, split=split)
    return None


def is_dataset_source(text: str | Path) -> bool:
    return parse_source(text) is not None


def resolve_source(text: str | Path) -> str:
    """The data source with an absolute path (folders and files), so stages re-read it from any
    working directory; hub ids are returned as given."""
    src = parse_source(text)
    if src is None:
        return str(Path(text).resolve())
    if src.hub:
        return str(text)
    return DatasetSource(str(Path(src.name).resolve()), hub=False, split=src.split).label()


def _load_hub(src: DatasetSource):
    import datasets
    try:
        return datasets.load_dataset(src.name, src.config, split=src.split)
    except (ConnectionError, TimeoutError) as exc:  # offline, HF_HUB_OFFLINE=1, unreachable hub
        raise UserError(
            f"{src.label()}: cannot reach the Hugging Face hub ({str(exc)[:160]}); hub ids need "
            "network access (or the dataset in the local HF cache). Offline: on a machine with "
            "network run datasets.load_dataset(...).save_to_disk(FOLDER) and pass FOLDER") from None
    except Exception as exc:  # noqa: BLE001 - datasets raises many types (unknown id, config, split)
        raise UserError(f"{src.label()}: cannot load the hub dataset ({type(exc).__name__}: "
                        f"{str(exc)[:200]})") from None


def load_split(src: DatasetSource):
    """``(datasets.Dataset, label)`` of the one split ``src`` names; a dataset with several splits
    and none named is refused with the list of its splits."""
    import datasets
    if src.hub:
        loaded = _load_hub(src)
    else:
        try:
            loaded = datasets.load_from_disk(src.name)
        except Exception as exc:  # noqa: BLE001 - a damaged folder raises several types
            raise UserError(f"{src.name}: not a readable datasets folder ({type(exc).__name__}: "
                            f"{str(exc)[:200]})") from None
    if isinstance(loaded, datasets.DatasetDict):
        splits = list(loaded)
        if src.split is None and len(splits) == 1:
            return loaded[splits[0]], src.label(splits[0])
        if src.split not in loaded:
            what = f"has no split {src.split!r}" if src.split else "has several splits"
            raise UserError(f"{src.label()}: the dataset {what}; name one of {', '.join(splits)} "
                            f"as {src.label(splits[0])}")
        return loaded[src.split], src.label()
    split = str(loaded.split) if loaded.split is not None else None
    if src.split is not None and split is not None and src.split != split:
        raise UserError(f"{src.label()}: the folder holds the split {split!r}, not {src.split!r}")
    return loaded, src.label(src.split or split)


def _jsonable(value: Any) -> Any:
    """Arrow values that JSON cannot hold, as JSON: dates as ISO text, decimals and numpy scalars as
    numbers, bytes as text (or their length when not UTF-8)."""
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return f"<{len(value)} bytes>"
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return value.tolist()
    return str(value)


def iter_rows(dataset) -> Iterator[tuple[int, Any, str | None]]:
    """``(1-based row, record, None)`` for every row, as the file readers yield them; records are
    plain JSON values, so a selection writes them back as JSON lines."""
    pos = 0
    for batch in dataset.iter(batch_size=BATCH_ROWS):
        columns = list(batch)
        for values in zip(*(batch[c] for c in columns)):
            pos += 1
            record = dict(zip(columns, values))
            try:
                json.dumps(record, ensure_ascii=False)
            except (TypeError, ValueError):
                record = json.loads(json.dumps(record, default=_jsonable))
            yield pos, record, None


def open_source(text: str | Path) -> tuple[str, Iterator[tuple[int, Any, str | None]]]:
    """``(label, rows)`` of a dataset source, for ``formats.load_file``."""
    src = parse_source(text)
    if src is None:
        raise UserError(f"{text}: not a datasets folder or hf: hub id")
    dataset, label = load_split(src)
    log.info("reading %d row(s) of %s", len(dataset), label)
    return label, iter_rows(dataset)


def source_sha256(text: str | Path) -> str | None:
    """Content hash of a data source: a file's bytes, or a dataset split's Arrow files (None when the
    source does not exist)."""
    from ..stage_folder import file_sha256
    src = parse_source(text)
    if src is None:
        return file_sha256(text) if Path(text).is_file() else None
    if not src.hub and not Path(src.name).is_dir():
        return None
    dataset, _ = load_split(src)
    h = hashlib.sha256()
    for f in dataset.cache_files:
        h.update(file_sha256(f["filename"]).encode("ascii"))
    if not dataset.cache_files:  # an in-memory dataset: hash its rows
        for _, record, _ in iter_rows(dataset):
            h.update(json.dumps(record, sort_keys=True, ensure_ascii=False).encode("utf-8"))
    return h.hexdigest()
