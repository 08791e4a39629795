"""Inversion time-to-quality: the median IJCV error of a short run (``--style fast``, or another
parameterization) against the paper's schedule after its 350 iterations, on the bundled colour samples (the
tuning set) or the held-out photographs (the reporting set, ``experiments.heldout``).

``benchmarks/time_to_quality.py`` runs the full table (efficientnet_lite0, blocks.1–6, 8 samples at 224 px);
``preimage bench quality`` runs the same measurement for any model and layers.
"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..engine.schedules import scale_schedule, schedule_record, task_defaults
from ..errors import PreimageError
from ..images import COLOR_SAMPLES
from ..report.store import Store
from ..representations import load
from ..sweep import Job, LocalBackend, Model, run_sweep

#: The issue's comparison: fast after 120 iterations against the paper's 300+50.
METHODS = ("pixel:350", "fast:120")
#: efficientnet_lite0's blocks, the table's layers.
LITE0_LAYERS = tuple(f"blocks.{i}" for i in range(1, 7))

Say = Callable[[str], None]


def parse_method(spec: str) -> tuple[str, int, float]:
    """``PARAM:ITERS[:LR_SCALE]`` → (param, iters, lr scale); ``fast`` is the style of that name."""
    parts = spec.strip().split(":")
    try:
        if len(parts) not in (2, 3):
            raise ValueError
        param, iters, lr = parts[0], int(parts[1]), float(parts[2]) if len(parts) == 3 else 1.0
    except ValueError:
        raise PreimageError(f"a method is PARAM:ITERS[:LR_SCALE], e.g. fast:120 or pixel:350; got '{spec}'",
                            param="methods") from None
    if iters < 1 or not lr > 0:
        raise PreimageError(f"a method's iterations must be at least 1 and its rate scale positive; got '{spec}'",
                            param="methods")
    return param, iters, lr


def method_key(param: str, iters: int, lr: float) -> str:
    return f"{param}:{iters}" + (f":{lr:g}" if lr != 1 else "")


def image_specs(images: int | str | Sequence[str]) -> list[str]:
    """The images to invert: a count of bundled colour samples (the tuning set), ``heldout`` or ``heldout:N``
    (all or the first N held-out photographs, the reporting set), ``heldout2[:N]`` (the second held-out set,
    ``heldout.FILES2``), or paths (a list, or one comma-separated
    string)."""
    if isinstance(images, str) and images.strip().isdigit():
        images = int(images)
    if isinstance(images, int):
        if not 1 <= images <= len(COLOR_SAMPLES):
            raise PreimageError(f"images must be between 1 and {len(COLOR_SAMPLES)} (the bundled colour samples), "
                                f"'heldout[:N]', 'heldout2[:N]' or paths; got {images}", param="images")
        return [f"sample:{s}" for s in COLOR_SAMPLES[:images]]
    from .heldout import IMAGE_SETS, heldout_images

    name = images.strip().split(":")[0] if isinstance(images, str) else ""
    if name in IMAGE_SETS:
        files = IMAGE_SETS[name][0]
        n = images.strip().split(":", 1)[1] if ":" in images else str(len(files))
        if not n.isdigit() or not 1 <= int(n) <= len(files):
            raise PreimageError(f"images: '{name}:N' takes N from 1 to {len(files)}; got '{images}'",
                                param="images")
        return heldout_images(name=name)[:int(n)]
    paths = [p.strip() for p in (images.split(",") if isinstance(images, str) else images) if p.strip()]
    missing = [p for p in paths if not p.startswith("sample:") and not Path(p).is_file()]
    if not paths or missing:
        raise PreimageError(f"images: give a count of bundled samples (1-{len(COLOR_SAMPLES)}), 'heldout[:N]', "
                            f"'heldout2[:N]' or image files; got '{missing[0] if missing else images}'", param="images")
    return paths


def time_to_quality(model: str = "efficientnet_lite0", layers: Sequence[str] = LITE0_LAYERS,
                    images: int | str | Sequence[str] = 8,
                    methods: Sequence[str] = METHODS, *, size: int | None = None, C: float = 100.0,
                    weights: str | None = None, random_weights: bool = False, store: Store | None = None,
                    force: bool = False, say: Say = lambda m: None,
                    on_row: Callable[[dict], None] = lambda r: None) -> dict[str, Any]:
    """One row per layer: for each method, the median error over ``images`` (``image_specs``: bundled colour
    samples by default) and each image's error, and the seconds. ``pixel``/``pyramid``/``fourier``/``maco`` run
    the model's paper schedule (300+50 for CNNs) scaled to ITERS (its rate × LR_SCALE); ``fast`` runs the style
    with its own stages.
    ``fast_le_paper`` compares the first fast method with the first pixel one.

    Each (layer, method) is one job of a sweep (``preimage.sweep``) kept in ``store`` (default: a temporary
    one), so a rerun into the same store computes only what is missing (all of it with ``force``); the seconds
    are those of the run that computed the result."""
    specs = tuple(image_specs(images))
    parsed = [parse_method(m) for m in methods]
    if not parsed:
        raise PreimageError("methods: give at least one, e.g. fast:120,pixel:350", param="methods")
    if not layers:
        raise PreimageError("layers: give at least one layer", param="layers")
    rows = []
    with contextlib.ExitStack() as stack:
        if store is None:
            store = Store(stack.enter_context(tempfile.TemporaryDirectory(prefix="preimage-quality-")))
        for layer in layers:
            rep = load(model, layer, weights=weights, random_weights=random_weights)
            m = Model(rep.spec)
            row: dict[str, Any] = {"layer": layer}
            for param, iters, lr in parsed:
                opts: dict[str, Any] = {"C": [C], **({"size": size} if size else {})}
                if param == "fast":
                    opts |= {"style": "fast", "iters": iters}
                else:
                    base = scale_schedule(task_defaults(rep.spec).schedule, iters)
                    opts |= {"param": param,
                             "schedule": schedule_record([replace(s, lr_scale=s.lr_scale * lr) for s in base])}
                job = Job("invert", m.id, layer, images=specs, options=opts)
                rec = run_sweep([job], {m.id: m}, store, LocalBackend(strict=True), batch=len(specs),
                                recompute=force).records[job.key]
                err = [float(p["error"]) for p in rec["result"]["problems"]]
                key = method_key(param, iters, lr)
                row[key] = {"median_error": statistics.median(err), "errors": err,
                            "seconds": rec["result"].get("seconds", 0.0)}
                say(f"{layer or 'output'} {key}: median error {100 * row[key]['median_error']:.1f}% "
                    f"({row[key]['seconds']:.0f} s)")
            fast = next((method_key(*m) for m in parsed if m[0] == "fast"), None)
            paper = next((method_key(*m) for m in parsed if m[0] == "pixel"), None)
            if fast and paper:
                row["fast_le_paper"] = row[fast]["median_error"] <= row[paper]["median_error"]
            rows.append(row)
            on_row(row)
    return {"model": model, "images": list(specs), "C": C, "methods": [method_key(*m) for m in parsed],
            "rows": rows}


def markdown(info: dict[str, Any]) -> str:
    """The table: median error (%) per layer and method, with the seconds of all layers."""
    keys = info["methods"]
    what = "bundled colour samples" if all(i.startswith("sample:") for i in info["images"]) else "images"
    lines = [f"{info['model']}, {len(info['images'])} {what}, C={info['C']:g}: median IJCV error (%)",
             "", "| layer | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    rows = info["rows"]
    for r in rows:
        lines.append(f"| {r['layer']} | " + " | ".join(f"{100 * r[k]['median_error']:.1f}" for k in keys) + " |")
    lines.append("| median over layers | " + " | ".join(
        f"{100 * statistics.median(r[k]['median_error'] for r in rows):.1f}" for k in keys) + " |")
    lines.append("| seconds (all layers) | " + " | ".join(f"{sum(r[k]['seconds'] for r in rows):.0f}" for k in keys)
                 + " |")
    return "\n".join(lines)


__all__ = ["LITE0_LAYERS", "METHODS", "image_specs", "markdown", "parse_method", "time_to_quality"]
