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


#: Files read as arrays of any number of channels (``load_image``).
ARRAY_SUFFIXES = (".npy", ".tif", ".tiff")


def _to_float(a: np.ndarray) -> np.ndarray:
    """An array of uint8/uint16/bool/float → float64 in 0–255 units: uint8 as is, 16-bit (or larger integers
    above 255) ÷ 257, bool × 255, floats within [0, 1] × 255, other floats as they are."""
    if a.dtype == np.uint16 or (a.dtype.kind in "iu" and a.max(initial=0) > 255):
        return a.astype(np.float64) / 257.0
    if a.dtype == bool:
        return a.astype(np.float64) * 255.0
    if a.dtype.kind == "f":
        return a.astype(np.float64) * (255.0 if a.max(initial=0) <= 1.0 else 1.0)
    if a.dtype.kind not in "iu":
        raise PreimageError(f"unsupported pixel type {a.dtype}")
    return a.astype(np.float64)


def _to_float_rgb(a: np.ndarray) -> np.ndarray:
    """Any grey/RGB/RGBA array of uint8/uint16/bool/float → H×W×3 float64 in 0–255."""
    a = _to_float(a)
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


def _read_array(path: Path) -> np.ndarray:
    """A ``.npy`` array or a (multi-page) TIFF as it is stored."""
    try:
        if path.suffix.lower() == ".npy":
            return np.load(path, allow_pickle=False)
        import tifffile

        return tifffile.imread(path)
    except Exception as e:  # noqa: BLE001 - any unreadable file is a user error
        raise PreimageError(f"cannot read image {path}: {e.__class__.__name__}") from None


def _channels_last(a: np.ndarray, channels: int, spec: str) -> np.ndarray:
    """An array image → H×W×c: 2-d is one channel; 3-d has its channels on the axis of length ``channels``
    (last first), else on its shorter end axis (multi-page TIFFs stack pages first)."""
    a = np.squeeze(a, axis=tuple(range(a.ndim - 3))) if a.ndim > 3 and all(d == 1 for d in a.shape[:-3]) else a
    if a.ndim == 2:
        return a[:, :, None]
    if a.ndim != 3 or min(a.shape) == 0:
        raise PreimageError(f"{spec}: expected an H×W, H×W×C or C×H×W array, got shape {a.shape}")
    if a.shape[2] == channels or (a.shape[0] != channels and a.shape[2] <= a.shape[0]):
        return a
    return np.moveaxis(a, 0, 2)


def _match_channels(x: torch.Tensor, channels: int, spec: str) -> torch.Tensor:
    """1×c×H×W → 1×channels×H×W: as is, grey repeated to RGB, RGB to grey (luminance); else a clear error."""
    c = x.shape[1]
    if c == channels:
        return x
    if c == 1:
        return x.expand(-1, channels, -1, -1).clone()
    if c == 3 and channels == 1:
        return rgb_to_grey(x)
    raise PreimageError(f"{spec} has {c} channels, the model takes {channels}"
                        + ("; give a .npy or .tif image with that many channels" if c == 3 else ""))


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


def load_image(spec: str, size: int | tuple[int, int] | None = None, grey: bool = False,
               channels: int | None = None) -> torch.Tensor:
    """Read an image (path or ``sample:NAME``) as a 1×C×H×W float tensor in 0–255.

    Photographs (PNG, JPEG, ...): grey, RGBA and 16-bit files are converted to RGB. ``.npy`` arrays and
    (multi-page) TIFFs keep their channels (H×W, H×W×C or C×H×W; pages are channels), in 0–255 units
    (``_to_float``), clipped. channels: what the model takes (default 3; 1 with ``grey``): RGB becomes its
    luminance for one channel, one channel is repeated for three; other mismatches are a clear error.
    ``size`` resizes directly (bicubic, antialiased, no aspect-preserving crop, as in the paper).
    """
    k = channels or (1 if grey else 3)
    if not spec.startswith("sample:") and Path(spec).suffix.lower() in ARRAY_SUFFIXES and Path(spec).is_file():
        a = _channels_last(_read_array(Path(spec)), k, spec)
        x = torch.from_numpy(np.clip(_to_float(a), 0, 255)).permute(2, 0, 1)[None].float()
    else:
        x = torch.from_numpy(_to_float_rgb(_read(spec))).permute(2, 0, 1)[None].float()
    if size is not None:
        x = resize(x, size)
    return _match_channels(x, k, spec)


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


def displayed(x: torch.Tensor) -> torch.Tensor:
    """The channels a picture shows of a C×H×W image: all of grey or RGB, the first three of more, the first
    (grey) of two."""
    return x if x.shape[0] in (1, 3) else x[:3] if x.shape[0] > 3 else x[:1]


def to_uint8(x: torch.Tensor, scale: str = "minmax") -> np.ndarray:
    """One C×H×W image in 0–255 units → H×W×3 or H×W uint8 (``displayed`` channels). ``minmax`` rescales to
    the full range (the paper's ``vl_imsc``); ``clip`` keeps the true colours and clips."""
    x = displayed(x.detach().float().cpu())
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
