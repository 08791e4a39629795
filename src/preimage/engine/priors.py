"""Priors on the network's intermediate statistics (beside the paper's image priors in ``regularizers``).

``BNStats``: DeepInversion's R_feature (Yin et al., CVPR 2020): at every BatchNorm layer the forward pass goes
through before the target layer, the per-channel mean and variance of its input should match the layer's running
statistics (those of the training set):

    R(x) = Σ_l ‖μ_l(x) − μ_l^run‖₂ + ‖σ²_l(x) − σ²_l^run‖₂

Batch-first: the statistics are taken per problem, over the spatial positions of one view of that problem (the
first of its crops, when a transform makes several), so N problems stay independent (DeepInversion pools a whole
batch).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from ..errors import PreimageError
from ..representations.base import Representation

PRIORS = ("none", "bn")


class BNStats:
    """weight · R_feature per problem, read from hooks on the BatchNorm layers during Φ's forward pass.

    Use: ``with prior.watching(rep): phi = rep(views)``, then ``prior.value(n)`` → N values (differentiable).
    """

    def __init__(self, rep: Representation, weight: float = 0.01) -> None:
        self.weight = weight
        self.layers = [m for m in rep.net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not self.layers:
            raise PreimageError(f"--prior bn needs BatchNorm layers, and {rep.name} has none; "
                                "use --prior none")
        self._seen: list[tuple[nn.Module, torch.Tensor]] = []

    @contextlib.contextmanager
    def watching(self, rep: Representation) -> Iterator[None]:
        """Record the BatchNorm inputs of the forward passes inside (the truncated network calls only those
        before the target layer)."""
        self._seen = []

        def hook(m: nn.Module, args: tuple) -> None:
            self._seen.append((m, args[0]))

        handles = [m.register_forward_pre_hook(hook) for m in self.layers]
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    def value(self, n: int) -> torch.Tensor:
        """weight · Σ over the recorded layers of ‖μ − μ_run‖ + ‖σ² − σ²_run‖, per problem: N.

        The recorded inputs hold k·N views (crop-major); each problem's statistics are those of its first view."""
        if not self._seen:
            raise PreimageError("the BatchNorm prior saw no BatchNorm layer before the target layer; "
                                "choose a deeper layer or --prior none")
        total = 0.0
        for bn, inp in self._seen:
            mu, var = view_stats(inp.float(), n)
            total = total + (mu - bn.running_mean).norm(dim=1) + (var - bn.running_var).norm(dim=1)
        self._seen = []
        return self.weight * total


def view_stats(x: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-problem channel mean and (biased) variance over the positions of its first view: k·N×C×H×W
    (crop-major) → (N×C, N×C). One view, not all k: the statistics cost as much as the BatchNorm layers
    themselves, forward and backward (measured: +0.8 s per step for 2 problems × 4 crops at 224 px on
    efficientnet_lite0, against 0.2 s with one view), and the views are random crops of one image anyway."""
    v, m = torch.var_mean(x[:n], dim=tuple(range(2, x.ndim)), correction=0)
    return m, v


def make_prior(name: str | None, rep: Representation, weight: float = 0.01) -> BNStats | None:
    """A prior by name (``bn``), or None for ``none``/None."""
    if name in (None, "none", ""):
        return None
    if name == "bn":
        return BNStats(rep, weight)
    raise PreimageError(f"unknown prior '{name}' (choose {', '.join(PRIORS)})")
