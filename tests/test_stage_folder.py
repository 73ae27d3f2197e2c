"""stage_folder.py: stage folders are written as ``<dir>.part`` and renamed when complete; the same settings
skip, other settings are refused naming what differs; stale ``.part`` folders are cleaned up."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from less_select import __version__
from less_select.errors import UserError
from less_select.stage_folder import (STAGE_FILE, file_sha256, finish_stage, stage_dir, stage_settings,
                               stage_status, write_atomic)

SETTINGS = {"lr": 1e-3, "dims": (8, 16), "data": {"files": ["a.jsonl"], "seed": 3}}


def run_stage(out, settings=SETTINGS, body=lambda part: (part / "result.txt").write_text("done"), **kw):
    """Run one stage; returns True when it ran, False when it skipped."""
    with stage_dir(out, "toy", settings, **kw) as part:
        if part is None:
            return False
        body(part)
    return True


def test_writes_into_part_and_renames_when_complete(tmp_path):
    out = tmp_path / "stage"
    seen = {}

    def body(part):
        seen["part"] = part
        seen["out_during"] = out.exists()
        (part / "result.txt").write_text("done")

    assert run_stage(out, body=body)
    assert seen["part"] == tmp_path / "stage.part" and seen["out_during"] is False
    assert not (tmp_path / "stage.part").exists()
    assert (out / "result.txt").read_text() == "done"
    record = json.loads((out / STAGE_FILE).read_text())
    assert record["stage"] == "toy" and record["version"] == __version__
    assert record["settings"] == json.loads(json.dumps(SETTINGS))
    assert "git_sha" in record


def test_same_settings_skip_and_leave_the_output_untouched(tmp_path):
    out = tmp_path / "stage"
    assert run_stage(out)
    before = (out / STAGE_FILE).stat().st_mtime_ns
    assert stage_status(out, SETTINGS) == "done"
    assert run_stage(out, body=lambda part: pytest.fail("a finished stage must not run again")) is False
    assert (out / STAGE_FILE).stat().st_mtime_ns == before
    # tuples and lists are the same settings once written as JSON
    assert stage_status(out, {**SETTINGS, "dims": [8, 16]}) == "done"


def test_other_settings_are_refused_naming_each_difference(tmp_path):
    out = tmp_path / "stage"
    assert run_stage(out)
    changed = {**SETTINGS, "lr": 2e-3, "data": {"files": ["a.jsonl"], "seed": 4}, "new": 1}
    with pytest.raises(UserError) as err:
        run_stage(out, changed)
    msg = str(err.value)
    for part in ("lr: 0.001 -> 0.002", "data.seed: 3 -> 4", "new: '<unset>' -> 1", "--overwrite"):
        assert part in msg, part
    assert "\n" not in msg and "files" not in msg  # only what differs is named
    assert (out / "result.txt").read_text() == "done"  # the refused run changed nothing


def test_overwrite_reruns_with_the_new_settings(tmp_path):
    out = tmp_path / "stage"
    assert run_stage(out)
    new = {**SETTINGS, "lr": 5e-4}
    assert run_stage(out, new, body=lambda part: (part / "result.txt").write_text("again"), overwrite=True)
    assert (out / "result.txt").read_text() == "again"
    assert stage_status(out, new) == "done"
    assert not (tmp_path / "stage.part").exists()


def test_a_folder_that_is_not_a_finished_stage_is_refused(tmp_path):
    out = tmp_path / "stage"
    out.mkdir()
    (out / "precious.txt").write_text("user data")
    with pytest.raises(UserError, match="not a finished toy stage"):
        run_stage(out)
    assert (out / "precious.txt").read_text() == "user data"


def test_a_stale_part_folder_is_cleaned_up_unless_resuming(tmp_path):
    out = tmp_path / "stage"
    stale = tmp_path / "stage.part"
    stale.mkdir()
    (stale / "half_written.bin").write_text("junk of a crashed run")
    assert run_stage(out)
    assert sorted(p.name for p in out.iterdir()) == ["result.txt", STAGE_FILE]

    # a chunked stage resumes: the chunks already in its .part folder are kept
    out2 = tmp_path / "chunked"
    (tmp_path / "chunked.part").mkdir()
    (tmp_path / "chunked.part" / "chunk-0.npy").write_text("kept")
    seen = []
    assert run_stage(out2, body=lambda part: seen.extend(p.name for p in part.iterdir()), resume=True)
    assert seen == ["chunk-0.npy"] and (out2 / "chunk-0.npy").read_text() == "kept"


def test_a_failed_stage_leaves_no_output(tmp_path):
    out = tmp_path / "stage"

    def body(part):
        (part / "partial.txt").write_text("half")
        raise UserError("bad input")

    with pytest.raises(UserError, match="bad input"):
        run_stage(out, body=body)
    assert not out.exists()
    assert run_stage(out)  # the next run starts clean
    assert sorted(p.name for p in out.iterdir()) == ["result.txt", STAGE_FILE]



def test_a_failed_rerun_keeps_the_earlier_output(tmp_path):
    out = tmp_path / "stage"
    assert run_stage(out)

    def fails(part):
        (part / "result.txt").write_text("half")
        raise UserError("bad input")

    with pytest.raises(UserError):
        run_stage(out, {**SETTINGS, "lr": 1.0}, body=fails, overwrite=True)
    assert (out / "result.txt").read_text() == "done" and stage_status(out, SETTINGS) == "done"
    assert not (tmp_path / "stage.part").exists()  # a clear error leaves no .part behind


def test_a_crash_keeps_its_part_folder_until_the_next_run(tmp_path):
    out = tmp_path / "stage"

    def crashes(part):
        (part / "partial.txt").write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        run_stage(out, body=crashes)
    assert not out.exists() and (tmp_path / "stage.part" / "partial.txt").is_file()
    assert run_stage(out)
    assert not (tmp_path / "stage.part").exists() and not (out / "partial.txt").exists()

def test_write_atomic_replaces_whole_files_only(tmp_path):
    path = tmp_path / "report.json"
    write_atomic(path, "first")
    write_atomic(path, b"second")
    assert path.read_bytes() == b"second"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temporary left behind


def test_finish_stage_renames_once(tmp_path):
    part, out = tmp_path / "store.part", tmp_path / "store"
    part.mkdir()
    (part / "manifest.json").write_text("{}")
    assert finish_stage(part, out, "datastore", {"k": 1}) is True
    assert json.loads((out / STAGE_FILE).read_text())["settings"] == {"k": 1}
    assert not part.exists() and stage_status(out, {"k": 1}) == "done"


def test_stage_settings_follow_the_data_files_content(tmp_path):
    @dataclass
    class Config:
        lr: float = 1e-3
        overwrite: bool = False

    data = tmp_path / "sel.jsonl"
    data.write_text('{"a": 1}\n')
    first = stage_settings(Config(), [str(data), str(tmp_path / "missing.jsonl")])
    assert first == {"lr": 1e-3, "data_sha256": [file_sha256(data), None]}  # overwrite excluded
    data.write_text('{"a": 2}\n')  # rewritten in place, same name: other settings
    assert stage_settings(Config(), [str(data), str(tmp_path / "missing.jsonl")]) != first
