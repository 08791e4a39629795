"""Writing results: never overwrite without ``force``; never leave a half-written file."""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import PreimageError
from ..images import atomic_write_bytes, save_png, to_uint8


class OutputDir:
    """An output folder that refuses to overwrite existing files unless ``force`` is set.

    Call ``claim(names)`` with every file a command will write *before* computing anything, so a refusal
    costs nothing and loses nothing.
    """

    def __init__(self, path: str | Path, force: bool = False) -> None:
        self.path = Path(path)
        self.force = force
        if self.path.exists() and not self.path.is_dir():
            raise PreimageError(f"output path {self.path} exists and is not a folder")

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def claim(self, names: Iterable[str]) -> list[Path]:
        paths = [self.path / n for n in names]
        taken = [p for p in paths if p.exists()]
        if taken and not self.force:
            more = f" and {len(taken) - 1} more" if len(taken) > 1 else ""
            raise PreimageError(f"{taken[0]}{more} already exists; pass --force to overwrite or --out to "
                                "write elsewhere")
        return paths


def write_json(path: str | Path, obj: Any) -> Path:
    """Atomically write ``obj`` as indented JSON."""
    atomic_write_bytes(Path(path), (json.dumps(obj, indent=2, default=_jsonable) + "\n").encode())
    return Path(path)


def _jsonable(o: Any) -> Any:
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o)}")


def picture_files(name: str, channels: int) -> list[str]:
    """The files one picture of a ``channels``-channel image is written as (``save_picture``): ``NAME.png``, and
    ``NAME.npy`` beside it unless the image is grey or RGB (the PNG shows only some of its channels)."""
    return [f"{name}.png"] + ([f"{name}.npy"] if channels not in (1, 3) else [])


def save_picture(x: torch.Tensor, path: str | Path, scale: str = "minmax") -> Path:
    """Save one C×H×W image (0–255 units) as a PNG of its first three channels (or of its first, in grey, for
    two), plus the whole array as float32 ``.npy`` beside it when C is neither 1 nor 3. Returns the PNG's path."""
    import io

    import numpy as np

    path = Path(path)
    if x.shape[0] not in (1, 3):
        buf = io.BytesIO()
        np.save(buf, x.detach().float().cpu().numpy())
        atomic_write_bytes(path.with_suffix(".npy"), buf.getvalue())
    return save_png(x, path, scale)


def save_grid(images: Sequence[torch.Tensor], path: str | Path, ncol: int | None = None,
              scale: str = "minmax", pad: int = 4) -> Path:
    """Save C×H×W images (0–255 units, possibly of different sizes) as one PNG grid."""
    import torchvision.utils

    tiles = [torch.from_numpy(to_uint8(im, scale)) for im in images]
    tiles = [t[None].expand(3, -1, -1) if t.ndim == 2 else t.permute(2, 0, 1) for t in tiles]
    h = max(t.shape[1] for t in tiles)
    w = max(t.shape[2] for t in tiles)
    tiles = [torch.nn.functional.pad(t, (0, w - t.shape[2], 0, h - t.shape[1]), value=255) for t in tiles]
    grid = torchvision.utils.make_grid(torch.stack(tiles).float(), nrow=ncol or len(tiles), padding=pad,
                                       pad_value=255)
    return save_png(grid, path, scale="clip")


def html_page(path: str | Path, title: str, sections: Sequence[tuple[str, Sequence[tuple[str, str]]]],
              intro: str = "") -> Path:
    """A self-contained HTML page: sections of (image file relative to the page, caption) figures."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;margin:2em;max-width:1200px}figure{display:inline-block;"
             "margin:6px;text-align:center;vertical-align:top}img{image-rendering:pixelated;max-width:480px;"
             "border:1px solid #ccc}figcaption{font-size:13px;max-width:480px}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    if intro:
        parts.append(f"<p>{html.escape(intro)}</p>")
    for heading, figures in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2><div>")
        for src, caption in figures:
            parts.append(f"<figure><img src='{html.escape(src)}' alt='{html.escape(caption)}'>"
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        parts.append("</div>")
    parts.append("</body></html>\n")
    atomic_write_bytes(Path(path), "".join(parts).encode())
    return Path(path)
