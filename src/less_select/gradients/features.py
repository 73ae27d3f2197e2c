"""The per-example features LESS compares: the Adam-preconditioned gradient (pool) and the plain
gradient (targets), applied to one LoRA matrix's block of coordinates at a time.

Each feature kind is a small object (:class:`AdamFeature`, :class:`PlainGradient`) whose
``for_checkpoint`` gives the transform of one checkpoint, so the store builder and dynamic selection
never branch on the kind's name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Union

import torch

from ..errors import UserError

AdamVariant = Literal["less", "bias_corrected", "eps_outside"]


def _less(m, v, b1, b2, eps, step):
    return m / torch.sqrt(v + eps)


def _eps_outside(m, v, b1, b2, eps, step):
    return m / (torch.sqrt(v) + eps)


def _bias_corrected(m, v, b1, b2, eps, step):
    if step is None:
        raise ValueError("the bias_corrected Adam variant needs the optimizer step")
    t = step + 1
    return (m / (1 - b1 ** t)) / (torch.sqrt(v / (1 - b2 ** t)) + eps)


# variant -> Gamma from the updated moments (m', v'), the betas, eps and the optimizer step
ADAM_VARIANTS: dict[str, Callable] = {"less": _less, "eps_outside": _eps_outside,
                                      "bias_corrected": _bias_corrected}


def adam_preconditioned_gradient(grad: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor,
                                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                                 variant: AdamVariant = "less", step: int | None = None) -> torch.Tensor:
    """Gamma(z) (docs/method.md, "Pool feature") for a block of per-example gradients ``grad`` [N, p].

    ``less`` (default, the original code): m' = b1 m + (1-b1) g; v' = b2 v + (1-b2) g^2;
    Gamma = m' / sqrt(v' + eps).
    ``eps_outside``: Gamma = m' / (sqrt(v') + eps) (the textbook Adam update).
    ``bias_corrected``: textbook Adam at step t = step + 1: m'/(1-b1^t) / (sqrt(v'/(1-b2^t)) + eps).
    """
    if variant not in ADAM_VARIANTS:
        raise ValueError(f"unknown Adam variant {variant!r}")
    b1, b2 = betas
    m = exp_avg.reshape(1, -1).to(grad.dtype)                  # [1,p]
    v = exp_avg_sq.reshape(1, -1).to(grad.dtype)               # [1,p]
    m_new = b1 * m + (1 - b1) * grad                           # [N,p]
    v_new = b2 * v + (1 - b2) * grad * grad                    # [N,p]
    return ADAM_VARIANTS[variant](m_new, v_new, b1, b2, eps, step)


def adam_less_in_place(grad: torch.Tensor, b1m: torch.Tensor, b2v: torch.Tensor, b1: float, b2: float,
                       eps: float) -> torch.Tensor:
    """The ``less`` variant of :func:`adam_preconditioned_gradient`, bit for bit, in two [N, p]
    buffers instead of eight: the same float operations in the same order, but in place.
    ``b1m`` = b1 * m and ``b2v`` = b2 * v [1, p], computed once per checkpoint. Consumes ``grad``
    (the datastore's per-example gradient blocks are not used after their feature is formed)."""
    v_new = grad * (1 - b2)                                    # [N,p] (1-b2) g
    v_new.mul_(grad).add_(b2v)                                 # b2 v + (1-b2) g g
    m_new = grad.mul_(1 - b1).add_(b1m)                        # b1 m + (1-b1) g   (grad reused)
    return m_new.div_(v_new.add_(eps).sqrt_())                 # m' / sqrt(v' + eps)


# --------------------------------------------------------------------------- feature kinds

Transform = Callable[[str, torch.Tensor], torch.Tensor]  # (parameter name, grad [N, p]) -> feature


@dataclass(frozen=True)
class PlainGradient:
    """The feature of target examples (and of a ``sgd`` pool store): the gradient itself."""

    name: str = "sgd"
    needs_moments: bool = False  # a checkpoint needs no optimizer state
    variant: str | None = None   # recorded in the manifest: no Adam formula applies

    def for_checkpoint(self, ckpt, names: list[str], device) -> Transform:
        return lambda name, grad: grad


@dataclass(frozen=True)
class AdamFeature:
    """The LESS pool feature: the gradient preconditioned by the checkpoint's Adam moments."""

    variant: AdamVariant = "less"
    name: str = "adam"
    needs_moments: bool = True

    def for_checkpoint(self, ckpt, names: list[str], device) -> Transform:
        """The transform of one checkpoint; its moments of every parameter in ``names`` are moved
        to ``device`` once (a parameter without moments is a :class:`UserError`)."""
        moments = {}
        for name in names:
            if name not in ckpt.exp_avg:
                raise UserError(f"{ckpt.path}: optimizer state has no moments for {name}")
            moments[name] = (ckpt.exp_avg[name].to(device), ckpt.exp_avg_sq[name].to(device))

        if self.variant == "less":
            b1, b2 = ckpt.betas
            scaled = {name: (b1 * m.reshape(1, -1).float(), b2 * v.reshape(1, -1).float())
                      for name, (m, v) in moments.items()}

        def transform(name: str, grad: torch.Tensor) -> torch.Tensor:
            if self.variant == "less" and grad.dtype == torch.float32:
                return adam_less_in_place(grad, *scaled[name], b1, b2, ckpt.eps)
            m, v = moments[name]
            return adam_preconditioned_gradient(grad, m, v, ckpt.betas, ckpt.eps, self.variant, ckpt.step)
        return transform


GradientFeature = Union[PlainGradient, AdamFeature]


def gradient_feature(gradient_type: Literal["adam", "sgd"], adam_variant: AdamVariant = "less"
                     ) -> GradientFeature:
    """The feature kind a store's ``gradient_type`` names."""
    kinds = {"adam": lambda: AdamFeature(adam_variant), "sgd": PlainGradient}
    if gradient_type not in kinds:
        raise UserError(f"gradient_type must be adam or sgd, got {gradient_type!r}")
    return kinds[gradient_type]()
