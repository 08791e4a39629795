"""The atlas: every unit of every layer of a network, as a static site.

For every unit: its activation-maximization images (channel mode, two restarts, in the best style this
installation has) and its top-9 dataset examples from a folder of images (``examples``). For every layer:
inversions and caricatures of a few of the images. All of it is one sweep (``run_sweep``), so it runs in
this process or on a Ray cluster, and a rerun computes only what is missing; the pages are written from the
stored results every time (``report.site``). ``manifest.json`` lists every artefact.

Site layout: ``index.html``, ``layers/<layer>/index.html``, ``layers/<layer>/<unit>.html``,
``originals/``, ``store/`` (the results, by key), ``manifest.json``, ``atlas.json``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import PreimageError
from ..images import image_name, list_images, load_image, safe_name, save_png, unique_names
from ..measures.stats import load_stats
from ..report import site as pages
from ..report import write_json
from ..representations import ModelSpec, Representation, load
from ..representations.base import Geometry, measure_geometry
from ..representations.layers import main_layers
from .backends import LocalBackend, RayBackend
from .jobs import Job, Model, weights_digest
from .run import SweepProgress, SweepResult, run_sweep
from .store import Store

THUMBNAIL = 64
EXAMPLES = 9
MARKER = "atlas.json"

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


def best_style() -> dict[str, Any]:
    """Extra ``maximize`` options for the most natural pre-images: ``maximize``'s default style, the one that
    measured best on a judge network (``tasks.activation.MAXIMIZE_STYLE``), named so that it is in the keys."""
    from ..tasks.activation import MAXIMIZE_STYLE

    return {"style": MAXIMIZE_STYLE}


@dataclass
class LayerPlan:
    """One layer of the atlas: its name, measured geometry, module type and the units to show."""

    name: str
    geometry: Geometry
    type: str
    units: list[int]

    @property
    def slug(self) -> str:
        return safe_name(self.name)


def plan_layers(spec: ModelSpec, layers: Sequence[str] | None, units: Sequence[int] | None,
                log: Log = _stderr) -> list[LayerPlan]:
    """The layers (default: the network's main ones with a channel axis) with their geometry (measured at
    the model's default size, as ``Representation.geometry``) and units (default: all; units past a layer's
    width are left out of that layer). Clear errors for unknown layers,
    a named layer without channels, or units that no layer has."""
    explicit = bool(layers)
    names = list(layers) if layers else main_layers(spec)
    resolved = [Representation(spec, n).layer for n in names]  # unknown layer: one clear line
    if None in resolved:
        raise PreimageError("the atlas shows layers of a network; 'output' is not one (name its last layer)")
    mods = dict(spec.module.named_modules())
    geo = measure_geometry(spec.module, {n: mods[n] for n in resolved}, spec.channels,
                           spec.defaults.size or (224, 224))
    plans, notes = [], []
    for n in dict.fromkeys(resolved):
        g = geo[n]
        if len(g.shape) not in (1, 3):
            if explicit:
                raise PreimageError(f"layer '{n}' outputs {'×'.join(map(str, g.shape)) or 'no tensor'} per image: "
                                    "no channel axis, so no units to show")
            continue
        width = g.shape[0]
        chosen = [u for u in units if 0 <= u < width] if units is not None else list(range(width))
        if units is not None and len(chosen) < len(units):
            notes.append(f"note: layer {n} has {width} units; showing {len(chosen)} of those asked for")
        if chosen:
            plans.append(LayerPlan(n, g, type(mods[n]).__name__, chosen))
    if not plans:
        raise PreimageError("no layer has any of the units asked for" if units is not None else
                            "the network has no layer with a channel axis")
    for note in notes:
        log(note)
    return plans


def _claim(out: Path, model_id: str, force: bool) -> None:
    """Refuse a folder that holds something else: files that are not an atlas, or another model's atlas."""
    if out.exists() and not out.is_dir():
        raise PreimageError(f"output path {out} exists and is not a folder")
    marker = out / MARKER
    if force or not out.exists():
        return
    if marker.is_file():
        try:
            prev = json.loads(marker.read_text()).get("model_id")
        except (OSError, ValueError):
            prev = None
        if prev not in (None, model_id):
            raise PreimageError(f"{out} holds the atlas of another model or weights ({prev}); use another --out, "
                                "or --force to write over its pages")
    elif any(p.name != "store" for p in out.iterdir()):
        raise PreimageError(f"{out} exists and is not an atlas; use another --out, or --force to write into it")


@dataclass
class AtlasPlan:
    """What an atlas computes (its jobs, by kind) and what its site needs to be written."""

    out: Path
    model: Model
    layers: list[LayerPlan]
    jobs: dict[str, list[Job]]
    shown: list[str]
    side: int
    mode: str
    n_images: int
    store: Store

    def all_jobs(self) -> list[Job]:
        return [j for group in self.jobs.values() for j in group]


def plan_atlas(model: str | ModelSpec = "efficientnet_lite0", out: str | Path = "preimage-atlas", *,
               layers: Sequence[str] | None = None, units: Sequence[int] | None = None,
               images: str | Sequence[str] = "samples", iters: int | None = None, restarts: int = 2,
               mode: str = "channel", unit_size: int | None = None, size: int | None = None,
               inversions: int = 3, seed: int = 0, style: dict[str, Any] | None = None, force: bool = False,
               device: str = "cpu", weights: str | None = None, random_weights: bool = False,
               store: Store | None = None, log: Log = _stderr) -> AtlasPlan:
    """Check the inputs, load the model, and list the atlas's jobs (see ``run_atlas`` for the options;
    store: where results go, default ``out/store``)."""
    if restarts < 1:
        raise PreimageError("--restarts must be at least 1")
    if inversions < 0:
        raise PreimageError("--inversions must be 0 or more")
    from ..tasks.activation import check_options, response_point

    check_options(mode, restarts)
    specs, skipped = list_images(images, log)  # a missing folder fails before the model loads
    spec = model if isinstance(model, ModelSpec) else \
        load(model, None, weights=weights, random_weights=random_weights).spec
    side = size or (spec.defaults.size or (224, 224))[0]
    plans = plan_layers(spec, layers, units, log)
    out = Path(out)
    model_id = f"{spec.name}@{weights_digest(spec)}"
    _claim(out, model_id, force)
    stats = load_stats(spec)
    points = [response_point(Representation(spec, p.name))[1] for p in plans]
    if any(pt not in stats.points for pt in points):
        stats = load_stats(spec, recompute=True)
    m = Model(spec, device, stats, id=model_id, geometry={p.name: p.geometry for p in plans})
    write_json(out / MARKER, {"model": spec.name, "weights": spec.weights_id, "model_id": m.id,
                              "started": time.strftime("%Y-%m-%d %H:%M:%S")})

    style = best_style() if style is None else dict(style)
    common = {"seed": seed, "thumbnail": THUMBNAIL} | ({"iters": iters} if iters else {})
    act = common | {"mode": mode, "restarts": restarts} | ({"size": unit_size} if unit_size else {}) | style
    shown = specs[:inversions]
    jobs: dict[str, list[Job]] = {"maximize": [], "examples": [], "invert": [], "caricature": []}
    for p in plans:
        jobs["maximize"] += [Job("maximize", m.id, p.name, (u,), options=act) for u in p.units]
        jobs["examples"].append(Job("examples", m.id, p.name, images=tuple(specs),
                                    options={"size": side, "k": EXAMPLES, "thumbnail": THUMBNAIL}))
        jobs["invert"] += [Job("invert", m.id, p.name, images=(s,), options=common | {"size": side})
                           for s in shown]
        jobs["caricature"] += [Job("caricature", m.id, p.name, images=(s,), options=common | {"size": side})
                               for s in shown]
    plan = AtlasPlan(out, m, plans, jobs, shown, side, mode, len(specs), store or Store(out / "store"))
    log(f"atlas: {spec.name}, {len(plans)} layers, {len(jobs['maximize'])} units, {len(specs)} images"
        f"{f' ({len(skipped)} skipped)' if skipped else ''}; {len(plan.all_jobs())} jobs")
    return plan


def finish_atlas(plan: AtlasPlan, result: SweepResult, seconds: float) -> dict[str, Any]:
    """Write the site from a sweep's results (which may hold other jobs too)."""
    own = result.subset([j.key for j in plan.all_jobs()])
    info = write_site(plan.out, plan.model.spec, plan.model.id, plan.layers, plan.jobs, own, plan.store, plan.shown,
                      plan.side, plan.mode, plan.n_images)
    info["seconds"] = round(seconds, 1)
    spec = plan.model.spec
    write_json(plan.out / MARKER, {"model": spec.name, "weights": spec.weights_id, "model_id": plan.model.id,
                                   "jobs": own.counts, "seconds": info["seconds"]})
    return info


def run_atlas(model: str | ModelSpec = "efficientnet_lite0", out: str | Path = "preimage-atlas", *,
              batch: int = 16, backend: LocalBackend | RayBackend | None = None,
              progress: SweepProgress | None = None, log: Log = _stderr, **options: Any) -> dict[str, Any]:
    """Compute (or complete) the atlas of ``model`` and write its site into ``out``.

    options (``plan_atlas``): layers: module names (default: the main layers with a channel axis); units:
    channel indices (default: all); images: a folder, ``samples`` or a list, for the dataset examples and the
    inversions; iters: iterations of every optimization (default: each task's, the natural style's 64 for maximization);
    restarts, mode: of the maximization (default: 2 restarts of the channel's mean, Lucid's convention);
    unit_size: the maximization's input side (default: from the receptive field, ``unit_image_size``); size:
    input side of the examples, inversions and caricatures (default: the model's); inversions: how many of the
    images are inverted and caricatured at every layer; style: extra maximize options (default:
    ``best_style()``); seed, force, device, weights, random_weights. batch: problems per batch; backend: local
    (default) or Ray. Returns {out, page, model, layers, jobs{total, done, cached, failed}, failures, seconds}.
    """
    t0 = time.perf_counter()
    plan = plan_atlas(model, out, log=log, **options)
    result = run_sweep(plan.all_jobs(), {plan.model.id: plan.model}, plan.store, backend, batch, progress)
    for f in result.failures:
        log(f"failed: {f.line()}")
    return finish_atlas(plan, result, time.perf_counter() - t0)


def _rel(target: Path, start: Path) -> str:
    return Path(os.path.relpath(target, start)).as_posix()


def _fmt(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, (int, float)) else str(v)


def write_site(out: Path, spec: ModelSpec, model_id: str, plans: list[LayerPlan], jobs: dict[str, list[Job]],
               result: SweepResult, store: Store, shown: list[str], side: int, mode: str,
               n_images: int) -> dict[str, Any]:
    """Write every page and ``manifest.json`` from the sweep's records (failed jobs show their error)."""
    failed = {f.key: f.error for f in result.failures}
    by = {(j.task, j.layer, j.units[0] if j.units else (j.images[0] if j.task != "examples" else None)): j
          for group in jobs.values() for j in group}
    artefacts: set[str] = set()

    def use(target: Path, start: Path) -> str:
        artefacts.add(_rel(target, out))
        return _rel(target, start)

    originals = {}
    for s, name in zip(shown, unique_names(shown), strict=True):
        path = save_png(load_image(s, side)[0], out / "originals" / f"{name}.png", "clip")
        originals[s] = path
    rows, manifest_layers = [], []
    for li, p in enumerate(plans):
        folder = out / "layers" / p.slug
        g = p.geometry
        width = g.shape[0]
        ex_job = by[("examples", p.name, None)]
        ex = result.records.get(ex_job.key)
        ex_units = ex["result"]["units"] if ex else {}
        figs: list[tuple[str, str]] = []
        notes = []
        man_inv, man_car = [], []
        for s in shown:
            figs.append((use(originals[s], folder), f"{image_name(s)} ({side} px)"))
            for task, label, man in (("invert", "inversion", man_inv), ("caricature", "caricature", man_car)):
                job = by[(task, p.name, s)]
                rec = result.records.get(job.key)
                if rec is None:
                    notes.append(f"{label} of {image_name(s)} failed: {failed.get(job.key, 'not computed')}")
                    man.append({"image": s, "failed": failed.get(job.key, "not computed")})
                    continue
                prob = rec["result"]["problems"][0]
                if task == "invert":
                    caption = f"inversion: error {100 * prob['error']:.1f}%"
                else:
                    caption = f"caricature: score ×{prob['score_end'] / prob['score_start']:.2f}"
                figs.append((use(store.file(job.key, prob["png"]), folder), caption))
                man.append({"image": s, "file": _rel(store.file(job.key, prob["png"]), out),
                            **{k: prob[k] for k in ("error", "score_start", "score_end") if k in prob}})
        cells, man_units = [], []
        for k, u in enumerate(p.units):
            job = by[("maximize", p.name, u)]
            rec = result.records.get(job.key)
            page = folder / f"{u}.html"
            thumb = use(store.file(job.key, "thumb.png"), folder) if rec else None
            cells.append({"href": f"{u}.html", "thumb": thumb, "label": str(u), "failed": rec is None})
            probs = rec["result"]["problems"] if rec else []
            pre = [(use(store.file(job.key, q["png"]), folder),
                    f"restart {q['restart']}: activation {_fmt(q['activation'])} ({q['ratio']:.2f}× M_c)")
                   for q in probs]
            exu = ex_units.get(str(u))
            examples = None
            stats_rows: list[tuple[str, str]] = [("unit", f"{u} of {width} channels"),
                                                 ("layer output", "×".join(map(str, g.shape)))]
            hist = None
            if exu:
                field = ex["result"]["field"]
                examples = {"src": use(store.file(ex_job.key, exu["sprite"]), folder),
                            "rows": [[i + 1, e["name"], _fmt(e["activation"])] for i, e in enumerate(exu["examples"])],
                            "note": f"The {len(exu['examples'])} of {ex['result']['images']} images where the unit "
                                    "responds most, each cropped to the receptive field "
                                    + (f"({field[0]}×{field[1]} px) " if field else "(the whole image) ")
                                    + f"around its strongest neuron, at {side} px."}
                stats_rows += [("response", ex["result"]["point"]),
                               ("max over the images", _fmt(exu["max"])),
                               ("mean ± std over all positions", f"{_fmt(exu['mean'])} ± {_fmt(exu['std'])}")]
                marks = [(f"pre-image {_fmt(probs[0]['activation'])}", probs[0]["activation"])] \
                    if probs and mode == "neuron" else []
                hist = dict(exu["per_image_max"], marks=marks)
            if probs:
                stats_rows += [(f"pre-image activation ({mode})", ", ".join(_fmt(q["activation"]) for q in probs)),
                               ("reference max M_c (normalizer)", _fmt(probs[0]["reference_max"]))]
            prev = f"{p.units[k - 1]}.html" if k > 0 else None
            nxt = f"{p.units[k + 1]}.html" if k + 1 < len(p.units) else None
            size = rec["result"]["size"][0] if rec else 0
            pages.unit_page(page, f"{spec.name} · {p.name} · unit {u}",
                            [("../../index.html", "atlas"), ("index.html", f"layer {p.name}"),
                             (prev, "← previous unit"), (nxt, "next unit →")],
                            pre, max(128, min(size, 256)), failed.get(job.key) if rec is None else None,
                            examples, stats_rows, hist)
            artefacts.add(_rel(page, out))
            man_units.append({"unit": u, "page": _rel(page, out), "failed": failed.get(job.key) if not rec else None,
                              "thumbnail": _rel(store.file(job.key, "thumb.png"), out) if rec else None,
                              "pre_images": [_rel(store.file(job.key, q["png"]), out) for q in probs],
                              "activation": [q["activation"] for q in probs],
                              "examples": _rel(store.file(ex_job.key, exu["sprite"]), out) if exu else None,
                              "stats": {k: exu[k] for k in ("max", "mean", "std")} if exu else None})
        facts = (f"Output {'×'.join(map(str, g.shape))}, stride {_pair(g.stride)}, receptive field "
                 f"{_pair(g.receptive_field)}{' (global)' if g.global_field else ''}; {len(p.units)} of {width} "
                 f"units. Pre-images: activation maximization ({mode} mode), min–max scaled.")
        if ex is None:
            notes.append(f"dataset examples failed: {failed.get(ex_job.key, 'not computed')}")
        if notes:
            facts += " " + " ".join(notes)
        prev_l = f"../{plans[li - 1].slug}/index.html" if li > 0 else None
        next_l = f"../{plans[li + 1].slug}/index.html" if li + 1 < len(plans) else None
        lp = pages.layer_page(folder / "index.html", f"{spec.name} · {p.name}",
                              [("../../index.html", "atlas"), (prev_l, "← previous layer"), (next_l, "next layer →")],
                              facts, [("Inversions and caricatures", figs)] if figs else [], cells)
        artefacts.add(_rel(lp, out))
        rows.append({"name": p.name, "href": _rel(lp, out), "type": p.type, "shape": "×".join(map(str, g.shape)),
                     "stride": _pair(g.stride), "field": _pair(g.receptive_field) + (" (global)" if g.global_field
                                                                                       else ""),
                     "units": len(p.units), "of": width})
        manifest_layers.append({"name": p.name, "type": p.type, "shape": list(g.shape),
                                "stride": list(g.stride) if g.stride else None,
                                "receptive_field": list(g.receptive_field) if g.receptive_field else None,
                                "global_field": g.global_field, "page": _rel(lp, out),
                                "examples_failed": failed.get(ex_job.key) if ex is None else None,
                                "inversions": man_inv, "caricatures": man_car, "units": man_units})
    c = result.counts
    intro = (f"Every unit of {len(plans)} layers of {spec.name} ({spec.weights_id}): activation maximization "
             f"({mode} mode) and the top {EXAMPLES} of {n_images} dataset examples per unit; inversions and "
             f"caricatures of {len(shown)} images per layer. {c['total']} jobs: {c['done']} computed now, "
             f"{c['cached']} from earlier runs, {c['failed']} failed.")
    index = pages.index_page(out / "index.html", f"Atlas of {spec.name}", intro, rows,
                             [f.line() for f in result.failures])
    artefacts.add(_rel(index, out))
    manifest = {"model": spec.name, "weights": spec.weights_id, "model_id": model_id, "mode": mode,
                "images": n_images, "jobs": c, "failures": [vars(f) for f in result.failures],
                "layers": manifest_layers, "artefacts": sorted(artefacts | {"manifest.json"})}
    write_json(out / "manifest.json", manifest)
    return {"out": str(out), "page": str(index), "model": spec.name, "weights": spec.weights_id,
            "layers": [{"name": r["name"], "units": r["units"], "page": r["href"]} for r in rows], "jobs": c,
            "failures": [vars(f) for f in result.failures], "manifest": str(out / "manifest.json")}


def _pair(p: Sequence[int] | None) -> str:
    if not p:
        return "–"
    return str(p[0]) if p[0] == p[1] else f"{p[0]}×{p[1]}"
