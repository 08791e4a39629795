"""A canvas larger than the picture: optimize an image `factor` times the picture's side, show the network crops of it
resampled to the picture's size, and hand back the canvas downsampled to that size (``images.resize``: bicubic,
antialiased, as a user's loader), as faccent (512 px) and Horama (1280 px) optimize for a 224 px network. The views
show the picture at the same scales as without a canvas (a crop of a fraction s of the side at 1/s), each sampled
down from finer pixels rather than up from the picture's; a pattern finer than the picture's pixels is averaged away
in the result."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..engine.transforms import Crops, Transform


def canvas_of(hw: tuple[int, int], factor: float) -> tuple[int, int]:
    """The canvas (H', W') for a picture of (H, W): each side × factor, rounded."""
    return round(hw[0] * factor), round(hw[1] * factor)


def seen_at(transforms: Sequence[Transform] | None, hw: tuple[int, int]) -> list[Transform]:
    """The transforms with every crop resampled to hw, the network's view; a whole-canvas resample appended where
    no crop is (so the network never sees the canvas at its own size)."""
    out = [Crops(t.k, t.lo, t.hi, hw) if isinstance(t, Crops) and t.out is None else t for t in transforms or ()]
    return out if any(isinstance(t, Crops) for t in out) else [*out, Crops(1, 1.0, 1.0, hw)]


def map_to_picture(a: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """A canvas map N×1×H'×W' (a sum per pixel) → N×1×H×W, each picture pixel the sum over the canvas it covers."""
    if tuple(a.shape[-2:]) == tuple(hw):
        return a
    ratio = a.shape[-2] * a.shape[-1] / (hw[0] * hw[1])
    return F.interpolate(a, size=hw, mode="area") * ratio
