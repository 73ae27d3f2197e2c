"""Generated bad records (pool and target files): each is refused as ``file:3: reason`` by the loader
and by every stage that reads data, never a traceback and never an output; with ``--lenient`` it is
skipped and counted."""

from __future__ import annotations

import json

import pytest

from less_select.data import load_examples
from less_select.errors import UserError

from .helpers import (BAD_LINE, GOOD, assert_no_output, assert_refused, assert_user_error, run_cli,
                      write_case)


def _msg(*turns, **extra) -> str:
    return json.dumps({"messages": list(turns), **extra})


U = {"role": "user", "content": "q"}
A = {"role": "assistant", "content": "a"}

# (case id, format of the file's good records, the bad line, a word the reason must contain)
BAD_RECORDS = [
    ("truncated_json", "messages", '{"messages": [', "invalid JSON"),
    ("trailing_comma", "messages", '{"messages": [],}', "invalid JSON"),
    ("single_quotes", "messages", "{'messages': []}", "invalid JSON"),
    ("bare_string", "messages", '"hello"', "JSON object"),
    ("array", "messages", "[1, 2]", "JSON object"),
    ("number", "messages", "42", "JSON object"),
    ("null", "messages", "null", "JSON object"),
    ("nan_literal", "messages", '{"messages": NaN}', "must be a list"),
    ("unknown_keys", "messages", '{"text": "hi"}', "unknown format"),
    ("messages_not_list", "messages", '{"messages": "hi"}', "must be a list"),
    ("messages_empty", "messages", '{"messages": []}', "no turns"),
    ("message_not_dict", "messages", '{"messages": ["hi"]}', "messages[0]"),
    ("missing_role", "messages", _msg({"content": "q"}, A), "messages[0]"),
    ("missing_content", "messages", _msg({"role": "user"}, A), "messages[0]"),
    ("role_unknown", "messages", _msg({"role": "bot", "content": "q"}, A), "messages[0].role"),
    ("role_list", "messages", _msg({"role": ["user"], "content": "q"}, A), "messages[0].role"),
    ("role_dict", "messages", _msg({"role": {"r": 1}, "content": "q"}, A), "messages[0].role"),
    ("role_int", "messages", _msg({"role": 1, "content": "q"}, A), "messages[0].role"),
    ("role_null", "messages", _msg({"role": None, "content": "q"}, A), "messages[0].role"),
    ("content_list", "messages", _msg({"role": "user", "content": ["q"]}, A), "messages[0].content"),
    ("content_null", "messages", _msg(U, {"role": "assistant", "content": None}), "messages[1].content"),
    ("content_int", "messages", _msg(U, {"role": "assistant", "content": 4}), "messages[1].content"),
    ("content_dict", "messages", _msg(U, {"role": "assistant", "content": {"t": "a"}}),
     "messages[1].content"),
    ("no_assistant", "messages", _msg(U), "no assistant turn"),
    ("empty_assistant", "messages", _msg(U, {"role": "assistant", "content": ""}), "empty assistant"),
    ("blank_assistant", "messages", _msg(U, {"role": "assistant", "content": " \n\t"}), "empty assistant"),
    ("empty_second_answer", "messages", _msg(U, A, U, {"role": "assistant", "content": "  "}),
     "messages[3]"),
    ("lone_surrogate_content", "messages", _msg(U, {"role": "assistant", "content": "\ud800"}),
     "surrogate"),
    ("lone_surrogate_low", "messages", _msg({"role": "user", "content": "x\udfffy"}, A), "surrogate"),
    ("lone_surrogate_other_field", "messages", _msg(U, A, note="\udc00"), "note"),
    ("deep_nesting", "messages", "[" * 100000 + "]" * 100000, "nested too deeply"),
    ("deep_nested_field", "messages", _msg(U, A)[:-1] + ', "x": ' + "[" * 100 + "]" * 100 + "}",
     "nested deeper"),
    ("invalid_utf8", "messages", _msg(U, A).replace('"a"', '"caf\\u00e9"').replace("\\u00e9", "X")
     .encode().replace(b"X", b"\xe9"), "not valid UTF-8"),
    ("invalid_utf8_lead_byte", "messages", b"\xff" + _msg(U, A).encode(), "not valid UTF-8"),
    ("mixed_format", "messages", json.dumps({"instruction": "x", "output": "y"}), "differs"),
    ("conversations_not_list", "sharegpt", '{"conversations": "hi"}', "must be a list"),
    ("turn_missing_from", "sharegpt", json.dumps({"conversations": [{"value": "hi"}]}), "conversations[0]"),
    ("turn_missing_value", "sharegpt", json.dumps({"conversations": [{"from": "human"}]}),
     "conversations[0]"),
    ("unknown_speaker", "sharegpt", json.dumps({"conversations": [{"from": "alien", "value": "x"}]}),
     "speaker"),
    ("speaker_list", "sharegpt", json.dumps({"conversations": [{"from": ["gpt"], "value": "x"}]}),
     "speaker"),
    ("value_int", "sharegpt", json.dumps({"conversations": [{"from": "human", "value": 3}]}),
     "conversations[0].value"),
    ("empty_gpt_value", "sharegpt", json.dumps({"conversations": [{"from": "human", "value": "q"},
                                                                  {"from": "gpt", "value": ""}]}),
     "empty assistant"),
    ("no_gpt_turn", "sharegpt", json.dumps({"conversations": [{"from": "human", "value": "q"}]}),
     "no assistant turn"),
    ("instruction_int", "alpaca", json.dumps({"instruction": 5, "output": "y"}), "instruction"),
    ("output_missing", "alpaca", json.dumps({"instruction": "x"}), "output"),
    ("output_empty", "alpaca", json.dumps({"instruction": "x", "output": ""}), "output"),
    ("output_blank", "alpaca", json.dumps({"instruction": "x", "output": "  "}), "output"),
    ("input_list", "alpaca", json.dumps({"instruction": "x", "input": ["a"], "output": "y"}), "input"),
    ("prompt_int", "prompt_completion", json.dumps({"prompt": 1, "completion": "y"}), "prompt"),
    ("prompt_null", "prompt_completion", json.dumps({"prompt": None, "completion": "y"}), "prompt"),
    ("completion_missing", "prompt_completion", json.dumps({"prompt": "x"}), "completion"),
    ("completion_empty", "prompt_completion", json.dumps({"prompt": "x", "completion": ""}), "completion"),
    ("completion_blank", "prompt_completion", json.dumps({"prompt": "x", "completion": " "}), "completion"),
]
IDS = [c[0] for c in BAD_RECORDS]


@pytest.fixture(params=BAD_RECORDS, ids=IDS)
def bad_file(request, tmp_path):
    _, fmt, line, reason = request.param
    return write_case(tmp_path / "pool.jsonl", fmt, line), reason


def test_loader_refuses_the_record_naming_file_and_line(bad_file):
    path, reason = bad_file
    with pytest.raises(UserError) as exc:
        load_examples([path])
    assert_user_error(exc.value, f"{path}:{BAD_LINE}:", reason, "--lenient")


def test_lenient_loader_skips_and_counts_the_record(bad_file):
    path, reason = bad_file
    examples, report = load_examples([path], lenient=True)
    assert [e.line for e in examples] == [1, 2, 4]
    assert report.skipped == {str(path): 1} and report.read == {str(path): 3}
    assert report.skipped_examples[0].startswith(f"{path}:{BAD_LINE}:") and reason in report.skipped_examples[0]


def test_baseline_refuses_it_and_writes_nothing(bad_file, tmp_path, capsys):
    path, reason = bad_file
    out = tmp_path / "sel"
    rc, err = run_cli(["baseline", "--method", "random", "--data", path, "--output-dir", out,
                       "--top-k", "1"], capsys)
    assert_refused(rc, err, f"{path}:{BAD_LINE}:", reason)
    assert_no_output(out)


def test_lenient_baseline_skips_and_counts_it(bad_file, tmp_path, capsys):
    path, _ = bad_file
    out = tmp_path / "sel"
    rc, err = run_cli(["baseline", "--method", "random", "--data", path, "--output-dir", out,
                       "--top-k", "1", "--lenient"], capsys)
    assert rc == 0, err
    report = json.loads((out / "selection.json").read_text())
    assert report["n_malformed_skipped"] == 1 and report["n_pool"] == 3


def test_datastore_refuses_it_before_loading_a_model(bad_file, tmp_path, capsys):
    path, reason = bad_file
    out = tmp_path / "store"
    rc, err = run_cli(["datastore", "--model", tmp_path / "no-model", "--checkpoints", tmp_path / "ck",
                       "--data", path, "--output-dir", out], capsys)
    assert_refused(rc, err, f"{path}:{BAD_LINE}:", reason)
    assert_no_output(out)


def test_warmup_refuses_it_and_leaves_no_part_folder(bad_file, tmp_path, capsys):
    path, reason = bad_file
    out = tmp_path / "warmup"
    rc, err = run_cli(["warmup", "--model", tmp_path / "no-model", "--pool-files", path,
                       "--output-dir", out], capsys)
    assert_refused(rc, err, f"{path}:{BAD_LINE}:", reason)
    assert_no_output(out)


def test_target_file_with_it_is_refused(bad_file, tmp_path, capsys):
    path, reason = bad_file
    target = path.rename(path.with_name("target.jsonl"))
    out = tmp_path / "targets"
    rc, err = run_cli(["targets", "--task", target, "--model", tmp_path / "no-model",
                       "--checkpoints", tmp_path / "ck", "--output-dir", out], capsys)
    assert_refused(rc, err, f"{target}:{BAD_LINE}:", reason)
    assert_no_output(out)


def test_good_records_of_every_format_load(tmp_path):
    from .helpers import GOOD
    for fmt, records in GOOD.items():
        path = tmp_path / f"{fmt}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
        examples, report = load_examples([path])
        assert len(examples) == 3 and report.total_skipped == 0
