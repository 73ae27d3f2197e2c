"""The build's plan and record: what the skip key holds (code versions yes, batch sizes no), the
full config in stage.json, and a manifest that later stages read instead of stage.json."""

import json

import pytest

from less_select.data import load_examples
from less_select.datastore.build import RUN_ONLY, TargetsConfig, plan_build, run_datastore, run_targets
from less_select.datastore.store import Datastore
from less_select.errors import UserError

from .test_build import ds_config, setup  # noqa: F401 (fixture)

KW = dict(projector="sparse", dims=[8, 16], dtype="float32")


def _count_chunk_calls(monkeypatch):
    import less_select.datastore.build as b
    calls = []
    real = b.chunk_features
    monkeypatch.setattr(b, "chunk_features", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def test_skip_key_holds_code_versions_and_no_run_only_option(setup):
    tmp, model_dir, _, pool_file, _ = setup
    examples, _ = load_examples(pool_file)
    plan = plan_build(ds_config(tmp, model_dir, pool_file, **KW), examples, gradient_type="adam")
    from less_select.projection import HASH_VERSION
    assert plan.settings["projection_hash"] == HASH_VERSION
    assert plan.settings["store_format"] == 1 and plan.settings["tulu_encoding"] == "tulu-v2"
    assert not set(RUN_ONLY) & set(plan.settings["config"])
    assert (plan.rank, plan.world) == (0, 1) and plan.part.name == "store.part"
    with pytest.raises(UserError, match=r"shard index 2 is not in \[0, 2\)"):
        plan_build(ds_config(tmp, model_dir, pool_file, num_shards=2, shard_index=2, **KW), examples,
                   gradient_type="adam")


def test_stage_json_keeps_the_full_config_and_batching_changes_reuse_the_store(setup, monkeypatch):
    tmp, model_dir, _, pool_file, _ = setup
    store = run_datastore(ds_config(tmp, model_dir, pool_file, **KW))
    record = json.loads((store / "stage.json").read_text())
    assert record["config"]["max_tokens_per_batch"] == 256 and record["config"]["dims"] == [8, 16]
    assert "max_tokens_per_batch" not in record["settings"]["config"]
    calls = _count_chunk_calls(monkeypatch)
    run_datastore(ds_config(tmp, model_dir, pool_file, max_tokens_per_batch=64, max_batch_size=2, **KW))
    assert calls == []  # same features: skipped, not rebuilt


def test_another_code_version_is_a_changed_setting(setup, monkeypatch):
    tmp, model_dir, _, pool_file, _ = setup
    run_datastore(ds_config(tmp, model_dir, pool_file, **KW))
    import less_select.projection as projection
    monkeypatch.setattr(projection, "HASH_VERSION", "splitmix64-v2")
    with pytest.raises(UserError, match="projection_hash: 'splitmix64-v1' -> 'splitmix64-v2'"):
        run_datastore(ds_config(tmp, model_dir, pool_file, **KW))


def test_targets_and_pool_rows_come_from_the_manifest_not_stage_json(setup):
    tmp, model_dir, _, pool_file, target_file = setup
    store = run_datastore(ds_config(tmp, model_dir, pool_file, max_examples=10, lenient=True,
                                    projection_seed=5, **KW))
    mf = Datastore(store).manifest
    assert mf["lenient"] is True and mf["max_examples"] == 10 and mf["n_examples"] == 10
    # a stage reads the store, never its skip record: blank the record's settings
    record = json.loads((store / "stage.json").read_text())
    (store / "stage.json").write_text(json.dumps(dict(record, settings={})))
    tgt = Datastore(run_targets(TargetsConfig(task=str(target_file), datastore=str(store),
                                              output_dir=str(tmp / "tgt"))))
    spec = tgt.manifest["projectors"]
    assert [p["dim"] for p in spec] == [8, 16] and spec[0]["seed"] == 5 and spec[0]["kind"] == "sparse"
    assert tgt.manifest["template"] == mf["template"] and tgt.manifest["model"] == mf["model"]
    from less_select.select_stage import pool_examples_for_store
    rows, unscored, n_pool = pool_examples_for_store(Datastore(store))
    assert n_pool == 10 and len(rows) + len(unscored) == 10
    assert [(e.source, e.line) for e in rows] == [(r["file"], r["line"]) for r in Datastore(store).index()]


def test_a_manifest_without_the_pool_options_is_refused_by_name(setup):
    tmp, model_dir, _, pool_file, _ = setup
    store = run_datastore(ds_config(tmp, model_dir, pool_file, **KW))
    mf = json.loads((store / "manifest.json").read_text())
    del mf["max_examples"]
    (store / "manifest.json").write_text(json.dumps(mf))
    from less_select.select_stage import pool_examples_for_store
    with pytest.raises(UserError, match="records no max_examples.*rebuild the datastore"):
        pool_examples_for_store(Datastore(store))
