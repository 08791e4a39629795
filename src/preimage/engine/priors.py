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
from dataclasses import dataclass

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
            raise PreimageError(f"the BatchNorm prior needs BatchNorm layers, and {rep.name} has none; "
                                "use prior none", param="prior")
        self._seen: list[tuple[nn.Module, torch.Tensor]] = []

    @contextlib.contextmanager
    def watching(self, rep: Representation) -> Iterator[None]:
        """Record the BatchNorm inputs of the forward passes inside (the truncated network calls only those
        before the target layer)."""
        self._seen = []

        def hook(m: nn.Module, args: tuple) -> None:
            # Only inputs with positions (N×C×…): a BatchNorm1d on flattened tokens ((N·T)×C, LeViT) mixes
            # the problems' rows, so it has no per-problem statistics.
            if args[0].ndim >= 3:
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
                                "choose a deeper layer or prior none", param="prior")
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


@dataclass(frozen=True)
class BNPrior:
    """DeepInversion's feature-statistics prior, as users name it: ``BNPrior(weight)`` or the shorthand ``"bn"``.
    ``required=False`` (the shorthand ``"auto"``, the natural style's) applies it where the network has BatchNorm
    before the target and leaves it out elsewhere; ``required=True`` refuses a network without BatchNorm.
    ``build(rep)`` gives the prior of one run (``BNStats``, or None)."""

    weight: float = 0.01
    required: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.weight < float("inf"):
            raise PreimageError(f"a prior's weight must be a non-negative number, got {self.weight}",
                                param="prior_weight")

    def build(self, rep: Representation) -> BNStats | None:
        if not self.required and not has_batchnorm(rep):
            return None
        return BNStats(rep, self.weight)

    def spec(self) -> str:
        return f"{'bn' if self.required else 'auto'}:{self.weight:g}"


def has_batchnorm(rep: Representation) -> bool:
    """Whether a BatchNorm layer runs before ``rep``'s target (in the module order, or inside the target)."""
    modules = list(rep.net.named_modules())
    names = [n for n, _ in modules]
    if rep.layer is None or rep.layer not in names:
        return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for _, m in modules)
    cut = names.index(rep.layer)
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) and (i <= cut or n.startswith(rep.layer + "."))
               for i, (n, m) in enumerate(modules))


def parse_prior(prior: str | BNPrior | None, weight: float | None = None) -> BNPrior | None:
    """A prior from an object or a shorthand: ``"bn"`` or ``"bn:W"``, ``"auto"`` or ``"auto:W"``, ``"none"``/None;
    ``weight`` replaces the weight (``--prior-weight``). A clear error for anything else."""
    if isinstance(prior, BNPrior):
        return prior if weight is None else BNPrior(weight, prior.required)
    if prior is None or prior == "none":
        return None
    if isinstance(prior, str):
        name, _, w = prior.strip().partition(":")
        if name in ("bn", "auto"):
            try:
                value = weight if weight is not None else float(w) if w else BNPrior.weight
            except ValueError:
                value = None
            if value is not None:
                return BNPrior(value, required=name == "bn")
    raise PreimageError(f"unknown prior {prior!r} (choose bn, auto or none, or an object such as "
                        "preimage.BNPrior(1e-4))", param="prior")
