"""The projection-noise estimate of scoring.projection_noise against the error measured on an
identity store (exact features): the same projection is applied at every checkpoint, so its errors
are correlated across checkpoints and must not be averaged as independent ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from less_select.datastore.store import Datastore
from less_select.datastore.build import DatastoreConfig, TargetsConfig, run_datastore, run_targets
from less_select.projection import make_projector
from less_select.scoring import projection_noise, unit_rows
from less_select.training.checkpoints import MOMENTS_FILE, canonical_param_name, save_moments, write_meta

from .conftest import make_pool_records, write_jsonl


def similar_checkpoints(model_dir, out, n=4):
    """Checkpoints of one warmup run, roughly: one LoRA adapter and one set of Adam moments, each
    drifting a little from checkpoint to checkpoint (so their features are alike, as in practice)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir),
                           LoraConfig(r=4, lora_alpha=8, init_lora_weights=False, target_modules=["q_proj", "v_proj"]))
    params = {canonical_param_name(k): p for k, p in model.named_parameters() if p.requires_grad}
    m = {k: torch.randn_like(p) * 1e-3 for k, p in params.items()}
    v = {k: torch.rand_like(p) * 1e-6 + 1e-7 for k, p in params.items()}
    for i in range(n):
        with torch.no_grad():
            for p in params.values():
                p.add_(0.1 * p.std() * torch.randn_like(p))
        for k in m:
            m[k] = m[k] + 0.2e-3 * torch.randn_like(m[k])
        path = out / f"checkpoint-{i + 1}"
        model.save_pretrained(path)
        save_moments(path / MOMENTS_FILE, m, v)
        write_meta(path, {"epoch": i + 1, "step": i + 1, "mean_lr": 2e-5 / (i + 1),
                          "betas": [0.9, 0.999], "eps": 1e-8})


@pytest.fixture(scope="module")
def exact_stores(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("noise")
    similar_checkpoints(tiny_model_dir, tmp / "warmup")
    pool = write_jsonl(tmp / "pool.jsonl", make_pool_records(40, seed=3))
    recs = make_pool_records(12, seed=4)
    for i, r in enumerate(recs):
        r["subtask"] = "ab"[i % 2]
    targets = write_jsonl(tmp / "targets.jsonl", recs)
    cfg = dict(model=str(tiny_model_dir), checkpoints=[str(tmp / "warmup")], projector="identity",
               dims=[1], dtype="float64", max_seq_length=64, chunk_size=16)
    from safetensors.torch import load_file
    P = sum(t.numel() for t in load_file(str(tmp / "warmup" / "checkpoint-1" / "adapter_model.safetensors")).values())
    cfg["dims"] = [P]
    store = run_datastore(DatastoreConfig(data=[str(pool)], output_dir=str(tmp / "pool"), **cfg))
    tgt = run_targets(TargetsConfig(task=str(targets), datastore=str(store), output_dir=str(tmp / "tgt"),
                                    max_seq_length=64, dtype="float64"))
    return Datastore(store), Datastore(tgt), P


def _scores(pool_rows, target_rows, labels, weights):
    """Brute force: s_k = sum_i w_i mean_{z' in V_k} <x_i, t_i(z')>, per subtask k; and the M_ik."""
    subtasks = sorted(set(labels))
    means = {}
    out = 0
    for name, w in weights.items():
        t = unit_rows(target_rows[name])
        means[name] = np.stack([t[[j for j, s in enumerate(labels) if s == k]].mean(0) for k in subtasks])
        out = out + w * unit_rows(pool_rows[name]) @ means[name].T
    return out, means


@pytest.mark.parametrize("kind,dim", [("rademacher", 32), ("sparse", 32)])
def test_noise_estimate_matches_the_measured_projection_error(exact_stores, kind, dim):
    pool, targets, P = exact_stores
    names = [c["name"] for c in pool.checkpoints]
    weights = {c["name"]: float(c["weight"]) for c in pool.checkpoints}
    labels = [str(r["subtask"]) for r in targets.index()]
    X = {n: pool.load(n, P) for n in names}
    T = {n: targets.load(n, P) for n in names}
    exact, exact_means = _scores(X, T, labels, weights)
    # the estimate is the noise of the subtask with the largest mean target rows (the noisiest)
    k = int(np.argmax(sum(w * np.linalg.norm(exact_means[n], axis=1) for n, w in weights.items())))
    errors, estimates, corrs = [], [], []
    for seed in range(12):
        proj = make_projector(kind, P, dim, seed)
        pX = {n: proj.project_block(torch.from_numpy(X[n]).float(), 0).numpy() for n in names}
        pT = {n: proj.project_block(torch.from_numpy(T[n]).float(), 0).numpy() for n in names}
        got, means = _scores(pX, pT, labels, weights)
        errors.append(got[:, k] - exact[:, k])
        est = projection_noise(means, list(weights.values()), pool.checkpoints, dim, got.max(1), kind)
        estimates.append(est["noise_std"])
        # per-checkpoint errors of one subtask, to show they are correlated across checkpoints
        e = [unit_rows(pX[n]) @ means[n][k] - unit_rows(X[n]) @ exact_means[n][k] for n in names]
        corrs.append(np.corrcoef(np.stack(e))[np.triu_indices(len(names), 1)].mean())
    measured = float(np.sqrt(np.mean(np.square(errors))))
    estimated = float(np.mean(estimates))
    print(kind, dim, "measured", measured, "estimated", estimated, "corr", np.mean(corrs))
    assert np.mean(corrs) > 0.5
    assert 0.8 < estimated / measured < 1.4  # independent errors gave 0.66 here

