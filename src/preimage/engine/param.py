"""Parameterizations: what the optimizer changes, and how it becomes an image in paper units (N×C×H×W).

* ``pixel``: the image itself (the paper's; the loop keeps its closed-form fast path for it);
* ``fourier``: a spectrum scaled by 1/f (Lucid/Lucent ``fft_image``), decorrelated colour, a sigmoid to 0–255;
* ``maco``: only the Fourier phase (Fel et al. 2023): the magnitude is fixed to that of natural images, measured
  on the bundled colour samples and shipped as ``data/maco_magnitude.npy`` (``measure_magnitude`` recomputes it);
* ``pyramid``: a Laplacian pyramid of images in paper units, for fast inversion (the ``fast`` style).

Users name one with an object (``Pixel()``, ``Fourier(decay=1.0)``, ``Maco()``, ``Pyramid(weight=0.6)``) or its
shorthand string (``"fourier"``); the object builds, for N problems, an ``nn.Module`` (``PixelImage``,
``FourierImage``, ...) whose parameters are the optimization variables and whose ``forward()`` returns the
image in paper units. Random starts are drawn from each problem's own generator (``rng.ProblemRNG``). The
paper's priors (α-norm, TV^β) and its projection onto the ball of radius B+ apply to
that image: ``pixel`` projects its variable in place after each step (the paper's rule); the others produce
an image that is projected in ``forward`` (the projection is part of the map, so gradients see it).
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import PreimageError
from .regularizers import colour_norms2, project_ball
from .rng import ProblemRNG

PARAMS = ("pixel", "fourier", "maco", "pyramid")
#: Adam's rate for parameterizations in paper units (pixel, pyramid): paper units per step at stage scale 1.
ADAM_LR = 2.0

#: Square root of ImageNet's colour covariance (Lucid's ``color_correlation_svd_sqrt``), its columns scaled so
#: the largest has norm 1: decorrelated coordinates c map to RGB as c @ COLOUR.T.
_SVD_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
COLOUR = _SVD_SQRT / _SVD_SQRT.norm(dim=0).max()
#: Lucid's divisor of the inverse FFT ("increasing this seems to reduce saturation").
FFT_MAGIC = 4.0
MAGNITUDE_FILE = Path(__file__).with_name("data") / "maco_magnitude.npy"


def decorrelated_to_rgb(c: torch.Tensor) -> torch.Tensor:
    """Decorrelated colour → RGB: N×3×H×W → N×3×H×W (c @ COLOUR.T per pixel); grey images pass through."""
    if c.shape[1] != 3:
        return c
    return torch.einsum("nchw,rc->nrhw", c, COLOUR.to(c))


def rgb_to_decorrelated(x: torch.Tensor) -> torch.Tensor:
    """The inverse of ``decorrelated_to_rgb``."""
    if x.shape[1] != 3:
        return x
    return torch.einsum("nrhw,cr->nchw", x, torch.linalg.inv(COLOUR).to(x))


def rfft_freqs(h: int, w: int) -> torch.Tensor:
    """|f| (cycles per pixel) of the rfft2 bins of an h×w image: h×(w//2+1)."""
    fy = torch.fft.fftfreq(h)[:, None]
    fx = torch.fft.rfftfreq(w)[None, :]
    return (fx * fx + fy * fy).sqrt()


def _logit_image(x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """Paper units → the pre-sigmoid values that give them (clamped inside (0, 255))."""
    v = ((x + mean.view(1, -1, 1, 1)) / 255.0).clamp(1e-3, 1 - 1e-3)
    return torch.logit(v)


class ParamImage(nn.Module):
    """A parameterized image: ``forward()`` → N×C×H×W image in paper units. ``optimizer``/``lr``: its default
    optimizer (``paper`` or ``adam``) and learning rate (for ``adam``; ``paper`` uses H·W·lr0)."""

    name = "param"
    optimizer = "adam"
    lr = 0.05

    def __init__(self, n: int, channels: int, size: tuple[int, int], mean: torch.Tensor, bound: float) -> None:
        super().__init__()
        self.n, self.channels, self.size, self.bound = n, channels, tuple(size), bound
        self.register_buffer("mean", mean.detach().float().reshape(-1).expand(channels).clone())

    def params(self) -> list[torch.Tensor]:
        """The optimization variables."""
        return list(self.parameters())

    def step_names(self, optimizer: str) -> list[str]:
        """The optimizer (``paper`` or ``adam``) of each tensor of ``params()`` when ``optimizer`` is asked for."""
        return [optimizer] * len(self.params())

    def lbfgs_scale(self) -> list[float] | None:
        """One factor per tensor of ``params()`` for L-BFGS's initial inverse Hessian (None: the same for all)."""
        return None

    def project_(self) -> None:
        """After each step: keep the variable valid (only ``pixel`` has anything to do)."""

    def _paper(self, pre: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid RGB → paper units, projected onto the ball of radius B+ (differentiably)."""
        return self._project(255.0 * torch.sigmoid(pre) - self.mean.view(1, -1, 1, 1))

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        """Paper units → each pixel's colour scaled onto the ball of radius B+ where outside it (differentiably)."""
        if self.bound == float("inf"):
            return x
        return x * colour_norms2(x).clamp_min(1e-12).rsqrt().mul(self.bound).clamp(max=1.0)


class PixelImage(ParamImage):
    """The image itself (paper units); projected in place after each step, as the paper does."""

    name = "pixel"
    optimizer = "paper"
    lr = ADAM_LR  # with --optimizer adam

    def __init__(self, x: torch.Tensor, mean: torch.Tensor, bound: float) -> None:
        super().__init__(x.shape[0], x.shape[1], tuple(x.shape[-2:]), mean, bound)
        self.x = nn.Parameter(x.detach().clone())

    def forward(self) -> torch.Tensor:
        return self.x

    @torch.no_grad()
    def project_(self) -> None:
        project_ball(self.x.data, self.bound)


class FourierImage(ParamImage):
    """A spectrum scaled by 1/max(|f|, 1/max(H,W))^decay (Lucid's ``fft_image``), inverse FFT (ortho) ÷ 4, colour
    decorrelated (``COLOUR``), sigmoid to 0–255, minus the mean colour. Parameters: N×C×H×(W//2+1)×2 (re, im)."""

    name = "fourier"

    def __init__(self, n: int, channels: int, size: tuple[int, int], mean: torch.Tensor, bound: float,
                 rng: ProblemRNG, sd: float = 0.01, decay: float = 1.0, init: torch.Tensor | None = None) -> None:
        super().__init__(n, channels, size, mean, bound)
        h, w = size
        scale = 1.0 / rfft_freqs(h, w).clamp_min(1.0 / max(h, w)) ** decay
        self.register_buffer("scale", scale[..., None].float())
        if init is None:
            coeffs = rng.randn(channels, h, w // 2 + 1, 2) * sd
        else:
            spec = torch.fft.rfft2(rgb_to_decorrelated(_logit_image(init.float(), self.mean)) * FFT_MAGIC,
                                   norm="ortho")
            coeffs = torch.view_as_real(spec) / self.scale
        self.coeffs = nn.Parameter(coeffs.contiguous())

    def decorrelated(self) -> torch.Tensor:
        """The image before colour and sigmoid: N×C×H×W (its spectrum falls as 1/f^decay)."""
        spec = torch.view_as_complex((self.coeffs * self.scale).contiguous())
        return torch.fft.irfft2(spec, s=self.size, norm="ortho") / FFT_MAGIC

    def forward(self) -> torch.Tensor:
        return self._paper(decorrelated_to_rgb(self.decorrelated()))


def _standardize(t: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit standard deviation per problem (Horama's ``standardize``): N×... → N×..."""
    flat = t.flatten(1)
    return ((flat - flat.mean(1, keepdim=True)) / (flat.std(1, keepdim=True) + 1e-4)).view_as(t)


class MacoImage(ParamImage):
    """Phase-only Fourier image (MaCo): magnitude fixed to natural images' (``maco_magnitude``), phase optimized.
    image = sigmoid(colour(standardize(irfft2(M·e^{i·standardize(φ)})))), then paper units. Parameters: the phase
    N×C×H×(W//2+1)."""

    name = "maco"
    lr = 0.1

    def __init__(self, n: int, channels: int, size: tuple[int, int], mean: torch.Tensor, bound: float,
                 rng: ProblemRNG, init: torch.Tensor | None = None) -> None:
        super().__init__(n, channels, size, mean, bound)
        self.register_buffer("magnitude", maco_magnitude(size, channels))
        if init is None:
            phase = rng.randn(channels, size[0], size[1] // 2 + 1)
        else:
            phase = torch.fft.rfft2(rgb_to_decorrelated(_logit_image(init.float(), self.mean))).angle()
            phase = (phase - phase.mean()) / phase.std()  # forward standardizes it back
        self.phase = nn.Parameter(phase.contiguous())

    def decorrelated(self) -> torch.Tensor:
        """The standardized image before colour and sigmoid: N×C×H×W, amplitude spectrum ∝ the magnitude."""
        phi = _standardize(self.phase)
        spec = torch.polar(self.magnitude.expand_as(phi), phi)
        return _standardize(torch.fft.irfft2(spec, s=self.size))

    def forward(self) -> torch.Tensor:
        return self._paper(decorrelated_to_rgb(self.decorrelated()))


#: The pyramid's per-level factor in L-BFGS's initial inverse Hessian (``Pyramid.lbfgs_scale``).
LBFGS_LEVEL_SCALE = 1.5


class PyramidImage(ParamImage):
    """A Laplacian pyramid: image = Σ_k w^k·up(L_k), level k at 1/2^k of the size down to one pixel (bilinear
    up-sampling), projected onto the ball of radius B+. A step on a coarse level moves a whole region at once,
    so the low frequencies that pixel steps take hundreds of iterations to build converge in a few (a
    preconditioner for pixel-space inversion); w < 1 keeps the coarse levels from overshooting the fine detail.
    Its own optimizer is ``hybrid`` (``step_names``; each level is in paper units, so ``paper`` and ``adam`` work
    too). It starts from the mean image plus noise of
    ``start_sd`` paper units (so that restarts differ, and HOG, whose gradient vanishes on a flat image, can
    start): the paper's noise start, even at 3 % of its amplitude, cost 0.7 points of error at blocks.3 after 120
    iterations (benchmarks/time_to_quality.py). Parameters: the levels, N×C×h_k×w_k (level 0 full size)."""

    name = "pyramid"
    optimizer = "hybrid"
    lr = ADAM_LR  # Adam's, in paper units

    def __init__(self, n: int, channels: int, size: tuple[int, int], mean: torch.Tensor, bound: float,
                 init: torch.Tensor | None = None, levels: int | None = None, weight: float = 0.6,
                 rng: ProblemRNG | None = None, start_sd: float = 0.01) -> None:
        super().__init__(n, channels, size, mean, bound)
        h, w = size
        levels = levels or min(h, w).bit_length()  # down to one pixel: the coarsest level is the mean colour
        shapes = [(max(1, h >> k), max(1, w >> k)) for k in range(levels)]
        if init is not None:
            first = init.float()
        else:  # the mean image plus a trace of noise: restarts differ, and HOG's gradient is not zero there
            first = (rng.randn(channels, h, w) if rng is not None else torch.zeros(n, channels, h, w)) * start_sd
        self.weight = weight
        self.levels = nn.ParameterList([nn.Parameter(first.clone())] + [
            nn.Parameter(torch.zeros(n, channels, *s)) for s in shapes[1:]])

    def step_names(self, optimizer: str) -> list[str]:
        """``hybrid``: Adam on the full-size level, the paper's optimizer on the coarser ones. Adam's
        per-pixel normalization moves the fine detail of deep layers' pre-images faster, and the paper's
        momentum builds the coarse levels better (time_to_quality.md: Adam on every level lost at blocks.1–4 of
        efficientnet_lite0, the paper's optimizer on every level at blocks.4–6). The fast style has since moved
        to Adam, then L-BFGS, which does better than either."""
        if optimizer == "hybrid":
            return ["adam"] + ["paper"] * (len(self.levels) - 1)
        return super().step_names(optimizer)

    def lbfgs_scale(self) -> list[float]:
        """1.5^k for level k: L-BFGS moves the coarse levels further (with the same factor for every level, its
        energy after 120 steps at blocks.2 of efficientnet_lite0 was 6 % higher on 3 images; 2^k was close, 4^k
        much worse; benchmarks/results/time_to_quality.md)."""
        return [LBFGS_LEVEL_SCALE ** k for k in range(len(self.levels))]

    def forward(self) -> torch.Tensor:
        x = self.levels[0]
        for k, level in enumerate(self.levels[1:], 1):
            x = x + self.weight ** k * F.interpolate(level, size=self.size, mode="bilinear", align_corners=False)
        return self._project(x)


def measure_magnitude(images: torch.Tensor, size: tuple[int, int] = (256, 256)) -> torch.Tensor:
    """Mean amplitude spectrum of images in decorrelated colour: N×3×H×W in 0–255 → 3×h×(w//2+1) (float32),
    each image resized to ``size``, centred, and scaled to unit total energy before averaging; the result is
    scaled to mean 1 (only its shape matters: MaCo standardizes the image)."""
    from ..images import resize

    x = resize(images.float(), size) / 255.0
    c = rgb_to_decorrelated(x - x.mean((-2, -1), keepdim=True))
    amp = torch.fft.rfft2(c).abs()
    amp = (amp / amp.flatten(1).norm(dim=1).view(-1, 1, 1, 1)).mean(0)
    return amp / amp.mean()


@lru_cache(maxsize=8)
def _shipped_magnitude() -> torch.Tensor:
    if not MAGNITUDE_FILE.is_file():
        raise PreimageError(f"the MaCo magnitude spectrum {MAGNITUDE_FILE} is missing from the installation")
    return torch.from_numpy(np.load(MAGNITUDE_FILE).astype(np.float32))


def maco_magnitude(size: tuple[int, int], channels: int = 3) -> torch.Tensor:
    """The shipped magnitude resized to an image size: C×H×(W//2+1) (bilinear, as Horama resizes its own).

    Grey images (C=1) use the luminance channel (the first decorrelated one)."""
    m = _shipped_magnitude()
    target = (size[0], size[1] // 2 + 1)
    if tuple(m.shape[-2:]) != target:
        m = F.interpolate(m[None], size=target, mode="bilinear", align_corners=False, antialias=True)[0]
    return m[:channels].contiguous()


@dataclass(frozen=True)
class Parameterization:
    """What the optimizer changes, named by users (``param=Fourier()`` or ``param="fourier"``): it builds the
    parameterized image of N problems (``build``). ``optimizer``: its own (``paper`` for the pixels, ``hybrid``
    for the pyramid, ``adam`` otherwise); ``lr``: Adam's rate for it."""

    name: ClassVar[str] = "param"
    optimizer: ClassVar[str] = "adam"
    image: ClassVar[type[ParamImage]] = ParamImage
    #: The closed range each option may take (a bad value fails when the object is made, before any work).
    ranges: ClassVar[dict[str, tuple[float, float]]] = {}

    def __post_init__(self) -> None:
        for key, (lo, hi) in self.ranges.items():
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
                raise PreimageError(f"{self.name}'s {key} is a number from {lo:g} to {hi:g}, got {value!r}",
                                    param="param")

    @property
    def lr(self) -> float:
        return self.image.lr

    def build(self, n: int, channels: int, size: tuple[int, int], mean: torch.Tensor, bound: float,
              rng: ProblemRNG, init: torch.Tensor | None = None) -> ParamImage:
        """The image module of N problems; init: N×C×H×W paper units to start from (None: its random start)."""
        raise NotImplementedError

    def spec(self) -> str:
        """The shorthand users type (``"fourier"``), with the options that differ from the defaults."""
        defaults = type(self)()
        extra = [f"{k}={v}" for k, v in vars(self).items() if getattr(defaults, k) != v]
        return self.name + (f"({','.join(extra)})" if extra else "")


@dataclass(frozen=True)
class Pixel(Parameterization):
    """The image itself, the paper's (its closed-form fast path and momentum + AdaGrad)."""

    name: ClassVar[str] = "pixel"
    optimizer: ClassVar[str] = "paper"
    image: ClassVar[type[ParamImage]] = PixelImage

    def build(self, n: int, channels: int, size: tuple[int, int], mean: torch.Tensor, bound: float,
              rng: ProblemRNG, init: torch.Tensor | None = None) -> ParamImage:
        if init is None:
            raise PreimageError("the pixel parameterization needs a start image")
        return PixelImage(init, mean, bound)


@dataclass(frozen=True)
class Fourier(Parameterization):
    """A 1/f^decay-scaled spectrum with decorrelated colour (Lucid's ``fft_image``); sd: the random start's scale."""

    decay: float = 1.0
    sd: float = 0.01
    name: ClassVar[str] = "fourier"
    ranges: ClassVar[dict[str, tuple[float, float]]] = {"decay": (0.0, 4.0), "sd": (1e-6, 10.0)}
    image: ClassVar[type[ParamImage]] = FourierImage

    def build(self, n: int, channels: int, size: tuple[int, int], mean: torch.Tensor, bound: float,
              rng: ProblemRNG, init: torch.Tensor | None = None) -> ParamImage:
        return FourierImage(n, channels, size, mean, bound, rng, sd=self.sd, decay=self.decay, init=init)


@dataclass(frozen=True)
class Maco(Parameterization):
    """MaCo: the phase of a spectrum whose magnitude is natural images' (Fel et al. 2023)."""

    name: ClassVar[str] = "maco"
    image: ClassVar[type[ParamImage]] = MacoImage

    def build(self, n: int, channels: int, size: tuple[int, int], mean: torch.Tensor, bound: float,
              rng: ProblemRNG, init: torch.Tensor | None = None) -> ParamImage:
        return MacoImage(n, channels, size, mean, bound, rng, init=init)


@dataclass(frozen=True)
class Pyramid(Parameterization):
    """A Laplacian pyramid (levels down to one pixel, level k weighted ``weight``^k), started from the mean image
    plus ``start_sd`` paper units of noise: fast inversion (the ``fast`` style)."""

    weight: float = 0.6
    start_sd: float = 0.01
    name: ClassVar[str] = "pyramid"
    ranges: ClassVar[dict[str, tuple[float, float]]] = {"weight": (1e-3, 2.0), "start_sd": (0.0, 100.0)}
    optimizer: ClassVar[str] = "hybrid"
    image: ClassVar[type[ParamImage]] = PyramidImage

    def build(self, n: int, channels: int, size: tuple[int, int], mean: torch.Tensor, bound: float,
              rng: ProblemRNG, init: torch.Tensor | None = None) -> ParamImage:
        return PyramidImage(n, channels, size, mean, bound, init=init, weight=self.weight, rng=rng,
                            start_sd=self.start_sd)


#: The parameterizations by the name users type.
PARAMETERIZATIONS: dict[str, type[Parameterization]] = {c.name: c for c in (Pixel, Fourier, Maco, Pyramid)}
PARAMS = tuple(PARAMETERIZATIONS)
#: Each parameterization's own optimizer (used when none is asked for).
OWN_OPTIMIZER = {name: c.optimizer for name, c in PARAMETERIZATIONS.items()}


def parse_param(param: str | Parameterization) -> Parameterization:
    """A parameterization object from itself or its name (``"pixel"``, ``"fourier"``, ``"maco"``, ``"pyramid"``);
    a clear error otherwise."""
    if isinstance(param, Parameterization):
        return param
    if isinstance(param, str) and param.strip() in PARAMETERIZATIONS:
        return PARAMETERIZATIONS[param.strip()]()
    m = re.fullmatch(r"\s*(\w+)\((.*)\)\s*", param) if isinstance(param, str) else None
    if m and m[1] in PARAMETERIZATIONS:  # the form ``spec()`` writes: fourier(decay=1.5)
        cls = PARAMETERIZATIONS[m[1]]
        fields = {f.name for f in dataclasses.fields(cls)}
        options: dict[str, float] = {}
        for item in filter(None, (i.strip() for i in m[2].split(","))):
            key, _, value = (part.strip() for part in item.partition("="))
            try:
                number = float(value)
            except ValueError:
                number = math.nan
            if key not in fields or not math.isfinite(number):
                takes = f"its options: {', '.join(sorted(fields))}, each = a number" if fields else "it has none"
                raise PreimageError(f"{param!r}: '{item}' is not an option of {m[1]} ({takes})", param="param")
            if key in options:
                raise PreimageError(f"{param!r}: {key} is given twice", param="param")
            options[key] = number
        return cls(**options)
    raise PreimageError(f"unknown parameterization {param!r} (choose {', '.join(PARAMS)}, or an object such as "
                        "preimage.Fourier())", param="param")


def spectrum_slope(x: torch.Tensor) -> float:
    """The log-log slope of the radially averaged amplitude spectrum of N×C×H×W images (−1 for 1/f images)."""
    h, w = x.shape[-2:]
    x = x.detach()
    amp = torch.fft.rfft2(x - x.mean((-2, -1), keepdim=True)).abs().flatten(0, 1).mean(0)
    f = rfft_freqs(h, w)
    keep = (f > 2.0 / max(h, w)) & (f < 0.5)
    lf, la = f[keep].log(), amp[keep].clamp_min(1e-12).log()
    lf = lf - lf.mean()
    return float((lf * (la - la.mean())).sum() / (lf * lf).sum())


__all__ = ["ADAM_LR", "COLOUR", "OWN_OPTIMIZER", "PARAMETERIZATIONS", "PARAMS", "Fourier", "FourierImage", "Maco",
           "MacoImage", "ParamImage", "Parameterization", "Pixel", "PixelImage", "Pyramid", "PyramidImage",
           "decorrelated_to_rgb", "maco_magnitude", "measure_magnitude", "parse_param", "rfft_freqs",
           "rgb_to_decorrelated", "spectrum_slope"]
