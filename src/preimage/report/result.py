"""What every visualization returns: a batch of pictures with per-problem numbers, that shows itself in a notebook
and writes itself as the command line does.

Units: ``images`` are N×C×H×W float32 in 0–255, clipped to [0, 255]: the pictures as a user would load the saved
PNG (before its 8-bit rounding), and the images every metric was measured on. Every image the package takes
(inputs, ``init``, reference images) is in the same unit.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..images import check_scale, npy_bytes, png_bytes, to_uint8
from .publish import NOTES
from .store import Output, canonical

#: Pictures per row of the inline grid.
GRID_COLUMNS = 6
#: Side of a picture in the inline grid (pixels; small pictures are scaled up, without smoothing).
TILE = 160


@dataclass
class Result:
    """N pictures and their per-problem numbers.

    images: N×C×H×W in 0–255 (clipped); problems: one dict per problem (its target or input, C, restart, ...);
    metrics: name → N values (activation, error, score_end, ...); energy: T×N history; info: the run's settings;
    jobs: how the problems group into records (one per target or input: its configuration, its rows and their
    file names), which ``save`` and ``outputs`` write.
    """

    images: torch.Tensor
    problems: list[dict[str, Any]]
    metrics: dict[str, torch.Tensor]
    model: str
    layer: str | None
    iterations: int
    seconds: float
    energy: torch.Tensor
    info: dict[str, Any] = field(default_factory=dict)
    jobs: list[dict[str, Any]] = field(default_factory=list)
    #: N×1×H×W or None: per pixel, Σ over the steps of |∂ objective / ∂ image| (MaCo's transparency), where asked
    attribution: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.images.shape[0]

    def __repr__(self) -> str:
        shape = "×".join(map(str, self.images.shape[1:]))
        caps = self.captions()
        more = f"; … {len(caps) - 3} more" if len(caps) > 3 else ""
        return (f"<Result {self.info.get('task', '')} {self.model}{' ' + self.layer if self.layer else ''}: "
                f"{len(self)} picture(s) {shape}, {self.iterations} iterations, {self.seconds:.1f} s: "
                f"{'; '.join(caps[:3])}{more}>")

    # --- numbers ---------------------------------------------------------------------------------------------

    def records(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per problem: its parameters and metrics (NaN as None)."""
        out = []
        for i, p in enumerate(self.problems):
            r = dict(p)
            for k, v in self.metrics.items():
                r[k] = _finite(v[i].tolist())
            out.append(r)
        return out

    @property
    def scale(self) -> str:
        """How the pictures are shown and saved by default (``minmax`` for the paper's style, else ``clip``)."""
        return self.info.get("display", "clip")

    def captions(self) -> list[str]:
        """One short caption per picture: what it shows and how well (activation against the natural maximum, the
        error, the caricature's gain), and a judge's verdict where one was asked for."""
        out = []
        transfer = self.info.get("transfer") or {}
        for i, r in enumerate(self.records()):
            what = r.get("label") or r.get("target") or r.get("input") or ""
            parts = [str(what)] + ([f"r{r['restart']}"] if r.get("restart") else [])
            if r.get("error") is not None:
                parts.append(f"error {100 * r['error']:.1f}%")
            if r.get("activation") is not None:
                # metrics computes no ratio against a maximum ≤ 0; records stored before then may hold one
                ratio = r.get("ratio") if (r.get("reference_max") or 0) > 0 else None
                parts.append(f"act {r['activation']:.3g}" + (f" ({ratio:.1f}× natural max)" if ratio is not None
                                                              else ""))
            if r.get("reg_weight") is not None:  # accentuation: its weight and how far it went from the seed
                parts.append(f"w {r['reg_weight']:g}" + (f" RMSE {r['rmse']:.1f}" if r.get("rmse") is not None else "")
                             + (f" (≤ {r['max_rmse']:g})" if r.get("max_rmse") is not None else ""))
            if r.get("probability") is not None:
                parts.append(f"p {r['probability']:.2f}")
            if r.get("top1") is not None and r.get("unit") is not None and r["top1"] >= 0 and r["top1"] != r["unit"]:
                parts.append(f"top-1 {r['top1']}")  # another class wins the picture on the network itself
            if r.get("score_end") is not None and r.get("score_start"):
                parts.append(f"score ×{r['score_end'] / r['score_start']:.2f}")
            for name, t in transfer.items():
                if "probability" in t and i < len(t["probability"]):
                    parts.append(f"{name} p {t['probability'][i]:.2f}{' top-1' if t['top1'][i] else ''}")
                elif "agree" in t and i < len(t["agree"]):
                    parts.append(f"{name} {'same' if t['agree'][i] else 'other'} label")
            out.append(" · ".join(p for p in parts if p))
        return out

    # --- pictures --------------------------------------------------------------------------------------------

    def uint8(self, scale: str | None = None) -> np.ndarray:
        """The pictures as 8-bit arrays: N×H×W×3 (RGB, or the first three channels), N×H×W for grey."""
        return np.stack([to_uint8(x, check_scale(scale or self.scale)) for x in self.images])

    def pil(self, scale: str | None = None) -> list[Any]:
        """The pictures as PIL images."""
        from PIL import Image

        return [Image.fromarray(a) for a in self.uint8(scale)]

    def _repr_png_(self) -> bytes:
        """A grid of the pictures with their captions (what a notebook shows)."""
        return grid_png(self.pil(), self.captions())

    def _repr_html_(self) -> str:
        cells = []
        for img, cap in zip(self.pil(), self.captions(), strict=True):
            import io

            buf = io.BytesIO()
            img.save(buf, format="PNG")
            b64 = base64.b64encode(buf.getvalue()).decode()
            cells.append(f"<figure style='display:inline-block;margin:4px;text-align:center;vertical-align:top'>"
                         f"<img src='data:image/png;base64,{b64}' style='width:{TILE}px;image-rendering:pixelated'>"
                         f"<figcaption style='font-size:11px;max-width:{TILE}px'>{html.escape(cap)}</figcaption>"
                         "</figure>")
        head = html.escape(f"{self.info.get('task', 'result')}: {self.model}"
                           + (f" {self.layer}" if self.layer else "") + f", {len(self)} picture(s), "
                           f"{self.iterations} iterations, {self.seconds:.1f} s")
        notes = "".join(f"<div style='font:11px sans-serif;color:#555'>note: {html.escape(str(self.info[k]))}</div>"
                        for k in NOTES if self.info.get(k))
        return f"<div><div style='font:12px sans-serif'>{head}</div>{notes}{''.join(cells)}</div>"

    def show(self) -> None:
        """Show the grid: inline in a notebook, else in a matplotlib window."""
        try:
            from IPython import get_ipython
            from IPython.display import HTML, display

            if get_ipython() is not None:
                display(HTML(self._repr_html_()))
                return
        except ImportError:
            pass
        import io

        import matplotlib.pyplot as plt
        from PIL import Image

        plt.figure(figsize=(10, 10))
        plt.imshow(Image.open(io.BytesIO(self._repr_png_())))
        plt.axis("off")
        plt.show()

    # --- records ---------------------------------------------------------------------------------------------

    def outputs(self, scale: str | None = None, thumbnail: int | None = None, arrays: bool = False,
                groups: Sequence[int] | None = None) -> list[tuple[dict[str, Any], Output]]:
        """What the store keeps of this result: one (configuration, Output) per job, each Output holding a PNG per
        problem (and the whole array as ``.npy`` for pictures of other than 1 or 3 channels), a thumbnail of the
        first (``thumbnail``: its side), the raw images (``images.npy``, with ``arrays``), and a record of its
        problems and the run's settings. groups: merge consecutive jobs into one Output per group (a sweep's job
        holding several targets or images), their files named apart."""
        scale = check_scale(scale or self.scale)
        records = self.records()
        info = {k: v for k, v in self.info.items() if _jsonable(v)}
        jobs = self.jobs or [{"config": {}, "rows": list(range(len(self))),
                              "names": [f"p{i}" for i in range(len(self))]}]
        if groups is not None:
            merged, k = [], 0
            for size in groups:
                part = jobs[k:k + size]
                k += size
                merged.append({"config": part[0]["config"], "rows": [r for j in part for r in j["rows"]],
                               "names": [(f"t{i}-" if len(part) > 1 else "") + n for i, j in enumerate(part)
                                         for n in j["names"]]})
            jobs = merged
        out = []
        for job in jobs:
            rows, names = job["rows"], job["names"]
            files: dict[str, bytes] = {}
            probs = []
            for i, name in zip(rows, names, strict=True):
                files[f"{name}.png"] = png_bytes(self.images[i], scale)
                if self.attribution is not None:
                    files[f"{name}-attribution.png"] = png_bytes(attribution_overlay(self.images[i],
                                                                                     self.attribution[i]), "clip")
                if self.images.shape[1] not in (1, 3):
                    files[f"{name}.npy"] = npy_bytes(self.images[i])
                probs.append({**records[i], "png": f"{name}.png"})
            if thumbnail:
                files["thumb.png"] = png_bytes(thumb(self.images[rows[0]], int(thumbnail), scale), "clip")
            if arrays:
                files["images.npy"] = npy_bytes(self.images[rows])
            config = {**job["config"], "options": {**job["config"].get("options", {}), "png_scale": scale}} \
                if job["config"] else {}
            # the job's share of the run's wall time, so a table built from stored results still has its timing
            share = round(self.seconds * len(rows) / max(len(self), 1), 3)
            out.append((config, Output({"problems": probs, "iterations": self.iterations, "info": info,
                                        "size": list(self.images.shape[-2:]), "seconds": share}, files)))
        return out

    def save(self, folder: str | Path, *, force: bool = False, scale: str | None = None) -> dict[str, Any]:
        """Write the pictures and their records into ``folder`` exactly as the command line does (``publish``):
        the keyed store (``folder/store``), a PNG per picture under a readable name and a JSON summary. Files of
        another result are not overwritten without ``force``. Returns the summary."""
        from .publish import claim, publish
        from .store import Store

        store = Store(Path(folder) / "store")
        task = self.info.get("task", "result")
        subjects = [j.get("subject", f"p{i}") for i, j in enumerate(self.jobs)] or ["result"]
        outputs = self.outputs(scale)
        claim(folder, task, [(c, s) for (c, _), s in zip(outputs, subjects, strict=True)], store, force)
        saved = [(config, store.save(config, o), s) for (config, o), s in zip(outputs, subjects, strict=True)]
        return publish(folder, task, saved, store, force=force, mosaic=task == "maximize" and len(self) > 1)


def attribution_overlay(x: torch.Tensor, attribution: torch.Tensor, floor: float = 0.15) -> torch.Tensor:
    """A picture (C×H×W, 0–255) shown through its attribution map (1×H×W, ≥ 0) as MaCo shows transparency:
    each pixel's brightness × (floor + (1 − floor)·a), a = the map ÷ its 99th percentile, clipped to 1 (so that a
    few extreme pixels do not black out the rest). → C×H×W in 0–255."""
    a = attribution.detach().float().cpu()
    hi = float(torch.quantile(a.flatten(), 0.99)) if a.numel() else 0.0
    a = (a / hi).clamp(0, 1) if hi > 0 else torch.zeros_like(a)
    return x.detach().float().cpu().clamp(0, 255) * (floor + (1 - floor) * a)


def thumb(x: torch.Tensor, side: int, scale: str = "clip") -> torch.Tensor:
    """A picture scaled to fit ``side`` pixels (never enlarged: a page scales small ones up, pixelated)."""
    from ..images import minmax, resize

    h, w = x.shape[-2:]
    s = min(side, max(h, w)) / max(h, w)
    x = minmax(x) if scale == "minmax" else x
    return resize(x[None], (max(1, round(h * s)), max(1, round(w * s))))[0]


def grid_png(images: Sequence[Any], captions: Sequence[str], columns: int = GRID_COLUMNS, tile: int = TILE) -> bytes:
    """PIL images in a grid of ``tile``-px cells, each with its caption below (wrapped): PNG bytes."""
    import io
    import textwrap

    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=11) if hasattr(ImageFont, "load_default") else None
    lines = [textwrap.wrap(c, 26)[:4] for c in captions]
    text_h = 14 * max((len(ls) for ls in lines), default=0) + 4
    n = len(images)
    cols = max(1, min(columns, n))
    rows = (n + cols - 1) // cols
    canvas = Image.new("RGB", (cols * (tile + 8), rows * (tile + 8 + text_h)), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (img, ls) in enumerate(zip(images, lines, strict=True)):
        r, c = divmod(i, cols)
        x0, y0 = c * (tile + 8) + 4, r * (tile + 8 + text_h) + 4
        im = img.convert("RGB")
        k = tile / max(im.size)
        im = im.resize((max(1, round(im.size[0] * k)), max(1, round(im.size[1] * k))), Image.NEAREST)
        canvas.paste(im, (x0, y0))
        for j, line in enumerate(ls):
            draw.text((x0, y0 + tile + 2 + 14 * j), line, fill="black", font=font)
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return buf.getvalue()


def _finite(v: Any) -> Any:
    if isinstance(v, float) and v != v:
        return None
    return v


def _jsonable(v: Any) -> bool:
    try:
        canonical(v)
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False
