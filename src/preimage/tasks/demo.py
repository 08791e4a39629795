"""The main job: inversions of one image through several layers of the embedded efficientnet_lite0."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..images import save_png
from ..report import OutputDir, html_page, save_grid, write_json
from ..representations import load
from .inversion import invert, prepare_images


def _minmax(x: torch.Tensor) -> torch.Tensor:
    return (x - x.min()) / (x.max() - x.min()).clamp_min(1e-8) * 255


def run_demo(out: str | Path, image: str = "sample:chelsea", layers: Sequence[str] = (), size: int = 224,
             iters: int | None = None, C: float = 100.0, seed: int = 0, force: bool = False, device: str = "cpu",
             model: str = "efficientnet_lite0", progress: Callable[[int, int], None] | None = None,
             amp: bool | str | None = None, compile: bool = False, threads: int | None = None) -> dict[str, Any]:
    """Invert ``image`` at each layer; write one PNG per layer, a PNG grid, a JSON record and an HTML page.

    Returns {out, page, grid, layers: [{layer, error, image}], seconds}.
    """
    t0 = time.perf_counter()
    outdir = OutputDir(out, force)
    layers = list(layers) or [f"blocks.{i}" for i in range(1, 7)]
    if threads:
        torch.set_num_threads(threads)
    reps = [load(model, layer, device=device) for layer in layers]  # fail on a bad layer before any work
    files = ["original.png", "grid.png", "index.html", "demo.json"] + [f"{lay}.png" for lay in layers]
    outdir.claim(files)
    ref, _ = prepare_images(reps[0], image, size)
    save_png(ref[0], outdir / "original.png", "clip")
    rows, pre_images, done = [], [], 0
    per = iters or sum(s.iters for s in reps[0].defaults.schedule)
    total = per * len(reps)
    for rep in reps:
        def update(k: int, _n: int, base: int = done) -> None:
            if progress:
                progress(base + k, total)

        res = invert(rep, image, C=C, size=size, iters=iters, seed=seed, progress=update, amp=amp, compile=compile)
        done += res.iterations
        png = save_png(res.images[0], outdir / f"{rep.layer}.png")
        pre_images.append(_minmax(res.images[0]))
        rows.append({"layer": rep.layer, "error": float(res.metrics["error"][0]), "image": png.name,
                     "seconds": round(res.seconds, 2), "stride": list(rep.geometry().stride or ())})
        # Write the record after each layer so a long demo shows partial results.
        write_json(outdir / "demo.json", {"model": model, "input": image, "size": size, "C": C, "layers": rows})
    save_grid([ref[0], *pre_images], outdir / "grid.png", scale="clip")
    page = html_page(outdir / "index.html", f"What {model} sees: inversions of {image}",
                     [("Original", [("original.png", f"{image} at {size}×{size}")]),
                      (f"Pre-images (IJCV inversion, C={C:g})",
                       [(r["image"], f"{r['layer']} (stride {r['stride'][0] if r['stride'] else '-'}): "
                                     f"error {100 * r['error']:.1f}%") for r in rows]),
                      ("All in one grid", [("grid.png", "original, then layers left to right")])],
                     intro="Each pre-image is an image whose representation at that layer matches the original's "
                           "(Mahendran & Vedaldi, IJCV 2016). Error = ‖Φ(x)−Φ0‖/‖Φ0‖.")
    info = {"out": str(outdir.path), "page": str(page), "grid": str(outdir / "grid.png"), "model": model,
            "input": image, "size": size, "C": C, "layers": rows, "seconds": round(time.perf_counter() - t0, 1)}
    write_json(outdir / "demo.json", info)
    return info
