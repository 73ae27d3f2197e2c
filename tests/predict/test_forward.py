"""Forward-pass features: the closed forms against autograd, batching never changes a row."""

from __future__ import annotations

import numpy as np
import torch

from less_select.data.encode import IGNORE_INDEX, Encoded
from less_select.predict.forward import STATS, column_names, model_stats, token_stats


def test_token_stats_match_autograd_and_definitions():
    torch.manual_seed(0)
    logits = torch.randn(3, 7, 11, dtype=torch.float64)
    labels = torch.randint(0, 11, (3, 7))
    labels[0, :3] = IGNORE_INDEX          # a prompt
    labels[2, 5:] = IGNORE_INDEX          # padding
    got = token_stats(logits, labels).double()
    for b in range(3):
        nll, grad_sq, ent = [], [], []
        for t in range(6):                # logits at t predict the label at t + 1
            y = int(labels[b, t + 1])
            if y == IGNORE_INDEX:
                continue
            z = logits[b, t].clone().requires_grad_(True)
            loss = torch.nn.functional.cross_entropy(z[None], torch.tensor([y]))
            (g,) = torch.autograd.grad(loss, z)
            p = torch.softmax(z.detach(), -1)
            nll.append(float(loss))
            grad_sq.append(float((g * g).sum()))
            ent.append(float(-(p * p.log()).sum()))
        expect = [np.mean(nll), np.mean(grad_sq), np.mean(ent), np.sqrt(np.sum(grad_sq)) / len(nll)]
        np.testing.assert_allclose(got[b].numpy(), expect, rtol=1e-5)


def test_model_stats_do_not_depend_on_the_batch(tiny_model_dir):
    from less_select.modeling import load_model
    model = load_model(str(tiny_model_dir), "float32")
    rng = np.random.default_rng(0)
    vocab = model.config.vocab_size
    encoded = []
    for n in (5, 12, 9, 3, 16):
        ids = rng.integers(1, vocab, n).tolist()
        labels = [IGNORE_INDEX] * (n // 2) + ids[n // 2:]
        encoded.append(Encoded(ids, labels, False, "raw"))
    together = model_stats(model, encoded, 0, max_tokens_per_batch=4096, max_batch_size=64)
    alone = np.concatenate([model_stats(model, [e], 0, 4096, 1) for e in encoded])
    np.testing.assert_allclose(together, alone, rtol=1e-4, atol=1e-5)
    assert together.shape == (5, len(STATS)) and np.all(together[:, 0] > 0)


def test_column_names_are_model_major():
    names = column_names(["a", "b"])
    assert names[:4] == [f"base:{s}" for s in STATS] and names[-1] == "checkpoint1:grad_norm"


def test_stage_with_forward_features(predict_setup, full_less):
    """Forward features on (3 models x 4 statistics): cached once, counted, and a cascade covering
    the pool is still exactly full LESS."""
    import json
    from pathlib import Path

    from less_select.predict import run_predict

    from .conftest import predict_config
    sel_dir = full_less[0]
    cfg = predict_config(predict_setup, "run_forward", mode="cascade", cascade_factor=10,
                         forward_features=True, pca_dims=0, sample_fraction=0.6)
    run_predict(cfg)
    run = Path(cfg.output_dir)
    assert np.load(run / "forward" / "forward.npy").shape == (60, 12)
    assert (run / "selection" / "top_k6.jsonl").read_bytes() == (sel_dir / "top_k6.jsonl").read_bytes()
    cost = json.loads((run / "selection" / "prediction.json").read_text())["cost"]
    assert cost["pool_forward_passes"] == 60 * 3 and cost["seconds"]["forward_features"] > 0
