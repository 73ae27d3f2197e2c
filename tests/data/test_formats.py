"""data/formats.py: each input format parses to the same conversation, ids and provenance are
stable, and malformed records fail with file:line (or are skipped and counted when lenient)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from less_select.data import load_examples
from less_select.data.formats import LoadReport, detect_format, load_file
from less_select.errors import UserError

CONVERSATION = [{"role": "user", "content": "What is 2+3?"}, {"role": "assistant", "content": "5"}]

RECORDS = {
    "messages": {"id": "m1", "messages": CONVERSATION},
    "sharegpt": {"id": "s1", "conversations": [{"from": "human", "value": "What is 2+3?"},
                                               {"from": "gpt", "value": "5"}]},
    "alpaca": {"id": "a1", "instruction": "What is 2+3?", "input": "", "output": "5"},
    "prompt_completion": {"id": "p1", "prompt": "What is 2+3?", "completion": "5"},
}


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def write_jsonl(path: Path, records: list) -> Path:
    return write_lines(path, [json.dumps(r) for r in records])


@pytest.mark.parametrize("fmt", list(RECORDS))
def test_every_format_parses_to_the_same_conversation(tmp_path, fmt):
    record = RECORDS[fmt]
    assert detect_format(record) == fmt
    (ex,) = load_file(write_jsonl(tmp_path / f"{fmt}.jsonl", [record]))
    assert ex.messages == CONVERSATION
    assert (ex.format, ex.id, ex.line, ex.source) == (fmt, record["id"], 1, str(tmp_path / f"{fmt}.jsonl"))
    assert ex.raw == record  # written back unchanged on selection
    if fmt == "prompt_completion":
        assert (ex.prompt, ex.completion) == ("What is 2+3?", "5")
    else:
        assert ex.prompt is None and ex.completion is None


def test_alpaca_input_joins_the_instruction_and_sharegpt_keeps_system(tmp_path):
    alpaca = {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"}
    share = {"conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "Hi"},
                               {"from": "gpt", "value": "Hello"}]}
    (a,) = load_file(write_jsonl(tmp_path / "a.jsonl", [alpaca]))
    assert a.messages[0] == {"role": "user", "content": "Add the numbers.\n\n2 and 3"}
    (s,) = load_file(write_jsonl(tmp_path / "s.jsonl", [share]))
    assert [m["role"] for m in s.messages] == ["system", "user", "assistant"]


def test_ids_fall_back_to_file_and_line_and_stay_unique(tmp_path):
    path = write_lines(tmp_path / "pool.jsonl", [
        json.dumps({"messages": CONVERSATION}),                # no id: <stem>:<line>
        "",                                                    # blank lines are skipped, not renumbered
        json.dumps({"id": "x", "messages": CONVERSATION}),
        json.dumps({"id": "x", "messages": CONVERSATION}),     # duplicate id: made unique
        json.dumps({"id": "", "messages": CONVERSATION, "subtask": 7}),
    ])
    exs = load_file(path)
    assert [e.id for e in exs] == ["pool:1", "x", "x@pool:4", "pool:5"]
    assert [e.line for e in exs] == [1, 3, 4, 5]
    assert [e.subtask for e in exs] == [None, None, None, "7"]
    assert load_file(path)[2].id == exs[2].id  # the same file gives the same ids


def test_json_array_object_and_gzip(tmp_path):
    recs = [RECORDS["messages"], {**RECORDS["messages"], "id": "m2"}]
    arr = tmp_path / "arr.json"
    arr.write_text(json.dumps(recs))
    obj = tmp_path / "obj.json"
    obj.write_text(json.dumps({"data": recs}))
    gz = tmp_path / "pool.jsonl.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as fh:
        fh.write("".join(json.dumps(r) + "\n" for r in recs))
    for path in (arr, obj, gz):
        exs = load_file(path)
        assert [e.id for e in exs] == ["m1", "m2"] and [e.line for e in exs] == [1, 2], path
        assert all(e.messages == CONVERSATION for e in exs)


@pytest.mark.parametrize("fmt,line,reason", [
    ("messages", "{oops", "invalid JSON"),
    ("messages", '["a list"]', "must be a JSON object"),
    ("messages", '{"text": "no known key"}', "unknown format"),
    ("messages", '{"messages": [{"role": "user", "content": "hi"}]}', "no assistant turn"),
    ("messages", '{"messages": [{"role": "robot", "content": "hi"}]}', "robot"),
    ("messages", '{"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "x"}]}',
     "content"),
    ("messages", '{"prompt": "x", "completion": "y"}', "differs from the file's format"),
    ("sharegpt", '{"conversations": [{"from": "alien", "value": "hi"}]}', "alien"),
    ("alpaca", '{"instruction": "x"}', "output"),
    ("prompt_completion", '{"prompt": "x", "completion": "  "}', "completion"),
])
def test_a_malformed_record_names_file_line_and_reason(tmp_path, fmt, line, reason):
    path = write_lines(tmp_path / "bad.jsonl", [json.dumps(RECORDS[fmt]), line])
    with pytest.raises(UserError) as err:
        load_file(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}:2: ") and reason in msg and "\n" not in msg


def test_lenient_loading_skips_and_counts(tmp_path):
    path = write_lines(tmp_path / "mixed.jsonl", [
        json.dumps(RECORDS["messages"]), "{oops", json.dumps({"text": "?"}),
        json.dumps({**RECORDS["messages"], "id": "m2"})])
    report = LoadReport()
    exs = load_file(path, lenient=True, report=report)
    assert [e.id for e in exs] == ["m1", "m2"] and [e.line for e in exs] == [1, 4]
    assert report.read == {str(path): 2} and report.skipped == {str(path): 2}
    assert report.total_read == 2 and report.total_skipped == 2
    assert [s.split(": ")[0] for s in report.skipped_examples] == [f"{path}:2", f"{path}:3"]


def test_load_examples_concatenates_files_in_order_and_caps_each(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [{**RECORDS["messages"], "id": f"a{i}"} for i in range(3)])
    b = write_jsonl(tmp_path / "b.jsonl", [{**RECORDS["alpaca"], "id": f"b{i}"} for i in range(2)])
    exs, report = load_examples([a, b])
    assert [e.id for e in exs] == ["a0", "a1", "a2", "b0", "b1"]
    assert report.total_read == 5
    capped, report = load_examples([a, b], max_per_file=1)
    assert [e.id for e in capped] == ["a0", "b0"] and report.read == {str(a): 1, str(b): 1}
    one, _ = load_examples(a)  # a single path is accepted too
    assert len(one) == 3


def test_file_level_errors_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no such data file"):
        load_file(tmp_path / "missing.jsonl")
    csv = tmp_path / "pool.csv"
    csv.write_text("a,b\n")
    with pytest.raises(UserError, match="unsupported file type"):
        load_file(csv)
    bad = tmp_path / "bad.json"
    bad.write_text('{"data": 3}')
    with pytest.raises(UserError, match="list of records"):
        load_file(bad)
    with pytest.raises(UserError, match="no data files"):
        load_examples([])
