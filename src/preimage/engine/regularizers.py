"""The paper's two image priors, per problem (docs/paper-notes.md §1.1). Pure functions: N×C×H×W → N.

Each prior comes twice: as a differentiable function (``alpha_norm``, ``tv_beta``) and with its gradient in
closed form (``alpha_norm_and_grad``, ``tv_beta_and_grad``). The optimizer uses the closed forms: they cost
a third of the autograd round trip, and the same formulas are checked against autograd in the tests.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def colour_norms2(x: torch.Tensor) -> torch.Tensor:
    """Squared colour norm of every pixel, ‖x(u,v,:)‖²: N×C×H×W → N×1×H×W.

    Accumulated channel by channel: on CPU this is twice as fast as (x*x).sum(1), a reduction across planes.
    """
    s = x[:, :1] * x[:, :1]
    for c in range(1, x.shape[1]):
        s.addcmul_(x[:, c:c + 1], x[:, c:c + 1])
    return s


def rowdot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-problem inner product ⟨a_n, b_n⟩ of two N×... tensors → N (one BLAS dot for N = 1)."""
    if a.shape[0] == 1:
        return torch.dot(a.reshape(-1), b.reshape(-1)).reshape(1)
    return torch.linalg.vecdot(a.flatten(1), b.flatten(1))


def alpha_norm(x: torch.Tensor, alpha: float = 6.0) -> torch.Tensor:
    """Bounded range: R_α(x) = mean over pixels of ‖x(u,v,:)‖^α (colour norm per pixel).

    x: N×C×H×W → N. Multiply by λ_α = B^−α for the energy term.
    """
    return x.pow(2).sum(1).pow(alpha / 2).mean((-2, -1))


def alpha_norm_and_grad(x: torch.Tensor, alpha: float = 6.0, weight: float = 1.0,
                        grad: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """weight·R_α(x) (N) and its gradient weight·(α/HW)·x·‖x(u,v,:)‖^(α−2) (N×C×H×W), without autograd.

    x: N×C×H×W. grad: if given, the gradient is added into it in place (and it is returned).
    """
    h, w = x.shape[-2:]
    s = colour_norms2(x)
    if alpha == 6.0:
        p = s * s  # the default exponent: a multiplication instead of a pow
    elif alpha == 2.0:
        p = torch.ones_like(s)
    else:
        p = s.clamp_min(1e-30).pow(alpha / 2 - 1)
    value = rowdot(p, s).mul_(weight / (h * w))
    # The constant goes on the one-channel factor, not on the C-channel gradient.
    p.mul_(weight * alpha / (h * w))
    if grad is None:
        return value, x * p
    return value, grad.addcmul_(x, p)


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


def tv_beta_and_grad(x: torch.Tensor, beta: float = 2.0, weight: float = 1.0,
                     grad: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """weight·R_TVβ(x) (N) and its gradient weight·(β/HW)·(D1ᵀ(w·d1) + D2ᵀ(w·d2)), w = (d1²+d2²)^(β/2−1).

    Same value and subgradient as ``tv_beta`` (including its clamp at 0 for β<2), without autograd.
    x: N×C×H×W. grad: if given, the gradient is added into it in place (and it is returned).
    """
    h, w = x.shape[-2:]
    n = x.shape[0]
    c = weight / (h * w)
    g = torch.zeros_like(x) if grad is None else grad
    if beta == 2.0:
        # w ≡ 1: the differences need no padding, and the gradient is a replicate-border Laplacian.
        d1 = x[..., :, 1:] - x[..., :, :-1]
        d2 = x[..., 1:, :] - x[..., :-1, :]
        value = rowdot(d1, d1).add_(rowdot(d2, d2)).mul_(c)
        a, b, k = d1, d2, 2.0 * c
    else:
        d1 = F.pad(x[..., :, 1:] - x[..., :, :-1], (0, 1))
        d2 = F.pad(x[..., 1:, :] - x[..., :-1, :], (0, 0, 0, 1))
        s = d1 * d1 + d2 * d2
        live = s > 1e-12
        s = s.clamp_min(1e-12)
        value = s.pow(beta / 2).reshape(n, -1).sum(1).mul_(c)
        wt = s.pow(beta / 2 - 1).mul_(live)
        a, b, k = (wt * d1)[..., :, :-1], (wt * d2)[..., :-1, :], beta * c
    g[..., :, 1:].add_(a, alpha=k)
    g[..., :, :-1].sub_(a, alpha=k)
    g[..., 1:, :].add_(b, alpha=k)
    g[..., :-1, :].sub_(b, alpha=k)
    return value, g


def project_ball(x: torch.Tensor, bound: float) -> torch.Tensor:
    """In place: scale each pixel's colour vector so that ‖x(u,v,:)‖ ≤ bound. x: N×C×H×W."""
    if bound == float("inf"):
        return x
    # min(1, bound/‖x‖) via rsqrt of the squared norm (linalg.vector_norm over channels is ~70× slower on CPU);
    # rsqrt(0) = inf clamps to 1, so a black pixel stays black.
    return x.mul_(colour_norms2(x).rsqrt_().mul_(bound).clamp_max_(1.0))
