"""The IJCV CNN protocol (docs/paper-notes.md §3.2) on any folder: invert every image at every layer for every C,
then report the feature-space error, the image-space error, top-1 label agreement, naturalness and the spread
across restarts, as mean ± 95% CI per (layer, C).

Resumable: every (layer, condition, image) is one job of a sweep (``preimage.sweep``), run in this process or
on Ray, its result stored atomically under the key of its whole configuration; a rerun computes only what is
missing, and refuses to write its report over another configuration's (unless ``force``).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ...engine.optimize import Energy
from ...engine.schedules import Stage, scale_schedule, schedule_record, task_defaults
from ...errors import PreimageError
from ...images import atomic_write_bytes, fingerprint, image_name, list_images, png_bytes, save_png, unique_names
from ...measures.metrics import (
    EVAL_SCALES,
    as_saved,
    classifier_for,
    mean_ci,
    mean_pairwise_distance,
    naturalness,
    top1,
)
from ...report import check_folder, html_page, write_json
from ...report.plots import metric_vs_layer
from ...report.store import Output, Store
from ...representations import ModelSpec, Representation, load
from ...representations.layers import main_layers
from ...sweep import Job, LocalBackend, Model, RayBackend, run_sweep
from ...sweep.run import SweepProgress
from ...sweep.runners import Context
from ...tasks.common import prepare_images
from ...tasks.inversion import invert

PROTOCOL = "ijcv-cnn-layers/1"
PAPER_C = (1.0, 20.0, 100.0, 300.0)
#: Defaults that finish in minutes on two CPU cores; ``paper=True`` gives the paper's 224 px and 300+50 iterations.
FAST_SIZE = 96
FAST_ITERS = 60
PAPER_ITERS = 350

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


@dataclass(frozen=True)
class Condition:
    """One column of the experiment: a data-term weight C, with or without the regularizers."""

    C: float
    regularize: bool = True

    @property
    def name(self) -> str:
        return f"C{self.C:g}" if self.regularize else f"noreg-C{self.C:g}"

    @property
    def label(self) -> str:
        return f"C={self.C:g}" if self.regularize else f"no regularizer (C={self.C:g})"


def _normalized(obj: Any) -> Any:
    """As it reads back from JSON (tuples become lists), so stored and current configurations compare equal."""
    return json.loads(json.dumps(obj))


def _first_difference(a: dict, b: dict) -> str:
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            return f"{k}: {json.dumps(a.get(k))[:60]} on disk, {json.dumps(b.get(k))[:60]} now"
    return "?"


def _nan_to_none(v: float) -> float | None:
    return None if v != v else round(v, 6)


def check_previous(outdir: Path, config: dict[str, Any], force: bool, name: str = "cnn-layers.json") -> None:
    """Refuse, before any work, to write this run's report over another configuration's (the stored results of
    both stay); the same configuration again rewrites it from the store."""
    path = outdir / name
    if force or not path.is_file():
        return
    try:
        prev = json.loads(path.read_text()).get("config")
    except (OSError, ValueError):
        return
    if isinstance(prev, dict) and prev != config:
        raise PreimageError(f"{path} already exists from a different run ({_first_difference(prev, config)}); use "
                            "another `out`, or `force` to write this run's report there", param=("out", "force"))


def run_cnn_layers(model: str | ModelSpec = "efficientnet_lite0", images: str | Sequence[str] = "samples",
                   out: str | Path = "preimage-cnn-layers", *, layers: Sequence[str] | None = None,
                   C: Sequence[float] = PAPER_C, restarts: int = 1, size: int | None = None,
                   iters: int | None = None, paper: bool = False, noreg: bool = False, seed: int = 0,
                   batch: int = 32, eval_scale: str = "minmax", classify_size: int | None = None,
                   force: bool = False, device: str = "cpu", weights: str | None = None,
                   random_weights: bool = False, backend: LocalBackend | RayBackend | None = None,
                   progress: SweepProgress | None = None, log: Log = _stderr) -> dict[str, Any]:
    """Run (or resume) the IJCV per-layer inversion protocol and write its report into ``out``.

    model: a name or a ModelSpec. images: a folder, ``samples`` or a list of specs. C: data-term weights (the
    paper's 1, 20, 100, 300).
    noreg: add the no-regularizer baseline (C=1, λ=0, no jitter, no bound; docs/paper-notes.md §1.5). size/iters:
    default 96 px and 60 iterations (300+50 scaled), or the paper's with ``paper=True``. eval_scale: how the
    pre-image is turned into the evaluated image (``minmax`` = the paper's saved PNG). Label agreement
    classifies both images resized to ``classify_size`` (default: the model's input size).

    Every (layer, condition, image) is one job of a sweep (``preimage.sweep``), ``batch`` problems at a time,
    in this process or on Ray (``backend``); results are stored under ``out/store`` by the key of their whole
    configuration, so a rerun computes only what is missing, and ``force`` only allows writing this report
    over another configuration's. Writes ``cnn-layers.json``, ``table.md``, ``plot-*.png`` and
    ``index.html``. Returns the JSON summary (keys: rows, layers, C, size, iters, images, units, files, ...).
    """
    t0 = time.perf_counter()
    if restarts < 1:
        raise PreimageError("restarts must be at least 1", param="restarts")
    if batch < 1:
        raise PreimageError("batch must be at least 1", param="batch")
    if eval_scale not in EVAL_SCALES:
        raise PreimageError(f"unknown evaluation scaling '{eval_scale}' (use {', '.join(EVAL_SCALES)})",
                            param="eval_scale")
    if not C and not noreg:
        raise PreimageError("give at least one C value", param="C")
    base = load(model, "output", weights=weights, random_weights=random_weights, device=device)
    spec = base.spec
    # A representation without layers (HOG, DSIFT) is swept at its output only.
    layer_names: list[str | None] = list(layers) if layers else (main_layers(spec) or [None])
    reps = [Representation(spec, name or "output") for name in layer_names]  # unknown layer: fail before work
    layer_names = [r.layer or "output" for r in reps]
    if len(set(layer_names)) != len(layer_names):
        raise PreimageError("layers names the same layer twice", param="layers")

    if size is None:
        size = (spec.input_size or (224, 224))[0] if paper else FAST_SIZE
    if iters is None:
        iters = PAPER_ITERS if paper else FAST_ITERS
    schedule = scale_schedule(task_defaults(spec).schedule, iters)
    conditions = [Condition(float(c)) for c in C] + ([Condition(1.0, regularize=False)] if noreg else [])
    if len({c.name for c in conditions}) != len(conditions):
        raise PreimageError("C lists the same value twice", param="C")

    specs, skipped = list_images(images, log)
    names = unique_names(specs)
    img, _, _ = prepare_images(base, specs, size)
    classifier = classifier_for(base)
    cls_size = classify_size or (spec.input_size[0] if spec.input_size else size)
    normalizer = mean_pairwise_distance(img) if len(specs) > 1 else None

    outdir = check_folder(out)
    config = _normalized({"protocol": PROTOCOL, "model": spec.name, "weights": spec.weights_id, "size": [size, size],
                          "iters": iters, "schedule": schedule_record(schedule),
                          "seed": seed, "optimizer": "paper", "restarts": restarts, "eval_scale": eval_scale,
                          "classify_size": cls_size, "layers": layer_names, "C": [float(c) for c in C],
                          "noreg": noreg, "images": [fingerprint(s) for s in specs]})
    check_previous(outdir, config, force)
    m = Model(spec, device)
    jobs: dict[tuple[int, str, int], Job] = {}
    for li, name in enumerate(layer_names):
        for cond in conditions:
            sched = schedule if cond.regularize else tuple(Stage(s.iters, s.lr_scale, False) for s in schedule)
            opts = {"protocol": PROTOCOL, "C": cond.C, "regularize": cond.regularize, "restarts": restarts,
                    "size": size, "schedule": schedule_record(sched), "seed": seed,
                    "eval_scale": eval_scale, "classify_size": cls_size}
            for i, s in enumerate(specs):
                jobs[(li, cond.name, i)] = Job(PROTOCOL_TASK, m.id, None if name == "output" else name,
                                               images=(s,), options=opts)
    log(f"cnn-layers: {spec.name}, {len(specs)} images, {len(layer_names)} layers × {len(conditions)} conditions "
        f"× {restarts} restart(s) at {size} px, {iters} iterations"
        + ("" if paper or iters >= PAPER_ITERS else f" (reduced: the paper's is {PAPER_ITERS} at 224 px, --paper)")
        + f"; {len(jobs)} jobs")
    store = Store(outdir / "store")
    result = run_sweep(list(jobs.values()), {m.id: m}, store, backend, max(batch, restarts), progress)
    for f in result.failures:
        log(f"failed: {f.line()}")
    records = {k: result.records[j.key] for k, j in jobs.items() if j.key in result.records}
    rows = _summarize(layer_names, conditions, len(specs), records, names, normalizer, restarts)
    c = result.counts
    info = {"model": spec.name, "weights": spec.weights_id, "protocol": PROTOCOL, "config": config,
            "images": {"source": images if isinstance(images, str) else "list", "count": len(specs),
                       "names": names, "skipped": len(skipped), "skipped_files": skipped},
            "layers": layer_names, "C": [c.C for c in conditions if c.regularize], "noreg": noreg,
            "conditions": [c.name for c in conditions], "restarts": restarts, "size": size, "iters": iters,
            "schedule": config["schedule"], "paper": paper,
            "reduced": not (iters >= PAPER_ITERS and size >= 224), "seed": seed, "eval_scale": eval_scale,
            "classify_size": cls_size, "label_agreement": classifier is not None,
            "image_error_normalizer": _nan_to_none(normalizer) if normalizer else None,
            "jobs": {"total": c["total"], "done": c["done"], "cached": c["cached"], "failed": c["failed"]},
            "failures": [vars(f) for f in result.failures],
            "rows": rows, "out": str(outdir), "seconds": round(time.perf_counter() - t0, 1),
            "notes": ["error: ‖Φ(x)−Φ0‖/‖Φ0‖ at the end of the optimization; mean ± 1.96·std/√n over images "
                      "(restarts averaged per image first)",
                      f"pre-images are evaluated as {eval_scale}-scaled 8-bit images"
                      + (" (the paper's saved vl_imsc PNG)" if eval_scale == "minmax" else ""),
                      f"label agreement: top-1 class of the whole network on the original and the pre-image, both "
                      f"resized to {cls_size} px",
                      "image error: ‖x−x0‖ / mean distance between two different originals (Dosovitskiy & Brox)",
                      "naturalness: intersection of 18-bin gradient-orientation histograms (grey, Sobel, "
                      "magnitude-weighted)",
                      "restart spread: std over restarts of the error (the paper: of its square, from the PNG)"]}
    info["files"] = _write_report(outdir, info, img, names, conditions, records, store)
    write_json(outdir / "cnn-layers.json", info)
    return info


#: The sweep task of one (layer, condition, image) job: inversion, then the protocol's measures.
PROTOCOL_TASK = "preimage.experiments.reproduce.cnn_layers:run_protocol"


def run_protocol(ctx: Context, jobs: list[Job]) -> list[Output]:
    """The sweep runner: invert every job's image (one batch: images × restarts problems, each from its own
    noise), then evaluate the pre-images against the originals (errors, label agreement, naturalness)."""
    job = jobs[0]
    o = job.options
    rep = ctx.rep(job.model, job.layer)
    specs = [s for j in jobs for s in j.images]
    img, _, _ = prepare_images(rep, specs, o["size"])
    restarts = int(o["restarts"])
    energy = Energy(regularize=bool(o["regularize"]))
    # Each image's problems are seeded by the image itself (invert): the batch it shares does not matter.
    res = invert(rep, specs, C=[o["C"]], restarts=restarts, size=o["size"], schedule=o["schedule"], seed=o["seed"],
                 energy=energy)
    classifier = classifier_for(rep)
    labels = top1(classifier, img, o["classify_size"]) if classifier is not None else None
    rec = _evaluate(res.images, res.metrics["error"], img.repeat_interleave(restarts, 0),
                    [image_name(s) for s in specs], restarts, o["eval_scale"], classifier, o["classify_size"],
                    None if labels is None else labels.repeat_interleave(restarts))
    outputs = []
    for k in range(len(specs)):
        probs = rec[k * restarts:(k + 1) * restarts]
        files = {}
        for r, p in enumerate(probs):
            p["png"] = f"r{r}.png"
            files[p["png"]] = png_bytes(res.images[k * restarts + r], "minmax")
        outputs.append(Output({"problems": probs}, files))
    return outputs


run_protocol.batchable = True  # type: ignore[attr-defined] - jobs of one signature share a batch


@torch.no_grad()
def _evaluate(pre: torch.Tensor, error: torch.Tensor, x0: torch.Tensor, names: list[str], restarts: int,
              eval_scale: str, classifier: Representation | None, cls_size: int,
              orig_labels: torch.Tensor | None) -> list[dict[str, Any]]:
    """Per-problem metrics of one unit: pre (N·R×C×H×W) against the originals x0 (repeated per restart)."""
    ev = as_saved(pre, eval_scale).to(x0.device)
    dist = (ev.double() - x0.double()).flatten(1).norm(dim=1)
    nat = naturalness(ev, x0)
    labels = top1(classifier, ev, cls_size) if classifier is not None else None
    out = []
    for j in range(pre.shape[0]):
        name, r = names[j // restarts], j % restarts
        p = {"image": name, "restart": r, "png": f"{name}-r{r}.png", "error": round(float(error[j]), 6),
             "image_distance": round(float(dist[j]), 4), "naturalness": round(float(nat[j]), 6)}
        if labels is not None and orig_labels is not None:
            p.update(label=int(labels[j]), label_original=int(orig_labels[j]),
                     agree=bool(labels[j] == orig_labels[j]))
        out.append(p)
    return out


def _summarize(layers: list[str], conditions: list[Condition], n_images: int,
               records: dict[tuple[int, str, int], dict[str, Any]], names: list[str], normalizer: float | None,
               restarts: int) -> list[dict[str, Any]]:
    """One row per (layer, condition): mean and 95% CI over images (restarts averaged per image first)."""
    rows = []
    for li, layer in enumerate(layers):
        for cond in conditions:
            per_image: dict[str, list[dict[str, Any]]] = {}
            seconds = 0.0
            for i in range(n_images):
                rec = records.get((li, cond.name, i))
                if rec is not None:
                    per_image[names[i]] = rec["result"]["problems"]
                    seconds += rec["result"].get("seconds", 0.0)
            if not per_image:
                continue
            probs = [p for ps in per_image.values() for p in ps]

            def per_img(fn: Callable[[dict[str, Any]], float], group: dict = per_image) -> list[float]:
                return [sum(fn(p) for p in ps) / len(ps) for ps in group.values()]

            row: dict[str, Any] = {"layer": layer, "condition": cond.name, "C": cond.C,
                                   "regularize": cond.regularize, "n_images": len(per_image)}
            metrics: dict[str, list[float]] = {"error": per_img(lambda p: p["error"]),
                                               "naturalness": per_img(lambda p: p["naturalness"])}
            if normalizer:
                metrics["image_error"] = per_img(lambda p: p["image_distance"] / normalizer)
            if "agree" in probs[0]:
                metrics["label_agreement"] = per_img(lambda p: float(p["agree"]))
            if restarts > 1:
                metrics["restart_spread"] = [float(torch.tensor([p["error"] for p in ps]).std(correction=1))
                                             for ps in per_image.values() if len(ps) > 1]
            for key in ("error", "image_error", "label_agreement", "naturalness", "restart_spread"):
                m, ci = mean_ci(metrics[key]) if key in metrics else (float("nan"), float("nan"))
                row[key], row[f"{key}_ci"] = _nan_to_none(m), _nan_to_none(ci)
            row["seconds"] = round(seconds, 1)
            rows.append(row)
    return rows


def _pm(v: float | None, ci: float | None, scale: float = 1.0, digits: int = 1) -> str:
    if v is None:
        return "–"
    s = f"{v * scale:.{digits}f}"
    return s + (f" ± {ci * scale:.{digits}f}" if ci is not None else "")


def markdown_table(info: dict[str, Any]) -> str:
    """The summary as a markdown table: mean ± 95% CI per layer and C."""
    spread = info["restarts"] > 1
    head = ["layer", "C", "n", "error %", "image error", "label agreement %", "naturalness"] + \
        (["restart std %"] if spread else [])
    lines = [f"IJCV CNN protocol: {info['model']} ({info['weights']}), {info['images']['count']} images at "
             f"{info['size']} px, {info['iters']} iterations" + (" (reduced; the paper: 224 px, 300+50)"
                                                                 if info["reduced"] else "")
             + f", {info['restarts']} restart(s), evaluated on {info['eval_scale']}-scaled 8-bit images. "
             "Mean ± 95% CI (1.96·std/√n over images).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in info["rows"]:
        c = f"{r['C']:g}" if r["regularize"] else f"{r['C']:g} (no reg.)"
        cells = [r["layer"], c, str(r["n_images"]), _pm(r["error"], r["error_ci"], 100),
                 _pm(r["image_error"], r["image_error_ci"], 1, 3),
                 _pm(r["label_agreement"], r["label_agreement_ci"], 100),
                 _pm(r["naturalness"], r["naturalness_ci"], 1, 3)]
        if spread:
            cells.append(_pm(r["restart_spread"], r["restart_spread_ci"], 100, 2))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


_PLOTS = (("error", "error (%)", 100.0, "Normalized reconstruction error ‖Φ(x)−Φ0‖/‖Φ0‖"),
          ("label_agreement", "label agreement (%)", 100.0, "Top-1 label agreement with the original"),
          ("naturalness", "histogram intersection", 1.0, "Naturalness: gradient-orientation histogram intersection"),
          ("image_error", "image-space error", 1.0, "Image-space error (Dosovitskiy & Brox normalization)"),
          ("restart_spread", "std of error across restarts (%)", 100.0, "Variation across random restarts"))


def _write_report(outdir: Path, info: dict[str, Any], img: torch.Tensor, names: list[str],
                  conditions: list[Condition], records: dict[tuple[int, str, int], dict[str, Any]],
                  store: Store) -> dict[str, Any]:
    """table.md, plot-*.png, originals and index.html from the records."""
    files: dict[str, Any] = {"json": str(outdir / "cnn-layers.json"), "table": str(outdir / "table.md")}
    atomic_write_bytes(outdir / "table.md", markdown_table(info).encode())
    layers, rows, plots = info["layers"], info["rows"], []
    for key, ylabel, scale, title in _PLOTS:
        series = {}
        for cond in conditions:
            by_layer = {r["layer"]: r for r in rows if r["condition"] == cond.name}
            means = [None if by_layer.get(lay, {}).get(key) is None else by_layer[lay][key] * scale for lay in layers]
            cis = [float("nan") if by_layer.get(lay, {}).get(f"{key}_ci") is None else by_layer[lay][f"{key}_ci"]
                   * scale for lay in layers]
            if any(m is not None for m in means):
                series[cond.label] = (means, cis)
        if series:
            name = f"plot-{key.replace('_', '-')}.png"
            metric_vs_layer(outdir / name, layers, series, ylabel, f"{info['model']}: {title}")
            plots.append((name, title))
    files["plots"] = [str(outdir / p) for p, _ in plots]
    for i, name in enumerate(names):
        save_png(img[i], outdir / "originals" / f"{name}.png", "clip")
    sections: list[tuple[str, list[tuple[str, str]]]] = [("Plots", [(p, t) for p, t in plots])]
    for i, name in enumerate(names):
        for cond in conditions:
            figs = [(f"originals/{name}.png", f"original {name}")]
            for li, layer in enumerate(layers):
                rec = records.get((li, cond.name, i))
                if rec is None:
                    continue
                p = rec["result"]["problems"][0]
                agree = "" if "agree" not in p else (", same label" if p["agree"] else ", other label")
                figs.append((store.file(rec["key"], p["png"]).relative_to(outdir).as_posix(),
                             f"{layer}: error {100 * p['error']:.1f}%{agree}"))
            sections.append((f"{name}, {cond.label}", figs))
    intro = (f"Mahendran & Vedaldi's CNN inversion protocol on {info['images']['count']} images with {info['model']}: "
             f"{info['size']} px, {info['iters']} iterations per inversion"
             + (" (reduced from the paper's 224 px and 300+50)" if info["reduced"] else "")
             + ". Pre-images are shown min–max rescaled, as the paper saves them. Summary table: table.md.")
    files["page"] = str(html_page(outdir / "index.html", f"IJCV CNN protocol: {info['model']}", sections, intro))
    return files
