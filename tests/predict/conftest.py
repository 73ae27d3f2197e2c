"""Fixtures of the predict tests: hand-made warmup checkpoints of the tiny model, a pool, targets."""

from __future__ import annotations

import random

import pytest
import torch

from ..conftest import WORDS, write_jsonl


def make_checkpoints(model_dir, out, n=2, seed=0):
    """Our checkpoint format: a random LoRA adapter, random Adam moments and a mean lr each."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from less_select.training.checkpoints import MOMENTS_FILE, canonical_param_name, save_moments, write_meta
    for i in range(n):
        torch.manual_seed(seed + i)
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir),
                               LoraConfig(r=4, lora_alpha=8, init_lora_weights=False,
                                          target_modules=["q_proj", "v_proj"]))
        path = out / f"checkpoint-{(i + 1) * 10}"
        model.save_pretrained(path)
        params = {canonical_param_name(k): p for k, p in model.named_parameters() if p.requires_grad}
        save_moments(path / MOMENTS_FILE, {k: torch.randn_like(p) * 1e-3 for k, p in params.items()},
                     {k: torch.rand_like(p) * 1e-6 for k, p in params.items()})
        write_meta(path, {"epoch": i + 1, "step": (i + 1) * 10, "mean_lr": 2e-5 / (i + 1),
                          "betas": [0.9, 0.999], "eps": 1e-8})
    return out


def records(n: int, seed: int, source: str) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        q = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 12)))
        a = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 10)))
        out.append({"dataset": source, "id": f"{source}_{i}",
                    "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
    return out


@pytest.fixture(scope="module")
def predict_setup(tmp_path_factory, tiny_model_dir):
    """(root, model dir, checkpoints dir, [two pool files, 60 examples], target file, 2 subtasks)."""
    root = tmp_path_factory.mktemp("predict")
    ckpts = make_checkpoints(tiny_model_dir, root / "warmup")
    pools = [write_jsonl(root / "a.jsonl", records(36, 0, "a")),
             write_jsonl(root / "b.jsonl", records(24, 1, "b"))]
    targets = records(6, 2, "t")
    for i, r in enumerate(targets):
        r["subtask"] = "x" if i < 2 else "y"   # unequal subtask sizes on purpose
    return root, tiny_model_dir, ckpts, pools, write_jsonl(root / "targets.jsonl", targets)


def predict_config(setup, name: str, **kw):
    from less_select.predict import PredictConfig
    root, model_dir, ckpts, pools, target = setup
    base = dict(model=str(model_dir), checkpoints=[str(ckpts)], data=[str(p) for p in pools],
                task=str(target), output_dir=str(root / name), projector="identity", dims=[1024],
                dtype="float64", max_seq_length=64, max_tokens_per_batch=512, chunk_size=16,
                sample_fraction=0.5, min_sample=10, pca_dims=4, folds=3, top_k=6,
                forward_features=False)  # 24 more columns than this sample fits: test_forward.py
    base.update(kw)
    return PredictConfig(**base)


@pytest.fixture(scope="module")
def full_less(predict_setup):
    """Full LESS on the whole pool: datastore, targets, select (the truth)."""
    from less_select.datastore.build import DatastoreConfig, TargetsConfig, run_datastore, run_targets
    from less_select.select_stage import SelectConfig, run_select
    root, model_dir, ckpts, pools, target = predict_setup
    common = dict(model=str(model_dir), checkpoints=[str(ckpts)], projector="identity", dims=[1024],
                  dtype="float64", max_seq_length=64, max_tokens_per_batch=512, chunk_size=16)
    store = run_datastore(DatastoreConfig(data=[str(p) for p in pools],
                                          output_dir=str(root / "full_store"), **common))
    tstore = run_targets(TargetsConfig(task=str(target), output_dir=str(root / "full_targets"), **common))
    run_select(SelectConfig(datastore=str(store), targets=str(tstore), top_k=6,
                            output_dir=str(root / "full_sel")))
    return root / "full_sel", store, tstore
