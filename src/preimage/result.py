"""What every visualization returns: a batch of images with per-problem numbers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class Result:
    """N pre-images and their per-problem metrics.

    images: N×C×H×W in 0–255 units (mean colour added back, not clipped); problems: one dict per problem
    (image, C, restart, unit, ...); metrics: name → tensor of N values; energy: T×N history.
    """

    images: torch.Tensor
    problems: list[dict[str, Any]]
    metrics: dict[str, torch.Tensor]
    model: str
    layer: str | None
    iterations: int
    seconds: float
    energy: torch.Tensor
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.images.shape[0]

    def records(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per problem: its parameters and metrics."""
        out = []
        for i, p in enumerate(self.problems):
            r = dict(p)
            for k, v in self.metrics.items():
                r[k] = v[i].tolist()
            out.append(r)
        return out
