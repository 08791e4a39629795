"""Images in and out: paths or ``sample:NAME`` read as float tensors in 0–255 (the unit of every image the package
takes and returns), folders listed, PNGs encoded. One reader, one lister, one PNG writer."""

from __future__ import annotations

import functools
import hashlib
import os
import sys
import tempfile
import threading
import warnings
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
#: What a folder of images holds (``list_images``): photographs and arrays, by suffix, in any letter case.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".pnm", *ARRAY_SUFFIXES)
#: The largest image the reader takes, in pixels (PREIMAGE_MAX_PIXELS overrides it): larger files are refused
#: before they are decoded, as a decompression bomb would be.
MAX_PIXELS = 200_000_000


def max_pixels() -> int:
    try:
        return int(os.environ.get("PREIMAGE_MAX_PIXELS", MAX_PIXELS))
    except ValueError:
        return MAX_PIXELS


def _check_size(spec: str, h: int, w: int) -> None:
    if h * w > max_pixels():
        raise PreimageError(f"image {spec} is {w}×{h} ({h * w / 1e6:.0f} megapixels), more than the "
                            f"{max_pixels() / 1e6:.0f} this reader takes (PREIMAGE_MAX_PIXELS); resize it first",
                            param="images")


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
            a = np.load(path, allow_pickle=False, mmap_mode="r")
            _check_size(str(path), int(np.prod(a.shape[:-1])) if a.ndim > 2 else a.shape[0], a.shape[-1])
            return np.asarray(a)
        import tifffile

        with tifffile.TiffFile(path) as tif:
            shape = tif.series[0].shape if tif.series else ()
            if len(shape) >= 2:
                _check_size(str(path), int(np.prod(shape[:-1])), int(shape[-1]))
            return tif.asarray()
    except PreimageError:
        raise
    except Exception as e:  # noqa: BLE001 - any unreadable file is a user error
        raise PreimageError(f"cannot read image {path}: {short_error(e)}", param="images") from None


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


_PIL_LIMIT = threading.Lock()


def _open(path: Path) -> Image.Image:
    """``Image.open`` with PIL's own decompression-bomb limit lifted for the header read, so that the one size
    check (``_check_size``: this package's limit, the file's size in the message) decides, not PIL's exception."""
    with _PIL_LIMIT, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            return Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = limit


def _read(spec: str) -> np.ndarray:
    if spec.startswith("sample:"):
        name = spec[len("sample:"):]
        import skimage.data

        if name not in SAMPLES:
            raise PreimageError(f"unknown sample '{name}'; choose one of: {', '.join(SAMPLES)}", param="images")
        if name == "motorcycle_left":  # scikit-image ships it as the left view of stereo_motorcycle()
            return np.asarray(skimage.data.stereo_motorcycle()[0])
        return np.asarray(getattr(skimage.data, name)())
    path = Path(spec)
    if not path.exists():
        raise PreimageError(f"image not found: {spec}", param="images")
    if path.is_dir():
        raise PreimageError(f"expected an image file, got a folder: {spec}", param="images")
    try:
        with _open(path) as im:
            _check_size(spec, im.size[1], im.size[0])
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                return np.asarray(im).astype(np.uint16 if im.mode.startswith("I;16") else np.int64)
            if im.mode == "P":
                im = im.convert("RGBA")
            if im.mode not in ("L", "LA", "RGB", "RGBA", "1"):
                im = im.convert("RGB")
            return np.asarray(im)
    except PreimageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise PreimageError(f"cannot read image {spec}: {short_error(e)}", param="images") from None


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


#: How a picture's values become 8-bit pixels: ``clip`` (its true colours; values are already in 0–255) or
#: ``minmax`` (rescaled to the full range, the paper's ``vl_imsc``).
SCALES = ("clip", "minmax")


def check_scale(scale: str) -> str:
    """``scale`` if it is one of ``SCALES``; a clear error otherwise (before any work)."""
    if scale not in SCALES:
        raise PreimageError(f"png_scale must be {' or '.join(SCALES)}, got {scale!r}", param="png_scale")
    return scale


def minmax(x: torch.Tensor) -> torch.Tensor:
    """An image rescaled so that its smallest value is 0 and its largest 255 (a flat image becomes 0)."""
    lo, hi = x.min(), x.max()
    return (x - lo) / (hi - lo).clamp_min(1e-8) * 255.0


def to_uint8(x: torch.Tensor, scale: str = "clip") -> np.ndarray:
    """One C×H×W image in 0–255 units → H×W×3 or H×W uint8 (``displayed`` channels), by ``scale`` (``SCALES``)."""
    x = displayed(x.detach().float().cpu())
    if check_scale(scale) == "minmax":
        x = minmax(x)
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
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide results from the user's group
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def png_bytes(x: torch.Tensor, scale: str = "clip") -> bytes:
    """One C×H×W image (0–255 units) as PNG bytes: the one PNG encoder of the package."""
    import io

    buf = io.BytesIO()
    Image.fromarray(to_uint8(x, scale)).save(buf, format="PNG")
    return buf.getvalue()


def npy_bytes(x: torch.Tensor) -> bytes:
    """A tensor as the bytes of a float32 ``.npy`` file (pictures of other than 1 or 3 channels keep them all)."""
    import io

    buf = io.BytesIO()
    np.save(buf, x.detach().float().cpu().numpy())
    return buf.getvalue()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_png(x: torch.Tensor, path: str | Path, scale: str = "clip") -> Path:
    """Save one C×H×W image (0–255 units) as PNG, atomically."""
    atomic_write_bytes(Path(path), png_bytes(x, scale))
    return Path(path)


def short_error(e: BaseException) -> str:
    """An exception as a short line: its type and its message (not the type alone)."""
    msg = " ".join(str(e).split())
    if not msg:  # a bare EOFError or KeyError: its class's own description says more than its name alone
        doc = (type(e).__doc__ or "").strip().splitlines()
        generic = ("Common base class", "Inappropriate", "Base class")  # says nothing about this error
        msg = doc[0].strip() if doc and not doc[0].startswith(generic) else ""
    msg = msg if len(msg) <= 160 else msg[:157] + "..."
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


def fingerprint(spec: str) -> str:
    """An image spec's identity for keys and seeds: ``sample:NAME`` as it is, a file by the SHA-1 of its bytes (a
    renamed copy is the same image)."""
    if spec.startswith("sample:"):
        return spec
    p = Path(spec)
    try:
        st = p.stat()
    except OSError:
        raise PreimageError(f"image not found: {spec}", param="images") from None
    return _file_digest(str(p.resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=65536)
def _file_digest(path: str, _size: int, _mtime: int) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()[:20]


def tensor_fingerprint(x: torch.Tensor) -> str:
    """20 hex digits naming a tensor's values and shape (images given as tensors)."""
    h = hashlib.sha1(str(tuple(x.shape)).encode())
    h.update(x.detach().float().cpu().contiguous().numpy().tobytes())
    return "tensor:" + h.hexdigest()[:20]


def _warn(msg: str) -> None:
    print(msg, file=sys.stderr)


def list_images(images: str | os.PathLike | Sequence[str], log: Callable[[str], None] = _warn
                ) -> tuple[list[str], list[str]]:
    """Image specs from a folder, the word ``samples`` (scikit-image's colour samples), one file, or a list: the
    one lister of ``--images`` everywhere.

    A folder gives every file below it, recursively, whose suffix is one of ``IMAGE_SUFFIXES`` (any letter case),
    in sorted path order, hidden files and folders left out. Each is checked by reading its header (not decoding
    it); one that cannot be read, or is larger than the reader takes, is skipped with one warning line. Returns
    (readable specs, skipped files); a folder without any readable image is an error.
    """
    if isinstance(images, str) and images == "samples":
        return [f"sample:{n}" for n in COLOR_SAMPLES], []
    if isinstance(images, (str, os.PathLike)):
        p = Path(images)
        if not p.exists():
            raise PreimageError(f"image folder not found: {images}", param="images")
        if p.is_dir():
            candidates = sorted(str(f) for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
                                and not any(part.startswith(".") for part in f.relative_to(p).parts))
            good, skipped = [], []
            for spec in candidates:
                try:
                    check_image(spec)
                    good.append(spec)
                except PreimageError as e:
                    log(f"warning: skipping {spec}: {e}")
                    skipped.append(spec)
            if not good:
                raise PreimageError(f"no readable images in {images} (looked for {' '.join(IMAGE_SUFFIXES)} files, "
                                    f"recursively)" + (f"; {len(skipped)} skipped" if skipped else ""),
                                    param="images")
            return good, skipped
        specs = [str(p)]
    else:
        specs = [str(s) for s in images]
        if not specs:
            raise PreimageError("give at least one image", param="images")
    for spec in specs:
        check_image(spec)
    return specs, []


def check_image(spec: str) -> None:
    """A clear error unless ``spec`` names a readable image of a size the reader takes (its header only)."""
    if spec.startswith("sample:"):
        if spec[len("sample:"):] not in SAMPLES:
            _read(spec)  # the error that names the samples
        return
    path = Path(spec)
    if not path.is_file():
        raise PreimageError(f"image not found: {spec}" if not path.exists() else
                            f"expected an image file, got a folder: {spec}", param="images")
    if path.suffix.lower() in ARRAY_SUFFIXES:
        _read_array(path)  # arrays are small to read, and their header is the file
        return
    try:
        with _open(path) as im:
            _check_size(spec, im.size[1], im.size[0])
    except PreimageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise PreimageError(f"cannot read image {spec}: {short_error(e)}", param="images") from None
