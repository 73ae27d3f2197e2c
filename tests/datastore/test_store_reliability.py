"""Killed and concurrent builds, stale locks and corrupt stores: a build always resumes to a finished
store, a second builder is refused by name, and a damaged store is one clear error."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from less_select import locks
from less_select.datastore.store import Datastore
from less_select.errors import UserError
from less_select.datastore.build_folder import shard_lock_name
from less_select.datastore.build import run_datastore

from .test_build import ds_config, setup  # noqa: F401 (fixture)

KW = dict(projector="sparse", dims=[8], dtype="float32")

CHILD = r"""
import json, os, signal, sys, time
from pathlib import Path
import less_select.datastore.build as b
import less_select.locks as locks
cfg, mode, arg = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
if mode == "kill_after_finalize_lock":
    real = b.take_finalize_lock
    def patched(part, out, *a, **k):
        taken = real(part, out, *a, **k)
        if taken:
            os.kill(os.getpid(), signal.SIGKILL)
        return taken
    b.take_finalize_lock = patched
elif mode == "kill_after_build_lock":
    real_acq = locks.try_acquire
    def acq(path, purpose):
        got = real_acq(path, purpose)
        if got[0] and purpose.startswith("build"):
            os.kill(os.getpid(), signal.SIGKILL)
        return got
    locks.try_acquire = acq
elif mode == "block":  # hold the build lock until the file `arg` appears
    real_cf = b.chunk_features
    def slow(*a, **k):
        while not Path(arg).exists():
            time.sleep(0.05)
        return real_cf(*a, **k)
    b.chunk_features = slow
b.run_datastore(b.DatastoreConfig(**cfg))
"""


def _child(cfg, mode, arg=""):
    """A build in a subprocess; its output goes to a file (a full pipe would stall it)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    log = open(Path(cfg.output_dir).with_suffix(".log"), "w+")
    proc = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(vars(cfg)), mode, arg], env=env,
                            stdout=log, stderr=subprocess.STDOUT, text=True)
    proc.log = log
    return proc


def _log_tail(proc) -> str:
    proc.log.seek(0)
    return proc.log.read()[-3000:]


def _count_chunk_calls(monkeypatch):
    import less_select.datastore.build as b
    calls = []
    real = b.chunk_features
    monkeypatch.setattr(b, "chunk_features", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def _assert_same(a: Path, b: Path):
    sa, sb = Datastore(a), Datastore(b)
    for ck in ("checkpoint-10", "checkpoint-20"):
        np.testing.assert_array_equal(sa.load(ck, 8), sb.load(ck, 8))
    assert sa.index() == sb.index()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["kill_after_finalize_lock", "kill_after_build_lock"])
def test_build_killed_right_after_taking_a_lock_resumes_to_a_finished_store(setup, monkeypatch, mode):
    tmp, model_dir, _, pool_file, _ = setup
    cfg = ds_config(tmp, model_dir, pool_file, "killed", **KW)
    proc = _child(cfg, mode)
    proc.wait(timeout=300)
    assert proc.returncode == -signal.SIGKILL, _log_tail(proc)
    part = tmp / "killed.part"
    lock = part / ("finalizing.lock" if mode == "kill_after_finalize_lock" else shard_lock_name(0, 1))
    owner = json.loads(lock.read_text())  # the lock names its (now dead) owner
    assert owner["pid"] == proc.pid and owner["host"] == socket.gethostname() and owner["started"]
    assert not (tmp / "killed").exists()
    calls = _count_chunk_calls(monkeypatch)
    run_datastore(cfg)  # takes the dead owner's lock over and finishes
    if mode == "kill_after_finalize_lock":
        assert calls == []  # every chunk was written before the kill: only the finalize reran
    assert not part.exists()
    assert not any(p.name.endswith(".lock") for p in (tmp / "killed").iterdir())
    _assert_same(tmp / "killed", run_datastore(ds_config(tmp, model_dir, pool_file, "ref", **KW)))


def test_lock_without_owner_info_from_older_versions_is_taken_over(setup):
    tmp, model_dir, _, pool_file, _ = setup
    run_datastore(ds_config(tmp, model_dir, pool_file, "old", num_shards=2, shard_index=0, **KW))
    (tmp / "old.part" / "finalizing.lock").write_text("")  # what the old code left after a kill
    run_datastore(ds_config(tmp, model_dir, pool_file, "old", num_shards=2, shard_index=1, **KW))
    assert Datastore(tmp / "old").n_rows == 24 and not (tmp / "old.part").exists()


@pytest.mark.slow
def test_second_builder_on_one_output_is_refused_by_name_then_first_finishes(setup, tmp_path):
    tmp, model_dir, _, pool_file, _ = setup
    cfg = ds_config(tmp, model_dir, pool_file, "conc", **KW)
    go = tmp_path / "go"
    proc = _child(cfg, "block", str(go))
    lock = tmp / "conc.part" / shard_lock_name(0, 1)
    deadline = time.monotonic() + 300
    while not lock.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert lock.is_file(), _log_tail(proc)
    try:
        with pytest.raises(UserError, match=rf"already being built by pid {proc.pid} on "):
            run_datastore(cfg)
        # another shard layout while the first one runs: its chunks would overlap, refused too
        with pytest.raises(UserError, match="another shard layout"):
            run_datastore(ds_config(tmp, model_dir, pool_file, "conc", num_shards=2, shard_index=1, **KW))
    finally:
        go.write_text("")
    proc.wait(timeout=300)
    assert proc.returncode == 0, _log_tail(proc)
    assert not (tmp / "conc.part").exists()
    _assert_same(tmp / "conc", run_datastore(ds_config(tmp, model_dir, pool_file, "ref", **KW)))


def test_lock_takeover_rules(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path = tmp_path / "x.lock"
    path.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": "t"}))
    assert locks.try_acquire(path, "test") == (True, None)
    assert json.loads(path.read_text())["pid"] == os.getpid()
    # a live owner keeps it; one on another host is never taken over (its pid cannot be checked)
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        for host in (socket.gethostname(), "some-other-host"):
            path.write_text(json.dumps({"pid": alive.pid if host != "some-other-host" else dead.pid,
                                        "host": host, "started": "t"}))
            taken, owner = locks.try_acquire(path, "test")
            assert not taken and owner["host"] == host
    finally:
        alive.kill()
        alive.wait()
    # a reused pid (same number, other process start time) is a dead owner
    path.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "proc_start": "1",
                                "started": "t"}))
    assert locks.try_acquire(path, "test")[0]
    locks.release(path)
    assert not path.exists()


# ----------------------------------------------------------------------------- corrupt stores

def _corruptions():
    def truncate_chunk(s):
        f = s / "checkpoint-10" / "dim8" / "chunk-00001.npy"
        f.write_bytes(f.read_bytes()[:-40])

    def wrong_shape(s):
        np.save(s / "checkpoint-10" / "dim8" / "chunk-00000.npy", np.zeros((5, 7), np.float16))

    def wrong_dtype(s):
        np.save(s / "checkpoint-20" / "dim8" / "chunk-00002.npy", np.zeros((5, 8), np.float32))

    def missing_chunk(s):
        (s / "checkpoint-20" / "dim8" / "chunk-00004.npy").unlink()

    def edit_n_rows(s):
        mf = json.loads((s / "manifest.json").read_text())
        (s / "manifest.json").write_text(json.dumps({**mf, "n_rows": mf["n_rows"] + 3}))

    def edit_n_rows_type(s):
        mf = json.loads((s / "manifest.json").read_text())
        (s / "manifest.json").write_text(json.dumps({**mf, "n_rows": "24"}))

    def truncate_index(s):
        f = s / "index.jsonl"
        f.write_bytes(f.read_bytes()[:-25])

    def garbled_index_line(s):
        lines = (s / "index.jsonl").read_text().splitlines(keepends=True)
        lines[3] = "{not json\n"
        (s / "index.jsonl").write_text("".join(lines))

    def invalid_manifest(s):
        f = s / "manifest.json"
        f.write_text(f.read_text()[:-10])

    def manifest_not_object(s):
        (s / "manifest.json").write_text("[1, 2]")

    def missing_stage(s):
        (s / "stage.json").unlink()

    return [truncate_chunk, wrong_shape, wrong_dtype, missing_chunk, edit_n_rows, edit_n_rows_type,
            truncate_index, garbled_index_line, invalid_manifest, manifest_not_object, missing_stage]


@pytest.fixture(scope="module")
def good_store(tmp_path_factory, tiny_model_dir):
    """(pool store, its target store), built once for all corruptions."""
    from less_select.datastore.build import TargetsConfig, run_targets
    from .test_build import make_checkpoints
    from ..conftest import make_pool_records, write_jsonl
    tmp = tmp_path_factory.mktemp("good")
    make_checkpoints(tiny_model_dir, tmp / "warmup")
    pool = write_jsonl(tmp / "pool.jsonl", make_pool_records(24))
    store = run_datastore(ds_config(tmp, tiny_model_dir, pool, "store", **KW))
    targets = run_targets(TargetsConfig(task=str(write_jsonl(tmp / "t.jsonl", make_pool_records(4, 1))),
                                        datastore=str(store), output_dir=str(tmp / "targets"),
                                        dtype="float32", max_seq_length=64))
    return store, targets


@pytest.mark.parametrize("damage", _corruptions(), ids=lambda f: f.__name__)
def test_corrupt_store_is_one_clear_error(good_store, tmp_path, damage):
    import shutil
    from less_select.scoring import compute_scores
    store = tmp_path / "store"
    shutil.copytree(good_store[0], store)
    damage(store)
    with pytest.raises(UserError) as err:
        s = Datastore(store)
        s.index()
        for ck in ("checkpoint-10", "checkpoint-20"):
            s.load(ck, 8)
    msg = str(err.value)
    assert msg.startswith(f"store {store} is corrupt (") and msg.endswith("; rebuild it"), msg
    assert "\n" not in msg
    if damage.__name__ == "garbled_index_line":
        return  # scoring never reads the pool index (selection does, through index())
    with pytest.raises(UserError, match="is corrupt"):  # the consumer gives the same one line
        compute_scores(store, good_store[1], 8)
