"""The memory budget of a feature build: parsing, the peak-memory model, and --max-memory in a build."""

import json

import numpy as np
import pytest

from less_select.datastore.build import run_datastore
from less_select.errors import UserError
from less_select.gradients.memory import MemoryModel, batch_tokens_for_budget, memory_model, parse_bytes

from ..datastore.test_build import ds_config, make_checkpoints


def test_parse_bytes_units_and_errors():
    assert parse_bytes("1500MB") == 1500 << 20
    assert parse_bytes("2g") == 2 << 30
    assert parse_bytes("0.5 GiB") == 1 << 29
    assert parse_bytes("4096") == 4096
    for bad in ("", "lots", "3 TB", "-1GB", "0"):
        with pytest.raises(UserError, match="--max-memory"):
            parse_bytes(bad)


def test_budget_gives_the_most_tokens_that_fit_and_never_more_than_the_cap():
    mem = MemoryModel(fixed_bytes=1 << 30, bytes_per_token=1 << 20, max_seq_length=128)
    budget = 2 << 30
    tokens = batch_tokens_for_budget(mem, budget, 1 << 20)
    assert mem.peak(tokens) <= budget < mem.peak(tokens + 1)
    assert batch_tokens_for_budget(mem, budget, 256) == 256                 # the configured cap wins
    with pytest.raises(UserError, match="too small for this model"):
        batch_tokens_for_budget(mem, int(1.2 * (1 << 30)), 8192)          # not one 128-token sequence


def test_memory_model_grows_with_model_rows_and_dims(tiny_model_dir, tmp_path):
    from less_select.datastore.build import _attach_adapter
    from less_select.modeling import load_model
    ckpt = make_checkpoints(tiny_model_dir, tmp_path / "warmup", n=1)[0]
    model = _attach_adapter(load_model(str(tiny_model_dir), "float32"), ckpt, str(tiny_model_dir))
    small = memory_model(model, 1000, [64], 10, 64)
    assert memory_model(model, 1000, [64, 8192], 10, 64).fixed_bytes > small.fixed_bytes
    assert memory_model(model, 1000, [64], 4096, 64).fixed_bytes > small.fixed_bytes
    assert memory_model(model, 10 ** 6, [64], 10, 64).fixed_bytes > small.fixed_bytes  # Adam moments
    assert memory_model(model, 1000, [64], 10, 512).bytes_per_token > small.bytes_per_token  # attention
    assert small.bytes_per_token > 0


def test_max_memory_sets_the_batch_budget_and_keeps_the_features(tmp_path, tiny_model_dir, pool_file, caplog):
    """A build under --max-memory stores the same rows as one with an explicit small batch budget;
    a budget too small for one sequence is a one-line error that leaves no store behind."""
    make_checkpoints(tiny_model_dir, tmp_path / "warmup")
    kw = dict(projector="sparse", dims=[64])
    ref = run_datastore(ds_config(tmp_path, tiny_model_dir, pool_file, "ref", max_tokens_per_batch=64, **kw))
    with caplog.at_level("INFO"):
        out = run_datastore(ds_config(tmp_path, tiny_model_dir, pool_file, "budget", max_memory="2GB", **kw))
    assert any("--max-memory 2GB" in r.message and "tokens per batch" in r.message for r in caplog.records)
    for f in sorted((ref / "checkpoint-10").rglob("*.npy")):
        got = np.load(out / f.relative_to(ref))
        np.testing.assert_allclose(got.astype(np.float32), np.load(f).astype(np.float32), atol=2e-3)
    with pytest.raises(UserError, match="too small"):
        run_datastore(ds_config(tmp_path, tiny_model_dir, pool_file, "tiny", max_memory="100MB", **kw))
    assert not (tmp_path / "tiny").exists()
    assert json.loads((out / "manifest.json").read_text())["n_rows"] > 0
