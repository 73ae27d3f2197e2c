"""Live-state LESS features and scores against a slow, obvious reference."""

import numpy as np
import pytest
import torch

from .helpers import encoded_rows, lora_model, trained_one_step
from less_select.data.batching import collate
from less_select.dynamic import DynamicOptions
from less_select.dynamic.features import build_projector, gradient_dim, live_scores
from less_select.gradients.features import adam_preconditioned_gradient
from less_select.gradients.per_example import lora_layout, per_example_gradients
from less_select.subtask_rules import get_rule
from less_select.training.checkpoints import moments_by_name


def reference_scores(model, opt, cand, targets, labels, pad_id):
    """Full per-example gradient matrices, the Adam formula block by block, exact cosines."""
    m, v = moments_by_name(model, opt)
    g = per_example_gradients(model, collate(cand, pad_id))
    betas, eps = opt.param_groups[0]["betas"], opt.param_groups[0]["eps"]
    gamma = torch.cat([adam_preconditioned_gradient(g[:, p.offset:p.offset + p.numel], m[p.name],
                                                    v[p.name], betas, eps) for p in lora_layout(model)], 1)
    gamma = torch.nn.functional.normalize(gamma, dim=1).numpy()
    t = torch.nn.functional.normalize(per_example_gradients(model, collate(targets, pad_id)), dim=1).numpy()
    subs = sorted(set(labels))
    means = np.stack([t[[i for i, s in enumerate(labels) if s == k]].mean(0) for k in subs])
    return gamma @ means.T


def setup(tokenizer):
    model, opt = trained_one_step(tokenizer)
    cand, _ = encoded_rows(tokenizer, 20, seed=0)
    targets, _ = encoded_rows(tokenizer, 5, seed=1)
    labels = ["a", "b", "b", "a", "b"][:len(targets)]
    opts = DynamicOptions(projector="identity", proj_dim=gradient_dim(model), max_batch_size=7)
    return model, opt, cand, targets, labels, opts


def test_live_scores_equal_exact_reference(tiny_tokenizer):
    model, opt, cand, targets, labels, opts = setup(tiny_tokenizer)
    got = live_scores(model, opt, 1, cand, targets, labels, build_projector(model, opts), opts,
                      tiny_tokenizer.pad_token_id)
    want = reference_scores(model, opt, cand, targets, labels, tiny_tokenizer.pad_token_id)
    assert got.subtasks == ["a", "b"]
    np.testing.assert_allclose(got.per_subtask, want, atol=2e-5)
    assert not any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_changing_exp_avg_sq_changes_the_selection(tiny_tokenizer):
    """The live optimizer state is what is used: a huge exp_avg_sq on the LoRA B matrices silences
    their coordinates in Gamma, so the features (and the selection) come from the A matrices only."""
    model, opt, cand, targets, labels, opts = setup(tiny_tokenizer)
    proj = build_projector(model, opts)
    pad = tiny_tokenizer.pad_token_id
    before = live_scores(model, opt, 1, cand, targets, labels, proj, opts, pad).per_subtask
    names = {id(p): n for n, p in model.named_parameters()}
    for p, state in opt.state.items():
        if "lora_B" in names[id(p)]:
            state["exp_avg_sq"].fill_(1e4)
    after = live_scores(model, opt, 1, cand, targets, labels, proj, opts, pad).per_subtask
    np.testing.assert_allclose(after, reference_scores(model, opt, cand, targets, labels, pad), atol=2e-5)
    rule = get_rule("max")
    assert not np.allclose(before, after, atol=1e-3)
    assert set(rule.rank(before)[:6]) != set(rule.rank(after)[:6])


def test_sparse_projection_tracks_exact_scores(tiny_tokenizer):
    model, opt, cand, targets, labels, opts = setup(tiny_tokenizer)
    sparse = DynamicOptions(projector="sparse", proj_dim=4096)
    got = live_scores(model, opt, 1, cand, targets, labels, build_projector(model, sparse), sparse,
                      tiny_tokenizer.pad_token_id).per_subtask
    want = reference_scores(model, opt, cand, targets, labels, tiny_tokenizer.pad_token_id)
    assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.95


def test_full_fine_tuning_features_equal_reference(tiny_tokenizer, tiny_model):
    """No LoRA layers: exact per-example gradients of every trainable parameter."""
    for p in tiny_model.parameters():
        p.requires_grad_(False)
    for p in tiny_model.model.layers[1].parameters():  # a slice of the model keeps the test fast
        p.requires_grad_(True)
    model, opt = trained_one_step(tiny_tokenizer, tiny_model)
    cand, _ = encoded_rows(tiny_tokenizer, 6, seed=0)
    targets, _ = encoded_rows(tiny_tokenizer, 3, seed=1)
    labels = ["a", "a", "b"]
    opts = DynamicOptions(projector="identity", proj_dim=gradient_dim(model))
    got = live_scores(model, opt, 1, cand, targets, labels, build_projector(model, opts), opts,
                      tiny_tokenizer.pad_token_id).per_subtask
    params = [p for p in model.parameters() if p.requires_grad]
    st = [opt.state[p] for p in params]

    def flat_grad(row, adam):
        loss = model(**collate([row], tiny_tokenizer.pad_token_id)).loss
        gs = torch.autograd.grad(loss, params)
        if adam:
            gs = [adam_preconditioned_gradient(g.reshape(1, -1), s["exp_avg"], s["exp_avg_sq"])
                  for g, s in zip(gs, st)]
        return torch.nn.functional.normalize(torch.cat([g.reshape(1, -1) for g in gs], 1), dim=1)[0]

    model.eval()
    gamma = torch.stack([flat_grad(r, True) for r in cand]).detach().numpy()
    t = torch.stack([flat_grad(r, False) for r in targets]).detach().numpy()
    want = gamma @ np.stack([t[:2].mean(0), t[2:].mean(0)]).T
    np.testing.assert_allclose(got, want, atol=2e-5)
