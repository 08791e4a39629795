"""Writing files: a checked output folder, atomic JSON, PNG grids, HTML pages; never a half-written file."""

from __future__ import annotations

import html
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import PreimageError
from ..images import atomic_write_bytes, save_png, short_error, to_uint8


def check_folder(path: str | Path) -> Path:
    """An output folder that exists (created with its parents) and can be written into, or one clear line: the one
    check of an output folder, run before any work."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise PreimageError(f"output path {p} exists and is not a folder", param="out")
    try:
        p.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=p, prefix=".preimage-write-check."):
            pass
    except OSError as e:
        why = e.strerror or short_error(e)
        raise PreimageError(f"cannot write into the output folder {p}: {why}", param="out") from None
    return p


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


def save_grid(images: Sequence[torch.Tensor], path: str | Path, ncol: int | None = None,
              scale: str = "clip", pad: int = 4) -> Path:
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
