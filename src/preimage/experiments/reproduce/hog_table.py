"""The HOG-family inversion table (docs/paper-notes.md §3.1): HOG, HOGb and DSIFT pre-images of a folder of images.

Per image and model: invert the grey image at its own resolution (or downscaled so its longer side is at most
``max_side``) with the IJCV settings (C=100, 300 steps at lr0, no jitter), and score
err = ‖Φ(x*)−Φ0‖/‖Φ0‖. The table shows 100·mean(err) ± 1.96·std/√N (std with N−1, as ``table2.m``). When
cyvlfeat is installed, HOG pre-images are also scored with VLFeat's UoCTTI HOG (31 dims, texture included): the
authors' "fair comparison using original HOG" (their HOG column uses DPM's ``features()``, of which UoCTTI is
VLFeat's copy).

Every (image, model) inversion is a job of one sweep; images of one size share a batch. Files that are not images,
and images too small for any of the models (HOG needs two cells, DSIFT one 39-pixel descriptor), are skipped with
a warning and counted.
"""

from __future__ import annotations

import contextlib
import math
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ...errors import PreimageError
from ...images import list_images, load_image, resize, unique_names
from ...measures.metrics import mean_ci
from ...report.store import Store
from ...representations import Representation, load
from ...sweep import Job, LocalBackend, Model, run_sweep

MODELS = ("hog", "hogb", "dsift")
#: The CVPR15 table as commonly quoted (error %, mean ± std over 100 ILSVRC-2012 val images; unverified, and
#: with CVPR15's own normalizer, the mean squared distance between descriptors: docs/paper-notes.md §3.3).
PAPER_CVPR15 = {"hoggle": (66.2, 13.7), "hog": (28.1, 7.9), "hogb": (10.67, 5.2), "dsift": (10.89, 7.5)}
LABELS = {"hoggle": "HOGgle", "hog": "HOG", "hogb": "HOGb", "dsift": "DSIFT"}
VLFEAT_ROW = "hog-vlfeat"

Log = Callable[[str], None]
Progress = Callable[[int, int], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


@dataclass
class TableImage:
    """One image of the table: its spec, a unique name and the grey image 1×1×H×W in 0–255."""

    spec: str
    name: str
    image: torch.Tensor


@dataclass
class HogTable:
    """Per-image errors (fractions) and the table rows (×100)."""

    images: list[TableImage]
    errors: dict[str, list[float]]  # model (or VLFEAT_ROW) → one error per image, in ``images`` order
    pictures: dict[str, torch.Tensor]  # "name/model" → pre-image 1×H×W (0–255 units)
    skipped: list[dict[str, str]]
    settings: dict[str, Any]
    seconds: float = 0.0
    rows: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready summary: ``rows`` (one per model and measure), per-image errors, skipped files."""
        per_image = [{"image": im.name, "input": im.spec, "size": list(im.image.shape[-2:]),
                      **{m: e[i] for m, e in self.errors.items()}} for i, im in enumerate(self.images)]
        return {"protocol": "ijcv-hog-table/1", **self.settings, "n": len(self.images), "rows": self.rows,
                "per_image": per_image, "skipped": len(self.skipped), "skipped_files": self.skipped,
                "seconds": round(self.seconds, 3)}

    def markdown(self) -> str:
        """The table as the paper prints it (columns HOGgle, HOG, HOGb, DSIFT), with this run's settings."""
        by = {r["row"]: r for r in self.rows}
        cols = ["hoggle", *MODELS]

        def cell(row: dict[str, Any] | None) -> str:
            if row is None or row["mean"] is None:
                return "—"
            ci = "" if row["ci95"] is None else f" ± {row['ci95']:.1f}"
            return f"{row['mean']:.1f}{ci}"

        head = "| error (%) | " + " | ".join(LABELS[c] for c in cols) + " |"
        lines = [head, "|---|" + "---:|" * len(cols),
                 "| this run, own features (mean ± 95% CI) | " + " | ".join(cell(by.get(c)) for c in cols) + " |"]
        if VLFEAT_ROW in by:
            lines.append("| this run, HOG pre-images on VLFeat UoCTTI (31 dims) | — | "
                         + cell(by[VLFEAT_ROW]) + " | — | — |")
        lines.append("| CVPR15, as commonly quoted (mean ± std) | "
                     + " | ".join(f"{PAPER_CVPR15[c][0]:.1f} ± {PAPER_CVPR15[c][1]:.1f}" for c in cols) + " |")
        s = self.settings
        size = f"longer side ≤ {s['max_side']} px" if s["max_side"] else "original resolution"
        lines += ["", f"{len(self.images)} images from `{s['images']}` ({size}, grey); {s['iters']} iterations, "
                  f"C={s['C']:g}, no jitter, seed {s['seed']}; HOG gradient: {s['hog_gradient']}; "
                  f"{len(self.skipped)} files skipped; "
                  f"{self.seconds:.0f} s. HOGgle (ihog) is not run here. CVPR15 used another normalizer "
                  "(mean squared distance between descriptors), so its figures compare only loosely."]
        return "\n".join(lines) + "\n"


def _downscale(x: torch.Tensor, max_side: int | None) -> torch.Tensor:
    h, w = x.shape[-2:]
    if max_side is None or max(h, w) <= max_side:
        return x
    s = max_side / max(h, w)
    return resize(x, (max(round(h * s), 1), max(round(w * s), 1)))


def _too_small(reps: Sequence[Representation], hw: tuple[int, int]) -> str | None:
    """Why an image of this size cannot be inverted by one of the models, or None."""
    for rep in reps:
        try:
            with torch.no_grad():
                rep(torch.zeros(1, 1, *hw, device=rep.scale.device))
        except PreimageError as e:
            return f"{rep.name}: {e}"
    return None


def collect_images(images: str | Sequence[str], *, max_side: int | None = None,
                   models: Sequence[str] = MODELS, log: Log = _stderr) -> tuple[list[TableImage], list[dict[str, str]]]:
    """The table's images: a folder, ``samples`` (scikit-image's colour samples) or a list of specs, loaded grey
    and downscaled to ``max_side``. Returns (images, skipped files as {file, reason}); each skip logs one line."""
    if max_side is not None and max_side < 1:
        raise PreimageError("max_side must be a positive number of pixels", param="max_side")
    specs, unreadable = list_images(images, log)
    skipped = [{"file": s, "reason": "not a readable image"} for s in unreadable]
    reps = [load(m) for m in models]
    kept: list[tuple[str, torch.Tensor]] = []
    for spec in specs:
        hw = tuple(_downscale(load_image(spec, grey=True), max_side).shape[-2:])
        x = load_image(spec, hw, channels=1)  # as the inversion job loads it: resized, then grey
        why = _too_small(reps, hw)
        if why is not None:
            log(f"warning: skipping {spec}: {why}")
            skipped.append({"file": spec, "reason": why})
            continue
        kept.append((spec, x))
    out = [TableImage(spec, name, x) for (spec, x), name in zip(kept, unique_names([s for s, _ in kept]), strict=True)]
    if not out:
        raise PreimageError(f"no image in {images} is large enough for {', '.join(models)} "
                            f"({len(skipped)} files skipped)")
    return out, skipped


def vlfeat_hog_error(x: torch.Tensor, x0: torch.Tensor, cell_size: int = 8) -> torch.Tensor:
    """‖F(x)−F(x0)‖/‖F(x0)‖ with F = VLFeat's UoCTTI HOG (31 dims); x, x0: N×1×H×W grey → N. Needs cyvlfeat."""
    from cyvlfeat.hog import hog as vl_hog

    errs = []
    for a, b in zip(x, x0, strict=True):
        fa = vl_hog(np.ascontiguousarray(a[0].detach().cpu().numpy(), dtype=np.float32), cell_size,
                    variant="UoCTTI").astype(np.float64)
        fb = vl_hog(np.ascontiguousarray(b[0].detach().cpu().numpy(), dtype=np.float32), cell_size,
                    variant="UoCTTI").astype(np.float64)
        errs.append(np.linalg.norm(fa - fb) / max(np.linalg.norm(fb), 1e-12))
    return torch.tensor(errs)


def _have_vlfeat() -> bool:
    try:
        import cyvlfeat.hog  # noqa: F401
    except ImportError:
        return False
    return True


def _row(key: str, model: str, measure: str, errors: Sequence[float]) -> dict[str, Any]:
    mean, ci = mean_ci(errors)
    std = float(np.std(errors, ddof=1)) if len(errors) > 1 else None

    def pct(v: float | None) -> float | None:
        return None if v is None or math.isnan(v) else 100.0 * v

    paper = PAPER_CVPR15.get(model)
    return {"row": key, "model": model, "measure": measure, "n": len(errors), "mean": pct(mean), "ci95": pct(ci),
            "std": pct(std), "paper_cvpr15_mean": paper[0] if paper else None,
            "paper_cvpr15_std": paper[1] if paper else None}


def run_hog_table(images: Sequence[TableImage], *, models: Sequence[str] = MODELS, iters: int = 300,
                  C: float = 100.0, seed: int = 0, vlfeat: bool | None = None, device: str | torch.device = "cpu",
                  skipped: Sequence[dict[str, str]] = (), source: str = "", max_side: int | None = None,
                  exact_gradient: bool = False, store: Store | None = None, force: bool = False,
                  progress: Progress | None = None) -> HogTable:
    """Invert every image with every model, each (image, model) a job of one sweep (``preimage.sweep``: images of
    one size share a batch; results kept in ``store``, a temporary one by default, so a rerun computes only what
    is missing, all of it with ``force``), and tabulate the errors.

    vlfeat: also score HOG pre-images with VLFeat's UoCTTI HOG (None: when cyvlfeat is installed).
    exact_gradient: HOG as the paper (hard binning's gradient, one level) instead of the surrogate gradient and
    coarse-to-fine start; the features, and so the scores, are the same either way.
    """
    t0 = time.perf_counter()
    if vlfeat is None:
        vlfeat = _have_vlfeat() and "hog" in models
    with contextlib.ExitStack() as stack:
        if store is None:
            store = Store(stack.enter_context(tempfile.TemporaryDirectory(prefix="preimage-hog-")))
        errors: dict[str, list[float]] = {m: [math.nan] * len(images) for m in models}
        if vlfeat:
            errors[VLFEAT_ROW] = [math.nan] * len(images)
        pictures: dict[str, torch.Tensor] = {}
        for model in models:
            rep = load(model, device=device, **({"exact_gradient": True} if exact_gradient and model == "hog" else {}))
            m = Model(rep.spec, str(device))
            jobs = [Job("invert", m.id, None, images=(im.spec,),
                        options={"C": [C], "iters": iters, "seed": seed, "size": list(im.image.shape[-2:]),
                                 "arrays": True}) for im in images]
            res = run_sweep(jobs, {m.id: m}, store, LocalBackend(progress, strict=True), batch=len(jobs),
                            recompute=force)
            for i, (im, job) in enumerate(zip(images, jobs, strict=True)):
                rec = res.records[job.key]
                errors[model][i] = float(rec["result"]["problems"][0]["error"])
                pic = torch.from_numpy(np.load(store.file(job.key, "images.npy")))[0]
                pictures[f"{im.name}/{model}"] = pic
                if model == "hog" and vlfeat:
                    errors[VLFEAT_ROW][i] = float(vlfeat_hog_error(pic[None], im.image)[0])
    rows = [_row(m, m, "own features ‖Φ(x*)−Φ0‖/‖Φ0‖", errors[m]) for m in models]
    if vlfeat:
        rows.append(_row(VLFEAT_ROW, "hog", "VLFeat UoCTTI HOG, 31 dims (the paper's HOG column)", errors[VLFEAT_ROW]))
    settings = {"images": source, "max_side": max_side, "models": list(models), "iters": iters, "C": C,
                "seed": seed, "vlfeat": bool(vlfeat),
                "hog_gradient": "exact" if exact_gradient else "surrogate (bilinear binning's), coarse-to-fine"}
    return HogTable(list(images), errors, pictures, list(skipped), settings, time.perf_counter() - t0, rows)


def hog_table(images: str | Sequence[str] = "samples", *, max_side: int | None = None,
              models: Sequence[str] = MODELS, iters: int = 300, seed: int = 0, vlfeat: bool | None = None,
              device: str | torch.device = "cpu", exact_gradient: bool = False, store: Store | None = None,
              force: bool = False, log: Log = _stderr, progress: Progress | None = None) -> HogTable:
    """The whole experiment: ``collect_images`` then ``run_hog_table``."""
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise PreimageError(f"unknown model(s) for the HOG table: {', '.join(unknown)} (use {', '.join(MODELS)})",
                            param="models")
    if iters < 1:
        raise PreimageError("iters must be at least 1", param="iters")
    found, skipped = collect_images(images, max_side=max_side, models=models, log=log)
    return run_hog_table(found, models=models, iters=iters, seed=seed, vlfeat=vlfeat, device=device,
                         skipped=skipped, source=images if isinstance(images, str) else "list",
                         max_side=max_side, exact_gradient=exact_gradient, store=store, force=force,
                         progress=progress)
