"""The tour (``preimage demo``): what the tool does, on one page, in a few minutes on a CPU.

1. today's inversions of one image through several layers of the embedded efficientnet_lite0;
2. a few class pre-images in the best style (``sweep.atlas.best_style``), with a judge network's verdict on
   the saved PNGs (efficientnet_lite1, which never saw the optimization);
3. one caricature;
4. a small atlas of one layer (every unit's pre-images and dataset examples), linked from the page.

All of it is one sweep (``preimage.sweep``): in this process by default, on Ray with ``backend``; results are
stored under ``out/store``, so a rerun with ``force`` redraws the page without recomputing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..engine.targets import Class
from ..errors import PreimageError
from ..images import image_name, load_image, minmax, save_png
from ..measures.judge import DEFAULT_JUDGE, Judge
from ..report import check_folder, save_grid, write_json
from ..report import site as pages
from ..report.store import Store
from ..representations import Representation, model_spec
from ..representations.geometry import measure_geometry
from ..sweep import Job, LocalBackend, RayBackend, run_sweep
from ..sweep.run import SweepProgress
from ..tasks.activation import target_points
from .atlas import best_style, finish_atlas, plan_atlas
from .reproduce.figures import _class_names

#: The paper's class neurons shown by default: black swan, tree frog, cheeseburger (ImageNet indices).
CLASSES = (100, 31, 933)
DEMO_LAYERS = tuple(f"blocks.{i}" for i in range(1, 7))


def verdicts(judge: Judge | None, files: Sequence[Path], classes: Sequence[int]) -> list[str | None]:
    """The judge network's verdict on each class pre-image, read back from its PNG as a user would: its
    p(class) and whether the class is its top-1 (None everywhere without a judge)."""
    if judge is None or not files:
        return [None] * len(files)
    t = judge.classes(list(files), list(classes))
    return [f"{judge.name} p = {p:.2f}{', top-1' if top else ''}" for p, top in zip(t["probability"], t["top1"],
                                                                                    strict=True)]


def run_demo(out: str | Path, image: str = "sample:chelsea", layers: Sequence[str] = (), size: int = 160,
             iters: int | None = None, C: float = 100.0, seed: int = 0, force: bool = False, device: str = "cpu",
             model: str = "efficientnet_lite0", classes: Sequence[int] = CLASSES, caricature_layer: str = "blocks.4",
             atlas_layer: str = "blocks.1", atlas_iters: int | None = None,
             backend: LocalBackend | RayBackend | None = None,
             progress: SweepProgress | None = None, amp: bool | str | None = None, compile: bool = False,
             threads: int | None = None, judge: str | None = DEFAULT_JUDGE, log: Any = None) -> dict[str, Any]:
    """Run the tour and write ``out/index.html`` (+ PNGs, ``demo.json``, the atlas in ``out/atlas``).

    iters: iterations of the inversions, class pre-images and caricature (default: each task's: 300+50,
    300, 300); atlas_iters: of the atlas's maximizations (default: the style's, 64); the defaults keep the tour under
    3 minutes on 2 CPU cores; judge: the network that judges the class pre-images
    (None: no judge). Returns {out, page, grid, layers: [{layer, error,
    image, stride}], classes, caricature, atlas, jobs, seconds}.
    """
    t0 = time.perf_counter()
    log = log or (lambda s: None)
    outdir = check_folder(out)
    layers = list(layers) or list(DEMO_LAYERS)
    if threads:
        torch.set_num_threads(threads)
    spec = model_spec(model)
    jdg = Judge(judge, device) if judge else None  # an unknown judge fails before any work
    reps = [Representation(spec, layer) for layer in layers]  # a bad layer fails before any work
    Representation(spec, caricature_layer)
    load_image(image, size, channels=spec.channels)  # an unreadable image fails here, before any work
    if spec.classifier_layer and classes:  # an out-of-range class fails here, before any work
        target_points(spec, [Class(c) for c in classes], spec.input_size or (224, 224), ("cpu", torch.float32))
    taken = [outdir / n for n in ("original.png", "grid.png", "index.html", "demo.json") if (outdir / n).exists()]
    if taken and not force:
        raise PreimageError(f"{taken[0]} already exists; pass --force to redraw the page (the results are reused)",
                            param="force")
    store = Store(outdir / "store")
    atlas = plan_atlas(spec, outdir / "atlas", layers=[atlas_layer], images="samples", iters=atlas_iters,
                       inversions=1, seed=seed, force=force, device=device, store=store, log=log)
    m = atlas.model
    mods = dict(spec.module.named_modules())
    todo = {r.layer: mods[r.layer] for r in reps if r.layer not in m.geometry}
    m.geometry.update(measure_geometry(spec.module, todo, spec.channels, spec.input_size or (224, 224)))
    extra = ({"iters": iters} if iters else {}) | ({"amp": amp} if amp else {}) | ({"compile": True} if compile
                                                                                   else {})
    inv = [Job("invert", m.id, r.layer, images=(image,), options={"C": [C], "size": size, "seed": seed} | extra)
           for r in reps]
    style = best_style()
    cls = Job("maximize", m.id, spec.classifier_layer, tuple(f"class:{c}" for c in classes),
              options={"restarts": 1, "seed": seed} | extra | style) if spec.classifier_layer else None
    car = Job("caricature", m.id, caricature_layer, images=(image,), options={"size": size, "seed": seed} | extra)
    jobs = [*inv, *([cls] if cls else []), car, *atlas.all_jobs()]
    result = run_sweep(jobs, {m.id: m}, store, backend, 16, progress)
    for f in result.failures:
        log(f"failed: {f.line()}")
    atlas_info = finish_atlas(atlas, result, time.perf_counter() - t0)

    def png(job: Job, name: str) -> str:
        return store.file(job.key, name).relative_to(outdir).as_posix()

    def problems(job: Job | None) -> list[dict[str, Any]]:
        rec = result.records.get(job.key) if job else None
        return rec["result"]["problems"] if rec else []

    def failed(job: Job) -> str:
        return next((f.error for f in result.failures if f.key == job.key), "not computed")

    ref = load_image(image, size)[0]
    save_png(ref, outdir / "original.png", "clip")
    rows, pre_images, figs = [], [], []
    for r, job in zip(reps, inv, strict=True):
        probs = problems(job)
        stride = list(m.geometry[r.layer].stride or ())
        if not probs:
            figs.append(("original.png", f"{r.layer}: failed ({failed(job)})"))
            continue
        p = probs[0]
        rows.append({"layer": r.layer, "error": p["error"], "image": png(job, p["png"]), "stride": stride})
        figs.append((png(job, p["png"]), f"{r.layer}: error {100 * p['error']:.1f}%"))
        pre_images.append(minmax(torch.from_numpy(_read_png(store.file(job.key, p["png"])))))
    save_grid([ref, *pre_images], outdir / "grid.png", scale="clip")
    names = _class_names(1000) or []
    class_rows, class_figs = [], []
    cls_probs = problems(cls)
    judged_all = verdicts(jdg, [store.file(cls.key, p["png"]) for p in cls_probs] if cls else [],
                          [p["unit"] for p in cls_probs])
    for p, judged in zip(cls_probs, judged_all, strict=True):
        label = names[p["unit"]] if p["unit"] < len(names) else f"class {p['unit']}"
        caption = f"{label} ({p['unit']}): p = {p.get('probability', float('nan')):.2f}" + \
            (f"; judge: {judged}" if judged else "")
        class_figs.append((png(cls, p["png"]), caption))
        class_rows.append({"unit": p["unit"], "label": label, "probability": p.get("probability"),
                           "image": png(cls, p["png"]), "judge": judged or None})
    car_probs = problems(car)
    car_info = None
    car_figs = [("original.png", f"{image_name(image)}")]
    if car_probs:
        p = car_probs[0]
        car_info = {"layer": caricature_layer, "gain": p["score_end"] / p["score_start"], "image": png(car, p["png"])}
        car_figs.append((car_info["image"], f"caricature at {caricature_layer}: score ×{car_info['gain']:.2f}"))
    atlas_cells = []
    layer = json.loads(Path(atlas_info["manifest"]).read_text())["layers"][0]
    for u in layer["units"][:12]:
        if u["thumbnail"]:
            atlas_cells.append({"href": f"atlas/{u['page']}", "thumb": f"atlas/{u['thumbnail']}",
                                "label": str(u["unit"])})
    style_name = style.get("style", "paper")
    sections = [
        ("1. Inversion through the layers", "Each image's representation at that layer matches the original's "
         f"(IJCV 2016 inversion, C = {C:g}); error = ‖Φ(x)−Φ0‖/‖Φ0‖.", [("original.png", f"{image_name(image)}")]
         + figs),
        (f"2. Class pre-images ({style_name} style)", "Images that the network classifies as each class, found by "
         "activation maximization of the class logit; p: the network's probability for that class"
         + (f"; judge: what {judge}, a network that never saw the optimization, reads in the saved PNG."
            if any(r["judge"] for r in class_rows) else ". No judge network is available in this installation."),
         class_figs),
        ("3. Caricature", "The image, changed to exaggerate what the layer detects in it.", car_figs),
    ]
    page = pages.tour_page(outdir / "index.html", f"What {spec.name} sees", sections,
                           (f"4. An atlas of layer {atlas_layer}", f"Every unit of {atlas_layer}: its pre-images "
                            "(channel mode, 2 restarts), its dataset examples and statistics.", "atlas/index.html",
                            atlas_cells))
    info = {"out": str(outdir), "page": str(page), "grid": str(outdir / "grid.png"), "model": spec.name,
            "input": image, "size": size, "C": C, "layers": rows, "classes": class_rows, "style": style_name,
            "caricature": car_info, "atlas": {"page": str(outdir / "atlas/index.html"), "layer": atlas_layer,
                                              "units": len(layer["units"])},
            "jobs": result.counts, "failures": [vars(f) for f in result.failures],
            "seconds": round(time.perf_counter() - t0, 1)}
    write_json(outdir / "demo.json", info)
    return info


def _read_png(path: Path) -> Any:
    import numpy as np
    from PIL import Image

    a = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
    return a.transpose(2, 0, 1).copy()
