"""Surrogate gradients: a layer's exact forward values with another function's backward (straight-through).

Hard decisions (HOG's nearest-orientation binning) have a zero derivative almost everywhere with respect to
what decides them, so an optimizer sees only the magnitudes they route. A straight-through estimator keeps
the forward pass exactly and borrows the gradient of a smooth relative that agrees with it on average.
"""

from __future__ import annotations

import torch


def straight_through(exact: torch.Tensor, surrogate: torch.Tensor) -> torch.Tensor:
    """The values of ``exact`` with the gradient of ``surrogate`` (same shape).

    ``surrogate − surrogate.detach()`` is exactly 0 for finite values, so the result equals ``exact`` bit for
    bit; autograd sees only ``surrogate``.
    """
    return exact.detach() + (surrogate - surrogate.detach())
