"""Coarse-to-fine optimization: solve first for a half-resolution image, seen by Φ through up-sampling, then
up-sample that solution and continue at full resolution.

The coarse stage has a quarter of the unknowns and its pixels cannot form fine-scale noise, so the first
iterations settle the layout (where the edges are and which way they run) instead of texture; the fine stage
starts from there. Φ0, the data term and the priors are the same as in one full-resolution run; only the
variable changes: x = up(z) with z at half size, a linear map, so nothing of the original image leaks in.

Built on ``optimize`` (called twice), not inside it: the loop stays the one loop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import torch
import torch.nn.functional as F

from ..engine.objectives import Objective
from ..engine.optimize import Energy, Progress, Trace, optimize, seeds_for
from ..engine.rng import problem_seed
from ..engine.schedules import Stage
from ..errors import PreimageError
from ..representations.base import Representation

#: Share of the iterations spent at the coarse level, and the down-sampling factor.
COARSE_SHARE = 1 / 3
FACTOR = 2


def upsample(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear up-sampling N×C×h×w → N×C×H×W (half-pixel centres, as image resizers)."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def coarse_size(size: tuple[int, int], factor: int = FACTOR) -> tuple[int, int]:
    """The coarse level's (h, w): ⌈H/factor⌉ × ⌈W/factor⌉."""
    return math.ceil(size[0] / factor), math.ceil(size[1] / factor)


class Upsampled(Representation):
    """Φ(up(z)): a representation fed with a coarse image z (N×C×h×w, paper units) up-sampled to ``size``."""

    def __init__(self, rep: Representation, size: tuple[int, int]) -> None:
        super().__init__(rep.spec, rep.layer)
        self.inner, self.size = rep, tuple(size)
        self.to(*rep.device_dtype())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z: N×C×h×w (paper units) → Φ(up(z)), the features of the full-size image."""
        return self.inner(upsample(z, self.size))


def split_schedule(schedule: Sequence[Stage], first: int) -> tuple[tuple[Stage, ...], tuple[Stage, ...]]:
    """A schedule cut after ``first`` iterations: (the first part, the rest), stages split where needed."""
    head: list[Stage] = []
    tail: list[Stage] = []
    left = first
    for s in schedule:
        k = min(max(left, 0), s.iters)
        if k:
            head.append(replace(s, iters=k))
        if s.iters - k:
            tail.append(replace(s, iters=s.iters - k))
        left -= k
    return tuple(head), tuple(tail)


def optimize_coarse_to_fine(rep: Representation, objective: Objective, n: int, size: tuple[int, int],
                            schedule: Sequence[Stage], *, share: float = COARSE_SHARE, factor: int = FACTOR,
                            seed: int | Sequence[int] = 0, optimizer: str | None = None, energy: Energy = Energy(),
                            progress: Progress | None = None, **kw: object) -> Trace:
    """``optimize`` with the first ``share`` of the iterations spent on a 1/``factor`` resolution image.

    Same arguments and result as ``optimize`` (no ``init``: the coarse level starts from noise); the jitter of
    the coarse stages is divided by ``factor``. The Trace's stages are tagged ``level`` coarse/fine.
    """
    if not 0 < share < 1 or factor < 2:
        raise PreimageError("coarse-to-fine needs a share in (0, 1) and a factor of at least 2")
    total = sum(s.iters for s in schedule)
    head, tail = split_schedule(schedule, max(round(total * share), 1))
    small = coarse_size(size, factor)
    if not tail or min(small) < 2:  # nothing left for one of the levels: one level
        one = optimize(rep, objective, n, size, schedule, seed=seed, optimizer=optimizer, energy=energy,
                       progress=progress, **kw)
        one.stages = [{**s, "level": "fine", "size": list(size)} for s in one.stages]
        return one
    done = sum(s.iters for s in head)

    def coarse_progress(t: int, _total: int) -> None:
        if progress:
            progress(t, total)

    def fine_progress(t: int, _total: int) -> None:
        if progress:
            progress(done + t, total)

    jitter = None
    if any(s.jitter for s in schedule):
        jitter = rep.geometry().jitter
    coarse = optimize(Upsampled(rep, size), objective, n, small, head, seed=seed, optimizer=optimizer,
                      energy=energy, jitter=max(round(jitter / factor), 1) if jitter else None,
                      progress=coarse_progress, **kw)
    fine = optimize(rep, objective, n, size, tail, init=upsample(coarse.x, size),
                    seed=[problem_seed(s, "fine") for s in seeds_for(seed, n)],
                    optimizer=optimizer, energy=energy, jitter=jitter, progress=fine_progress, **kw)
    stages = [{**s, "level": "coarse", "size": list(small)} for s in coarse.stages] + \
        [{**s, "level": "fine", "size": list(size)} for s in fine.stages]
    return Trace(fine.x, torch.cat([coarse.energy, fine.energy]), total, coarse.seconds + fine.seconds, stages)
