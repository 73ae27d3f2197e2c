"""The per-example features LESS compares: the Adam-preconditioned gradient (pool) and the plain
gradient (targets), applied to one LoRA matrix's block of coordinates at a time."""

from __future__ import annotations

from typing import Literal

import torch

AdamVariant = Literal["less", "bias_corrected", "eps_outside"]


def adam_preconditioned_gradient(grad: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor,
                                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                                 variant: AdamVariant = "less", step: int | None = None) -> torch.Tensor:
    """Gamma(z) (docs/method.md, "Pool feature") for a block of per-example gradients ``grad`` [N, p].

    ``less`` (default, the original code): m' = b1 m + (1-b1) g; v' = b2 v + (1-b2) g^2;
    Gamma = m' / sqrt(v' + eps).
    ``eps_outside``: Gamma = m' / (sqrt(v') + eps) (the textbook Adam update).
    ``bias_corrected``: textbook Adam at step t = step + 1: m'/(1-b1^t) / (sqrt(v'/(1-b2^t)) + eps).
    """
    b1, b2 = betas
    m = exp_avg.reshape(1, -1).to(grad.dtype)                  # [1,p]
    v = exp_avg_sq.reshape(1, -1).to(grad.dtype)               # [1,p]
    m_new = b1 * m + (1 - b1) * grad                           # [N,p]
    v_new = b2 * v + (1 - b2) * grad * grad                    # [N,p]
    if variant == "less":
        return m_new / torch.sqrt(v_new + eps)
    if variant == "eps_outside":
        return m_new / (torch.sqrt(v_new) + eps)
    if variant == "bias_corrected":
        if step is None:
            raise ValueError("the bias_corrected Adam variant needs the optimizer step")
        t = step + 1
        return (m_new / (1 - b1 ** t)) / (torch.sqrt(v_new / (1 - b2 ** t)) + eps)
    raise ValueError(f"unknown Adam variant {variant!r}")
