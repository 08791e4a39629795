"""L-BFGS for N independent problems at once, one evaluation of the energy per iteration.

``torch.optim.LBFGS`` treats all its parameters as one problem: on a batch its line search would share one step
length across the problems, and its evaluations per iteration vary. Here every problem keeps its own memory of
curvature pairs, its own initial scaling γ = s·y/y·D·y and its own step length, and each call takes exactly one
evaluation (the energy and gradient at the point the last call proposed): the point is accepted when it satisfies
Armijo's condition, and otherwise the problem goes back to its last accepted point and halves its step along the
same direction. An iteration therefore costs one evaluation, as an Adam step does. Deterministic energies only (no
random transforms): the acceptance test compares energies across iterations.
"""

from __future__ import annotations

import math

import torch

#: Curvature pairs kept per problem.
MEMORY = 20


def image_buffers(memory: int = MEMORY) -> int:
    """Image-sized float32 buffers it holds per problem on the pyramid (4/3 of an image per copy): the pairs' s and
    y, and the accepted point, its gradient, the direction and a temporary."""
    return math.ceil((2 * memory + 4) * 4 / 3)


def flatten(xs: list[torch.Tensor]) -> torch.Tensor:
    """A parameterization's tensors (each N×...) → N×D, problem by problem."""
    return torch.cat([x.flatten(1) for x in xs], 1)


class LBFGSStep:
    """Batched L-BFGS on a parameterization's tensors (each N×..., problem first), worked on as one N×D matrix.

    memory: curvature pairs kept per problem (in a ring per problem, so a rejected step in one problem leaves the
    others' memories as they would be alone); first: the largest move of the first step, in the tensors' units
    (the first direction is the gradient, scaled so); scale: one factor per tensor in H₀ = γ·D (None: all 1);
    c1: Armijo's constant; shrink: the step factor after a rejected point."""

    def __init__(self, memory: int = MEMORY, first: float = 2.0, scale: list[float] | None = None,
                 c1: float = 1e-4, shrink: float = 0.5) -> None:
        self.memory, self.first, self.scale, self.c1, self.shrink = memory, first, scale, c1, shrink
        self.x: torch.Tensor | None = None  # N×D: the last accepted point, its gradient; N: its energy
        self.rejected = 0

    def _start(self, xs: list[torch.Tensor], f: torch.Tensor) -> None:
        n, d = f.shape[0], sum(x[0].numel() for x in xs)
        self.D = torch.cat([torch.full((x[0].numel(),), c, dtype=x.dtype, device=x.device)
                            for x, c in zip(xs, self.scale or [1.0] * len(xs), strict=True)])
        self.S = torch.zeros(self.memory, n, d, dtype=self.D.dtype, device=self.D.device)
        self.Y = torch.zeros_like(self.S)
        self.R = torch.zeros(self.memory, n, dtype=self.D.dtype, device=self.D.device)
        self.gamma = torch.ones_like(f)
        self.count = torch.zeros(n, dtype=torch.long, device=f.device)

    def _first(self, g: torch.Tensor) -> torch.Tensor:
        g = g * self.D
        return -g * (self.first / g.abs().amax(1).clamp_min(1e-12))[:, None]

    def _remember(self, s: torch.Tensor, y: torch.Tensor, sy: torch.Tensor, good: torch.Tensor) -> None:
        """Store (s, y) in the ring of each problem where ``good``."""
        rows = good.nonzero().flatten()
        slot = self.count[rows] % self.memory
        self.S[slot, rows], self.Y[slot, rows] = s[rows], y[rows]
        self.R[slot, rows] = 1.0 / sy[rows]
        self.gamma[rows] = sy[rows] / (y[rows] * y[rows] * self.D).sum(1)
        self.count[rows] += 1

    def _pair(self, j: int, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each problem's j-th newest pair (s, y, ρ; ρ = 0 where it holds fewer than j + 1)."""
        k = (self.count - 1 - j) % self.memory
        r = torch.where(j < self.count.clamp(max=self.memory), self.R[k, rows], 0.0)
        if bool((k == k[0]).all()):  # the usual case, no problem ever rejected: views, no copies
            return self.S[int(k[0])], self.Y[int(k[0])], r
        return self.S[k, rows], self.Y[k, rows], r

    def _direction(self, g: torch.Tensor) -> torch.Tensor:
        """−H·g by the two-loop recursion, per problem over its own pairs, newest first; a problem without pairs,
        or whose pairs give no descent, takes ``_first``."""
        rows = torch.arange(g.shape[0], device=g.device)
        q = g.clone()
        seen = []
        for j in range(int(self.count.clamp(max=self.memory).max())):
            s, y, r = self._pair(j, rows)
            a = r * torch.linalg.vecdot(s, q)
            q.addcmul_(y, a[:, None], value=-1.0)
            seen.append((s, y, r, a))
        q.mul_(self.gamma[:, None]).mul_(self.D)
        for s, y, r, a in reversed(seen):
            q.addcmul_(s, (a - r * torch.linalg.vecdot(y, q))[:, None])
        bad = (self.count == 0) | ((g * q).sum(1) <= 0)
        return torch.where(bad[:, None], self._first(g), -q) if bool(bad.any()) else q.neg_()

    @torch.no_grad()
    def __call__(self, xs: list[torch.Tensor], gs: list[torch.Tensor], f: torch.Tensor) -> torch.Tensor:
        """xs: the tensors (moved in place to the next point to evaluate); gs: the gradients at xs; f: the N
        energies at xs. Returns the N energies of the accepted points."""
        x, g = flatten(xs), flatten(gs)
        if self.x is None:
            self._start(xs, f)
            ok = torch.ones_like(f, dtype=torch.bool)
            self.t = torch.ones_like(f)
            d = self._direction(g)
        else:
            ok = f <= self.f + self.c1 * self.t * self.slope
            s, y = x - self.x, g - self.g
            sy = (s * y).sum(1)
            good = ok & (sy > 1e-10 * ((y * y).sum(1) * (s * s).sum(1)).sqrt())
            if bool(good.any()):
                self._remember(s, y, sy, good)
            self.rejected += int((~ok).sum())
            # A rejected problem goes back to its accepted point and keeps its direction, with half the step.
            x, g, f = (torch.where(ok[:, None], x, self.x), torch.where(ok[:, None], g, self.g),
                       torch.where(ok, f, self.f))
            d = self._direction(g) if bool(ok.any()) else self.d
            d = torch.where(ok[:, None], d, self.d)
            self.t = torch.where(ok, torch.ones_like(self.t), self.t * self.shrink)
        self.x, self.g, self.f, self.d = x, g, f.clone(), d
        self.slope = (g * d).sum(1)
        self._write(xs, x + self.t[:, None] * d)
        return f

    @staticmethod
    def _write(xs: list[torch.Tensor], flat: torch.Tensor) -> None:
        for x, part in zip(xs, flat.split([x[0].numel() for x in xs], 1), strict=True):
            x.copy_(part.view_as(x))

    @torch.no_grad()
    def restore(self, xs: list[torch.Tensor]) -> None:
        """Put the tensors back at the last accepted point (the last proposed one was never evaluated)."""
        if self.x is not None:
            self._write(xs, self.x)


__all__ = ["MEMORY", "LBFGSStep", "flatten", "image_buffers"]
