"""The atlas: every unit of every layer of a network, as a static site.

For every unit: its activation-maximization images (channel mode, two restarts, in the best style this
installation has) and its top-9 dataset examples from a folder of images (``measures.examples``). For every
layer: inversions and caricatures of a few of the images. All of it is one sweep (``run_sweep``), so it runs in
this process or on a Ray cluster, and a rerun computes only what is missing; the pages are written from the
stored results every time (``report.site.write_atlas``). ``manifest.json`` lists every artefact.

Site layout: ``index.html``, ``layers/<layer>/index.html``, ``layers/<layer>/<unit>.html``,
``originals/``, ``store/`` (the results, by key), ``manifest.json``, ``atlas.json``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import PreimageError
from ..images import list_images, load_image, safe_name, save_png, unique_names
from ..measures.stats import load_stats
from ..report import check_folder, write_json
from ..report import site as pages
from ..report.store import Store
from ..representations import ModelSpec, Representation, model_spec
from ..representations.base import model_id
from ..representations.geometry import Geometry, measure_geometry
from ..representations.hooks import one_module
from ..representations.layers import main_layers
from ..representations.points import response_point
from ..sweep import Job, LocalBackend, Model, RayBackend, SweepResult, run_sweep
from ..sweep.run import SweepProgress
from ..tasks.activation import MAXIMIZE_STYLE, check_options
from ..tasks.common import check_count

THUMBNAIL = 64
EXAMPLES = 9
CHECK_K = 5  # exemplars per unit for the trust check
MARKER = "atlas.json"

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


def best_style() -> dict[str, Any]:
    """Extra ``maximize`` options for the most natural pre-images: ``maximize``'s default style, the one chosen
    on a judge network on the tuning classes (``tasks.activation.MAXIMIZE_STYLE``), named so that it is in the
    keys."""
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
    if one_module(spec.module):
        out = measure_geometry(spec.module, {"output": None}, spec.channels, spec.input_size or (224, 224))["output"]
        raise PreimageError(f"{spec.name} is one module, with no layers inside to lay out; see its output's units "
                            f"with 'preimage maximize --model {spec.name} --unit 0-{out.shape[0] - 1}'", param="model")
    explicit = bool(layers)
    names = list(layers) if layers else main_layers(spec)
    if any(not isinstance(n, str) or not n.strip() for n in names):
        raise PreimageError("layers must be module names (see 'preimage layers'), or all", param="layers")
    resolved = [Representation(spec, n).layer for n in names]  # unknown layer: one clear line
    if None in resolved:
        raise PreimageError("the atlas shows layers of a network; 'output' is not one (name its last layer)",
                            param="layers")
    mods = dict(spec.module.named_modules())
    geo = measure_geometry(spec.module, {n: mods[n] for n in resolved}, spec.channels,
                           spec.input_size or (224, 224))
    plans, notes = [], []
    for n in dict.fromkeys(resolved):
        g = geo[n]
        if len(g.shape) not in (1, 3):
            if explicit:
                raise PreimageError(f"layer '{n}' outputs {'×'.join(map(str, g.shape)) or 'no tensor'} per image: "
                                    "no channel axis, so no units to show", param="layers")
            continue
        width = g.shape[0]
        chosen = [u for u in units if 0 <= u < width] if units is not None else list(range(width))
        if units is not None and len(chosen) < len(units):
            notes.append(f"note: layer {n} has {width} units; showing {len(chosen)} of those asked for")
        if chosen:
            plans.append(LayerPlan(n, g, type(mods[n]).__name__, chosen))
    if not plans:
        raise PreimageError("no layer has any of the units asked for" if units is not None else
                            "the network has no layer with a channel axis", param="units")
    for note in notes:
        log(note)
    return plans


def _claim(out: Path, model_id: str, force: bool) -> None:
    """Refuse a folder that holds something else: files that are not an atlas, or another model's atlas."""
    check_folder(out)
    marker = out / MARKER
    if force or not out.exists():
        return
    if marker.is_file():
        try:
            prev = json.loads(marker.read_text()).get("model_id")
        except (OSError, ValueError):
            prev = None
        if prev not in (None, model_id):
            raise PreimageError(f"{out} holds the atlas of another model or weights ({prev}); use another out, "
                                "or force to write over its pages", param=("out", "force"))
    elif any(p.name != "store" and not p.name.startswith(".") for p in out.iterdir()):
        raise PreimageError(f"{out} exists and is not an atlas; use another out, or force to write into it",
                            param=("out", "force"))


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
    check: bool = False  # score every unit's pictures with the trust check (``tasks.check``)
    specs: list[str] = field(default_factory=list)  # the images, for the check's exemplars

    def all_jobs(self) -> list[Job]:
        return [j for group in self.jobs.values() for j in group]


def plan_atlas(model: str | ModelSpec = "efficientnet_lite0", out: str | Path = "preimage-atlas", *,
               layers: Sequence[str] | None = None, units: Sequence[int] | None = None,
               images: str | Sequence[str] = "samples", iters: int | None = None, restarts: int = 2,
               mode: str = "channel", unit_size: int | None = None, size: int | None = None,
               inversions: int = 3, seed: int = 0, style: dict[str, Any] | None = None, force: bool = False,
               device: str = "cpu", weights: str | None = None, random_weights: bool = False,
               store: Store | None = None, check: bool = False, log: Log = _stderr) -> AtlasPlan:
    """Check the inputs, load the model, and list the atlas's jobs (see ``run_atlas`` for the options;
    store: where results go, default ``out/store``)."""
    check_options(restarts)
    inversions = check_count(inversions, "inversions", 0, 100)
    if mode not in ("channel", "neuron"):
        raise PreimageError(f"unknown mode {mode!r} (choose channel or neuron)", param="mode")
    specs, skipped = list_images(images, log)  # a missing folder fails before the model loads
    if check and (mode != "channel" or len(specs) < CHECK_K + 2):
        raise PreimageError(f"check needs channel mode and at least {CHECK_K + 2} images ({CHECK_K} exemplars per "
                            f"unit and a baseline); got mode {mode!r} and {len(specs)} images", param="check")
    spec = model_spec(model, weights=weights, random_weights=random_weights)
    side = size or (spec.input_size or (224, 224))[0]
    plans = plan_layers(spec, layers, units, log)
    out = Path(out)
    mid = model_id(spec)
    _claim(out, mid, force)
    stats = load_stats(spec)
    points = [response_point(Representation(spec, p.name))[1] for p in plans]
    if any(pt not in stats.points for pt in points):
        stats = load_stats(spec, recompute=True)
    m = Model(spec, device, stats, id=mid, geometry={p.name: p.geometry for p in plans})
    write_json(out / MARKER, {"model": spec.name, "weights": spec.weights_id, "model_id": m.id,
                              "started": time.strftime("%Y-%m-%d %H:%M:%S")})
    shown = specs[:inversions]
    for s in shown:  # an image that cannot be decoded fails here, before any work
        load_image(s, side, channels=spec.channels)

    style = best_style() if style is None else dict(style)
    common = {"seed": seed, "thumbnail": THUMBNAIL} | ({"iters": iters} if iters else {})
    act = common | {"restarts": restarts} | ({"size": unit_size} if unit_size else {}) | style
    jobs: dict[str, list[Job]] = {"maximize": [], "examples": [], "invert": [], "caricature": []}
    for p in plans:
        jobs["maximize"] += [Job("maximize", m.id, p.name, (f"{mode}:{p.name}:{u}",), options=act) for u in p.units]
        jobs["examples"].append(Job("examples", m.id, p.name, images=tuple(specs),
                                    options={"size": side, "k": EXAMPLES, "thumbnail": THUMBNAIL}))
        jobs["invert"] += [Job("invert", m.id, p.name, images=(s,), options=common | {"size": side})
                           for s in shown]
        jobs["caricature"] += [Job("caricature", m.id, p.name, images=(s,), options=common | {"size": side})
                               for s in shown]
    plan = AtlasPlan(out, m, plans, jobs, shown, side, mode, len(specs), store or Store(out / "store"), check,
                     list(specs))
    log(f"atlas: {spec.name}, {len(plans)} layers, {len(jobs['maximize'])} units, {len(specs)} images"
        f"{f' ({len(skipped)} skipped)' if skipped else ''}; {len(plan.all_jobs())} jobs")
    return plan


def finish_atlas(plan: AtlasPlan, result: SweepResult, seconds: float) -> dict[str, Any]:
    """Write the site from a sweep's results (which may hold other jobs too)."""
    own = result.subset([j.key for j in plan.all_jobs()])
    info = pages.write_atlas(plan.out, site_data(plan, own), plan.store)
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




def site_data(plan: AtlasPlan, result: SweepResult) -> dict[str, Any]:
    """What the site shows, as plain data (``report.site.write_atlas``): per layer its facts and, for every unit,
    inversion, caricature and the dataset examples, the stored record's key and record, or the failure."""
    failed = {f.key: f.error for f in result.failures}

    def entry(job: Job) -> dict[str, Any]:
        return {"key": job.key, "record": result.records.get(job.key), "failed": failed.get(job.key)}

    by = {(j.task, j.layer, j.units[0] if j.units else (j.images[0] if j.task != "examples" else None)): j
          for group in plan.jobs.values() for j in group}
    spec = plan.model.spec
    originals = {}
    for s, name in zip(plan.shown, unique_names(plan.shown), strict=True):
        originals[s] = save_png(load_image(s, plan.side, channels=spec.channels)[0],
                                plan.out / "originals" / f"{name}.png", "clip")
    layers = []
    for p in plan.layers:
        g = p.geometry
        layers.append({
            "name": p.name, "slug": p.slug, "type": p.type, "shape": list(g.shape),
            "stride": list(g.stride) if g.stride else None,
            "receptive_field": list(g.receptive_field) if g.receptive_field else None,
            "global_field": g.global_field, "width": g.shape[0],
            "examples": entry(by[("examples", p.name, None)]),
            "shown": [{"image": s, "original": str(originals[s]), "invert": entry(by[("invert", p.name, s)]),
                       "caricature": entry(by[("caricature", p.name, s)])} for s in plan.shown],
            "units": [{"unit": u, **entry(by[("maximize", p.name, f"{plan.mode}:{p.name}:{u}")])} for u in p.units]})
        if plan.check:
            verdicts = layer_check(plan, p.name, layers[-1]["units"])
            for e in layers[-1]["units"]:
                e["check"] = verdicts.get(e["unit"])
    return {"model": spec.name, "weights": spec.weights_id, "model_id": plan.model.id, "mode": plan.mode,
            "side": plan.side, "images": plan.n_images, "examples": EXAMPLES, "layers": layers,
            "jobs": result.counts, "failures": [vars(f) for f in result.failures],
            "failure_lines": [f.line() for f in result.failures]}


def layer_check(plan: AtlasPlan, layer: str, units: Sequence[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """The trust check (``tasks.check``) of a layer's stored pictures against the atlas's images: per unit
    {flagged (any of its pictures), reason, pictures: one record per restart}. Units without pictures are left
    out."""
    import torch

    from ..report.result import Result
    from ..tasks.check import check

    pics, problems = [], []
    for e in units:
        rec = e.get("record")
        for q in (rec["result"]["problems"] if rec else []):
            pics.append(load_image(str(plan.store.file(e["key"], q["png"])), channels=plan.model.spec.channels))
            problems.append({"unit": e["unit"], "restart": q.get("restart", 0)})
    if not pics:
        return {}
    done = sorted({q["unit"] for q in problems})
    given = Result(torch.cat(pics), problems, {}, plan.model.spec.name, layer, 0, 0.0, torch.zeros(0))
    c = check(plan.model.spec, (layer, done), plan.specs, given, k=CHECK_K, image_size=plan.side)
    out: dict[int, dict[str, Any]] = {}
    for q, r in zip(problems, c.records(), strict=True):
        v = out.setdefault(q["unit"], {"flagged": False, "reason": "", "pictures": []})
        v["pictures"].append({**r, "restart": q["restart"]})
        if r["flagged"] and not v["flagged"]:
            v["flagged"], v["reason"] = True, f"restart {q['restart']}: {r['reason']}"
    return out
