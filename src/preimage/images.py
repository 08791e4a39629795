"""Loading and saving images: paths or ``sample:NAME``, always returned as float tensors in 0–255."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from .errors import PreimageError

SAMPLES = ("astronaut", "chelsea", "coffee", "rocket", "cat", "immunohistochemistry", "motorcycle_left",
           "hubble_deep_field", "retina", "camera", "coins", "moon", "page", "text", "horse", "grass",
           "gravel", "brick")
#: The colour samples that scikit-image ships; the default image set for experiments.
COLOR_SAMPLES = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "motorcycle_left",
                 "hubble_deep_field", "retina")


def _to_float_rgb(a: np.ndarray) -> np.ndarray:
    """Any grey/RGB/RGBA array of uint8/uint16/bool/float → H×W×3 float64 in 0–255."""
    if a.dtype == np.uint16 or (a.dtype.kind in "iu" and a.max(initial=0) > 255):
        a = a.astype(np.float64) / 257.0
    elif a.dtype == bool:
        a = a.astype(np.float64) * 255.0
    elif a.dtype.kind == "f":
        a = a.astype(np.float64) * (255.0 if a.max(initial=0) <= 1.0 else 1.0)
    else:
        a = a.astype(np.float64)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    elif a.ndim == 3 and a.shape[2] == 4:  # RGBA: composite on white, as viewers show it
        alpha = a[:, :, 3:4] / 255.0
        a = a[:, :, :3] * alpha + 255.0 * (1 - alpha)
    elif a.ndim == 3 and a.shape[2] == 2:  # grey + alpha
        alpha = a[:, :, 1:2] / 255.0
        a = np.repeat(a[:, :, 0:1] * alpha + 255.0 * (1 - alpha), 3, axis=2)
    elif a.ndim != 3 or a.shape[2] != 3:
        raise PreimageError(f"unsupported image layout {a.shape}")
    return np.clip(a, 0, 255)


def _read(spec: str) -> np.ndarray:
    if spec.startswith("sample:"):
        name = spec[len("sample:"):]
        import skimage.data

        if name not in SAMPLES:
            raise PreimageError(f"unknown sample '{name}'; choose one of: {', '.join(SAMPLES)}")
        if name == "motorcycle_left":  # scikit-image ships it as the left view of stereo_motorcycle()
            return np.asarray(skimage.data.stereo_motorcycle()[0])
        return np.asarray(getattr(skimage.data, name)())
    path = Path(spec)
    if not path.exists():
        raise PreimageError(f"image not found: {spec}")
    if path.is_dir():
        raise PreimageError(f"expected an image file, got a folder: {spec}")
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                return np.asarray(im).astype(np.uint16 if im.mode.startswith("I;16") else np.int64)
            if im.mode == "P":
                im = im.convert("RGBA")
            if im.mode not in ("L", "LA", "RGB", "RGBA", "1"):
                im = im.convert("RGB")
            return np.asarray(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise PreimageError(f"cannot read image {spec}: {e.__class__.__name__}") from None


def image_name(spec: str) -> str:
    """A short file-name-safe name for an image spec (``sample:chelsea`` → ``chelsea``)."""
    base = spec.split(":", 1)[1] if spec.startswith("sample:") else Path(spec).stem
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in base) or "image"


def safe_name(s: str) -> str:
    """A string usable in file names (model and layer names)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in s)


def unique_names(specs: Sequence[str]) -> list[str]:
    """``image_name`` of each spec, with -2, -3, ... appended to repeats, so file names do not collide."""
    names, seen = [], set()
    for s in specs:
        base = name = image_name(s)
        k = 2
        while name in seen:
            name, k = f"{base}-{k}", k + 1
        seen.add(name)
        names.append(name)
    return names


def load_image(spec: str, size: int | tuple[int, int] | None = None, grey: bool = False) -> torch.Tensor:
    """Read an image (path or ``sample:NAME``) as a 1×C×H×W float tensor in 0–255.

    Grey, RGBA and 16-bit files are converted. ``size`` resizes directly (bicubic, antialiased, no aspect-
    preserving crop, as in the paper); ``grey`` returns one luminance channel (C=1), else C=3.
    """
    a = _to_float_rgb(_read(spec))
    x = torch.from_numpy(a).permute(2, 0, 1)[None].float()
    if size is not None:
        x = resize(x, size)
    if grey:
        x = rgb_to_grey(x)
    return x


def resize(x: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Bicubic antialiased resize of N×C×H×W images, clamped to 0–255."""
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(x.shape[-2:]) == hw:
        return x
    return F.interpolate(x, size=hw, mode="bicubic", antialias=True, align_corners=False).clamp(0, 255)


def rgb_to_grey(x: torch.Tensor) -> torch.Tensor:
    """N×3×H×W → N×1×H×W luminance (ITU-R 601, as MATLAB's rgb2gray)."""
    if x.shape[1] == 1:
        return x
    w = torch.tensor([0.2989, 0.5870, 0.1140], dtype=x.dtype, device=x.device)
    return (x * w[:, None, None]).sum(1, keepdim=True)


def to_uint8(x: torch.Tensor, scale: str = "minmax") -> np.ndarray:
    """One C×H×W image in 0–255 units → H×W×C uint8. ``minmax`` rescales to the full range (the paper's
    ``vl_imsc``); ``clip`` keeps the true colours and clips."""
    x = x.detach().float().cpu()
    if scale == "minmax":
        lo, hi = x.min(), x.max()
        x = (x - lo) / (hi - lo).clamp_min(1e-8) * 255.0
    elif scale != "clip":
        raise PreimageError(f"unknown PNG scaling '{scale}' (use minmax or clip)")
    a = x.clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return a[:, :, 0] if a.shape[2] == 1 else a


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file so that it is either absent or complete, never half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_png(x: torch.Tensor, path: str | Path, scale: str = "minmax") -> Path:
    """Save one C×H×W image (0–255 units) as PNG, atomically."""
    import io

    buf = io.BytesIO()
    Image.fromarray(to_uint8(x, scale)).save(buf, format="PNG")
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


def _warn(msg: str) -> None:
    print(msg, file=sys.stderr)


def list_images(images: str | Sequence[str], log: Callable[[str], None] = _warn) -> tuple[list[str], list[str]]:
    """Image specs from a folder, the word ``samples`` (scikit-image's colour samples), one file, or a list.

    Returns (readable specs in sorted order, skipped files). Unreadable files are skipped with one warning line
    each; a folder without any image is an error.
    """
    if isinstance(images, str) and images == "samples":
        return [f"sample:{n}" for n in COLOR_SAMPLES], []
    if isinstance(images, str):
        p = Path(images)
        if not p.exists():
            raise PreimageError(f"image folder not found: {images}")
        candidates = [str(f) for f in sorted(p.iterdir()) if f.is_file() and not f.name.startswith(".")] \
            if p.is_dir() else [str(p)]
    else:
        candidates = list(images)
    good, skipped = [], []
    for spec in candidates:
        try:
            load_image(spec, 8)
            good.append(spec)
        except PreimageError as e:
            if isinstance(images, str) and Path(images).is_dir():
                log(f"warning: skipping {spec}: {e}")
                skipped.append(spec)
            else:
                raise
    if not good:
        raise PreimageError(f"no readable images in {images}" + (f" ({len(skipped)} files skipped)" if skipped
                                                                  else ""))
    return good, skipped
