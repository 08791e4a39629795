"""Commands for activation maximization, caricature and the neuron statistics they use: maximize, caricature,
stats."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from ..errors import PreimageError
from ..images import safe_name, save_png
from ..report import OutputDir, picture_files, save_grid, save_picture, write_json
from ..tasks.activation import MAXIMIZE_STYLE
from .common import (
    COUNT,
    FRACTION,
    ITERS,
    SIZE,
    AmpOpt,
    ChannelsOpt,
    CompileOpt,
    DeviceOpt,
    ForceOpt,
    JsonOpt,
    JudgeOpt,
    LayerOpt,
    ModelOpt,
    ParamOpt,
    PriorOpt,
    PriorWeightOpt,
    RandomOpt,
    SeedOpt,
    ThreadsOpt,
    TokenOpt,
    TransformsOpt,
    WeightsOpt,
    app,
    emit,
    load_rep,
    out_console,
    progress_bar,
    style_opt,
)
from .shallow import ExactGradientOpt, gradient_options

SizeOpt = Annotated[int | None, typer.Option(help="input size in pixels (default: from the receptive field)",
                                             **SIZE)]
ItersOpt = Annotated[int | None, typer.Option(help="iterations (default: the style's: 300 for paper)", **ITERS)]
OptimizerOpt = Annotated[str | None, typer.Option(help="paper (momentum+AdaGrad), adam, hybrid (the pyramid's: "
                                                  "adam on its full-size level, paper on the coarser ones) or lbfgs "
                                                  "(--transforms none only); default: paper for pixels, hybrid for "
                                                  "the pyramid, adam for the others")]
LeakOpt = Annotated[float, typer.Option("--relu-leak", help="slope given to the net's ReLUs while optimizing "
                                        "(the paper's option; 0 in its released runs)", **FRACTION)]
CapLeakOpt = Annotated[float, typer.Option(
    "--cap-leak", min=0.0, max=1.0, help="backward slope where ReLU6 is flat; the forward and the scores stay "
    "exact (0, the default: the exact gradient)")]
OutOpt = Annotated[Path, typer.Option(help="output folder")]
PngScaleOpt = Annotated[str, typer.Option(help="minmax (the paper's) or clip")]


def parse_units(spec: str | None) -> list[int]:
    """``3``, ``3,5,7`` or ranges ``0-24`` (inclusive) → unit indices."""
    if spec is None:
        raise PreimageError("--unit is required: which units (channels, or classes for logits) to maximize")
    units: list[int] = []
    try:
        for part in (p.strip() for p in spec.split(",")):
            if not part:
                continue
            a, dash, b = part.partition("-")
            if dash and a:
                lo, hi = int(a), int(b)
                if hi < lo:
                    raise ValueError
                units.extend(range(lo, hi + 1))
            else:
                units.append(int(part))
    except ValueError:
        raise PreimageError(f"--unit takes unit indices like 3, 3,5,7 or 0-24; got '{spec}'") from None
    if not units:
        raise PreimageError("--unit needs at least one unit index")
    return units


def _units_tag(units: list[int]) -> str:
    return "_".join(map(str, units)) if len(units) <= 6 else f"{units[0]}_to_{units[-1]}_{len(units)}units"


@app.command()
def maximize(model: ModelOpt = "efficientnet_lite0", layer: LayerOpt = None,
             unit: Annotated[str | None, typer.Option("--unit", "-u", help="unit (channel or class) indices: 3, "
                                                      "3,5,7 or 0-24 (required)")] = None,
             mode: Annotated[str, typer.Option(help="neuron (the centre neuron, the paper's) or channel (the whole "
                                               "map's mean); on a vision transformer's patch grid")] = "neuron",
             token: TokenOpt = None,
             restarts: Annotated[int, typer.Option(help="random restarts per unit (diverse pre-images)", **COUNT)] = 1,
             relu_leak: LeakOpt = 0.0, cap_leak: CapLeakOpt = 0.0, size: SizeOpt = None, iters: ItersOpt = None,
             seed: SeedOpt = 0, optimizer: OptimizerOpt = None, out: OutOpt = Path("preimage-out"),
             png_scale: PngScaleOpt = "minmax", weights: WeightsOpt = None, random_weights: RandomOpt = False,
             channels: ChannelsOpt = None,
             template: Annotated[Path | None, typer.Option(help="maximize a linear template over the cells instead "
                                                           "of units: .npy/.npz/DPM .mat, h×w×D or D×h×w (HOG "
                                                           "template pictures)")] = None,
             exact_gradient: ExactGradientOpt = False, force: ForceOpt = False, device: DeviceOpt = "cpu",
             amp: AmpOpt = None, compile: CompileOpt = False,
             threads: ThreadsOpt = None, style: style_opt(MAXIMIZE_STYLE) = MAXIMIZE_STYLE, param: ParamOpt = None,
             transforms: TransformsOpt = None, prior: PriorOpt = None, prior_weight: PriorWeightOpt = None,
             objective: Annotated[str, typer.Option(help="what to maximize, a weighted sum: 'unit' (the --unit "
                                                    "targets), 'direction:FILE.npy' (a direction in channel "
                                                    "space), 'diversity' or 'diversity@LAYER' (a penalty on "
                                                    "restarts' similarity), e.g. 'unit + 100*diversity'")] = "unit",
             judge: JudgeOpt = None, as_json: JsonOpt = False) -> None:
    """Activation maximization: images that excite units of a layer most (one image per unit and restart,
    plus a mosaic). Normalized by each unit's maximum response over reference images (see 'preimage stats')."""
    from ..engine.objectives import load_direction, parse_objective
    from ..engine.styles import resolve
    from ..tasks.activation import check_options, check_units
    from ..tasks.activation import maximize as run_maximize

    hog_kw = gradient_options(model, exact_gradient)
    if template is not None:
        return _template(model, template, restarts, iters, seed, out, png_scale, force, device, as_json, hog_kw)
    terms = parse_objective(objective)
    weights_of = {name: sum(w for w, n, _ in terms if n == name) for name in ("unit", "direction", "diversity")}
    dirs = [a for _, n, a in terms if n == "direction"]
    div_layers = {a for _, n, a in terms if n == "diversity"}
    if len(set(dirs)) > 1 or len(div_layers) > 1:
        raise PreimageError("--objective takes one direction file and one diversity layer")
    direction = load_direction(dirs[0]) if dirs else None
    has_unit = any(n == "unit" for _, n, _ in terms)
    units = parse_units(unit) if has_unit or unit is not None else [0]
    check_options(mode, restarts, relu_leak, cap_leak)
    # Check the units, the style and the judges (and measure the layer) before claiming files or starting the
    # progress bar.
    rep, _, units = check_units(load_rep(model, layer, weights, random_weights, device, threads, channels, **hog_kw),
                                units, token=token)
    resolve(rep, style, param=param, transforms=transforms, prior=prior, prior_weight=prior_weight,
            optimizer=optimizer)
    judges = _judges(judge, device)
    stem = f"max-{safe_name(rep.name)}-{safe_name(rep.layer or 'output')}-u{_units_tag(units)}"
    names = [f"{stem}-u{u}" + (f"-r{r}" if restarts > 1 else "") for u in units for r in range(restarts)] \
        if len(units) * restarts > 1 else [stem]
    mosaic = f"{stem}-mosaic.png" if len(names) > 1 else None
    outdir = OutputDir(out, force)
    outdir.claim([f for n in names for f in picture_files(n, rep.channels)] + ([mosaic] if mosaic else [])
                 + [f"{stem}.json"])
    with progress_bar(f"maximize {rep.layer or 'output'}") as update:
        res = run_maximize(rep, units, mode=mode, token=token, restarts=restarts, size=size, iters=iters, seed=seed,
                           optimizer=optimizer, relu_leak=relu_leak, cap_leak=cap_leak, progress=update, amp=amp,
                           compile=compile,
                           style=style, param=param, transforms=transforms, prior=prior, prior_weight=prior_weight,
                           direction=direction, direction_weight=weights_of["direction"],
                           diversity=weights_of["diversity"], diversity_layer=next(iter(div_layers), None),
                           unit_weight=weights_of["unit"] if has_unit else 0.0)
    records = res.records()
    for rec in records:  # 0/0 where the reference images give 0 (a zero-initialized head): null in the JSON
        if "ratio" in rec and not math.isfinite(rec["ratio"]):
            rec["ratio"] = None
    for rec, name, img in zip(records, names, res.images, strict=True):
        rec["image"] = str(save_picture(img, outdir / f"{name}.png", png_scale))
    image = records[0]["image"]
    if mosaic:
        # Rows of restarts per unit; for single runs the paper's near-square grid.
        ncol = restarts if restarts > 1 else math.ceil(math.sqrt(len(units)))
        image = str(save_grid(list(res.images), outdir / mosaic, ncol=ncol, scale=png_scale))
    per_unit = {k: [max((r[k] for r in records if r["unit"] == u and r[k] is not None), default=None) for u in units]
                for k in ("activation", "ratio", "probability") if k in res.metrics}
    summary = {"model": res.model, "layer": res.layer, "units": units, "mode": mode, "token": token,
               "restarts": restarts,
               "activation": per_unit["activation"],
               "reference_max": [next(r["reference_max"] for r in records if r["unit"] == u) for u in units],
               "ratio": per_unit["ratio"], "image": image, "images": [r["image"] for r in records],
               "iterations": res.iterations, "seconds": round(res.seconds, 3), "seed": seed,
               "optimizer": res.info["optimizer"], "relu_leak": relu_leak,
               "cap_leak": res.info["cap_leak"], "size": res.info["size"],
               "style": res.info["style"], "param": res.info["param"], "transforms": res.info["transforms"],
               "prior": res.info["prior"], "prior_weight": res.info["prior_weight"], "objective": objective,
               "point": res.info["point"], "weight": res.info["weight"],
               "paper_code_reference_max": res.info["paper_code_reference_max"], "stats": res.info["stats"],
               "results": records}
    if "probability" in per_unit:
        summary["probability"] = per_unit["probability"]
    if "direction" in res.metrics:
        summary["direction"] = res.metrics["direction"].tolist()
    if judges:
        if not res.info["logits"]:
            raise PreimageError("--judge needs class targets: maximize a layer of class logits (e.g. --layer "
                                "classifier)")
        summary["transfer"] = {j.name: j.classes([r["image"] for r in records], [r["unit"] for r in records])
                               for j in judges}
    summary["json"] = str(write_json(outdir / f"{stem}.json", summary))

    def human() -> None:
        for name, t in summary.get("transfer", {}).items():
            out_console.print(f"judge {name}: top-1 for {sum(t['top1'])}/{len(t['top1'])}, mean p(class) "
                              f"{t['mean_probability']:.3f}")
        for r in records:
            extra = f", p={r['probability']:.3f}" if "probability" in r else ""
            # A zero-initialized head (torchvision ViTs with --random-weights) gives 0 everywhere: no ratio.
            ratio = (f" = {r['ratio']:.2f}× the reference max {r['reference_max']:.3g}" if r["reference_max"]
                     else " (the reference images give 0 here: no ratio)")
            out_console.print(f"unit {r['unit']} restart {r['restart']}: activation {r['activation']:.3g}"
                              f"{ratio}{extra}  → {r['image']}")
        if mosaic:
            out_console.print(f"mosaic → {image}")
        out_console.print(f"{res.iterations} iterations at {res.info['size'][0]}×{res.info['size'][1]} in "
                          f"{res.seconds:.1f} s")

    emit(summary, as_json, human)


def _judges(names: list[str] | None, device: str) -> list:
    """The judges named by --judge (loaded before any output is claimed, so a bad name fails first)."""
    from ..measures.judge import judges

    return judges(names, device) if names else []


def _template(model: str, template: Path, restarts: int, iters: int | None, seed: int, out: Path, png_scale: str,
              force: bool, device: str, as_json: bool, hog_kw: dict[str, bool]) -> None:
    """``maximize --template``: the picture of a linear template (paper-notes §4 item 2)."""
    from ..tasks.templates import load_template, template_picture

    w = load_template(template)  # a bad file fails before any output is claimed
    rep = load_rep(model, None, None, False, device, **hog_kw)
    stem = f"template-{safe_name(template.stem)}-{safe_name(rep.name)}"
    names = [f"{stem}-r{r}" for r in range(restarts)] if restarts > 1 else [stem]
    outdir = OutputDir(out, force)
    outdir.claim([f"{n}.png" for n in names] + [f"{stem}.json"])
    with progress_bar(f"template {template.name}") as update:
        res = template_picture(rep, w, iters=iters or 300, seed=seed, restarts=restarts, progress=update)
    images = [str(save_png(img, outdir / f"{n}.png", png_scale)) for n, img in zip(names, res.images, strict=True)]
    summary = {"model": res.model, "template": str(template), "activation": res.metrics["activation"].tolist(),
               "activation_start": res.metrics["activation_start"].tolist(), "image": images[0], "images": images,
               "iterations": res.iterations, "seconds": round(res.seconds, 3), "size": res.info["size"], "seed": seed}
    summary["json"] = str(write_json(outdir / f"{stem}.json", summary))

    def human() -> None:
        for a0, a, img in zip(summary["activation_start"], summary["activation"], images, strict=True):
            out_console.print(f"template response {a0:.3g} → {a:.3g}  → {img}")

    emit(summary, as_json, human)


@app.command()
def caricature(image: Annotated[str, typer.Argument(help="image path or sample:NAME (e.g. sample:coffee)")],
               model: ModelOpt = "efficientnet_lite0", layer: LayerOpt = None,
               size: Annotated[int | None, typer.Option(help="input size in pixels (default: the model's)",
                                                        **SIZE)] = None,
               iters: ItersOpt = None, seed: SeedOpt = 0, optimizer: OptimizerOpt = None,
               relu_leak: LeakOpt = 0.0, cap_leak: CapLeakOpt = 0.0,
               limit: Annotated[bool, typer.Option("--limit", help="also measure how far the score can go: the "
                                                   "same energy maximized from noise (3× the work)")] = False,
               out: OutOpt = Path("preimage-out"), png_scale: PngScaleOpt = "minmax",
               weights: WeightsOpt = None, random_weights: RandomOpt = False, channels: ChannelsOpt = None,
               force: ForceOpt = False,
               device: DeviceOpt = "cpu", amp: AmpOpt = None, compile: CompileOpt = False,
               threads: ThreadsOpt = None, style: style_opt("paper") = "paper", param: ParamOpt = None,
               transforms: TransformsOpt = None, prior: PriorOpt = None, prior_weight: PriorWeightOpt = None,
               as_json: JsonOpt = False) -> None:
    """Caricature: exaggerate what a layer sees in IMAGE, starting from IMAGE itself."""
    from ..engine.styles import resolve
    from ..images import image_name
    from ..tasks.activation import caricature as run_caricature
    from ..tasks.activation import check_options

    check_options(relu_leak=relu_leak, cap_leak=cap_leak)
    rep = load_rep(model, layer, weights, random_weights, device, threads, channels)
    resolve(rep, style, param=param, transforms=transforms, prior=prior, prior_weight=prior_weight,
            optimizer=optimizer)
    stem = f"car-{image_name(image)}-{safe_name(rep.name)}-{safe_name(rep.layer or 'output')}"
    outdir = OutputDir(out, force)
    outdir.claim([*picture_files(stem, rep.channels), f"{stem}.json"])
    with progress_bar(f"caricature {rep.layer or 'output'}") as update:
        res = run_caricature(rep, image, size=size, iters=iters, seed=seed, optimizer=optimizer,
                             relu_leak=relu_leak, cap_leak=cap_leak, limit=limit, progress=update, amp=amp,
                             compile=compile, style=style, param=param, transforms=transforms, prior=prior,
                             prior_weight=prior_weight)
    start, end = float(res.metrics["score_start"][0]), float(res.metrics["score_end"][0])
    png = str(save_picture(res.images[0], outdir / f"{stem}.png", png_scale))
    summary = {"model": res.model, "layer": res.layer, "input": image, "score_start": start, "score_end": end,
               "gain": end / start, "image": png, "iterations": res.iterations, "seconds": round(res.seconds, 3),
               "seed": seed, "optimizer": res.info["optimizer"], "relu_leak": relu_leak,
               "cap_leak": res.info["cap_leak"], "size": res.info["size"],
               "style": res.info["style"], "param": res.info["param"], "transforms": res.info["transforms"],
               "prior": res.info["prior"], "point": res.info["point"]}
    if limit:
        summary["score_limit"] = float(res.metrics["score_limit"][0])
        summary["share_of_limit"] = float(res.metrics["share_of_limit"][0])
    summary["json"] = str(write_json(outdir / f"{stem}.json", summary))

    def human() -> None:
        gain = f"{end / start:.2f}×" if start else "the start scores 0"
        out_console.print(f"score {start:.3g} → {end:.3g} ({gain})  → {png}")
        if limit:
            out_console.print(f"limit {summary['score_limit']:.3g} (the best score found from noise or here); "
                              f"this caricature reaches {100 * summary['share_of_limit']:.0f}% of it")
        out_console.print(f"{res.iterations} iterations in {res.seconds:.1f} s")

    emit(summary, as_json, human)


@app.command()
def stats(model: ModelOpt = "efficientnet_lite0",
          images: Annotated[str, typer.Option(help="a folder of images (searched recursively), or 'samples' for "
                                              "the bundled scikit-image colour samples")] = "samples",
          size: Annotated[int | None, typer.Option(help="resize images to this size (default: the model's)",
                                                   **SIZE)] = None,
          batch: Annotated[int, typer.Option(help="images per forward pass", **COUNT)] = 8,
          weights: WeightsOpt = None, random_weights: RandomOpt = False, channels: ChannelsOpt = None,
          device: DeviceOpt = "cpu", as_json: JsonOpt = False) -> None:
    """Neuron statistics: per-layer, per-channel max/mean/std over reference images, cached on disk per model
    and weights (replacing the cached ones). 'maximize' normalizes each unit by its max."""
    from ..measures.stats import cache_path, compute_stats, resolve_images, save_stats

    specs, source = resolve_images(images)  # an empty or missing folder fails here, before any work
    rep = load_rep(model, None, weights, random_weights, device, channels=channels)
    with progress_bar("stats") as update:
        st = compute_stats(rep, specs, size=size, batch=batch, progress=update)
    st.source = source
    cacheable = rep.spec.weights_id not in ("random", "user")
    path = str(save_stats(st, cache_path(st.model, st.weights_id))) if cacheable else None
    rows = [{"name": name, "kind": kind, "channels": s.channels, "max": float(s.max.max()),
             "mean": float(s.mean.mean()), "std": float(s.std.mean())} for (kind, name), s in st.points.items()]
    summary = {"model": st.model, "weights": st.weights_id, "path": path, "source": st.source,
               "images": len(st.images), "size": list(st.size) if st.size else None, "points": len(rows),
               "layers": rows}

    def human() -> None:
        where = f"cached in {path}" if path else "not cached (random weights)"
        out_console.print(f"{st.model}: statistics of {len(rows)} layer outputs/ReLU inputs over {len(st.images)} "
                          f"images ({st.source}); {where}")

    emit(summary, as_json, human)
