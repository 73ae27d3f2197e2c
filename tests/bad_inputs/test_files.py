"""Generated unreadable data files: wrong encodings, binary data, broken gzip, wrong shapes. Each is
refused in one line naming the file by the loader and by every stage that reads data; a problem
confined to one line is skipped and counted under ``--lenient``, a file that cannot be read as a
whole is refused either way (how many records it lost is unknown)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from less_select.data import load_examples
from less_select.errors import UserError

from .helpers import GOOD, assert_no_output, assert_refused, assert_user_error, run_cli

LINES = "".join(json.dumps(r) + "\n" for r in GOOD["messages"])
GZ = gzip.compress(LINES.encode() * 300)


def _write(kind: str, folder: Path) -> Path:
    """The bad file of ``kind`` (its name carries the suffix the loader dispatches on)."""
    text = LINES.encode()
    files = {
        "utf16_bom": ("pool.jsonl", LINES.encode("utf-16")),
        "utf16be_bom": ("pool.jsonl", b"\xfe\xff" + LINES.encode("utf-16-be")),
        "utf16le_no_bom": ("pool.jsonl", LINES.encode("utf-16-le")),
        "utf32": ("pool.jsonl", LINES.encode("utf-32")),
        "binary_with_nul": ("pool.jsonl", bytes(range(256)) * 8),
        "binary_high_bytes": ("pool.jsonl", bytes(range(128, 256)) * 8 + b"\n" + bytes(range(200, 256))),
        "fake_gz": ("pool.jsonl.gz", text),
        "truncated_gz": ("pool.jsonl.gz", GZ[: len(GZ) // 2]),
        "corrupt_gz_body": ("pool.jsonl.gz", GZ[:20] + b"\x00" * 200 + GZ[220:]),
        "gz_header_only": ("pool.jsonl.gz", GZ[:10]),
        "gzip_named_jsonl": ("pool.jsonl", GZ),
        "empty": ("pool.jsonl", b""),
        "blank_lines_only": ("pool.jsonl", b"\n  \n\t\n"),
        "unsupported_suffix": ("pool.txt", text),
        "no_suffix": ("pool", text),
        "json_not_a_list": ("pool.json", b'{"name": "x"}'),
        "json_scalar": ("pool.json", b"42"),
        "json_invalid": ("pool.json", b'[{"messages": ]'),
        "json_deep": ("pool.json", b"[" * 100000 + b"]" * 100000),
        "json_bad_utf8": ("pool.json", b'[{"messages": "\xe9"}]'),
        "json_utf16": ("pool.json", json.dumps(GOOD["messages"]).encode("utf-16")),
        "json_empty_list": ("pool.json", b"[]"),
        "json_bad_record": ("pool.json", json.dumps([GOOD["messages"][0], {"messages": 3}]).encode()),
        "json_gz_truncated": ("pool.json.gz", gzip.compress(json.dumps(GOOD["messages"] * 50).encode())[:40]),
    }
    name, data = files[kind]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    return path


# kind -> (what the one line must say, whether --lenient reads the file's other records)
FILE_CASES = {
    "utf16_bom": ("UTF-16", False), "utf16be_bom": ("UTF-16", False),
    "utf16le_no_bom": ("NUL bytes", False), "utf32": ("UTF-16/UTF-32", False),
    "binary_with_nul": ("NUL bytes", False), "binary_high_bytes": (":1: not valid UTF-8", False),
    "fake_gz": ("not gzip data", False), "truncated_gz": ("ends early", False),
    "corrupt_gz_body": ("gzip", False), "gz_header_only": ("ends early", False),
    "gzip_named_jsonl": ("gzip-compressed", False), "empty": ("no records", False),
    "blank_lines_only": ("no records", False), "unsupported_suffix": ("unsupported file type", False),
    "no_suffix": ("unsupported file type", False), "json_not_a_list": ("list of records", False),
    "json_scalar": ("list of records", False), "json_invalid": (":1: invalid JSON", False),
    "json_deep": ("nested too deeply", False), "json_bad_utf8": ("not valid UTF-8", False),
    "json_utf16": ("UTF-16", False), "json_empty_list": ("no records", False),
    "json_bad_record": (":2: field 'messages' must be a list", True),
    "json_gz_truncated": ("ends early", False),
}


@pytest.fixture(params=sorted(FILE_CASES), ids=sorted(FILE_CASES))
def bad_file(request, tmp_path):
    kind = request.param
    return _write(kind, tmp_path / "in"), *FILE_CASES[kind]


def test_loader_refuses_the_file(bad_file):
    path, reason, _ = bad_file
    with pytest.raises(UserError) as exc:
        load_examples([path])
    assert_user_error(exc.value, str(path), reason)


def test_lenient_loader_reads_what_is_readable_or_refuses_the_file(bad_file):
    path, reason, partial = bad_file
    if partial:
        examples, report = load_examples([path], lenient=True)
        assert len(examples) == 1 and report.total_skipped == 1
    else:
        with pytest.raises(UserError) as exc:
            load_examples([path], lenient=True)
        assert_user_error(exc.value, str(path))


@pytest.mark.parametrize("lenient", [False, True], ids=["strict", "lenient"])
def test_baseline_refuses_it_and_writes_nothing(bad_file, tmp_path, capsys, lenient):
    path, reason, partial = bad_file
    out = tmp_path / "sel"
    rc, err = run_cli(["baseline", "--method", "random", "--data", path, "--output-dir", out,
                       "--top-k", "1"] + (["--lenient"] if lenient else []), capsys)
    if lenient and partial:
        assert rc == 0 and json.loads((out / "selection.json").read_text())["n_malformed_skipped"] == 1
        return
    assert_refused(rc, err, str(path), reason if not lenient else "")
    assert_no_output(out)


@pytest.mark.parametrize("stage", ["datastore", "warmup", "targets"])
def test_every_data_stage_refuses_it(bad_file, tmp_path, capsys, stage):
    path, reason, _ = bad_file
    out = tmp_path / "out"
    model = ["--model", tmp_path / "no-model"]
    args = {"datastore": ["--data", path, "--checkpoints", tmp_path / "ck"],
            "warmup": ["--pool-files", path],
            "targets": ["--task", path, "--checkpoints", tmp_path / "ck"]}[stage]
    rc, err = run_cli([stage, *model, *args, "--output-dir", out], capsys)
    assert_refused(rc, err, str(path), reason)
    assert_no_output(out)


def test_a_utf8_byte_order_mark_is_accepted(tmp_path):
    jsonl = tmp_path / "bom.jsonl"
    jsonl.write_bytes(b"\xef\xbb\xbf" + LINES.encode())
    js = tmp_path / "bom.json"
    js.write_bytes(b"\xef\xbb\xbf" + json.dumps(GOOD["messages"]).encode())
    gz = tmp_path / "bom.jsonl.gz"
    gz.write_bytes(gzip.compress(b"\xef\xbb\xbf" + LINES.encode()))
    for path in (jsonl, js, gz):
        examples, report = load_examples([path])
        assert len(examples) == 3 and report.total_skipped == 0, path
        assert examples[0].messages[0]["content"] == GOOD["messages"][0]["messages"][0]["content"]


@pytest.mark.parametrize("where", ["missing", "folder"])
def test_missing_file_or_folder_is_named(tmp_path, capsys, where):
    path = tmp_path / "pool.jsonl"
    if where == "folder":
        path.mkdir()
    rc, err = run_cli(["baseline", "--data", path, "--output-dir", tmp_path / "sel"], capsys)
    assert_refused(rc, err, str(path), "no such data file" if where == "missing" else "folder")
    assert_no_output(tmp_path / "sel")


@pytest.mark.parametrize("stage", ["baseline", "datastore", "warmup"])
def test_the_same_file_twice_is_refused(tmp_path, capsys, stage):
    path = tmp_path / "pool.jsonl"
    path.write_text(LINES)
    twice = [path, tmp_path / "." / "pool.jsonl"]
    flag = "--pool-files" if stage == "warmup" else "--data"
    extra = {"baseline": [], "datastore": ["--model", "m", "--checkpoints", "c"],
             "warmup": ["--model", "m"]}[stage]
    rc, err = run_cli([stage, flag, *twice, *extra, "--output-dir", tmp_path / "out"], capsys)
    assert_refused(rc, err, "given twice", "pool.jsonl")
    assert_no_output(tmp_path / "out")
    with pytest.raises(UserError, match="given twice"):
        load_examples(twice)
