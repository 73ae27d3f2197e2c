"""Failed reruns keep the earlier output; clear errors leave no ``.part``; pipeline folder names;
malformed pipeline YAML; foreign optimizer pickles; and the small messages of issue 12 (--mean-lrs,
--max-examples, identity projection dims)."""

from __future__ import annotations

import json
import logging

import pytest
import torch
import yaml

from less_select.errors import UserError
from less_select.stage_folder import stage_dir

from .helpers import GOOD, assert_refused, assert_user_error, run_cli, snapshot, write_case


@pytest.fixture
def pool(tmp_path):
    path = tmp_path / "pool.jsonl"
    path.write_text("".join(json.dumps({**r, "id": f"p{i}"}) + "\n" for i, r in
                            enumerate(GOOD["messages"] * 8)))
    return path


def _baseline(pool, out, *extra):
    return ["baseline", "--method", "random", "--data", pool, "--output-dir", out, *extra]


@pytest.mark.parametrize("rerun", [["--percentage", "0"], ["--top-k", "-5"], ["--percentage", "nan"],
                                   ["--percentage", "0.001", "--overwrite"],  # fails inside the stage
                                   ["--top-k", "0", "--percentage", "0.01", "--overwrite"]],
                         ids=["p0", "k-5", "pnan", "p-tiny-overwrite", "k0-overwrite"])
def test_failed_rerun_keeps_the_previous_selection(pool, tmp_path, capsys, rerun):
    out = tmp_path / "sel"
    rc, err = run_cli(_baseline(pool, out, "--top-k", "3"), capsys)
    assert rc == 0, err
    before = snapshot(out)
    rc, err = run_cli(_baseline(pool, out, *rerun), capsys)
    assert_refused(rc, err)
    assert snapshot(out) == before, "a failed rerun changed the earlier selection"
    assert not (tmp_path / "sel.part").exists() and not (tmp_path / "sel.old").exists()


def test_successful_overwrite_replaces_the_output(pool, tmp_path, capsys):
    out = tmp_path / "sel"
    assert run_cli(_baseline(pool, out, "--top-k", "3"), capsys)[0] == 0
    assert run_cli(_baseline(pool, out, "--top-k", "5", "--overwrite"), capsys)[0] == 0
    assert json.loads((out / "selection.json").read_text())["n_selected"] == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pool.jsonl", "sel"]


def test_stage_dir_user_error_removes_part_and_keeps_old_output(tmp_path):
    out = tmp_path / "stage"
    with stage_dir(out, "s", {"a": 1}) as part:
        (part / "f.txt").write_text("old")
    for overwrite in (False, True):
        with pytest.raises(UserError):
            with stage_dir(out, "s", {"a": 2}, overwrite=overwrite) as part:
                (part / "f.txt").write_text("new")
                raise UserError("bad input found half way")
        assert (out / "f.txt").read_text() == "old"
        assert not (tmp_path / "stage.part").exists()


def test_stage_dir_crash_keeps_a_nonempty_part_and_drops_an_empty_one(tmp_path):
    for write in (False, True):
        out = tmp_path / f"stage{int(write)}"
        with pytest.raises(RuntimeError):
            with stage_dir(out, "s", {}) as part:
                if write:
                    (part / "log.txt").write_text("what happened")
                raise RuntimeError("crash")
        assert (out.with_name(out.name + ".part")).exists() == write and not out.exists()


def test_select_with_a_bad_budget_touches_nothing(tmp_path):
    from less_select.select_stage import SelectConfig, run_select
    old = tmp_path / "sel"
    old.mkdir()
    (old / "selection.json").write_text("{}")
    for bad in ({"percentage": 0.0}, {"top_k": -5}, {"percentage": float("nan")}, {"percentage": 1.5}):
        with pytest.raises(UserError) as exc:
            run_select(SelectConfig(datastore="d", targets="t", output_dir=str(old), **bad))
        assert_user_error(exc.value, f"SelectConfig.{next(iter(bad))}")
        assert [p.name for p in old.iterdir()] == ["selection.json"]
        assert not (tmp_path / "sel.part").exists()


# ------------------------------------------------------------------ pipeline folder names

@pytest.mark.parametrize("task,name", [("dir/.hidden.jsonl", "hidden"), ("a.v1.jsonl", "a.v1"),
                                       ("a.v2.jsonl.gz", "a.v2"), ("x/tgt.json", "tgt"),
                                       ("t.parquet", "t"), ("bbh", "bbh")])
def test_task_names(task, name):
    from less_select.data.targets import task_name
    assert task_name(task) == name


@pytest.mark.parametrize("task", [".", "..", "dir/..", ".jsonl", "..jsonl", "x/.gz"])
def test_task_without_a_name_is_refused(task):
    from less_select.data.targets import task_name
    with pytest.raises(UserError, match="does not name a data file"):
        task_name(task)


def _pipeline(tmp_path, **over):
    cfg = {"run_dir": str(tmp_path / "run"), "model": "m", "data": [str(tmp_path / "pool.jsonl")], **over}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize("tasks", [["a/t.jsonl", "b/t.jsonl"], ["t.jsonl", "t.json"], [".", "x.jsonl"],
                                   ["..", "x.jsonl"]], ids=["same-stem", "same-name", "dot", "dotdot"])
def test_pipeline_refuses_targets_without_distinct_folders(tmp_path, capsys, tasks):
    path = _pipeline(tmp_path, targets=[{"task": t} for t in tasks])
    rc, err = run_cli(["run", path], capsys)
    assert_refused(rc, err)
    assert not (tmp_path / "run").exists()


def test_versioned_target_files_get_their_own_folders():
    from less_select.pipeline import target_names
    assert target_names(["d/a.v1.jsonl", "d/a.v2.jsonl", "d/.a.jsonl"], "p") == ["a.v1", "a.v2", "a"]


# ------------------------------------------------------------------ pipeline YAML files

YAML_FILES = {
    "invalid_yaml": (b"run_dir: [unclosed\n", "invalid YAML"),
    "tab_indent": (b"run_dir: r\nwarmup:\n\tepochs: 1\n", "invalid YAML"),
    "not_mapping": (b"- a\n- b\n", "must be a mapping"),
    "scalar": (b"42\n", "must be a mapping"),
    "unknown_top": (b"run_dir: r\nmodel: m\ndata: d.jsonl\nwarmpu: {}\n", "warmpu"),
    "missing_run_dir": (b"model: m\ndata: d.jsonl\n", "'run_dir' is required"),
    "missing_model": (b"run_dir: r\ndata: d.jsonl\n", "'model' is required"),
    "missing_data": (b"run_dir: r\nmodel: m\n", "'data' is required"),
    "run_dir_list": (b"run_dir: [a, b]\nmodel: m\ndata: d.jsonl\n", "run_dir: expected a string"),
    "model_number": (b"run_dir: r\nmodel: 7\ndata: d.jsonl\n", "model: expected a string"),
    "data_mapping": (b"run_dir: r\nmodel: m\ndata: {a: 1}\n", "data: expected a list"),
    "data_numbers": (b"run_dir: r\nmodel: m\ndata: [1, 2]\n", "data[0]: expected a string"),
    "duplicate_key": (b"run_dir: r\nmodel: m\nmodel: n\ndata: d.jsonl\n", "given twice"),
    "duplicate_in_section": (b"run_dir: r\nmodel: m\ndata: d.jsonl\nwarmup:\n  epochs: 1\n  epochs: 2\n",
                             "given twice"),
    "not_utf8": (b"run_dir: r\nmodel: \xe9\ndata: d.jsonl\n", "not UTF-8"),
    "utf16": ("run_dir: r\nmodel: m\ndata: d.jsonl\n".encode("utf-16"), "not UTF-8"),
    "deep": (b"run_dir: r\nmodel: m\ndata: d.jsonl\nx: " + b"[" * 5000 + b"]" * 5000 + b"\n", ""),
    "section_not_mapping": (b"run_dir: r\nmodel: m\ndata: d.jsonl\nwarmup: [1]\n", "warmup: expected a mapping"),
    "unknown_section_key": (b"run_dir: r\nmodel: m\ndata: d.jsonl\ndatastore: {chunk: 3}\n", "chunk"),
    "ill_typed": (b"run_dir: r\nmodel: m\ndata: d.jsonl\ndatastore: {dims: [big]}\n", "datastore.dims[0]"),
    "bool_as_number": (b"run_dir: r\nmodel: m\ndata: d.jsonl\nwarmup: {epochs: yes}\n", "warmup.epochs"),
    "targets_not_list": (b"run_dir: r\nmodel: m\ndata: d.jsonl\ntargets: 3\n", "targets[0]: expected a mapping"),
    "target_without_task": (b"run_dir: r\nmodel: m\ndata: d.jsonl\ntargets: [{dims: [8]}]\n",
                            "targets[0]"),
    "target_unknown_key": (b"run_dir: r\nmodel: m\ndata: d.jsonl\ntargets: [{task: t.jsonl, x: 1}]\n",
                           "targets[0]"),
    "eval_unknown_key": (b"run_dir: r\nmodel: m\ndata: d.jsonl\neval: {shots: 3}\n", "eval"),
    "train_bad_method": (b"run_dir: r\nmodel: m\ndata: d.jsonl\ntrain: {method: half}\n", "train.method"),
}


@pytest.mark.parametrize("kind", sorted(YAML_FILES), ids=sorted(YAML_FILES))
def test_malformed_pipeline_yaml_is_one_line(kind, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data, needle = YAML_FILES[kind]
    path = tmp_path / "p.yaml"
    path.write_bytes(data)
    rc, err = run_cli(["run", path], capsys)
    assert_refused(rc, err, str(path), needle)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.yaml"]


def test_a_yaml_byte_order_mark_is_accepted(tmp_path):
    from less_select.pipeline import load_pipeline_config
    path = tmp_path / "p.yaml"
    path.write_bytes(b"\xef\xbb\xbfrun_dir: r\nmodel: m\ndata: d.jsonl\n")
    assert load_pipeline_config(path).data == ["d.jsonl"]


def test_a_bad_late_section_fails_before_warmup_runs(tmp_path, capsys, pool):
    path = _pipeline(tmp_path, data=[str(pool)], targets=[{"task": str(pool)}], train={"lora_r": 0})
    rc, err = run_cli(["run", path], capsys)
    assert_refused(rc, err, "train.lora_r", "must be > 0")
    assert not (tmp_path / "run").exists()


def test_empty_or_blank_answers_are_refused_in_every_format(tmp_path):
    from less_select.data import load_examples
    lines = {"messages": json.dumps({"messages": [{"role": "user", "content": "q"},
                                                  {"role": "assistant", "content": " "}]}),
             "sharegpt": json.dumps({"conversations": [{"from": "human", "value": "q"},
                                                       {"from": "gpt", "value": ""}]}),
             "alpaca": json.dumps({"instruction": "q", "output": "\n"}),
             "prompt_completion": json.dumps({"prompt": "q", "completion": ""})}
    for fmt, line in lines.items():
        path = write_case(tmp_path / f"{fmt}.jsonl", fmt, line)
        with pytest.raises(UserError, match=r":3: .*(empty)"):
            load_examples([path])
        examples, report = load_examples([path], lenient=True)
        assert len(examples) == 3 and report.total_skipped == 1


# ------------------------------------------------------------------ foreign optimizer files

class _Payload:
    """Unpickling this would run code (touch a file); a weights-only load must refuse it."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _optimizer_files(tmp_path):
    marker = tmp_path / "PWNED"
    evil = {"state": {0: {"exp_avg": torch.zeros(2)}}, "param_groups": [{"params": [0]}],
            "payload": _Payload(marker)}
    good_bytes = tmp_path / "ok.pt"
    torch.save({"state": {}, "param_groups": []}, good_bytes)
    return marker, {
        "pickle_payload": (evil, "not a plain tensor checkpoint"),
        "truncated": (good_bytes.read_bytes()[:60], "not a readable torch checkpoint"),
        "not_torch": (b"hello", "not a readable torch checkpoint"),
        "a_list": ([1, 2], "expected an optimizer state dict"),
        "no_param_groups": ({"state": {}}, "not an optimizer state dict"),
        "sgd_state": ({"state": {0: {"momentum_buffer": torch.zeros(2)}}, "param_groups": [{"params": [0]}]},
                      "exp_avg"),
    }


@pytest.mark.parametrize("kind", ["pickle_payload", "truncated", "not_torch", "a_list",
                                  "no_param_groups", "sgd_state"])
@pytest.mark.parametrize("fmt", ["optimizer.pt", "optimizer.bin"])
def test_foreign_optimizer_file_is_refused_in_one_line(tmp_path, kind, fmt):
    from less_select.training.checkpoints import load_checkpoint
    marker, cases = _optimizer_files(tmp_path)
    obj, needle = cases[kind]
    ck = tmp_path / "checkpoint-3"
    ck.mkdir()
    if isinstance(obj, bytes):
        (ck / fmt).write_bytes(obj)
    else:
        torch.save(obj, ck / fmt)
    if fmt == "optimizer.bin" and kind == "sgd_state":  # name-keyed, as FSDP saves
        torch.save({"state": {"model.w.lora_A.weight": {"momentum_buffer": torch.zeros(2)}},
                    "param_groups": [{}]}, ck / fmt)
    if fmt == "optimizer.bin" and kind == "no_param_groups":
        pytest.skip("an FSDP file may be a bare name -> state mapping")
    with pytest.raises(UserError) as exc:
        load_checkpoint(ck, param_names=["model.w.lora_A.weight"] if fmt == "optimizer.pt" else None)
    assert_user_error(exc.value, str(ck), needle)
    assert not marker.exists(), "the pickle's code ran"
    assert "weights_only" not in str(exc.value)


# ------------------------------------------------------------------ small messages

def test_no_learning_rate_error_names_the_flag():
    from pathlib import Path
    from less_select.training.checkpoints import Checkpoint, checkpoint_weights
    ck = Checkpoint(path=Path("ck"), adapter_dir=Path("ck"), step=1, epoch=1, mean_lr=None,
                    exp_avg={}, exp_avg_sq={})
    with pytest.raises(UserError, match="--mean-lrs"):
        checkpoint_weights([ck])


def test_max_examples_log_says_what_was_kept(tmp_path, caplog):
    from less_select.data import load_examples
    path = tmp_path / "pool.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in GOOD["messages"] * 3))
    with caplog.at_level(logging.INFO, logger="less_select.data.formats"):
        examples, report = load_examples([path], max_per_file=2)
    assert len(examples) == 2 and report.read == {str(path): 2}
    assert "read 9 example(s)" in caplog.text and "kept the first 2" in caplog.text
    with pytest.raises(UserError, match=">= 0"):
        load_examples([path], max_per_file=-1)


def test_identity_projection_with_default_dims_is_refused_naming_p():
    from less_select.datastore.build import DatastoreConfig
    from less_select.projection import make_projector
    with pytest.raises(UserError) as exc:
        make_projector("identity", 1000, DatastoreConfig().dims[0])
    assert_user_error(exc.value, "P=1000", "dims")


@pytest.mark.slow
def test_failed_select_rerun_keeps_the_previous_selection(tmp_path, tiny_model_dir, pool_file,
                                                          target_file, capsys):
    """The issue's case: a finished LESS selection, then ``select`` reruns that fail (a bad
    percentage, refused up front; a budget of zero rows, found inside the stage) leave it intact."""
    cfg = {"run_dir": str(tmp_path / "run"), "model": str(tiny_model_dir), "data": [str(pool_file)],
           "warmup": {"percentage": 0.5, "epochs": 1, "per_device_batch_size": 4,
                      "effective_batch_size": 4, "lora_r": 2, "lora_alpha": 4, "max_seq_length": 48,
                      "learning_rate": 1e-3, "dtype": "float32"},
           "datastore": {"dims": [16], "chunk_size": 16, "max_seq_length": 48},
           "targets": [{"task": str(target_file)}], "select": {"percentage": 0.25}}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(cfg))
    rc, err = run_cli(["--threads", "1", "run", path], capsys)
    assert rc == 0, err
    run = tmp_path / "run"
    sel = run / "selected" / "target"
    before = snapshot(sel)
    base = ["select", "--datastore", run / "datastore", "--targets", run / "targets" / "target",
            "--output-dir", sel]
    for bad in (["--percentage", "0"], ["--percentage", "-1"], ["--top-k", "-5"],
                ["--percentage", "0.001"]):  # the last one passes validation, selects 0 rows
        rc, err = run_cli(base + bad, capsys)
        assert_refused(rc, err)
        assert snapshot(sel) == before, bad
        assert not (sel.parent / "target.part").exists() and not (sel.parent / "target.old").exists()


@pytest.mark.parametrize("value", ["-1", "two", "1.5"])
def test_bad_thread_count_is_one_line(value, capsys):
    rc, err = run_cli(["--threads", value, "baseline"], capsys)
    assert_refused(rc, err, "--threads")
