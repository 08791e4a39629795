"""The paper's two image priors, per problem (paper-notes §1.1). Pure functions: N×C×H×W → N."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def alpha_norm(x: torch.Tensor, alpha: float = 6.0) -> torch.Tensor:
    """Bounded range: R_α(x) = mean over pixels of ‖x(u,v,:)‖^α (colour norm per pixel).

    x: N×C×H×W → N. Multiply by λ_α = B^−α for the energy term.
    """
    return x.pow(2).sum(1).pow(alpha / 2).mean((-2, -1))


def tv_beta(x: torch.Tensor, beta: float = 2.0) -> torch.Tensor:
    """Bounded variation: R_TVβ(x) = (1/HW) Σ_{u,v,k} (d1² + d2²)^(β/2), per colour channel.

    Forward differences with a replicated border (the last row/column has zero difference), as the authors'
    code. x: N×C×H×W → N. Multiply by λ_β = V^−β.
    """
    d1 = F.pad(x[..., :, 1:] - x[..., :, :-1], (0, 1))
    d2 = F.pad(x[..., 1:, :] - x[..., :-1, :], (0, 0, 0, 1))
    s = d1.pow(2) + d2.pow(2)
    if beta != 2.0:
        # s^(β/2) has an infinite slope at 0 for β<2; the clamp picks the zero subgradient there.
        s = s.clamp_min(1e-12).pow(beta / 2)
    return s.sum(1).mean((-2, -1))


def project_ball(x: torch.Tensor, bound: float) -> torch.Tensor:
    """In place: scale each pixel's colour vector so that ‖x(u,v,:)‖ ≤ bound. x: N×C×H×W."""
    if bound == float("inf"):
        return x
    norm = x.pow(2).sum(1, keepdim=True).sqrt_()
    return x.mul_((bound / norm.clamp_min_(1e-12)).clamp_max_(1.0))
