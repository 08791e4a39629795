"""HOG and HOGb: UoCTTI histograms of oriented gradients (VLFeat ``vl_hog``) as a differentiable module.

The network of the paper's ``hog_net`` (docs/paper-notes.md §2.1): gradients, orientation binning (hard for HOG,
bilinear for HOGb), bilinear spatial pooling into cells, normalization by the four 2×2 blocks around each
cell, clamp at 0.2, and the UoCTTI sum ``0.5·(h1+h2+h3+h4)``. Constants and borders follow VLFeat's
``vl/hog.c``, so the features equal ``vl_hog(im, cell, 'variant', 'uoctti')`` on every cell (up to float
rounding) when H and W are multiples of the cell size. ``hog_net`` differs from that only at the border
cells (its zero padding adds gradients on the image frame, which VLFeat ignores, and gives border cells fewer
blocks, where VLFeat replicates block norms), and by its halved gradients and ε, which matter only in
near-flat blocks.

Output channels per cell (VLFeat's order): ``2·O`` directed orientations (bin k at angle 2πk/(2O), measured
from +x, pointing right, towards +y, pointing down), then ``O`` undirected ones (bins k and k+O folded),
then, with ``texture=True``, VLFeat's 4 texture channels (blocks up-left, up-right, down-left, down-right).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import PreimageError
from .base import ModelSpec
from .surrogate import straight_through
from .zoo import register_model

_SQRT_EPS = 1e-6  # makes |∇I| differentiable at 0 (gradient 0 there) while changing values by at most 1e-6


def gradient_magnitude(gx: torch.Tensor, gy: torch.Tensor) -> torch.Tensor:
    """|(gx, gy)|, exactly 0 where the gradient is 0 and with a finite derivative there."""
    return torch.sqrt(gx * gx + gy * gy + _SQRT_EPS**2) - _SQRT_EPS


def orientation_histogram(gx: torch.Tensor, gy: torch.Tensor, num_bins: int, hard: bool,
                          magnitude: torch.Tensor | None = None) -> torch.Tensor:
    """Assign gradient directions to ``num_bins`` directed bins at angles 2πk/num_bins.

    gx, gy: N×1×H×W → N×num_bins×H×W: ``magnitude`` (default 1, i.e. the weights) split among the bins.
    ``hard``: all to the nearest bin (ties to the lower axis, as VLFeat); else bilinearly between the two
    nearest, i.e. a triangle of half-width 2π/num_bins.
    """
    mass = torch.ones_like(gx) if magnitude is None else magnitude
    out = torch.zeros(gx.shape[0], num_bins, *gx.shape[2:], dtype=mass.dtype, device=mass.device)
    if hard:
        if num_bins % 2:
            raise PreimageError("hard orientation binning needs an even number of directed bins")
        half = num_bins // 2
        # VLFeat's loop: score the undirected axes with float32-rounded constants and keep the first
        # maximum of |score|, so exact ties (vertical gradients fall between two bins) resolve alike.
        ang = torch.arange(half, dtype=torch.float64) * (math.pi / half)
        cos, sin = torch.cos(ang).float().tolist(), torch.sin(ang).float().tolist()
        with torch.no_grad():
            best = torch.full_like(gx, -1.0)
            directed = torch.zeros_like(gx, dtype=torch.long)
            for k in range(half):
                score = gx * cos[k] + gy * sin[k]
                better = score.abs() > best
                best = torch.where(better, score.abs(), best)
                directed = torch.where(better, k + half * (score < 0), directed)
        return out.scatter_(1, directed, mass)
    nonzero = (gx != 0) | (gy != 0)
    # atan2 has no derivative at (0, 0); there the magnitude is 0 anyway, so any fixed angle will do.
    phi = torch.atan2(torch.where(nonzero, gy, 0.0), torch.where(nonzero, gx, 1.0))
    t = torch.remainder(phi * (num_bins / (2 * math.pi)), num_bins)
    lo = t.detach().floor()
    frac = t - lo
    lo = lo.long() % num_bins  # t may round up to num_bins itself
    # Only two bins are nonzero: scattering them costs far less than a triangle over all bins.
    return out.scatter_add_(1, lo, mass * (1 - frac)).scatter_add_(1, (lo + 1) % num_bins, mass * frac)


def _hog_gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """VLFeat's HOG gradient: I(x+1)−I(x−1) (not halved), 0 on the one-pixel frame; of the channel with the
    largest gradient at each pixel. x: N×C×H×W → gx, gy: N×1×H×W."""
    gx = F.pad(x[..., 1:-1, 2:] - x[..., 1:-1, :-2], (1, 1, 1, 1))
    gy = F.pad(x[..., 2:, 1:-1] - x[..., :-2, 1:-1], (1, 1, 1, 1))
    if x.shape[1] > 1:
        best = (gx * gx + gy * gy).argmax(1, keepdim=True)
        gx, gy = torch.gather(gx, 1, best), torch.gather(gy, 1, best)
    return gx, gy


def _cell_kernel(cell: int) -> tuple[torch.Tensor, int]:
    """1-D bilinear pooling weights over 2·cell taps and the left padding that centres cell c at pixel
    cell·c + (cell−1)/2, as VLFeat's ``hx = (x+0.5)/cell − 0.5``."""
    pad = cell // 2
    d = torch.arange(2 * cell, dtype=torch.float64) - pad - (cell - 1) / 2
    return (1 - d.abs() / cell).clamp_min(0), pad


class HOG(nn.Module):
    """UoCTTI HOG (``variant="hog"``, hard orientation binning) or HOGb (``"hogb"``, bilinear binning).

    Input N×C×H×W grey image in 0–255 (C=1 usually; with C>1 each pixel uses its strongest channel, as
    VLFeat), output N×D×⌊H/cell⌋×⌊W/cell⌋ with D = 3·O (27) or 3·O+4 (31) with ``texture=True``.
    """

    def __init__(self, cell_size: int = 8, variant: Literal["hog", "hogb"] = "hog", num_orientations: int = 9,
                 texture: bool = False, exact_gradient: bool = False) -> None:
        super().__init__()
        if variant not in ("hog", "hogb"):
            raise PreimageError(f"unknown HOG variant '{variant}' (hog or hogb)")
        if cell_size < 1 or num_orientations < 1:
            raise PreimageError("cell_size and num_orientations must be positive")
        self.cell_size = cell_size
        self.variant = variant
        self.num_orientations = num_orientations
        self.texture = texture
        self.exact_gradient = exact_gradient
        k, self._pad = _cell_kernel(cell_size)
        self.register_buffer("kernel", torch.outer(k, k).float(), persistent=False)

    @property
    def dim(self) -> int:
        """Feature channels per cell."""
        return 3 * self.num_orientations + (4 if self.texture else 0)

    def extra_repr(self) -> str:
        return (f"cell_size={self.cell_size}, variant={self.variant!r}, "
                f"num_orientations={self.num_orientations}, texture={self.texture}"
                + (", exact_gradient=True" if self.exact_gradient and self.variant == "hog" else ""))

    def cell_histograms(self, x: torch.Tensor) -> torch.Tensor:
        """Unnormalized directed histograms: N×C×H×W → N×2O×⌊H/cell⌋×⌊W/cell⌋."""
        b, no = self.cell_size, self.num_orientations
        h, w = x.shape[-2] // b, x.shape[-1] // b
        if h < 2 or w < 2 or min(x.shape[-2:]) < 3:
            # One cell has no 2×2 block to be normalized by: VLFeat's replicated norms make it meaningless.
            raise PreimageError(f"image {x.shape[-2]}×{x.shape[-1]} is smaller than two HOG cells "
                                f"({2 * b}×{2 * b} pixels)")
        gx, gy = _hog_gradients(x)
        mag = gradient_magnitude(gx, gy)
        hard = self.variant == "hog"
        hist = orientation_histogram(gx, gy, 2 * no, hard, mag)
        if hard and not self.exact_gradient and mag.requires_grad:
            # Values of the hard binning, gradient of the bilinear one: edges can turn (see ``surrogate``).
            hist = straight_through(hist, orientation_histogram(gx, gy, 2 * no, False, mag))
        # Pixels past the last cell centre still feed it (VLFeat drops only what falls outside the grid).
        hist = F.pad(hist, (self._pad, b, self._pad, b))
        weight = self.kernel.to(hist).expand(2 * no, 1, 2 * b, 2 * b)
        return F.conv2d(hist, weight, stride=b, groups=2 * no)[..., :h, :w]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: N×C×H×W in 0–255 → HOG features N×D×⌊H/cell⌋×⌊W/cell⌋."""
        no = self.num_orientations
        hist = self.cell_histograms(x)
        undirected = hist[:, :no] + hist[:, no:]
        energy = (undirected * undirected).sum(1, keepdim=True)
        # Block energies of all 2×2 blocks, with VLFeat's replicated cells beyond the border.
        energy = F.pad(energy, (1, 1, 1, 1), mode="replicate")
        blocks = F.avg_pool2d(energy, 2, stride=1) * 4
        inv = torch.rsqrt(blocks + 1e-4)  # VLFeat's ε; smooth, unlike max(‖·‖, ε)
        # The four blocks containing each cell: up-left, up-right, down-left, down-right.
        factors = torch.stack([inv[..., :-1, :-1], inv[..., :-1, 1:], inv[..., 1:, :-1], inv[..., 1:, 1:]], 1)
        directed = (hist.unsqueeze(1) * factors).clamp(max=0.2)
        folded = (undirected.unsqueeze(1) * factors).clamp(max=0.2)
        out = [0.5 * directed.sum(1), 0.5 * folded.sum(1)]
        if self.texture:
            out.append(folded.sum(2) / math.sqrt(18.0))
        return torch.cat(out, 1)


def _spec(name: str, module: nn.Module, weights_id: str, coarse_to_fine: bool = False) -> ModelSpec:
    # mean 0, std 1/255: the representation hands the module the grey image in 0–255, as the paper's nets.
    return ModelSpec(name, module, mean=(0.0,), std=(1 / 255,), channels=1,
                     input_size=None, family="hog" if coarse_to_fine else "shallow",
                     default_layer=None, weights_id=weights_id)


@register_model("hog", "UoCTTI HOG (VLFeat vl_hog), hard orientation binning; grey input")
def build_hog(weights: str | None = None, random_weights: bool = False, cell_size: int = 8,
              exact_gradient: bool = False, **kw: object) -> ModelSpec:
    """HOG with hard orientation binning (no weights: ``weights``/``random_weights`` are ignored).

    By default its backward pass is the bilinear binning's (``surrogate``) and inversion starts coarse-to-fine;
    ``exact_gradient=True`` gives the paper's behaviour (the hard binning's own gradient, one level). The
    features are the same either way."""
    return _spec("hog", HOG(cell_size, "hog", exact_gradient=exact_gradient, **kw),
                 f"hog-cell{cell_size}" + ("-exact-gradient" if exact_gradient else ""),
                 coarse_to_fine=not exact_gradient)


@register_model("hogb", "HOGb: UoCTTI HOG with bilinear orientation binning; grey input")
def build_hogb(weights: str | None = None, random_weights: bool = False, cell_size: int = 8,
               **kw: object) -> ModelSpec:
    """HOG with bilinear orientation binning (no weights: ``weights``/``random_weights`` are ignored)."""
    return _spec("hogb", HOG(cell_size, "hogb", **kw), f"hog-cell{cell_size}")
