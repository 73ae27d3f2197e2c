"""The Adam feature against the original formula on hand-made optimizer states."""

import math

import pytest
import torch

from less_select.gradients.features import adam_preconditioned_gradient


def original_formula(g, m, v, b1=0.9, b2=0.999, eps=1e-8):
    """LESS's prepare_optimizer_state/obtain_gradients_with_adam, written element by element."""
    out = []
    for gi, mi, vi in zip(g, m, v):
        m2 = b1 * mi + (1 - b1) * gi
        v2 = b2 * vi + (1 - b2) * gi ** 2
        out.append(m2 / math.sqrt(v2 + eps))
    return out


def test_matches_original_formula_and_differs_from_sgd():
    g = torch.tensor([[0.5, -1.0, 2e-3, 0.0], [1.0, 1.0, -1.0, 3.0]], dtype=torch.float64)
    m = torch.tensor([0.1, -0.2, 0.0, 1e-4], dtype=torch.float64)
    v = torch.tensor([1e-2, 4e-2, 1e-6, 0.0], dtype=torch.float64)
    got = adam_preconditioned_gradient(g, m, v)
    for row in range(2):
        assert got[row].tolist() == pytest.approx(original_formula(g[row].tolist(), m.tolist(), v.tolist()), rel=1e-12)
    cos = torch.nn.functional.cosine_similarity(got, g, dim=1)
    assert (cos < 0.99).all()  # the Adam feature is not a rescaled SGD gradient


def test_variants_differ_and_bias_correction_needs_step():
    g = torch.randn(3, 10, dtype=torch.float64)
    m, v = torch.randn(10, dtype=torch.float64) * 0.1, torch.rand(10, dtype=torch.float64) * 1e-3
    less = adam_preconditioned_gradient(g, m, v)
    outside = adam_preconditioned_gradient(g, m, v, variant="eps_outside")
    corrected = adam_preconditioned_gradient(g, m, v, variant="bias_corrected", step=9)
    assert not torch.allclose(less, corrected)
    assert torch.allclose(less, outside, rtol=1e-3)  # eps placement matters only for tiny v
    t = 10
    expected = ((0.9 * m + 0.1 * g) / (1 - 0.9 ** t)) / (torch.sqrt((0.999 * v + 0.001 * g * g) / (1 - 0.999 ** t)) + 1e-8)
    torch.testing.assert_close(corrected, expected)
    with pytest.raises(ValueError):
        adam_preconditioned_gradient(g, m, v, variant="bias_corrected")


def test_feature_kinds_transform_each_parameter_block():
    from pathlib import Path

    from less_select.errors import UserError
    from less_select.gradients.features import AdamFeature, PlainGradient, gradient_feature
    from less_select.training.checkpoints import Checkpoint
    g = torch.randn(3, 4, dtype=torch.float64)
    m, v = torch.randn(4, dtype=torch.float64), torch.rand(4, dtype=torch.float64)
    ck = Checkpoint(path=Path("ck"), adapter_dir=Path("ck"), step=4, epoch=1, mean_lr=1e-3,
                    exp_avg={"a": m}, exp_avg_sq={"a": v})
    adam = gradient_feature("adam", "bias_corrected")
    assert adam == AdamFeature("bias_corrected") and adam.needs_moments
    got = adam.for_checkpoint(ck, ["a"], "cpu")("a", g)
    torch.testing.assert_close(got, adam_preconditioned_gradient(g, m, v, ck.betas, ck.eps,
                                                                 "bias_corrected", 4))
    plain = gradient_feature("sgd")
    assert plain == PlainGradient() and not plain.needs_moments
    assert plain.for_checkpoint(ck, ["a", "b"], "cpu")("b", g) is g
    with pytest.raises(UserError, match="no moments for b"):
        adam.for_checkpoint(ck, ["a", "b"], "cpu")
    with pytest.raises(UserError, match="adam or sgd"):
        gradient_feature("momentum")


def test_in_place_less_variant_is_bit_identical_to_the_formula():
    """The datastore's in-place Adam transform against the out-of-place formula, bit for bit,
    including gradients far from the moments' scale and exact zeros."""
    from less_select.gradients.features import adam_less_in_place
    gen = torch.Generator().manual_seed(0)
    grad = torch.randn(7, 300, generator=gen) * torch.logspace(-6, 2, 300)
    grad[0, :10] = 0.0
    m, v = torch.randn(300, generator=gen) * 1e-3, torch.rand(300, generator=gen) * 1e-5
    b1, b2, eps = 0.9, 0.999, 1e-8
    want = adam_preconditioned_gradient(grad, m, v, (b1, b2), eps, "less")
    got = adam_less_in_place(grad.clone(), b1 * m.reshape(1, -1), b2 * v.reshape(1, -1), b1, b2, eps)
    assert torch.equal(got.view(torch.int32), want.view(torch.int32))


def test_adam_feature_transform_matches_formula_for_every_variant():
    from types import SimpleNamespace
    from less_select.gradients.features import AdamFeature
    gen = torch.Generator().manual_seed(1)
    m, v = torch.randn(4, 5, generator=gen), torch.rand(4, 5, generator=gen)
    ckpt = SimpleNamespace(exp_avg={"w": m}, exp_avg_sq={"w": v}, betas=(0.9, 0.99), eps=1e-6, step=3,
                           path="ckpt")
    grad = torch.randn(3, 20, generator=gen)
    for variant in ("less", "eps_outside", "bias_corrected"):
        got = AdamFeature(variant).for_checkpoint(ckpt, ["w"], "cpu")("w", grad.clone())
        want = adam_preconditioned_gradient(grad, m, v, (0.9, 0.99), 1e-6, variant, 3)
        assert torch.equal(got, want), variant
