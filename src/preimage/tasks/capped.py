"""Capped activations (ReLU6): a backward pass that leaks where the activation is flat, and the score limit.

In an inverted-residual block (MobileNetV2, EfficientNet-Lite) the output is linear, but every path into it runs
through a ReLU6, so an inner product ⟨Φ(x), W⟩ at the block's output is a sum of capped terms: a hidden unit
contributes at most 6·(its weight), and a unit below 0 contributes nothing and passes no gradient. The exact
gradient therefore cannot recruit dead units whose contribution would be positive.

``leaky_backward`` keeps the forward pass (and so every reported score) exact and gives the optimizer a small
slope ``leak`` where ReLU6 is flat, the straight-through form of the paper's leaky ReLU (docs/paper-notes.md §1.3),
which changes the forward instead. ``score_limit`` measures how far a score can go at all: the same energy
maximized from noise, with and without the leak, the best per problem.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

from ..engine.objectives import InnerProduct
from ..engine.optimize import Energy, optimize, seeds_for
from ..engine.rng import problem_seed
from ..engine.schedules import Stage
from ..representations.base import Representation
from ..representations.hooks import swap_modules
from ..representations.surrogate import straight_through

#: The slope the limit search also tries where ReLU6 is flat (the paper's leak is 0.05–0.1). Not a default of
#: the tasks: on efficientnet_lite0 it raised a blocks.4 caricature's score by only ~2% and lowered a class
#: caricature's (benchmarks/capped_activations.py).
CAP_LEAK = 0.1
CAPPED = (nn.ReLU6,)


class LeakyBackwardReLU6(nn.Module):
    """ReLU6 forward, exactly; backward slope 1 on (0, 6) and ``leak`` below 0 and above 6."""

    def __init__(self, leak: float) -> None:
        super().__init__()
        self.leak = leak

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.clamp(0.0, 6.0)
        return straight_through(y, y + self.leak * (x - y))


def is_capped(net: nn.Module) -> bool:
    """Whether the network has capped activation modules (``nn.ReLU6``)."""
    return any(isinstance(m, CAPPED) for m in net.modules())


@contextlib.contextmanager
def leaky_backward(net: nn.Module, leak: float) -> Iterator[int]:
    """Temporarily give the net's ``nn.ReLU6`` modules a leaky backward (forward unchanged); yields how many
    were swapped. Restored on exit. ``leak == 0`` changes nothing."""
    with swap_modules(net, lambda m: LeakyBackwardReLU6(leak) if leak and isinstance(m, CAPPED) else None) as n:
        yield n


def score_limit(rep: Representation, objective: InnerProduct, n: int, size: tuple[int, int],
                schedule: Sequence[Stage], *, leaks: Sequence[float] = (0.0, CAP_LEAK), seed: int | Sequence[int] = 0,
                energy: Energy = Energy(), **kw: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """How high ``objective.score`` can go: maximize the same energy from noise, once per backward leak.

    kw: further ``optimize`` arguments (the style's parameterization, transforms, prior, optimizer).
    Returns (the best score per problem, N; the image that reached it, N×C×H×W in paper units). The scores are
    those of the real network (the leak changes gradients only).
    """
    best = torch.full((n,), -torch.inf)
    best_x = torch.zeros(n, rep.channels, *size)
    for i, leak in enumerate(leaks):
        with leaky_backward(rep.net, leak):
            trace = optimize(rep, objective, n, size, schedule,
                             seed=[problem_seed(s, "limit", i) for s in seeds_for(seed, n)], energy=energy, **kw)
        with torch.no_grad():
            s = objective.score(rep(trace.x)).cpu()
        better = s > best
        best = torch.where(better, s, best)
        best_x[better] = trace.x.cpu()[better]
    return best, best_x
