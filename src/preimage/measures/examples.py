"""Dataset examples of a layer's units: for every unit, the images of a folder where it responds most, shown
as the receptive-field crop around the neuron that responds most, from one pass over the folder.

The response is the one activation maximization targets (the layer's pre-ReLU point, ``response_point``), so
a unit's pre-images and its examples answer the same question. A unit of an N×C layer (logits, pooled
features) has no position: its examples are whole images.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ..images import image_name, load_image, png_bytes
from ..report.store import Output
from ..representations.base import Representation
from ..representations.points import response_point

GREY = 128.0  # what lies beyond the image's border in a crop (a field reaching past it)


def crop_box(pos: tuple[int, int], map_hw: tuple[int, int], image_hw: tuple[int, int],
             field: tuple[int, int] | None) -> tuple[int, int, int, int]:
    """Pixel box (x0, y0, x1, y1), inclusive, of the receptive field of neuron ``pos`` = (row, col) of an
    h×w map computed from an H×W image: centred where the map samples the image ((i+½)·H/h − ½), the field's
    size; it may reach past the image (the crop pads it). No field (N×C layers): the whole image."""
    H, W = image_hw
    if field is None:
        return 0, 0, W - 1, H - 1
    (h, w), (fy, fx) = map_hw, field
    cy = (pos[0] + 0.5) * H / h - 0.5
    cx = (pos[1] + 0.5) * W / w - 0.5
    y0, x0 = math.floor(cy - (fy - 1) / 2 + 0.5), math.floor(cx - (fx - 1) / 2 + 0.5)
    return x0, y0, x0 + fx - 1, y0 + fy - 1


def crop(img: torch.Tensor, box: tuple[int, int, int, int], side: int) -> torch.Tensor:
    """The box of a C×H×W image (grey beyond its border), resized to side×side. → C×side×side."""
    x0, y0, x1, y1 = box
    _, H, W = img.shape
    pad = (max(0, -x0), max(0, x1 - W + 1), max(0, -y0), max(0, y1 - H + 1))
    padded = F.pad(img[None], pad, value=GREY)[0]
    part = padded[:, y0 + pad[2]:y1 + pad[2] + 1, x0 + pad[0]:x1 + pad[0] + 1]
    return F.interpolate(part[None], size=(side, side), mode="bilinear", antialias=True,
                         align_corners=False)[0].clamp(0, 255)


def sprite(tiles: Sequence[torch.Tensor], ncol: int = 3, pad: int = 2) -> torch.Tensor:
    """Equal-size C×s×s tiles in a grid on white. → C×H×W."""
    c, s = tiles[0].shape[0], tiles[0].shape[-1]
    rows = (len(tiles) + ncol - 1) // ncol
    out = torch.full((c, rows * (s + pad) - pad, ncol * (s + pad) - pad), 255.0)
    for i, t in enumerate(tiles):
        r, q = divmod(i, ncol)
        out[:, r * (s + pad):r * (s + pad) + s, q * (s + pad):q * (s + pad) + s] = t
    return out


def histogram(values: torch.Tensor, bins: int = 12) -> dict[str, list[float]]:
    """Counts of ``values`` in ``bins`` equal bins between their min and max."""
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        hi = lo + 1e-6
    counts = torch.histc(values.double(), bins=bins, min=lo, max=hi)
    return {"edges": [lo + (hi - lo) * i / bins for i in range(bins + 1)], "counts": counts.int().tolist()}


def _load(rep: Representation, specs: Sequence[str], size: int | None) -> torch.Tensor:
    """Images at the model's input size (``size``: another side), N×C×H×W in 0–255 on Φ's device."""
    hw = (size, size) if size else rep.spec.input_size
    return torch.cat([load_image(s, hw, channels=rep.channels) for s in specs]).to(rep.device_dtype()[0])


def layer_examples(rep: Representation, images: list[str], *, size: int | None = None, k: int = 9,
                   thumbnail: int = 64, batch: int = 8) -> Output:
    """Top-``k`` dataset examples and activation statistics of every unit of ``rep``'s layer.

    One forward pass per batch of images, keeping per image and unit the largest response and where it is;
    then the crops of each unit's top images (distinct images) around that neuron. Returns an Output with one
    sprite per unit (``u<unit>.png``, a 3-column grid of ``thumbnail``-px crops, best first) and a record:
    per unit its max, mean and std over every position of every image, the histogram of its per-image
    maxima, and its examples (image, activation, box).
    """
    rp, point = response_point(rep)
    geo = rep.geometry()  # measured with gradients: before no_grad
    with torch.no_grad():
        return _examples(rp, point, geo, images, size, k, thumbnail, batch)


def _examples(rp: Representation, point: tuple[str, str], geo: Any, images: list[str], size: int | None, k: int,
              thumbnail: int, batch: int) -> Output:
    field = None if geo.receptive_field is None or geo.global_field else geo.receptive_field
    best, where, loaded = [], [], []
    total = sq = None
    count = 0
    map_hw: tuple[int, int] = (1, 1)
    image_hw: tuple[int, int] = (0, 0)
    for i in range(0, len(images), batch):
        x = _load(rp, images[i:i + batch], size)
        image_hw = (int(x.shape[-2]), int(x.shape[-1]))
        phi = rp(rp.to_paper_units(x)).float()
        if phi.ndim == 4:
            map_hw = (int(phi.shape[-2]), int(phi.shape[-1]))
            flat = phi.flatten(2)  # N×C×(h·w)
        elif phi.ndim == 2:
            flat = phi[:, :, None]
        else:
            raise ValueError(f"layer output {tuple(phi.shape[1:])} has no channel axis")
        v, a = flat.max(2)
        best.append(v.cpu())
        where.append(a.cpu())
        s, q = flat.double().sum((0, 2)).cpu(), flat.double().pow(2).sum((0, 2)).cpu()
        total, sq = (s, q) if total is None else (total + s, sq + q)
        count += flat.shape[0] * flat.shape[2]
        loaded.extend(images[i:i + batch])
    best_t, where_t = torch.cat(best), torch.cat(where)  # I×C
    mean = total / count
    std = (sq / count - mean.pow(2)).clamp_min(0).sqrt()
    kk = min(k, best_t.shape[0])
    top_v, top_i = best_t.topk(kk, dim=0)  # k×C
    channels = best_t.shape[1]

    # Crops: each image is loaded once more, for all the units that picked it.
    wanted: dict[int, list[tuple[int, int]]] = {}
    for u in range(channels):
        for r in range(kk):
            wanted.setdefault(int(top_i[r, u]), []).append((u, r))
    tiles: dict[tuple[int, int], torch.Tensor] = {}
    boxes: dict[tuple[int, int], tuple[int, int, int, int]] = {}
    for idx, uses in wanted.items():
        img = _load(rp, [loaded[idx]], size)[0].float().cpu()
        if img.shape[0] == 1:
            img = img.expand(3, -1, -1)
        for u, r in uses:
            pos = divmod(int(where_t[idx, u]), map_hw[1])
            box = crop_box(pos, map_hw, image_hw, field)
            boxes[(u, r)] = box
            tiles[(u, r)] = crop(img, box, thumbnail)
    files, units = {}, {}
    for u in range(channels):
        files[f"u{u}.png"] = png_bytes(sprite([tiles[(u, r)] for r in range(kk)]), "clip")
        units[str(u)] = {"max": float(best_t[:, u].max()), "mean": float(mean[u]), "std": float(std[u]),
                         "per_image_max": histogram(best_t[:, u]),
                         "examples": [{"image": loaded[int(top_i[r, u])], "name": image_name(loaded[int(top_i[r, u])]),
                                       "activation": float(top_v[r, u]), "box": list(boxes[(u, r)])}
                                      for r in range(kk)],
                         "sprite": f"u{u}.png"}
    record: dict[str, Any] = {"point": f"{point[0]} of {point[1] or 'the network'}", "images": len(loaded),
                              "image_size": list(image_hw), "map": list(map_hw),
                              "field": list(field) if field else None, "k": kk, "units": units}
    return Output(record, files)
