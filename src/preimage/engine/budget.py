"""A distance budget around a seed image: the picture may differ from its seed by at most a pixel RMSE r.

The map x ↦ x0 + (x − x0)·min(1, r′/RMSE(x − x0)) is a differentiable reparameterization (the optimizer moves the
parameters freely; what the network and the user see lies in the ball), so the target uses the whole budget where a
penalty weight would land short of it or past it. r′ = r − ½: the 8-bit picture differs from this float picture by
at most ½ per pixel, so the saved PNG stays within r; clipping to 0–255 only moves pixels toward the seed's.
"""

from __future__ import annotations

import torch

#: What rounding to 8 bits can add to the RMSE (at most ½ per pixel).
ROUNDING = 0.5


def into_ball(x: torch.Tensor, x0: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """x (N×C×H×W) pulled toward x0 (N×C×H×W) along x − x0 until its RMSE to x0 is at most radius (N; inf: no
    limit). Differentiable; the identity inside the ball. → N×C×H×W."""
    d = x - x0
    rmse = d.flatten(1).pow(2).mean(1).clamp_min(1e-24).sqrt()  # sqrt has no gradient at 0: the start is x0
    # No limit as twice the current distance: the same factor 1, and no inf·0 in the backward pass.
    r = torch.where(torch.isinf(radius.to(x)), 2 * rmse.detach(), radius.to(x))
    shrink = (r / rmse).clamp(max=1.0)
    return x0 + d * shrink.view(-1, *([1] * (x.ndim - 1)))


class SeedBall:
    """``into_ball`` with each problem's seed and budget bound: x0 N×C×H×W (paper units), max_rmse N values in
    0–255 units (inf: none). ``select(rows)`` gives some problems' (``optimize`` runs problems one by one)."""

    def __init__(self, x0: torch.Tensor, max_rmse: torch.Tensor) -> None:
        self.x0 = x0.detach()
        self.radius = (max_rmse.to(torch.float64) - ROUNDING).clamp_min(0.0)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return into_ball(x, self.x0.to(x), self.radius.to(x.device))

    def select(self, rows: torch.Tensor) -> SeedBall:
        out = SeedBall.__new__(SeedBall)
        out.x0, out.radius = self.x0[rows.to(self.x0.device)], self.radius[rows.to(self.radius.device)]
        return out
