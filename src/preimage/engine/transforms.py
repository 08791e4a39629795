"""Transforms of the image before the network.

The paper's jitter canvas (paper-notes §1.1, §1.6): the image lives on a canvas J−1 pixels larger than the network
input; each step the network sees a random H×W window of it (the pixel fast path). And transformation robustness
as Lucid/Lucent do it, a list of random differentiable transforms (jitter, scale, rotate, flip, several crops per
step batched into one network call) for every other path."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from ..errors import PreimageError


def canvas_size(size: tuple[int, int], jitter: int) -> tuple[int, int]:
    """(H, W) and jitter J → canvas (H+J−1, W+J−1)."""
    return size[0] + jitter - 1, size[1] + jitter - 1


def centre_offset(jitter: int) -> int:
    """Where the image sits on its canvas: floor((J−1)/2) in both directions."""
    return (jitter - 1) // 2


def place_on_canvas(x: torch.Tensor, jitter: int) -> torch.Tensor:
    """N×C×H×W → zero canvas N×C×(H+J−1)×(W+J−1) with x at the centre offset."""
    if jitter == 1:
        return x.clone()
    n, c, h, w = x.shape
    ch, cw = canvas_size((h, w), jitter)
    o = centre_offset(jitter)
    canvas = x.new_zeros(n, c, ch, cw)
    canvas[..., o:o + h, o:o + w] = x
    return canvas


def centre_crop(canvas: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The H×W window at the centre offset of a canvas (the inverse of ``place_on_canvas``)."""
    o = centre_offset(canvas.shape[-2] - size[0] + 1)
    return canvas[..., o:o + size[0], o:o + size[1]]


def random_offset(canvas: torch.Tensor, size: tuple[int, int], generator: torch.Generator) -> tuple[int, int]:
    """Top-left (row, col) of a random H×W window of the canvas, each uniform in {0..J−1}.

    Drawn from a CPU generator, so choosing the window never waits for a GPU. (0, 0) without a draw when the
    canvas is the input's size (J = 1).
    """
    jy_max = canvas.shape[-2] - size[0]
    jx_max = canvas.shape[-1] - size[1]
    if jy_max == 0 and jx_max == 0:
        return 0, 0
    jy = int(torch.randint(jy_max + 1, (1,), generator=generator))
    jx = int(torch.randint(jx_max + 1, (1,), generator=generator))
    return jy, jx


def random_crop(canvas: torch.Tensor, size: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """A random H×W window of the canvas, offsets drawn uniformly in {0..J−1} (shared across the batch).

    Returns a view, so the loss gradient flows back into that window only.
    """
    jy, jx = random_offset(canvas, size, generator)
    return canvas[..., jy:jy + size[0], jx:jx + size[1]]


# --- transformation robustness (Lucid/Lucent's transforms) -----------------------------------------------------
#
# A transform maps a batch of images N×C×H×W (paper units, so 0 is the mean colour) to a batch M×C×H×W, M = k·N,
# differentiably; the random draws come from a CPU generator (deterministic for a seed). Crop-major order:
# image i of copy j sits at row j·N + i, so that ``views.view(k, N, ...)`` groups a problem's views.

Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def _warp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Resample N×C×H×W through per-image affine maps theta (N×2×3, normalized coordinates), zero (= the mean
    colour) outside, bilinear."""
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def jitter(d: int) -> Transform:
    """Shift the batch by one random offset in {0..d−1} per axis about the centre (the paper's jitter J = d, as a
    window of a canvas d−1 pixels larger; Lucent's ``jitter(d)``), the uncovered border the mean colour."""

    def inner(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if d <= 1:
            return x
        h, w = x.shape[-2:]
        lo = (d - 1) // 2
        dy, dx = (int(v) for v in torch.randint(d, (2,), generator=gen))
        return F.pad(x, (lo, d - 1 - lo, lo, d - 1 - lo))[..., dy:dy + h, dx:dx + w]

    return inner


def random_scale(lo: float, hi: float) -> Transform:
    """Zoom each image by a factor drawn uniformly in [lo, hi] about its centre (size unchanged)."""

    def inner(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        s = _uniform(x.shape[0], lo, hi, gen)
        theta = torch.zeros(x.shape[0], 2, 3)
        theta[:, 0, 0] = theta[:, 1, 1] = 1.0 / s
        return _warp(x, theta)

    return inner


def random_rotate(degrees: float) -> Transform:
    """Rotate each image by an angle drawn uniformly in [−degrees, degrees] about its centre."""

    def inner(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        a = _uniform(x.shape[0], -degrees, degrees, gen) * math.pi / 180
        h, w = x.shape[-2:]
        cos, sin = a.cos(), a.sin()
        theta = torch.zeros(x.shape[0], 2, 3)
        # Normalized coordinates stretch non-square images: the aspect ratio keeps the rotation rigid.
        theta[:, 0, 0], theta[:, 0, 1] = cos, -sin * h / w
        theta[:, 1, 0], theta[:, 1, 1] = sin * w / h, cos
        return _warp(x, theta)

    return inner


def flip(p: float = 0.5) -> Transform:
    """Mirror each image left–right with probability p (DeepInversion's ``--do_flip``)."""

    def inner(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        m = (torch.rand(x.shape[0], generator=gen) < p).to(x.device)
        return torch.where(m.view(-1, 1, 1, 1), x.flip(-1), x)

    return inner


def crops(k: int, lo: float = 0.5, hi: float = 1.0) -> Transform:
    """k random square-ish crops per image, each side a fraction in [lo, hi] of the image's at a random place
    inside it, resampled to the image's size: N → k·N images (crop-major), all seen in one network call."""

    def inner(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        n = x.shape[0]
        m = k * n
        s = _uniform(m, lo, hi, gen)
        cx = (torch.rand(m, generator=gen) * 2 - 1) * (1 - s)
        cy = (torch.rand(m, generator=gen) * 2 - 1) * (1 - s)
        theta = torch.zeros(m, 2, 3)
        theta[:, 0, 0] = theta[:, 1, 1] = s
        theta[:, 0, 2], theta[:, 1, 2] = cx, cy
        return _warp(x.repeat(k, 1, 1, 1), theta)

    return inner


def compose(transforms: Sequence[Transform], x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Apply a list of transforms in order: N×C×H×W → M×C×H×W (M a multiple of N, crop-major)."""
    for t in transforms:
        x = t(x, gen)
    return x


#: Names users type (``--transforms``), each with its parameters after ':' (',' separates transforms).
TRANSFORMS = {"jitter": "jitter:D (shift by up to D−1 px)", "scale": "scale:LO-HI (zoom factor)",
              "rotate": "rotate:DEG (±degrees)", "flip": "flip (left–right, p=0.5)",
              "crops": "crops:K or crops:K:LO-HI (K crops of LO–HI of the side per step)"}
#: Lucid/Lucent's ``standard_transforms`` (pad 12, jitter 8, scale 0.95–1.05, rotate ±5°, jitter 4), our names (the
#: padding is implicit: our transforms fill with the mean colour).
STANDARD = "jitter:8,scale:0.95-1.05,rotate:5,jitter:4"


def _range(arg: str, what: str) -> tuple[float, float]:
    lo, sep, hi = arg.partition("-")
    a = float(lo)
    b = float(hi) if sep else a
    if not 0 < a <= b:
        raise ValueError(what)
    return a, b


def parse_transforms(spec: str | None) -> list[Transform] | None:
    """``"jitter:9,scale:0.95-1.05,rotate:5,flip,crops:4:0.5-1"`` → transforms; ``standard`` → ``STANDARD``;
    ``none`` or ``""`` → []; None → None (the style's default). A clear error for anything else."""
    if spec is None:
        return None
    spec = spec.strip()
    if spec in ("", "none"):
        return []
    out: list[Transform] = []
    for part in spec.split(","):
        part = part.strip()
        if part == "standard":
            out += parse_transforms(STANDARD) or []
            continue
        name, _, arg = part.partition(":")
        try:
            if name == "jitter":
                d = int(arg)
                if not 1 <= d <= 256:
                    raise ValueError
                out.append(jitter(d))
            elif name == "scale":
                out.append(random_scale(*_range(arg, name)))
            elif name == "rotate":
                deg = float(arg)
                if not 0 <= deg <= 180:
                    raise ValueError
                out.append(random_rotate(deg))
            elif name == "flip":
                out.append(flip(float(arg) if arg else 0.5))
            elif name == "crops":
                k, _, rng = arg.partition(":")
                lo, hi = _range(rng, name) if rng else (0.5, 1.0)
                if not 1 <= int(k) <= 64 or hi > 1:
                    raise ValueError
                out.append(crops(int(k), lo, hi))
            else:
                raise KeyError
        except (ValueError, KeyError):
            raise PreimageError(f"bad transform '{part}' in --transforms; use a comma-separated list of: "
                                + "; ".join(TRANSFORMS.values()) + ", or 'standard' or 'none'") from None
    return out


def copies(views: torch.Tensor, n: int) -> int:
    """How many views of each of N problems a transformed batch holds (k in M = k·N)."""
    if views.shape[0] % n:
        raise PreimageError(f"a transform returned {views.shape[0]} images for {n} problems")
    return views.shape[0] // n
