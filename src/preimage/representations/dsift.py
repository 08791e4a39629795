"""DSIFT: dense SIFT descriptors (VLFeat ``vl_dsift``) as a differentiable module.

The paper's ``dsift_net`` (docs/paper-notes.md §2.2): gradients, bilinear binning into 8 directed orientations,
triangular spatial pooling into bins of ``bin_size`` pixels, 4×4 bins per descriptor with Gaussian weights
(σ = 1.5 bins), one descriptor every 3 bins, L2 normalization ``x/(1e-6+Σx²)^½`` and clamp at 0.2, without
VLFeat's renormalization after the clamp.

Geometry and gradients follow VLFeat's ``vl/dsift.c``: bin centres at integer pixels, triangle
``1−|d|/bin_size`` over 2·bin_size−1 taps, central differences halved (one-sided on the border). The
descriptor at output (p, q) has its upper-left bin centred at pixel (bin_size−1 + step·p, bin_size−1 + step·q)
and its centre 1.5·bin_size further; it is VLFeat's frame for ``bounds`` = [bin_size−1, bin_size−1,
H−bin_size, W−bin_size] (only descriptors whose pooling support lies inside the image).

Channels (VLFeat's order): 32·by + 8·bx + t, for spatial bin row by, column bx and orientation t at angle
2πt/8 measured from +x (right) towards +y (down).

``window="bin"`` (default, as ``dsift_net``) weights each spatial bin by the Gaussian at its centre;
``window="pixel"`` weights each pixel by the Gaussian at its position, as VLFeat's default (non-``fast``)
DSIFT; ``renormalize=True`` adds VLFeat's second L2 normalization after the clamp.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import PreimageError
from .base import ModelSpec
from .hog import gradient_magnitude, orientation_histogram
from .zoo import register_model


def _sift_gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """VLFeat's DSIFT gradient: (I(x+1)−I(x−1))/2 inside, one-sided differences on the border.

    x: N×1×H×W → gx, gy: N×1×H×W.
    """
    gx = torch.cat([x[..., :, 1:2] - x[..., :, 0:1], 0.5 * (x[..., :, 2:] - x[..., :, :-2]),
                    x[..., :, -1:] - x[..., :, -2:-1]], -1)
    gy = torch.cat([x[..., 1:2, :] - x[..., 0:1, :], 0.5 * (x[..., 2:, :] - x[..., :-2, :]),
                    x[..., -1:, :] - x[..., -2:-1, :]], -2)
    return gx, gy


def _descriptor_kernels(bin_size: int, num_bins: int, window: str, window_size: float) -> torch.Tensor:
    """Weights of each spatial bin over the descriptor's support: num_bins×num_bins×L×L, L = (num_bins+1)·b−1.

    Pixel offset 0 is b−1 pixels left of (above) the first bin centre.
    """
    b = bin_size
    length = (num_bins + 1) * b - 1
    u = torch.arange(length, dtype=torch.float64) - (b - 1)  # offset from the first bin centre
    centers = torch.arange(num_bins, dtype=torch.float64) * b
    tri = (1 - (u[None] - centers[:, None]).abs() / b).clamp_min(0)  # num_bins×L
    mid = (num_bins - 1) * b / 2  # descriptor centre
    sigma = window_size * b
    if window == "pixel":
        g = torch.exp(-0.5 * ((u - mid) / sigma) ** 2)
        k1 = tri * g[None]
    else:
        g = torch.exp(-0.5 * ((centers - mid) / sigma) ** 2)
        k1 = tri * g[:, None]
    # Separable: rows (by) from the y kernel, columns (bx) from the x kernel.
    return k1[:, None, :, None] * k1[None, :, None, :]


class DSIFT(nn.Module):
    """Dense SIFT: N×1×H×W grey image in 0–255 → N×(num_bins²·num_orientations)×P×Q descriptors.

    P = ⌊(H − (num_bins+1)·bin_size + 1)/step⌋ + 1 (likewise Q); ``step`` defaults to 3 bins, as ``dsift_net``.
    """

    def __init__(self, bin_size: int = 8, step: int | None = None, num_orientations: int = 8,
                 num_bins: int = 4, window: Literal["bin", "pixel"] = "bin", window_size: float = 1.5,
                 renormalize: bool = False) -> None:
        super().__init__()
        if window not in ("bin", "pixel"):
            raise PreimageError(f"unknown DSIFT window '{window}' (bin or pixel)")
        if bin_size < 1 or num_orientations < 1 or num_bins < 1 or (step is not None and step < 1):
            raise PreimageError("bin_size, step, num_orientations and num_bins must be positive")
        self.bin_size = bin_size
        self.step = step if step is not None else 3 * bin_size
        self.num_orientations = num_orientations
        self.num_bins = num_bins
        self.window = window
        self.window_size = window_size
        self.renormalize = renormalize
        k = _descriptor_kernels(bin_size, num_bins, window, window_size)
        length = k.shape[-1]
        # One grouped conv: each orientation channel feeds the num_bins² spatial bins of its own group.
        weight = k.reshape(1, num_bins * num_bins, length, length).expand(num_orientations, -1, -1, -1)
        self.register_buffer("weight", weight.reshape(-1, 1, length, length).float().contiguous(),
                             persistent=False)

    @property
    def dim(self) -> int:
        """Descriptor dimension (128 by default)."""
        return self.num_bins * self.num_bins * self.num_orientations

    @property
    def support(self) -> int:
        """Side of the square of pixels that one descriptor pools."""
        return self.weight.shape[-1]

    def extra_repr(self) -> str:
        return (f"bin_size={self.bin_size}, step={self.step}, num_orientations={self.num_orientations}, "
                f"num_bins={self.num_bins}, window={self.window!r}, window_size={self.window_size}, "
                f"renormalize={self.renormalize}")

    def centers(self, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Pixel coordinates (rows, columns) of the descriptor centres for an image of this size."""
        b, s, n = self.bin_size, self.step, self.num_bins
        p = (height - self.support) // s + 1
        q = (width - self.support) // s + 1
        off = b - 1 + (n - 1) * b / 2
        return off + s * torch.arange(max(p, 0)), off + s * torch.arange(max(q, 0))

    def unnormalized(self, x: torch.Tensor) -> torch.Tensor:
        """Descriptors before normalization: N×1×H×W → N×D×P×Q (VLFeat's channel order)."""
        if x.shape[1] != 1:
            raise PreimageError(f"DSIFT takes a grey image (1 channel), got {x.shape[1]}")
        if min(x.shape[-2:]) < self.support:
            raise PreimageError(f"image {x.shape[-2]}×{x.shape[-1]} is smaller than one DSIFT descriptor "
                                f"({self.support}×{self.support} pixels)")
        gx, gy = _sift_gradients(x)
        hist = orientation_histogram(gx, gy, self.num_orientations, False, gradient_magnitude(gx, gy))
        out = F.conv2d(hist, self.weight.to(hist), stride=self.step, groups=self.num_orientations)
        n, _, p, q = out.shape
        nb = self.num_bins
        return out.view(n, self.num_orientations, nb, nb, p, q).permute(0, 2, 3, 1, 4, 5).reshape(n, -1, p, q)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: N×1×H×W in 0–255 → normalized, clamped descriptors N×D×P×Q."""
        d = self.unnormalized(x)
        d = (d * torch.rsqrt(1e-6 + (d * d).sum(1, keepdim=True))).clamp(max=0.2)
        if self.renormalize:
            d = d * torch.rsqrt(1e-12 + (d * d).sum(1, keepdim=True))
        return d


@register_model("dsift", "Dense SIFT (VLFeat vl_dsift geometry), bin size 8, step 3 bins; grey input")
def build_dsift(weights: str | None = None, random_weights: bool = False, cell_size: int = 8,
                **kw: object) -> ModelSpec:
    """DSIFT with bins of ``cell_size`` pixels (no weights: ``weights``/``random_weights`` are ignored)."""
    return ModelSpec("dsift", DSIFT(cell_size, **kw), mean=(0.0,), std=(1 / 255,), channels=1,
                     input_size=None, family="shallow",
                     default_layer=None, weights_id=f"dsift-bin{cell_size}")

