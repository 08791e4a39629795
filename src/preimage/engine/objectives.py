"""Data terms of the energy, one per visualization (paper-notes §1.2–1.4). Each maps features N×... → N."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

#: A data term: features N×... → N values (one per problem), differentiable.
Objective = Callable[[torch.Tensor], torch.Tensor]


def _flat_sum(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).sum(1)


class Inversion:
    """C·‖M⊙(Φ(x)−Φ0)‖² / ‖M⊙Φ0‖², per problem.

    target: Φ0, N×D×h×w (or N×D); C: N (or scalar); mask: 0/1, broadcastable to the target (None: all ones).
    """

    def __init__(self, target: torch.Tensor, C: torch.Tensor | float = 100.0,
                 mask: torch.Tensor | None = None) -> None:
        self.target = target.detach()
        self.mask = mask
        n = target.shape[0]
        self.C = torch.as_tensor(C, dtype=target.dtype, device=target.device).expand(n).clone()
        self.norm2 = _flat_sum(self._masked(self.target).pow(2)).clamp_min(1e-12)
        self.weight = self.C / self.norm2

    def _masked(self, t: torch.Tensor) -> torch.Tensor:
        return t if self.mask is None else t * self.mask

    def __call__(self, phi: torch.Tensor) -> torch.Tensor:
        return self.weight * _flat_sum(self._masked(phi - self.target).pow(2))

    def error(self, phi: torch.Tensor) -> torch.Tensor:
        """The IJCV error ‖M⊙(Φ−Φ0)‖/‖M⊙Φ0‖ (a fraction), N."""
        return (_flat_sum(self._masked(phi - self.target).pow(2)) / self.norm2).sqrt()


class InnerProduct:
    """−⟨Φ(x), W⟩ per problem: activation maximization (W a normalized one-hot target) and caricature.

    weight: broadcastable to the features N×D×h×w.
    """

    def __init__(self, weight: torch.Tensor) -> None:
        self.weight = weight.detach()

    def __call__(self, phi: torch.Tensor) -> torch.Tensor:
        return -_flat_sum(phi * self.weight)

    def score(self, phi: torch.Tensor) -> torch.Tensor:
        """⟨Φ(x), W⟩, N (the activation reached, or the caricature score)."""
        return _flat_sum(phi * self.weight)


def caricature(phi0: torch.Tensor) -> InnerProduct:
    """−⟨Φ(x), max(Φ0,0)⟩ / ‖max(Φ0,0)‖², per problem (phi0: N×...)."""
    pos = phi0.detach().clamp_min(0)
    norm2 = _flat_sum(pos.pow(2)).clamp_min(1e-12)
    return InnerProduct(pos / norm2.view(-1, *([1] * (pos.ndim - 1))))


def neighbourhood_mask(shape: tuple[int, ...], n: int = 5) -> torch.Tensor:
    """0/1 mask 1×D×h×w selecting the central n×n neurons of the map, all channels (paper-notes §1.2)."""
    d, h, w = shape[-3:]
    mask = torch.zeros(1, d, h, w)
    # MATLAB: s = (0:n−1) + ceil((W−n+1)/2), 1-based.
    y0, x0 = max(math.ceil((h - n + 1) / 2) - 1, 0), max(math.ceil((w - n + 1) / 2) - 1, 0)
    mask[..., y0:y0 + n, x0:x0 + n] = 1
    return mask


def channel_mask(shape: tuple[int, ...], part: str) -> torch.Tensor:
    """0/1 mask 1×D×(h×w) selecting a channel group: ``first-half``, ``second-half`` or ``A:B``."""
    d = shape[-3] if len(shape) >= 3 else shape[-1]
    if part == "first-half":
        sl = slice(0, d // 2)
    elif part == "second-half":
        sl = slice(d // 2, d)
    else:
        a, _, b = part.partition(":")
        sl = slice(int(a) if a else 0, int(b) if b else d)
    mask = torch.zeros(1, *shape[-3:]) if len(shape) >= 3 else torch.zeros(1, d)
    mask[:, sl] = 1
    return mask
