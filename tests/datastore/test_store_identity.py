"""What a store records about its inputs: the base model (resolved path, config hash, weights
fingerprint) checked by every consumer, resolvable paths, and checkpoint weights for sgd stores."""

import json
from pathlib import Path

import pytest

from less_select.datastore.store import Datastore
from less_select.errors import UserError
from less_select.datastore.build import TargetsConfig, run_datastore, run_targets
from less_select.modeling import model_identity
from less_select.demo.tiny_model import build_tiny_llama
from less_select.scoring import compute_scores

from .test_build import ds_config, make_checkpoints, setup  # noqa: F401 (fixture)

KW = dict(projector="sparse", dims=[8], dtype="float32")


def _other_model(tokenizer, out, **kw):
    """Same tokenizer; another seed (same shapes) or another size."""
    model = build_tiny_llama(len(tokenizer), hidden_size=kw.pop("hidden_size", 32), intermediate_size=64,
                             num_heads=4, tokenizer=tokenizer, **kw)
    tokenizer.save_pretrained(out)
    model.save_pretrained(out)
    return out


def test_model_identity_tracks_weights_and_config_not_sharding(tiny_model_dir, tiny_tokenizer, tmp_path):
    a = model_identity(str(tiny_model_dir))
    assert a["path"] == str(Path(tiny_model_dir).resolve()) and a["weights_fingerprint"] and a["config_sha256"]
    from transformers import AutoModelForCausalLM
    resharded = tmp_path / "resharded"
    AutoModelForCausalLM.from_pretrained(tiny_model_dir).save_pretrained(resharded, max_shard_size="20KB")
    assert len(list(resharded.glob("*.safetensors"))) > 1
    b = model_identity(str(resharded))
    assert (b["weights_fingerprint"], b["config_sha256"]) == (a["weights_fingerprint"], a["config_sha256"])
    other = model_identity(str(_other_model(tiny_tokenizer, tmp_path / "seed1", seed=1)))
    assert other["config_sha256"] == a["config_sha256"] and other["weights_fingerprint"] != a["weights_fingerprint"]


def test_targets_from_another_base_model_are_refused(setup, tiny_tokenizer):
    tmp, model_dir, _, pool_file, target_file = setup
    store = run_datastore(ds_config(tmp, model_dir, pool_file, **KW))
    assert Datastore(store).manifest["model_identity"] == model_identity(str(model_dir))
    other = _other_model(tiny_tokenizer, tmp / "other_model", seed=1)  # same shapes, other weights
    with pytest.raises(UserError, match="model weights differ.* same model"):
        run_targets(TargetsConfig(task=str(target_file), datastore=str(store), model=str(other),
                                  output_dir=str(tmp / "t_bad"), dtype="float32"))
    # built without --datastore, the mismatch is caught when scoring
    bad = run_targets(TargetsConfig(task=str(target_file), model=str(other), checkpoints=[str(tmp / "warmup")],
                                    output_dir=str(tmp / "t_other"), **KW))
    with pytest.raises(UserError, match="another base model"):
        compute_scores(store, bad, 8)
    good = run_targets(TargetsConfig(task=str(target_file), datastore=str(store), output_dir=str(tmp / "t")))
    assert compute_scores(store, good, 8).score.shape == (24,)


def test_adapter_of_another_architecture_is_one_line(setup, tiny_tokenizer):
    tmp, model_dir, _, pool_file, _ = setup
    wide = _other_model(tiny_tokenizer, tmp / "wide", hidden_size=48)
    with pytest.raises(UserError, match="does not fit the base model") as err:
        run_datastore(ds_config(tmp, wide, pool_file, "wide_store", **KW))
    assert "\n" not in str(err.value) and len(str(err.value)) < 500
    from less_select.modeling import load_model_with_adapter
    with pytest.raises(UserError, match="does not fit the base model"):
        load_model_with_adapter(str(wide), str(tmp / "warmup" / "checkpoint-10"), "float32")


def test_sgd_pool_store_weights_checkpoints_by_learning_rate(setup):
    tmp, model_dir, _, pool_file, _ = setup
    store = Datastore(run_datastore(ds_config(tmp, model_dir, pool_file, gradient_type="sgd", **KW)))
    assert [c["mean_lr"] for c in store.checkpoints] == [2e-5, 1e-5]
    assert [c["weight"] for c in store.checkpoints] == pytest.approx([2 / 3, 1 / 3])
    assert [c["step"] for c in store.checkpoints] == [10, 20]
    override = Datastore(run_datastore(ds_config(tmp, model_dir, pool_file, "o", gradient_type="sgd",
                                                 mean_lrs=[1.0, 3.0], **KW)))
    assert [c["weight"] for c in override.checkpoints] == pytest.approx([0.25, 0.75])


def test_relative_paths_are_stored_resolved_and_targets_work_from_elsewhere(setup, monkeypatch):
    tmp, model_dir, _, pool_file, target_file = setup
    import shutil
    work = tmp / "work"
    shutil.copytree(model_dir, work / "model")
    shutil.move(str(tmp / "warmup"), work / "warmup")
    shutil.copy(pool_file, work / "pool.jsonl")
    monkeypatch.chdir(work)
    store = run_datastore(ds_config(Path("."), Path("model"), Path("pool.jsonl"), "store",
                                    checkpoints=["warmup"], **KW))
    mf = json.loads((work / "store" / "manifest.json").read_text())
    assert mf["model"] == str((work / "model").resolve())
    assert all(Path(c["path"]).is_absolute() for c in mf["checkpoints"])
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    tgt = run_targets(TargetsConfig(task=str(target_file), datastore=str(work / store), output_dir="t"))
    assert compute_scores(work / store, tgt, 8).score.shape == (24,)
