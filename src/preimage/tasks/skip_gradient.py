"""The skip gradient: less of the optimizer's gradient through each residual branch, more through the shortcuts.

A residual block adds a branch to its input, ``y = x + f(x)``. The Skip Gradient Method (Wu et al., "Skip
Connections Matter: On the Transferability of Adversarial Examples Generated with ResNets", ICLR 2020) scales the
gradient that flows back through ``f`` by a factor γ < 1 and leaves the forward pass exact: the picture follows
the features the shortcuts carry from early layers, which other networks share, more than those one network's deep
branches add. Here it makes class pictures of efficientnet_lite0 that efficientnet_lite1 reads more often
(``benchmarks/results/transfer.md``, round 11).

The branch is found where the network marks it for stochastic depth: timm's ``drop_path`` modules of blocks with
a shortcut (EfficientNet, MobileNet, ResNet, ConvNeXt, ViT's ``drop_path1``/``drop_path2``) and torchvision's
``stochastic_depth`` (EfficientNet, ConvNeXt, Swin). A network without such marks (torchvision's ResNet and
MobileNet, the paper's networks) keeps its exact gradient, and the count says so.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from ..representations.surrogate import straight_through
from .common import check_number

#: The attribute names under which blocks keep the module applied to their branch just before the shortcut adds.
BRANCH_NAMES = ("drop_path", "drop_path1", "drop_path2", "stochastic_depth")


class ScaledBackward(nn.Module):
    """``inner(x)`` forward, exactly; its gradient multiplied by ``factor`` on the way back."""

    def __init__(self, inner: nn.Module, factor: float) -> None:
        super().__init__()
        self.inner, self.factor = inner, factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.inner(x)
        return straight_through(y, self.factor * y)


def residual_branches(net: nn.Module) -> list[tuple[nn.Module, str]]:
    """(block, attribute) for each module a block applies to its residual branch before adding its shortcut.

    A timm block's ``drop_path`` counts only where the block has a shortcut (``has_skip``, where it says)."""
    found = []
    for block in net.modules():
        for name in BRANCH_NAMES:
            if isinstance(getattr(block, name, None), nn.Module) and \
                    getattr(block, "has_skip", getattr(block, "use_res_connect", True)):
                found.append((block, name))
    return found


def branch_factor(net: nn.Module, asked: float | None, default: float) -> float:
    """The factor a task runs with: ``asked`` (checked: a number in [0, 1]; one clear line naming ``skip_grad``
    otherwise), else ``default`` (the style's); 1 where ``net`` marks no residual branch, so that the record says
    the exact gradient it gets."""
    factor = default if asked is None else check_number(asked, "skip_grad", 0.0, 1.0)
    return factor if residual_branches(net) else 1.0


@contextlib.contextmanager
def skip_gradient(net: nn.Module, factor: float) -> Iterator[int]:
    """Temporarily scale the gradient through each residual branch of ``net`` by ``factor`` (forward unchanged);
    yields how many branches were found. Restored on exit, also on error. ``factor == 1`` changes nothing."""
    branches = residual_branches(net) if factor != 1.0 else []
    kept = [(block, name, getattr(block, name)) for block, name in branches]
    for block, name, inner in kept:
        setattr(block, name, ScaledBackward(inner, factor))
    try:
        yield len(kept)
    finally:
        for block, name, inner in reversed(kept):
            setattr(block, name, inner)
