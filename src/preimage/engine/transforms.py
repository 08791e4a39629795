"""Transforms of the image before the network.

The paper's jitter canvas (docs/paper-notes.md §1.1, §1.6): the image lives on a canvas J−1 pixels larger than
the network input; each step the network sees a random H×W window of it (the pixel fast path). And transformation
robustness as Lucid/Lucent do it, a list of random differentiable transforms (jitter, scale, rotate, flip, pixel
noise, several crops per step batched into one network call) for every other path."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..errors import PreimageError, is_number
from .rng import ProblemRNG


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


def random_offsets(n: int, jitter: int, rng: ProblemRNG) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-left (row, col) of each problem's window on its canvas, each uniform in {0..J−1}, from the problem's own
    generator: two N-vectors. Zeros without a draw when J = 1."""
    if jitter <= 1:
        z = torch.zeros(n, dtype=torch.long)
        return z, z
    off = rng.randint(jitter, 2)
    return off[:, 0].contiguous(), off[:, 1].contiguous()


def window_index(top: torch.Tensor, left: torch.Tensor, channels: int, size: tuple[int, int],
                 device: torch.device) -> tuple[torch.Tensor, ...]:
    """Advanced-indexing tuple selecting an H×W window per problem of an N×C×H'×W' canvas (top/left: N-vectors)."""
    h, w = size
    n = top.shape[0]
    rows = (top.view(n, 1) + torch.arange(h)).to(device)
    cols = (left.view(n, 1) + torch.arange(w)).to(device)
    return (torch.arange(n, device=device).view(n, 1, 1, 1), torch.arange(channels, device=device).view(1, -1, 1, 1),
            rows.view(n, 1, h, 1), cols.view(n, 1, 1, w))


def windows(canvas: torch.Tensor, top: torch.Tensor, left: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Each problem's H×W window of an N×C×H'×W' canvas at its own offset (a copy; differentiable). → N×C×H×W."""
    if bool((top == top[0]).all()) and bool((left == left[0]).all()):  # one offset for all: a view is enough
        y, x = int(top[0]), int(left[0])
        return canvas[..., y:y + size[0], x:x + size[1]]
    return canvas[window_index(top, left, canvas.shape[1], size, canvas.device)]


# --- transformation robustness (Lucid/Lucent's transforms) -----------------------------------------------------
#
# A transform maps a batch of images N×C×H×W (paper units, so 0 is the mean colour) to a batch M×C×H×W, M = k·N,
# differentiably; every random draw comes from the problem's own generator (``rng.ProblemRNG``), so a problem's
# views do not depend on the batch it shares. Crop-major order: view j of problem i sits at row j·N + i.


def _warp(x: torch.Tensor, theta: torch.Tensor, out: tuple[int, int] | None = None) -> torch.Tensor:
    """Resample N×C×H×W through per-image affine maps theta (N×2×3, normalized coordinates), zero (= the mean
    colour) outside, bilinear; to N×C×out[0]×out[1] when out is given, else to H×W."""
    shape = list(x.shape) if out is None else [*x.shape[:2], *out]
    grid = F.affine_grid(theta.to(x), shape, align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class Transform:
    """A random differentiable map of a batch of images: ``t(x, rng)`` → k·N images (k = ``copies``). ``spec``
    is its name as users type it (``--transforms``), the shorthand that parses back to the same object."""

    copies = 1

    def __call__(self, x: torch.Tensor, rng: ProblemRNG) -> torch.Tensor:
        raise NotImplementedError

    def spec(self) -> str:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec()!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Transform) and self.spec() == other.spec()

    def __hash__(self) -> int:
        return hash(self.spec())


class Jitter(Transform):
    """Shift each image by its own random offset in {0..d−1} per axis about the centre (the paper's jitter J = d,
    as a window of a canvas d−1 pixels larger; Lucent's ``jitter(d)``), the uncovered border the mean colour."""

    def __init__(self, d: int) -> None:
        if not isinstance(d, int) or isinstance(d, bool) or not 1 <= d <= 256:
            raise PreimageError(f"a jitter is 1 to 256 pixels, got {d!r}", param="transforms")
        self.d = d

    def __call__(self, x: torch.Tensor, rng: ProblemRNG) -> torch.Tensor:
        if self.d <= 1:
            return x
        h, w = x.shape[-2:]
        lo = (self.d - 1) // 2
        off = rng.randint(self.d, 2, rows=x.shape[0])
        padded = F.pad(x, (lo, self.d - 1 - lo, lo, self.d - 1 - lo))
        return windows(padded, off[:, 0], off[:, 1], (h, w))

    def spec(self) -> str:
        return f"jitter:{self.d}"


class Scale(Transform):
    """Zoom each image by a factor drawn uniformly in [lo, hi] about its centre (size unchanged)."""

    def __init__(self, lo: float, hi: float | None = None) -> None:
        hi = lo if hi is None else hi
        if not (is_number(lo) and is_number(hi)) or not 0 < lo <= hi <= 16:
            raise PreimageError(f"a scale range is 0 < LO ≤ HI ≤ 16, got {lo}-{hi}", param="transforms")
        self.lo, self.hi = float(lo), float(hi)

    def __call__(self, x: torch.Tensor, rng: ProblemRNG) -> torch.Tensor:
        s = rng.uniform(self.lo, self.hi, rows=x.shape[0])
        theta = torch.zeros(x.shape[0], 2, 3)
        theta[:, 0, 0] = theta[:, 1, 1] = 1.0 / s
        return _warp(x, theta)

    def spec(self) -> str:
        return f"scale:{self.lo:g}-{self.hi:g}"


class Rotate(Transform):
    """Rotate each image by an angle drawn uniformly in [−degrees, degrees] about its centre."""

    def __init__(self, degrees: float) -> None:
        if not is_number(degrees) or not 0 <= degrees <= 180:
            raise PreimageError(f"a rotation is 0 to 180 degrees, got {degrees!r}", param="transforms")
        self.degrees = float(degrees)

    def __call__(self, x: torch.Tensor, rng: ProblemRNG) -> torch.Tensor:
        a = rng.uniform(-self.degrees, self.degrees, rows=x.shape[0]) * math.pi / 180
        h, w = x.shape[-2:]
        cos, sin = a.cos(), a.sin()
        theta = torch.zeros(x.shape[0], 2, 3)
        # Normalized coordinates stretch non-square images: the aspect ratio keeps the rotation rigid.
        theta[:, 0, 0], theta[:, 0, 1] = cos, -sin * h / w
        theta[:, 1, 0], theta[:, 1, 1] = sin * w / h, cos
        return _warp(x, theta)

    def spec(self) -> str:
        return f"rotate:{self.degrees:g}"


class Flip(Transform):
    """Mirror each image left–right with probability p (DeepInversion's ``--do_flip``)."""

    def __init__(self, p: float = 0.5) -> None:
        if not is_number(p) or not 0 <= p <= 1:
            raise PreimageError(f"a flip probability is 0 to 1, got {p!r}", param="transforms")
        self.p = float(p)

    def __call__(self, x: torch.Tensor, rng: ProblemRNG) -> torch.Tensor:
        m = (rng.rand(rows=x.shape[0]) < self.p).to(x.device)
        return torch.where(m.view(-1, 1, 1, 1), x.flip(-1), x)

    def spec(self) -> str:
        return "flip" if self.p == 0.5 else f"flip:{self.p:g}"


class Crops(Transform):
    """k random square-ish crops per image, each side a fraction in [lo, hi] of the image's at a random place
    inside it, resampled to the image's size, or to ``out`` = (H, W) pixels (set by accentuate's canvas: a canvas
    larger than the network's input seen at the network's size; ``parse_transforms`` refuses it from users): N →
    k·N images (crop-major), all seen in one network call."""

    def __init__(self, k: int, lo: float = 0.5, hi: float = 1.0, out: int | tuple[int, int] | None = None) -> None:
        if not isinstance(k, int) or isinstance(k, bool) or not (is_number(lo) and is_number(hi)) \
                or not 1 <= k <= 64 or not 0 < lo <= hi <= 1:
            raise PreimageError(f"crops are 1 to 64 per step, of 0 < LO ≤ HI ≤ 1 of the side, got {k}:{lo}-{hi}",
                                param="transforms")
        hw = (out, out) if isinstance(out, int) and not isinstance(out, bool) else out
        if hw is not None and not (isinstance(hw, tuple) and len(hw) == 2 and all(
                isinstance(v, int) and not isinstance(v, bool) and 8 <= v <= 4096 for v in hw)):
            raise PreimageError(f"a crop's size is 8 to 4096 pixels a side, got {out!r}", param="transforms")
        self.k, self.lo, self.hi, self.out = k, float(lo), float(hi), hw

    @property
    def copies(self) -> int:  # type: ignore[override]
        return self.k

    def __call__(self, x: torch.Tensor, rng: ProblemRNG) -> torch.Tensor:
        m = self.k * x.shape[0]
        s = rng.uniform(self.lo, self.hi, rows=m)
        c = rng.rand(2, rows=m) * 2 - 1
        theta = torch.zeros(m, 2, 3)
        theta[:, 0, 0] = theta[:, 1, 1] = s
        theta[:, 0, 2], theta[:, 1, 2] = c[:, 0] * (1 - s), c[:, 1] * (1 - s)
        return _warp(x.repeat(self.k, 1, 1, 1), theta, self.out)

    def spec(self) -> str:
        if self.out is None:
            return f"crops:{self.k}:{self.lo:g}-{self.hi:g}"
        h, w = self.out
        return f"crops:{self.k}:{self.lo:g}-{self.hi:g}:{h}" + ("" if h == w else f"x{w}")


class Noise(Transform):
    """Add independent Gaussian noise of standard deviation ``sigma`` (0–255 units) to every pixel of each view: a
    pattern that only survives noise-free viewing (a fine texture read by one network) earns nothing."""

    def __init__(self, sigma: float) -> None:
        if not is_number(sigma) or not 0 <= sigma <= 255:
            raise PreimageError(f"a noise level is 0 to 255 (0–255 units), got {sigma!r}", param="transforms")
        self.sigma = float(sigma)

    def __call__(self, x: torch.Tensor, rng: ProblemRNG) -> torch.Tensor:
        if self.sigma == 0:
            return x
        return x + self.sigma * rng.randn(*x.shape[1:], rows=x.shape[0]).to(x)

    def spec(self) -> str:
        return f"noise:{self.sigma:g}"


def compose(transforms: Sequence[Transform], x: torch.Tensor, rng: ProblemRNG) -> torch.Tensor:
    """Apply a list of transforms in order: N×C×H×W → M×C×H×W (M a multiple of N, crop-major)."""
    for t in transforms:
        x = t(x, rng)
    return x


#: Names users type (``--transforms``), each with its parameters after ':' (',' separates transforms).
TRANSFORMS = {"jitter": "jitter:D (shift by up to D−1 px)", "scale": "scale:LO-HI (zoom factor)",
              "rotate": "rotate:DEG (±degrees)", "flip": "flip (left–right, p=0.5)",
              "noise": "noise:S (Gaussian pixel noise, S in 0–255 units)",
              "crops": "crops:K or crops:K:LO-HI (K crops of LO–HI of the side per step)"}


def standard() -> list[Transform]:
    """Lucid/Lucent's ``standard_transforms`` (pad 12, jitter 8, scale 0.95–1.05, rotate ±5°, jitter 4), our
    objects (the padding is implicit: our transforms fill with the mean colour)."""
    return [Jitter(8), Scale(0.95, 1.05), Rotate(5), Jitter(4)]


def _range(arg: str) -> tuple[float, float]:
    lo, sep, hi = arg.partition("-")
    a = float(lo)
    return a, float(hi) if sep else a


def _parse_one(part: str) -> list[Transform]:
    name, _, arg = part.partition(":")
    if name == "standard" and not arg:
        return standard()
    if name == "jitter":
        return [Jitter(int(arg))]
    if name == "scale":
        return [Scale(*_range(arg))]
    if name == "rotate":
        return [Rotate(float(arg))]
    if name == "flip":
        return [Flip(float(arg) if arg else 0.5)]
    if name == "noise":
        return [Noise(float(arg))]
    if name == "crops":
        k, _, rng = arg.partition(":")
        return [Crops(int(k), *(_range(rng) if rng else (0.5, 1.0)))]
    raise ValueError(name)


def parse_transforms(spec: str | Transform | Sequence[Transform | str] | None) -> list[Transform] | None:
    """Transforms from a spec string (``"jitter:9,scale:0.95-1.05,rotate:5,flip,crops:4:0.5-1"``; ``standard`` →
    ``standard()``; ``none`` or ``""`` → []), a Transform, or a list of Transforms and strings; None → None (the
    style's default). A clear error for anything else."""
    if spec is None:
        return None
    if isinstance(spec, Transform):
        if isinstance(spec, Crops) and spec.out is not None:
            # A task binds its target at the image's size; views of another size are accentuate's canvas alone.
            raise PreimageError("a crop's output size is set by accentuate's canvas=, not given: the network sees "
                                "crops at the image's size (use Crops(k, lo, hi))", param="transforms")
        return [spec]
    if not isinstance(spec, str):
        try:
            items = list(spec)
        except TypeError:
            raise PreimageError(f"transforms must be a string, a Transform or a list of them, got "
                                f"{type(spec).__name__}", param="transforms") from None
        out: list[Transform] = []
        for t in items:
            out += parse_transforms(t) or []
        return out
    spec = spec.strip()
    if spec in ("", "none"):
        return []
    out = []
    for part in (p.strip() for p in spec.split(",")):
        try:
            out += _parse_one(part)
        except (ValueError, TypeError):
            raise PreimageError(f"bad transform '{part}' in transforms; use a comma-separated list of: "
                                + "; ".join(TRANSFORMS.values()) + ", or 'standard' or 'none'",
                                param="transforms") from None
    return out


def transforms_spec(transforms: Sequence[Transform] | None) -> str | None:
    """The shorthand of a list of transforms (``"jitter:8,scale:0.95-1.05"``; ``"none"`` for []; None for None)."""
    if transforms is None:
        return None
    return ",".join(t.spec() for t in transforms) or "none"


def copies(views: torch.Tensor, n: int) -> int:
    """How many views of each of N problems a transformed batch holds (k in M = k·N)."""
    if views.shape[0] % n:
        raise PreimageError(f"a transform returned {views.shape[0]} images for {n} problems")
    return views.shape[0] // n
