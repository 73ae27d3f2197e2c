"""The datastore/targets builder on a tiny model with hand-made checkpoints."""

import json

import numpy as np
import pytest
import torch

from less_select.data import load_examples
from less_select.data.batching import collate
from less_select.data.encode import encode_all
from less_select.datastore.store import Datastore
from less_select.errors import UserError
from less_select.datastore.build import DatastoreConfig, TargetsConfig, run_datastore, run_targets
from less_select.gradients.features import adam_preconditioned_gradient
from less_select.gradients.per_example import lora_layout, per_example_gradients
from less_select.scoring import compute_scores
from less_select.training.checkpoints import MOMENTS_FILE, canonical_param_name, save_moments, write_meta


def make_checkpoints(model_dir, out, n=2, seed=0):
    """Checkpoints in our format: a random LoRA adapter, random Adam moments, a mean lr."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    paths = []
    for i in range(n):
        torch.manual_seed(seed + i)
        base = AutoModelForCausalLM.from_pretrained(model_dir)
        model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, init_lora_weights=False,
                                                target_modules=["q_proj", "v_proj"]))
        path = out / f"checkpoint-{(i + 1) * 10}"
        model.save_pretrained(path)
        params = {canonical_param_name(k): p for k, p in model.named_parameters() if p.requires_grad}
        m = {k: torch.randn_like(p) * 1e-3 for k, p in params.items()}
        v = {k: torch.rand_like(p) * 1e-6 for k, p in params.items()}
        save_moments(path / MOMENTS_FILE, m, v)
        write_meta(path, {"epoch": i + 1, "step": (i + 1) * 10, "mean_lr": 2e-5 / (i + 1),
                          "betas": [0.9, 0.999], "eps": 1e-8})
        paths.append(path)
    return paths


@pytest.fixture
def setup(tmp_path, tiny_model_dir, pool_file, target_file):
    ckpts = make_checkpoints(tiny_model_dir, tmp_path / "warmup")
    return tmp_path, tiny_model_dir, ckpts, pool_file, target_file


def ds_config(tmp, model_dir, pool_file, name="store", **kw):
    base = dict(model=str(model_dir), checkpoints=[str(tmp / "warmup")], data=[str(pool_file)],
                output_dir=str(tmp / name), projector="identity", dims=[1], dtype="float64",
                max_seq_length=64, chunk_size=5, max_tokens_per_batch=256)
    base.update(kw)
    return DatastoreConfig(**base)


def exact_features(model_dir, ckpt, examples, tokenizer, adam=True):
    """Unprojected, normalized features computed directly (no builder, no projection)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    from less_select.training.checkpoints import load_checkpoint
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float64), ckpt)
    enc, _ = encode_all(examples, tokenizer, 64)
    enc = [e for e in enc if e.n_completion_tokens > 0]
    g = per_example_gradients(model, collate(enc, tokenizer.pad_token_id))
    if adam:
        c = load_checkpoint(ckpt)
        blocks = []
        for p in lora_layout(model):
            blk = g[:, p.offset:p.offset + p.numel]
            blocks.append(adam_preconditioned_gradient(blk, c.exp_avg[p.name], c.exp_avg_sq[p.name]))
        g = torch.cat(blocks, dim=1)
    return torch.nn.functional.normalize(g, dim=1).numpy()


def test_identity_store_equals_exact_features_and_scores_equal_brute_force(setup, tiny_tokenizer):
    tmp, model_dir, ckpts, pool_file, target_file = setup
    from less_select.modeling import load_tokenizer
    tok = load_tokenizer(str(model_dir))
    P = sum(p.numel for p in lora_layout(_peft(model_dir, ckpts[0])))
    store = run_datastore(ds_config(tmp, model_dir, pool_file, dims=[P]))
    tgt = run_targets(TargetsConfig(task=str(target_file), datastore=str(store), output_dir=str(tmp / "tgt")))
    pool_ex, _ = load_examples(pool_file)
    tgt_ex, _ = load_examples(target_file)
    S = Datastore(store)
    weights = [c["weight"] for c in S.checkpoints]
    assert weights == pytest.approx([2 / 3, 1 / 3])  # mean lrs 2e-5 and 1e-5
    want = np.zeros(len(pool_ex))
    per_sub = {}
    for ck, w in zip(ckpts, weights):
        feats = exact_features(model_dir, ckpt=ck, examples=pool_ex, tokenizer=tok)
        np.testing.assert_allclose(S.load(ck.name, P), feats, atol=2e-3)  # float16 storage
        tfeats = exact_features(model_dir, ckpt=ck, examples=tgt_ex, tokenizer=tok, adam=False)
        for sub in ("a", "b"):
            rows = [i for i, e in enumerate(tgt_ex) if e.subtask == sub]
            per_sub[sub] = per_sub.get(sub, 0) + w * (feats @ tfeats[rows].T).mean(axis=1)
    want = np.maximum(per_sub["a"], per_sub["b"])
    got = compute_scores(store, tgt, P)
    np.testing.assert_allclose(got.score, want, rtol=1e-2, atol=2e-3)  # float16-stored features
    assert np.corrcoef(got.score, want)[0, 1] > 0.999


def _peft(model_dir, ckpt):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    return PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir), ckpt)


@pytest.mark.parametrize("projector", ["sparse", "rademacher"])
def test_store_identical_across_batch_sizes_shards_and_reruns(setup, projector):
    tmp, model_dir, ckpts, pool_file, _ = setup
    kw = dict(projector=projector, dims=[16, 32], dtype="float32")
    a = Datastore(run_datastore(ds_config(tmp, model_dir, pool_file, "a", **kw)))
    b = Datastore(run_datastore(ds_config(tmp, model_dir, pool_file, "b", max_tokens_per_batch=32,
                                          max_batch_size=1, **kw)))
    for shard in (0, 1):  # two processes, each its own chunks
        run_datastore(ds_config(tmp, model_dir, pool_file, "c", num_shards=2, shard_index=shard, **kw))
    c = Datastore(tmp / "c")
    for ck in ("checkpoint-10", "checkpoint-20"):
        for d in (16, 32):
            np.testing.assert_allclose(a.load(ck, d), b.load(ck, d), atol=2e-3)
            np.testing.assert_array_equal(a.load(ck, d), c.load(ck, d))
    # the two checkpoints give different features (the fork reused one checkpoint's gradients)
    assert not np.allclose(a.load("checkpoint-10", 16), a.load("checkpoint-20", 16), atol=1e-2)
    # a rerun with the same settings is skipped; with other settings it is refused, naming the field
    run_datastore(ds_config(tmp, model_dir, pool_file, "a", **kw))
    with pytest.raises(UserError, match="projection_seed"):
        run_datastore(ds_config(tmp, model_dir, pool_file, "a", projection_seed=3, **kw))


def test_examples_without_completion_get_no_row(tmp_path, tiny_model_dir):
    ckpts = make_checkpoints(tiny_model_dir, tmp_path / "warmup", n=1)
    pool = tmp_path / "pool.jsonl"
    long_prompt = " ".join(["alpha beta gamma"] * 60)
    recs = [{"messages": [{"role": "user", "content": "what is the sum"}, {"role": "assistant", "content": "yes"}]},
            {"messages": [{"role": "user", "content": long_prompt}, {"role": "assistant", "content": "yes"}]}]
    pool.write_text("".join(json.dumps(r) + "\n" for r in recs))
    store = Datastore(run_datastore(ds_config(tmp_path, tiny_model_dir, pool, projector="sparse", dims=[8],
                                              dtype="float32")))
    assert store.n_rows == 1 and store.manifest["n_skipped_no_completion"] == 1
    skipped = [json.loads(l) for l in open(store.path / "skipped.jsonl")]
    assert skipped[0]["line"] == 2
    assert np.isfinite(store.load("checkpoint-10", 8)).all()


def test_resume_after_interruption(setup, monkeypatch):
    tmp, model_dir, ckpts, pool_file, _ = setup
    kw = dict(projector="sparse", dims=[8], dtype="float32")
    # shard 0 of 2 only: a partial .part folder, as after a crash
    run_datastore(ds_config(tmp, model_dir, pool_file, "r", num_shards=2, shard_index=0, **kw))
    assert not (tmp / "r").exists() and (tmp / "r.part").exists()
    calls = []
    import less_select.datastore.build as b
    real = b.chunk_features
    monkeypatch.setattr(b, "chunk_features", lambda *a, **k: calls.append(1) or real(*a, **k))
    run_datastore(ds_config(tmp, model_dir, pool_file, "r", **kw))
    resumed_calls = len(calls)
    full = Datastore(run_datastore(ds_config(tmp, model_dir, pool_file, "full", **kw)))
    n_chunks = -(-full.n_rows // 5)
    assert resumed_calls == 2 * (n_chunks // 2)  # only the missing (odd) chunks, at 2 checkpoints
    np.testing.assert_array_equal(Datastore(tmp / "r").load("checkpoint-10", 8), full.load("checkpoint-10", 8))


@pytest.mark.slow  # two torchrun ranks plus a single-process build: ~20 s
def test_torchrun_two_processes_equal_one(setup):
    """Two ranks under torchrun (CPU) build one store, identical to a single-process build."""
    import subprocess
    import sys
    tmp, model_dir, ckpts, pool_file, _ = setup
    args = ["datastore", "--model", str(model_dir), "--checkpoints", str(tmp / "warmup"),
            "--data", str(pool_file), "--projector", "sparse", "--dims", "16", "--chunk-size", "4",
            "--max-seq-length", "64", "--dtype", "float32"]
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                    "--master-port", "29517", "-m", "less_select.cli", *args,
                    "--output-dir", str(tmp / "multi")], check=True, env=env, capture_output=True)
    subprocess.run([sys.executable, "-m", "less_select.cli", *args, "--output-dir", str(tmp / "single")],
                   check=True, env=env, capture_output=True)
    multi, single = Datastore(tmp / "multi"), Datastore(tmp / "single")
    assert multi.n_rows == single.n_rows == 24
    for ck in ("checkpoint-10", "checkpoint-20"):
        np.testing.assert_array_equal(multi.load(ck, 16), single.load(ck, 16))
    assert not (tmp / "multi.part").exists()


def test_bad_checkpoint_inputs_are_user_errors(setup):
    tmp, model_dir, ckpts, pool_file, _ = setup
    empty = tmp / "empty_ckpt"
    empty.mkdir()
    (empty / "adapter_config.json").write_text("{}")
    with pytest.raises(UserError, match="no adapter_model.safetensors"):
        run_datastore(ds_config(tmp, model_dir, pool_file, checkpoints=[str(empty)], projector="sparse", dims=[8]))
    with pytest.raises(UserError, match="mean-lrs has 1 value"):
        run_datastore(ds_config(tmp, model_dir, pool_file, projector="sparse", dims=[8], mean_lrs=[1e-5]))
    with pytest.raises(UserError, match="no checkpoint-<step> folders"):
        run_datastore(ds_config(tmp, model_dir, pool_file, checkpoints=[str(tmp)], projector="sparse", dims=[8]))
