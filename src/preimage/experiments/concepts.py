"""``preimage concepts``: learn (or load) a dictionary of concepts on a layer and show every concept as the atlas shows
a unit: its natural pre-image, its top exemplar patches with the concept's heatmap over each exemplar image, and
its activation statistics; with the dictionary's measures (r², L0, dead concepts, two-seed stability) and each
picture's trust figures (its activation against the concept's natural maximum, its selectivity).

Everything runs as two sweeps (``sweep.run_sweep``, in this process or on Ray; a rerun computes only what the
store lacks):

1. the dictionary: one job trains it on the layer's activations over the images (``tasks.concepts.train``,
   streamed, bounded memory) and a second job with the next seed gives the stability; with ``load`` one job
   reads the file and measures it on the images instead;
2. the concepts: one job per concept maximizes ``Concept(dictionary, k)`` (``tasks.activation.maximize``), one
   job passes over the images for the exemplars and statistics of every concept. Their options name the
   dictionary's file in the store and its digest, so a new dictionary gives new keys.

Output folder: ``index.html``, ``concepts/<k>.html``, ``dictionary.safetensors`` + ``dictionary.json`` (the
dictionary, ``tasks.concepts.load`` reads it back), ``concepts.json`` (the summary), ``store/``.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import PreimageError
from ..images import list_images, load_image, png_bytes
from ..measures.concepts import matched_cosine, selectivity
from ..measures.examples import crop, crop_box, histogram, sprite
from ..measures.stats import load_stats
from ..report import check_folder, write_json
from ..report.concept_site import write_concepts
from ..report.store import Output, Store
from ..representations import ModelSpec, Representation, model_spec
from ..representations.base import model_id
from ..representations.dictionary import Dictionary, load_dictionary
from ..representations.hooks import one_module
from ..representations.points import response_point, unit_view
from ..sweep import Job, LocalBackend, Model, RayBackend, run_sweep
from ..sweep.run import SweepProgress, SweepResult
from ..sweep.runners import Context
from ..tasks.common import check_count, check_size, features
from ..tasks.concepts import METHODS, check_k, check_method, collect_rows, feature_rows, train

MARKER = "concepts.json"
THUMB = 96
TASK_FIT = f"{__name__}:run_fit"
TASK_PICTURE = f"{__name__}:run_picture"
TASK_EXEMPLARS = f"{__name__}:run_exemplars"

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


# --- runners (on the workers) -----------------------------------------------------------------------------------


def _dictionary(opts: dict[str, Any], layer: str | None) -> Dictionary:
    dic = load_dictionary(opts["dictionary"])
    if dic.digest() != opts["digest"]:
        raise PreimageError(f"the dictionary file {opts['dictionary']} changed during the run")
    dic.layer = layer
    return dic


def run_fit(ctx: Context, jobs: list[Job]) -> list[Output]:
    """Train a dictionary on the job's images (or, with option ``load``, read a file and measure it on them)."""
    out = []
    for job in jobs:
        o = dict(job.options)
        rep = ctx.rep(job.model, job.layer)
        t0 = time.perf_counter()
        if o.get("load"):
            from ..measures.concepts import measure

            dic = load_dictionary(o["load"], method=o.get("method"), top_k=o.get("top_k"))
            rows, info = collect_rows(rep, list(job.images), size=o.get("size"), max_rows=o["max_rows"],
                                      seed=o["seed"])
            if rows.shape[1] != dic.d:
                raise PreimageError(f"dictionary {o['load']} does not fit layer '{job.layer}': its encoder is K×D = "
                                    f"{dic.k}×{dic.d}, the layer has D={rows.shape[1]} channels", param="load")
            dic.figures = {**measure(dic, rows), "seconds": time.perf_counter() - t0}
            dic.config = {"source": o["load"], **info}
            dic.model, dic.layer = rep.name, rep.layer
        else:
            dic = train(rep, None, list(job.images), o["k"], method=o["method"], top_k=o.get("top_k"),
                        seed=o["seed"], size=o.get("size"), max_rows=o["max_rows"], epochs=o.get("epochs"))
        weights, side = dic.to_bytes()
        record = {"method": dic.method, "k": dic.k, "d": dic.d, "top_k": dic.top_k, "threshold": dic.threshold,
                  "digest": dic.digest(), "figures": dic.figures, "config": dic.config}
        out.append(Output(record, {"dictionary.safetensors": weights, "dictionary.json": side}))
    return out


def run_picture(ctx: Context, jobs: list[Job]) -> list[Output]:
    """The natural pre-image of each job's concept (``maximize(Concept(dictionary, k))``), with its activation,
    the concept's natural maximum, their ratio and the picture's selectivity."""
    from ..engine.targets import Concept
    from ..tasks.activation import maximize

    out = []
    for job in jobs:
        o = dict(job.options)
        rep, model = ctx.rep(job.model, job.layer), ctx.model(job.model)
        dic = _dictionary(o, rep.layer)
        k = int(job.units[0])
        kw = {key: o[key] for key in ("iters", "size", "style") if o.get(key) is not None}
        res = maximize(rep, Concept(dic, k, o.get("position", "centre")), stats=model.stats, seed=o["seed"],
                       progress=ctx.progress, **kw)
        img = res.images[:1]
        with torch.no_grad():
            codes = dic.encode(features(rep, rep.to_paper_units(img.to(rep.device_dtype()[0]))))
        sel = float(selectivity(codes.cpu(), k, "mean")[0])
        m = res.metrics
        record = {"concept": k, "activation": float(m["activation"][0]), "reference_max": float(m["reference_max"][0]),
                  "ratio": float(m["ratio"][0]), "selectivity": sel if sel == sel and sel != float("inf") else None,
                  "selectivity_inf": sel == float("inf"), "iterations": res.iterations,
                  "display": res.info.get("display", "clip")}
        scale = "minmax" if record["display"] == "minmax" else "clip"
        thumb = F.interpolate(img.float(), size=(THUMB, THUMB), mode="bilinear", antialias=True)[0]
        out.append(Output(record, {"picture.png": png_bytes(img[0], scale), "thumb.png": png_bytes(thumb, scale)}))
    return out


def _overlay(img: torch.Tensor, heat: torch.Tensor, side: int) -> torch.Tensor:
    """A C×H×W image (0–255) darkened where the h×w heatmap (≥ 0) is low and tinted red where it is high, at
    side×side. → 3×side×side."""
    x = F.interpolate(img[None].float(), size=(side, side), mode="bilinear", antialias=True)[0]
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    h = F.interpolate(heat[None, None].float(), size=(side, side), mode="bilinear", align_corners=False)[0, 0]
    h = (h / h.max().clamp_min(1e-12)).clamp(0, 1)
    red = torch.tensor([255.0, 40.0, 40.0]).view(3, 1, 1)
    return (x * (0.35 + 0.65 * h) * (1 - 0.45 * h) + red * 0.45 * h).clamp(0, 255)


def run_exemplars(ctx: Context, jobs: list[Job]) -> list[Output]:
    """One pass over the images: for every concept its top exemplar images (largest code over positions), the
    patch there (the position's receptive field) and the concept's heatmap over the whole image, and its
    statistics (share of positions where it fires, mean code, per-image maxima). Memory: the per-image maxima
    (images × K) and the codes of the exemplar images only."""
    return [_exemplars(ctx, job) for job in jobs]


def _exemplars(ctx: Context, job: Job) -> Output:
    """``run_exemplars`` of one job."""
    o = dict(job.options)
    rep = unit_view(ctx.rep(job.model, job.layer))  # a token output's patch grid: positions to show
    dic = _dictionary(o, rep.layer)
    top, size = o["top"], o.get("size")
    hw = (size, size) if size else rep.spec.input_size
    specs = list(job.images)
    dev = rep.device_dtype()[0]
    per_image: list[torch.Tensor] = []  # images × K: each concept's maximum code in each image
    fired = torch.zeros(dic.k, dtype=torch.float64)
    code_sum = torch.zeros(dic.k, dtype=torch.float64)
    positions = 0
    map_hw = None
    for i in range(0, len(specs), 8):
        x = torch.cat([load_image(s, hw, channels=rep.channels) for s in specs[i:i + 8]]).to(dev)
        codes = dic.encode(features(rep, rep.to_paper_units(x))).float().cpu()
        if codes.ndim == 2:
            codes = codes[:, :, None, None]
        map_hw = tuple(codes.shape[-2:])
        per_image.append(codes.flatten(2).amax(2))
        fired += (codes > 0).double().sum((0, 2, 3))
        code_sum += codes.double().sum((0, 2, 3))
        positions += codes.shape[0] * codes.shape[2] * codes.shape[3]
    maxima = torch.cat(per_image)  # N×K
    n_top = min(top, maxima.shape[0])
    best = torch.topk(maxima, n_top, dim=0).indices  # n_top×K image indices
    field = rep.geometry().receptive_field
    cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def image_codes(i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if i not in cache:
            img = load_image(specs[i], hw, channels=rep.channels)
            c = dic.encode(features(rep, rep.to_paper_units(img.to(dev)))).float().cpu()[0]
            cache[i] = (img[0], c if c.ndim == 3 else c[:, None, None])
        return cache[i]

    concepts: dict[str, Any] = {}
    files: dict[str, bytes] = {}
    for k in range(dic.k):
        patches, heats, tops = [], [], []
        for i in best[:, k].tolist():
            if float(maxima[i, k]) <= 0:  # exemplars are images where the concept fires
                continue
            img, c = image_codes(i)
            ck = c[k]
            flat = int(ck.flatten().argmax())
            pos = divmod(flat, ck.shape[1])
            box = crop_box(pos, tuple(ck.shape), tuple(img.shape[-2:]), tuple(field) if field else None)
            patches.append(crop(img, box, THUMB))
            heats.append(_overlay(img, ck, THUMB))
            tops.append({"image": specs[i], "value": float(ck.max()), "position": list(pos)})
        if tops:
            files[f"patches_{k}.png"] = png_bytes(sprite(patches, ncol=len(patches)), "clip")
            files[f"heatmaps_{k}.png"] = png_bytes(sprite(heats, ncol=len(heats)), "clip")
        concepts[str(k)] = {"top": tops,
                            "frequency": float(fired[k] / max(positions, 1)),
                            "mean": float(code_sum[k] / max(positions, 1)),
                            "max": float(maxima[:, k].max()),
                            "images_active": int((maxima[:, k] > 0).sum()),
                            "histogram": histogram(maxima[:, k])}
    return Output({"images": len(specs), "map": list(map_hw or ()), "concepts": concepts}, files)


# --- the plan -----------------------------------------------------------------------------------------------------


@dataclass
class ConceptsPlan:
    """What ``concepts`` computes and where: the model, the layer, the images, the options of each sweep."""

    out: Path
    model: Model
    layer: str
    specs: list[str]
    fit_jobs: list[Job]
    options: dict[str, Any]
    store: Store


def _claim(out: Path, force: bool) -> None:
    """Refuse a folder that holds something other than a concepts page (unless ``force``)."""
    check_folder(out)
    if force or (out / MARKER).is_file():
        return
    if any(p.name != "store" and not p.name.startswith(".") for p in out.iterdir()):
        raise PreimageError(f"{out} exists and is not a concepts page; use another out, or force to write into it",
                            param=("out", "force"))


def plan_concepts(model: str | ModelSpec, layer: str, images: str | Sequence[str], k: int | None, *,
                  method: str = "topk", top_k: int | None = None, load: str | None = None,
                  out: str | Path = "preimage-concepts", max_rows: int = 65536, epochs: int | None = None,
                  size: int | None = None, iters: int | None = None, top: int = 6, position: str = "centre",
                  stability: bool = True, seed: int = 0, force: bool = False, device: str = "cpu",
                  weights: str | None = None, random_weights: bool = False, log: Log = _stderr) -> ConceptsPlan:
    """Check every option (one clear line each, before any work), load the model and list the dictionary's jobs."""
    if load is None:
        if k is None:
            raise PreimageError("k (the number of concepts) is needed to train a dictionary (or give load)",
                                param="k")
        check_k(k)
        check_method(method)
        if top_k is not None and not (isinstance(top_k, int) and 1 <= top_k <= k):
            raise PreimageError(f"top_k must be between 1 and K={k}, got {top_k}", param="top_k")
    else:
        if not Path(load).is_file():
            raise PreimageError(f"dictionary file not found: {load}", param="load")
        if method not in METHODS + ("relu",):
            check_method(method)
    max_rows = check_count(max_rows, "max_rows", 1, 100_000_000)
    top = check_count(top, "top", 1, 64)
    seed = check_count(seed, "seed", 0, 2**62)
    if epochs is not None:
        epochs = check_count(epochs, "epochs", 1, 1_000_000)
    if iters is not None:
        iters = check_count(iters, "iters", 1, 1_000_000)
    check_size(size)
    if position not in ("centre", "mean"):
        raise PreimageError(f"position must be centre or mean, got {position!r}", param="position")
    specs, skipped = list_images(images, log)
    spec = model_spec(model, weights=weights, random_weights=random_weights)
    rep = Representation(spec, layer)  # an unknown layer: one clear line
    if rep.layer is None and one_module(spec.module):
        raise PreimageError(f"{spec.name} is one module, with no layers inside: a dictionary reads a layer of a "
                            "network", param="model")
    if rep.layer is None:
        raise PreimageError("give the layer whose activations the dictionary reads (see 'preimage layers')",
                            param="layer")
    hw = (size, size) if size else (spec.input_size or (224, 224))
    with torch.no_grad():
        y = rep(torch.zeros(1, spec.channels, *hw))
    d = feature_rows(y).shape[-1]
    if load is not None:
        dic = load_dictionary(load, method=method if method != "topk" else None, top_k=top_k)
        if k is not None and k != dic.k:
            raise PreimageError(f"k={k} does not match the loaded dictionary's K={dic.k} (a loaded one has its own)",
                                param=("k", "load"))
        if dic.d != d:
            raise PreimageError(f"dictionary {load} does not fit layer '{rep.layer}' of {spec.name}: its encoder is "
                                f"K×D = {dic.k}×{dic.d}, the layer has D={d} channels (output {list(y.shape)})",
                                param="load")
    out = Path(out)
    _claim(out, force)
    mid = model_id(spec)
    stats = load_stats(spec)
    if response_point(unit_view(rep))[1] not in stats.points:
        stats = load_stats(spec, recompute=True)
    m = Model(spec, device, stats, id=mid)
    common = {"max_rows": max_rows, "size": size, "seed": seed}
    if load is not None:
        import hashlib

        digest = hashlib.sha256(Path(load).read_bytes()).hexdigest()
        fit = [Job(TASK_FIT, mid, rep.layer, images=tuple(specs),
                   options=common | {"load": str(Path(load).resolve()), "sha256": digest,
                                     "method": method if method != "topk" else None, "top_k": top_k})]
    else:
        train_opts = common | {"k": k, "method": method, "top_k": top_k, "epochs": epochs}
        fit = [Job(TASK_FIT, mid, rep.layer, images=tuple(specs), options=train_opts | {"seed": s})
               for s in ([seed, seed + 1] if stability else [seed])]
    options = {"iters": iters, "size": size, "top": top, "position": position, "seed": seed}
    log(f"concepts: {spec.name} layer {rep.layer} (D={d}), {len(specs)} images"
        f"{f' ({len(skipped)} skipped)' if skipped else ''}; "
        + (f"loading {load}" if load else f"training {method} with K={k}"))
    return ConceptsPlan(out, m, rep.layer, specs, fit, options, Store(out / "store"))


def concept_jobs(plan: ConceptsPlan, fit_key: str, record: dict[str, Any]) -> tuple[list[Job], Job]:
    """The second sweep: one picture job per concept and one exemplar job, naming the dictionary in the store."""
    o = plan.options
    ref = {"dictionary": str(plan.store.file(fit_key, "dictionary.safetensors").resolve()),
           "digest": record["result"]["digest"]}
    pic = {key: o[key] for key in ("iters", "size") if o[key] is not None}
    pictures = [Job(TASK_PICTURE, plan.model.id, plan.layer, units=(k,),
                    options=ref | pic | {"seed": o["seed"], "position": o["position"]})
                for k in range(record["result"]["k"])]
    ex = Job(TASK_EXEMPLARS, plan.model.id, plan.layer, images=tuple(plan.specs),
             options=ref | {"top": o["top"], "size": o["size"]})
    return pictures, ex


def run_concepts(model: str | ModelSpec, layer: str, images: str | Sequence[str], k: int | None = None, *,
                 out: str | Path = "preimage-concepts", backend: LocalBackend | RayBackend | None = None,
                 progress: SweepProgress | None = None, log: Log = _stderr, **options: Any) -> dict[str, Any]:
    """Learn (or ``load``) a dictionary of ``k`` concepts on ``layer`` and write its page into ``out``.

    options (``plan_concepts``): method (topk | batchtopk | nmf), top_k, load (a dictionary file), max_rows
    (activation rows kept, a uniform sample), epochs, size (input side), iters (of each picture), top (exemplars
    per concept), position (centre | mean: where the picture's objective reads the concept), stability (train a
    second seed), seed, force, device, weights, random_weights. Returns the summary: {out, page, dictionary, model,
    layer, method, k, d, r2, l0, dead, stability, selectivity_median, jobs{total, done, cached, failed},
    failures, seconds}.
    """
    t0 = time.perf_counter()
    plan = plan_concepts(model, layer, images, k, out=out, log=log, **options)
    models = {plan.model.id: plan.model}
    first = run_sweep(plan.fit_jobs, models, plan.store, backend, 1, progress)
    main = plan.fit_jobs[0]
    if main.key not in first.records:
        msg = first.failures[0].error if first.failures else "not computed"
        raise PreimageError(f"the dictionary could not be {'read' if options.get('load') else 'trained'}: {msg}")
    rec = first.records[main.key]
    pictures, ex = concept_jobs(plan, main.key, rec)
    second = run_sweep(pictures + [ex], models, plan.store, backend, 1, progress)
    for f in first.failures + second.failures:
        log(f"failed: {f.line()}")
    stab = None
    if len(plan.fit_jobs) > 1 and all(j.key in first.records for j in plan.fit_jobs):
        a, b = (load_dictionary(plan.store.file(j.key, "dictionary.safetensors")) for j in plan.fit_jobs)
        stab = matched_cosine(a.atoms, b.atoms)[0]
    # The dictionary beside the page, readable by ``tasks.concepts.load`` and ``--load``.
    for name in ("dictionary.safetensors", "dictionary.json"):
        shutil.copyfile(plan.store.file(main.key, name), plan.out / name)
    data = site_data(plan, rec, stab, pictures, ex, second, first)
    info = write_concepts(plan.out, data, plan.store)
    counts = {key: first.counts[key] + second.counts[key] for key in ("total", "done", "cached", "failed")}
    fig = rec["result"]["figures"]
    sels = sorted(p["selectivity"] for p in data["concepts"] if p.get("selectivity") is not None)
    summary = {"out": str(plan.out), "page": info["page"], "dictionary": str(plan.out / "dictionary.safetensors"),
               "model": plan.model.spec.name, "layer": plan.layer, "method": rec["result"]["method"],
               "k": rec["result"]["k"], "d": rec["result"]["d"], "top_k": rec["result"]["top_k"],
               "r2": fig.get("r2"), "l0": fig.get("l0"), "dead": fig.get("dead"), "stability": stab,
               "selectivity_median": sels[len(sels) // 2] if sels else None, "jobs": counts,
               "failures": [f.line() for f in first.failures + second.failures],
               "seconds": round(time.perf_counter() - t0, 1)}
    write_json(plan.out / MARKER, summary)
    return summary


def site_data(plan: ConceptsPlan, rec: dict[str, Any], stab: float | None, pictures: list[Job], ex: Job,
              second: SweepResult, first: SweepResult) -> dict[str, Any]:
    """What the page shows, as plain data (``report.concept_site.write_concepts``)."""
    failed = {f.key: f.error for f in second.failures}
    ex_rec = second.records.get(ex.key)
    ex_concepts = ex_rec["result"]["concepts"] if ex_rec else {}
    res = rec["result"]
    fig = res["figures"]
    concepts = []
    for j in pictures:
        k = j.units[0]
        r = second.records.get(j.key)
        e = ex_concepts.get(str(k))
        concepts.append({"concept": k, "key": j.key, "failed": failed.get(j.key),
                         **({key: r["result"][key] for key in ("activation", "reference_max", "ratio", "selectivity",
                                                              "selectivity_inf")} if r else {}),
                         "picture": r is not None,
                         "exemplars": e, "ex_key": ex.key if e else None,
                         "patches": e is not None and f"patches_{k}.png" in (ex_rec or {}).get("files", {}),
                         "frequency_train": (fig.get("frequency") or [None] * res["k"])[k]})
    spec = plan.model.spec
    return {"model": spec.name, "weights": spec.weights_id, "layer": plan.layer, "method": res["method"],
            "k": res["k"], "d": res["d"], "top_k": res["top_k"], "threshold": res["threshold"],
            "figures": {key: fig.get(key) for key in ("r2", "l0", "dead", "rows", "seconds", "seconds_per_concept",
                                                      "clipped")},
            "config": res.get("config", {}), "stability": stab, "images": len(plan.specs),
            "exemplar_failed": failed.get(ex.key), "position": plan.options["position"], "concepts": concepts,
            "failures": [f.line() for f in first.failures + second.failures]}
