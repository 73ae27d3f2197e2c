"""Exports of a selection that training tools read directly, written next to its JSONL.

``hf``: ``<stem>_hf/``, a Hugging Face dataset folder (``save_to_disk``; ``datasets.load_from_disk``
reads it), best first, with columns ``id``, ``rank``, ``score``, ``source``, ``line`` and the
example itself: ``prompt`` and ``completion`` when every selected record is in prompt/completion
form (TRL's prompt-completion format), else ``messages``, the normalized conversation (TRL's
conversational format).

``llamafactory``: ``dataset_info.json`` with one entry, ``<method>_<stem>``, for LLaMA-Factory's
``dataset_dir``. It points at the selection JSONL itself when its records share one format
LLaMA-Factory can describe (Alpaca, prompt/completion, messages, ShareGPT with one spelling per
speaker); otherwise (a mixed pool) at ``<stem>.messages.jsonl``, written here with each record's
normalized conversation. LLaMA-Factory skips conversations whose turns do not alternate user /
assistant; their number is reported.

Each export is written to a temporary name and renamed into place, so a failed rerun keeps the
earlier export; an export not asked for on a rerun is removed (it would describe an old selection).
A finished selection rerun with only other ``--export`` values is not recomputed: the stage's skip
key leaves ``export`` out (``stage_folder.DERIVED_OUTPUTS``) and :func:`update_exports` writes or
removes the exports from the selection JSONL and ``scores.csv``.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Sequence

from .data import Example
from .errors import UserError
from .stage_folder import write_atomic

log = logging.getLogger(__name__)

FORMATS = ("hf", "llamafactory")
INFO_FILE = "dataset_info.json"


def parse_formats(values: Sequence[str] | str | None) -> list[str]:
    """``["hf,llamafactory"]``, ``["hf", "llamafactory"]`` or ``"hf"`` as a list of known formats."""
    if isinstance(values, str):
        values = [values]
    out: list[str] = []
    for value in values or ():
        for name in (v.strip().lower() for v in str(value).split(",")):
            if not name or name == "none":
                continue
            if name not in FORMATS:
                raise UserError(f"--export: unknown export {name!r}; choose from {', '.join(FORMATS)}")
            if name not in out:
                out.append(name)
    return out


# ---- hf: a datasets folder ------------------------------------------------------------------------

def _hf_rows(examples: Sequence[Example], scores: Sequence[float]) -> list[dict]:
    prompt_completion = all(e.prompt is not None and e.completion is not None for e in examples)
    rows = []
    for rank, (ex, score) in enumerate(zip(examples, scores), 1):
        row = {"id": ex.id, "rank": rank, "score": float(score), "source": ex.source, "line": ex.line}
        if prompt_completion:
            row.update(prompt=ex.prompt, completion=ex.completion)
        else:
            row["messages"] = [{"role": m["role"], "content": m["content"]} for m in ex.messages]
        rows.append(row)
    return rows


def _replace_folder(tmp: Path, final: Path) -> None:
    """Move a finished folder into place; the old one is removed only once the new one is there."""
    old = final.with_name(f".{final.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    if old.exists():
        shutil.rmtree(old)


def write_hf(out: Path, stem: str, examples: Sequence[Example], scores: Sequence[float]) -> Path:
    import datasets
    from .progress import bar_enabled
    final = out / f"{stem}_hf"
    tmp = out / f".{stem}_hf.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    quiet = datasets.is_progress_bar_enabled() and not bar_enabled()
    if quiet:  # datasets draws its own bar; follow the package's progress switch
        datasets.disable_progress_bars()
    try:
        datasets.Dataset.from_list(_hf_rows(examples, scores)).save_to_disk(str(tmp))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if quiet:
            datasets.enable_progress_bars()
    _replace_folder(tmp, final)
    return final


# ---- llamafactory: a dataset_info.json entry ------------------------------------------------------

def _sharegpt_tags(examples: Sequence[Example]) -> dict | None:
    """LLaMA-Factory tags for ShareGPT records, when each role is spelled one way (else None)."""
    spellings: dict[str, set[str]] = {}
    for ex in examples:
        for turn, m in zip(ex.raw["conversations"], ex.messages):
            spellings.setdefault(m["role"], set()).add(turn["from"])
    if any(len(s) > 1 for s in spellings.values()):
        return None
    tags = {"role_tag": "from", "content_tag": "value"}
    for role in ("user", "assistant", "system"):
        tags[f"{role}_tag"] = next(iter(spellings.get(role, {role})))
    return tags


MESSAGES_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                 "assistant_tag": "assistant", "system_tag": "system"}


def _describe(examples: Sequence[Example], file_name: str) -> dict | None:
    """The LLaMA-Factory entry reading the selection JSONL as it is, or None if it cannot."""
    formats = {e.format for e in examples}
    if len(formats) != 1:
        return None
    fmt = formats.pop()
    if fmt == "alpaca":
        return {"file_name": file_name, "formatting": "alpaca",
                "columns": {"prompt": "instruction", "query": "input", "response": "output"}}
    if fmt == "prompt_completion":
        return {"file_name": file_name, "formatting": "alpaca",
                "columns": {"prompt": "prompt", "response": "completion"}}
    if fmt == "messages":
        return {"file_name": file_name, "formatting": "sharegpt", "columns": {"messages": "messages"},
                "tags": dict(MESSAGES_TAGS)}
    tags = _sharegpt_tags(examples) if fmt == "sharegpt" else None
    if tags is None:
        return None
    return {"file_name": file_name, "formatting": "sharegpt",
            "columns": {"messages": "conversations"}, "tags": tags}


def _alternates(messages: Sequence[dict]) -> bool:
    """LLaMA-Factory's ShareGPT reader: an optional system turn, then user/assistant pairs."""
    turns = [m["role"] for m in messages]
    if turns and turns[0] == "system":
        turns = turns[1:]
    return bool(turns) and len(turns) % 2 == 0 and all(
        r == ("user" if i % 2 == 0 else "assistant") for i, r in enumerate(turns))


def write_llamafactory(out: Path, selection_file: Path, examples: Sequence[Example],
                       entry_name: str) -> dict:
    """Write ``dataset_info.json`` (and, for a mixed pool, the normalized messages file)."""
    stem = selection_file.name[:-len(".jsonl")]
    normalized = out / f"{stem}.messages.jsonl"
    entry = _describe(examples, selection_file.name)
    if entry is None:
        write_atomic(normalized, "".join(
            json.dumps({"id": e.id, "messages": e.messages}, ensure_ascii=False) + "\n"
            for e in examples))
        entry = {"file_name": normalized.name, "formatting": "sharegpt",
                 "columns": {"messages": "messages"}, "tags": dict(MESSAGES_TAGS)}
    elif normalized.exists():
        normalized.unlink()
    info_path = out / INFO_FILE
    write_atomic(info_path, json.dumps({entry_name: entry}, indent=2) + "\n")
    prompt_completion = entry["formatting"] == "alpaca"
    skipped = 0 if prompt_completion else sum(not _alternates(e.messages) for e in examples)
    if skipped:
        log.warning("llamafactory export: %d of %d selected conversation(s) do not alternate "
                    "user/assistant turns; LLaMA-Factory skips them", skipped, len(examples))
    return {"file": info_path.name, "dataset": entry_name, "reads": entry["file_name"],
            "not_alternating": skipped}


def write_exports(out_dir: str | Path, selection_file: Path, examples: Sequence[Example],
                  scores: Sequence[float], formats: Sequence[str] | str | None, method: str) -> dict:
    """Write the requested exports of a selection (``examples`` best first, with their ``scores``)
    next to ``selection_file``; remove this selection's exports that were not requested. Returns
    ``{format: what was written}`` (names inside the selection folder) for the selection report."""
    out = Path(out_dir)
    stem = selection_file.name[:-len(".jsonl")]
    wanted = parse_formats(formats)
    done: dict = {}
    if "hf" in wanted:
        done["hf"] = {"folder": write_hf(out, stem, examples, scores).name}
    elif (out / f"{stem}_hf").is_dir():
        shutil.rmtree(out / f"{stem}_hf")
    if "llamafactory" in wanted:
        done["llamafactory"] = write_llamafactory(out, selection_file, examples, f"{method}_{stem}")
    else:
        for stale in (out / INFO_FILE, out / f"{stem}.messages.jsonl"):
            if stale.is_file():
                stale.unlink()
    for name, what in done.items():
        log.info("export %s: %s", name, out / (what.get("folder") or what.get("file")))
    return done


# ---- exports added to (or dropped from) a finished selection ---------------------------------------

def update_exports(out_dir: str | Path, formats: Sequence[str] | str | None) -> dict:
    """Bring a finished selection folder's exports to ``formats`` without recomputing the selection
    (a rerun that differs only in ``--export``); returns its ``selection.json`` report, updated.

    The examples are read back from the selection JSONL (the input records, best first) and take
    their id, source file, line and score from ``scores.csv``, as the stage wrote them; scores are
    therefore those of ``scores.csv`` (8 significant digits)."""
    out = Path(out_dir)
    wanted = parse_formats(formats)
    try:
        report = json.loads((out / "selection.json").read_text())
        have = sorted(report.get("exports", {}))
        sel_path, n_selected, method = out / report["selected_file"], int(report["n_selected"]), report["method"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UserError(f"{out / 'selection.json'}: cannot be read ({_why(exc)}); rerun with --overwrite") from None
    if have == sorted(wanted):
        return report
    examples = _selected_examples(out, sel_path, n_selected)
    done = write_exports(out, sel_path, [e for e, _ in examples], [s for _, s in examples], wanted, method)
    report.pop("exports", None)
    if done:
        report["exports"] = done
    write_atomic(out / "selection.json", json.dumps(report, indent=2))
    return report


def _selected_examples(out: Path, sel_path: Path, n_selected: int) -> list[tuple[Example, float]]:
    """(example, score) of every selected row, best first, with the provenance of ``scores.csv``."""
    import csv
    import dataclasses
    from .data import load_examples
    table = out / "scores.csv"
    try:
        with open(table, newline="", encoding="utf-8") as fh:
            rows = sorted((r for r in csv.DictReader(fh) if r["selected"] == "1"), key=lambda r: int(r["rank"]))
        provenance = [(r["id"], r["file"], int(r["line"]), float(r["score"])) for r in rows]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{table}: cannot be read ({_why(exc)}); rerun with --overwrite") from None
    try:
        examples, _ = load_examples([str(sel_path)])
    except UserError as exc:
        raise UserError(f"{exc}; rerun with --overwrite") from None
    if len(provenance) != n_selected or len(examples) != n_selected:
        raise UserError(f"{out}: the selection JSONL ({len(examples)} rows) and scores.csv "
                        f"({len(provenance)} selected) do not match selection.json ({n_selected}); "
                        "rerun with --overwrite")
    return [(dataclasses.replace(e, id=i, source=f, line=line), score)
            for e, (i, f, line, score) in zip(examples, provenance)]


def _why(exc: BaseException) -> str:
    text = str(exc).splitlines()[0][:120] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
