"""Commands for activation maximization, caricature and the neuron statistics they use: maximize, caricature,
stats."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ..engine.styles import STYLES
from ..errors import PreimageError
from ..images import safe_name
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
    one_job_sweep,
    out_console,
    prior_option,
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
CapLeakOpt = Annotated[float | None, typer.Option(
    "--cap-leak", min=0.0, max=1.0, help="backward slope where ReLU6 is flat; the forward and the scores stay "
    "exact (default: the style's: 0, the exact gradient, except where a small image adapts it)")]
OutOpt = Annotated[Path, typer.Option(help="output folder (rerun to reuse its results)")]
PngScaleOpt = Annotated[str | None, typer.Option(help="clip (true colours) or minmax (stretched, as the paper saved "
                                                 "its pictures); default: minmax for the paper style, else clip")]


def parse_units(spec: str | None) -> list[int]:
    """``3``, ``3,5,7`` or ranges ``0-24`` (inclusive) → unit indices; a clear error naming ``--unit``."""
    from ..engine.targets import parse_units as parse

    if spec is None:
        raise PreimageError("--unit is required: which units (channels, or classes for logits) to maximize")
    try:
        return parse(spec)
    except PreimageError as e:
        raise PreimageError(str(e).replace("units are", "--unit takes").replace("unit index", "--unit index")) from None


def targets_of(layer: str | None, unit: str | None, mode: str, token: str | None, objective: str) -> list[Any]:
    """The objectives of ``maximize``'s flags: each ``--unit`` of ``--layer`` (a ``--mode`` channel or neuron, of
    ``--token``), combined by ``--objective`` (``unit`` stands for each of them)."""
    from ..engine.targets import Channel, Neuron, parse_target

    if mode not in ("channel", "neuron"):
        raise PreimageError(f"unknown --mode '{mode}' (choose channel or neuron)")
    uses_unit = _uses_unit(objective)
    if not uses_unit and unit is not None:
        raise PreimageError("--objective does not use 'unit': leave out --unit, or add 'unit' to --objective")
    units = []
    if uses_unit:
        cls = Neuron if mode == "neuron" else Channel
        units = [cls(layer, u, token) for u in parse_units(unit)]
    return parse_target(objective, kind=mode, unit=units or None)


def _uses_unit(objective: str) -> bool:
    """Whether ``--objective`` has a ``unit`` term (each ``--unit`` of ``--layer``)."""
    return any(t.strip().lstrip("-").split("*")[-1] == "unit" for t in objective.replace(" - ", " + ").split(" + "))


def objective_layer(objective: str, mode: str, token: str | None) -> Any:
    """For an ``--objective`` without ``unit``: spec → the layer its first term reads (a class's: the classifier
    layer), so that ``class:3`` needs no ``--layer`` on a model without a default one; None otherwise."""
    if _uses_unit(objective):
        return None
    from ..tasks.activation import target_layer

    first = targets_of(None, None, mode, token, objective)[0]
    return lambda spec: target_layer(first, spec)


@app.command()
def maximize(model: ModelOpt = "efficientnet_lite0", layer: LayerOpt = None,
             unit: Annotated[str | None, typer.Option("--unit", "-u", help="unit (channel or class) indices: 3, "
                                                      "3,5,7 or 0-24 (required)")] = None,
             mode: Annotated[str, typer.Option(help="channel (the whole map's mean, Lucid's; the default) or neuron "
                                               "(the centre neuron, the paper's); on a vision transformer's patch "
                                               "grid")] = "channel",
             token: TokenOpt = None,
             restarts: Annotated[int, typer.Option(help="random restarts per unit (diverse pre-images)", **COUNT)] = 1,
             candidates: Annotated[int | None, typer.Option(
                 min=1, max=64, help="pictures optimized per unit and restart, of which the one the network itself "
                 "scores highest is kept (p(class) for a class, else the activation); default: the style's for "
                 f"classes (natural: {STYLES['natural'].candidates}), else 1")] = None,
             skip_grad: Annotated[float | None, typer.Option(
                 min=0.0, max=1.0, help="factor on the gradient through each residual branch, the forward exact "
                 "(the skip gradient; 1: the exact gradient); default: the style's for classes (natural: "
                 f"{STYLES['natural'].skip_grad:g}), else 1")] = None,
             relu_leak: LeakOpt = 0.0, cap_leak: CapLeakOpt = None, size: SizeOpt = None, iters: ItersOpt = None,
             seed: SeedOpt = 0, optimizer: OptimizerOpt = None, out: OutOpt = Path("preimage-out"),
             png_scale: PngScaleOpt = None, weights: WeightsOpt = None, random_weights: RandomOpt = False,
             channels: ChannelsOpt = None,
             images: Annotated[str | None, typer.Option(help="reference images for each unit's natural maximum (a "
                                                        "folder, searched recursively; default: the cached "
                                                        "statistics, else the bundled samples)")] = None,
             exact_gradient: ExactGradientOpt = False, force: ForceOpt = False, device: DeviceOpt = "cpu",
             amp: AmpOpt = None, compile: CompileOpt = False,
             threads: ThreadsOpt = None, style: style_opt(MAXIMIZE_STYLE) = MAXIMIZE_STYLE, param: ParamOpt = None,
             transforms: TransformsOpt = None, prior: PriorOpt = None, prior_weight: PriorWeightOpt = None,
             objective: Annotated[str, typer.Option(help="what to maximize, a weighted sum: 'unit' (each --unit), "
                                                    "LAYER:UNIT, neuron:LAYER:UNIT, class:C, logprob:C (its "
                                                    "log-probability), direction:LAYER:FILE.npy, 'diversity' or "
                                                    "'diversity@LAYER' (a penalty on restarts' similarity), e.g. "
                                                    "'unit + 100*diversity'")] = "unit",
             judge: JudgeOpt = None,
             check: Annotated[bool, typer.Option("--check", help="score each picture against the units' natural "
                                                 "exemplars in --images (path similarity, plausibility, natural "
                                                 "range) and flag suspicious ones: a 'check' object in the "
                                                 "JSON")] = False,
             attribution: Annotated[bool, typer.Option("--attribution", help="write an attribution overlay beside "
                                                       "each picture: the summed |gradient| of the objective per "
                                                       "pixel over the steps (MaCo's transparency)")] = False,
             as_json: JsonOpt = False) -> None:
    """Activation maximization: images that excite units of a layer most (one image per unit and restart,
    plus a mosaic). Normalized by each unit's maximum response over reference images (--images)."""
    from ..engine.styles import resolve
    from ..images import check_scale
    from ..sweep import Job, Model
    from ..tasks.activation import check_options, target_layer, target_points, unit_image_size
    from ..tasks.activation import maximize as run_maximize
    from ..tasks.common import call_options, check_size, display_scale
    from .trust import check_summary, validate

    check_options(restarts, relu_leak, cap_leak, candidates)
    validate(check, images, mode, token, objective)
    rep = load_rep(model, layer, weights, random_weights, device, threads, channels,
                   layer_for=objective_layer(objective, mode, token), **gradient_options(model, exact_gradient))
    targets = targets_of(rep.layer or "output", unit, mode, token, objective)  # None: a network of one module (HOG)
    if len({t.spec() for t in targets}) != len(targets):
        raise PreimageError("--unit names a unit twice: each would give the same picture")
    sty, _ = resolve(rep, style, param=param, transforms=transforms, prior=prior, prior_weight=prior_weight,
                     optimizer=optimizer)
    scale = check_scale(png_scale or display_scale(sty.name))
    if images is not None:
        from ..images import list_images

        list_images(images)  # a missing or empty folder fails before any work
    hw = check_size(size) or ((unit_image_size(rep),) * 2)
    target_points(rep.spec, targets, hw, rep.device_dtype())  # every unit checked against its layer, now
    kwargs = {"restarts": restarts, "candidates": candidates, "skip_grad": skip_grad, "style": style, "param": param,
              "transforms": transforms,
              "prior": prior_option(sty, prior, prior_weight), "optimizer": optimizer, "size": size, "iters": iters,
              "seed": seed, "images": images, "judge": judge, "relu_leak": relu_leak, "cap_leak": cap_leak,
              "amp": amp, "compile": compile, "attribution": attribution or None}
    options = call_options(run_maximize, kwargs, ("model", "target", "stats", "progress", "device")) | {
        "png_scale": scale}
    m = Model(rep.spec, device)
    jobs = [Job("maximize", m.id, target_layer(t, rep.spec), (t.spec(),), options=options) for t in targets]
    summary = one_job_sweep("maximize", m, jobs, [t.spec() for t in targets], out, force,
                            label=f"maximize {target_layer(targets[0], rep.spec) or rep.layer or 'output'}",
                            mosaic=True)
    if check:
        summary["check"] = check_summary(rep.spec, targets, images, summary)

    def human() -> None:
        if summary.get("adapted"):
            out_console.print(f"note: {summary['adapted']}", markup=False)
        if summary.get("finished"):
            out_console.print(f"note: {summary['finished']}", markup=False)
        if summary.get("missed"):
            out_console.print(f"note: {summary['missed']}", markup=False)
        for name, t in summary.get("transfer", {}).items():
            out_console.print(f"judge {name}: top-1 for {sum(t['top1'])}/{len(t['top1'])}, mean p(class) "
                              f"{t['mean_probability']:.3f}")
        for r in summary["results"]:
            extra = f", p={r['probability']:.3f}" if r.get("probability") is not None else ""
            ratio = (f" = {r['ratio']:.2f}× the reference max {r['reference_max']:.3g}" if r.get("ratio") is not None
                     else " (no reference maximum for this target)" if r.get("unit") is None
                     or r.get("reference_max") is None
                     else f" (the reference max is {r['reference_max']:.3g}, not positive: no ratio)")
            best = (f" (best of {r['candidates']} by {'p(class)' if r.get('probability') is not None else 'activation'}"
                    f": candidate {r['candidate']})" if r.get("candidates") else "")
            out_console.print(f"{r['label']} restart {r['restart']}{best}: activation {r['activation']:.3g}{ratio}"
                              f"{extra}  → {r['image']}", markup=False)
        if len(summary["images"]) > 1:
            out_console.print(f"mosaic → {summary['image']}")
        for r in summary.get("check", {}).get("records", []):
            out_console.print(f"check unit {r['unit']} restart {r['restart']}: "
                              f"{'FLAGGED (' + r['reason'] + ')' if r['flagged'] else 'not flagged'}; "
                              + ", ".join(f"{m.replace('_', ' ')} {'n/a' if r[m] is None else format(r[m], '.3g')}"
                                          for m in ("collapse", "natural_range", "plausibility", "path_similarity")),
                              markup=False)
        cached = " (cached)" if summary["jobs"]["cached"] == summary["jobs"]["total"] else ""
        out_console.print(f"{summary['iterations']} iterations at {summary['size'][0]}×{summary['size'][1]} in "
                          f"{summary['seconds']:.1f} s{cached}")

    emit(summary, as_json, human)


@app.command()
def template(template: Annotated[Path, typer.Argument(help="a linear template over the cells: .npy/.npz/DPM .mat, "
                                                      "h×w×D or D×h×w (e.g. a HOG detector's filter)")],
             model: Annotated[str, typer.Option("--model", "-m", help="hog, hogb or dsift")] = "hog",
             restarts: Annotated[int, typer.Option(help="pictures of the template (restarts)", **COUNT)] = 1,
             iters: Annotated[int, typer.Option(help="iterations", **ITERS)] = 300, seed: SeedOpt = 0,
             out: OutOpt = Path("preimage-out"), png_scale: PngScaleOpt = None,
             exact_gradient: ExactGradientOpt = False,
             force: ForceOpt = False, device: DeviceOpt = "cpu", as_json: JsonOpt = False) -> None:
    """The picture of a linear template (a HOG detector's filter) by activation maximization over the cells
    (docs/paper-notes.md §4 item 2)."""
    from ..images import check_scale, save_png
    from ..report import check_folder, write_json
    from ..tasks.templates import load_template, template_picture

    scale = check_scale(png_scale or "minmax")
    w = load_template(template)  # a bad file fails before any output is claimed
    rep = load_rep(model, "output", None, False, device, **gradient_options(model, exact_gradient))
    outdir = check_folder(out)
    stem = f"template-{safe_name(template.stem)}-{safe_name(rep.name)}"
    names = [f"{stem}-r{r}" for r in range(restarts)] if restarts > 1 else [stem]
    taken = [outdir / n for n in [*(f"{n}.png" for n in names), f"{stem}.json"] if (outdir / n).exists()]
    if taken and not force:
        raise PreimageError(f"{taken[0]} already exists; pass --force to overwrite or --out to write elsewhere")
    with progress_bar(f"template {template.name}") as update:
        res = template_picture(rep, w, iters=iters, seed=seed, restarts=restarts, progress=update)
    files = [str(save_png(img, outdir / f"{n}.png", scale)) for n, img in zip(names, res.images, strict=True)]
    summary = {"model": res.model, "template": str(template), "activation": res.metrics["activation"].tolist(),
               "activation_start": res.metrics["activation_start"].tolist(), "image": files[0], "images": files,
               "iterations": res.iterations, "seconds": round(res.seconds, 3), "size": res.info["size"], "seed": seed}
    summary["json"] = str(write_json(outdir / f"{stem}.json", summary))

    def human() -> None:
        for a0, a, img in zip(summary["activation_start"], summary["activation"], files, strict=True):
            out_console.print(f"template response {a0:.3g} → {a:.3g}  → {img}")

    emit(summary, as_json, human)


@app.command()
def caricature(image: Annotated[str, typer.Argument(help="image path or sample:NAME (e.g. sample:coffee)")],
               model: ModelOpt = "efficientnet_lite0", layer: LayerOpt = None,
               size: Annotated[int | None, typer.Option(help="input size in pixels (default: the model's)",
                                                        **SIZE)] = None,
               iters: ItersOpt = None, seed: SeedOpt = 0, optimizer: OptimizerOpt = None,
               relu_leak: LeakOpt = 0.0, cap_leak: CapLeakOpt = None,
               limit: Annotated[bool, typer.Option("--limit", help="also measure how far the score can go: the "
                                                   "same energy maximized from noise (3× the work)")] = False,
               out: OutOpt = Path("preimage-out"), png_scale: PngScaleOpt = None,
               weights: WeightsOpt = None, random_weights: RandomOpt = False, channels: ChannelsOpt = None,
               force: ForceOpt = False,
               device: DeviceOpt = "cpu", amp: AmpOpt = None, compile: CompileOpt = False,
               threads: ThreadsOpt = None, style: style_opt("paper") = "paper", param: ParamOpt = None,
               transforms: TransformsOpt = None, prior: PriorOpt = None, prior_weight: PriorWeightOpt = None,
               as_json: JsonOpt = False) -> None:
    """Caricature: exaggerate what a layer sees in IMAGE, starting from IMAGE itself."""
    from ..engine.styles import resolve
    from ..images import check_scale, image_name, load_image
    from ..sweep import Job, Model
    from ..tasks.activation import caricature as run_caricature
    from ..tasks.activation import check_options
    from ..tasks.common import call_options, display_scale

    check_options(relu_leak=relu_leak, cap_leak=cap_leak)
    rep = load_rep(model, layer, weights, random_weights, device, threads, channels)
    sty, _ = resolve(rep, style, param=param, transforms=transforms, prior=prior, prior_weight=prior_weight,
                     optimizer=optimizer)
    scale = check_scale(png_scale or display_scale(sty.name))
    load_image(image, size or rep.spec.input_size, channels=rep.channels)  # an unreadable image fails here
    kwargs = {"size": size, "iters": iters, "seed": seed, "style": style, "param": param, "transforms": transforms,
              "prior": prior_option(sty, prior, prior_weight), "optimizer": optimizer, "relu_leak": relu_leak,
              "cap_leak": cap_leak, "limit": limit, "amp": amp, "compile": compile}
    options = call_options(run_caricature, kwargs, ("model", "images", "layer", "progress", "device")) | {
        "png_scale": scale}
    m = Model(rep.spec, device)
    jobs = [Job("caricature", m.id, rep.layer, images=(image,), options=options)]
    summary = one_job_sweep("caricature", m, jobs, [image_name(image)], out, force,
                            label=f"caricature {rep.layer or 'output'}")
    start, end = summary["score_start"], summary["score_end"]

    def human() -> None:
        gain = f"{end / start:.2f}×" if start else "the start scores 0"
        out_console.print(f"score {start:.3g} → {end:.3g} ({gain})  → {summary['image']}")
        if limit:
            out_console.print(f"limit {summary['score_limit']:.3g} (the best score found from noise or here); "
                              f"this caricature reaches {100 * summary['share_of_limit']:.0f}% of it")
        out_console.print(f"{summary['iterations']} iterations in {summary['seconds']:.1f} s")

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
    rep = load_rep(model, "output", weights, random_weights, device, channels=channels)
    with progress_bar("stats") as update:
        st = compute_stats(rep, specs, size=size, batch=batch, progress=update)
    st.source = source
    # Cached per model and weights (their digest): 'maximize' with the same model reads them, random weights too.
    path = str(save_stats(st, cache_path(st.model, st.weights_id)))
    rows = [{"name": name, "kind": kind, "channels": s.channels, "max": float(s.max.max()),
             "mean": float(s.mean.mean()), "std": float(s.std.mean())} for (kind, name), s in st.points.items()]
    summary = {"model": st.model, "weights": st.weights_id, "path": path, "source": st.source,
               "images": len(st.images), "size": list(st.size) if st.size else None, "points": len(rows),
               "layers": rows}

    def human() -> None:
        out_console.print(f"{st.model}: statistics of {len(rows)} layer outputs/ReLU inputs over {len(st.images)} "
                          f"images ({st.source}); cached in {path}")

    emit(summary, as_json, human)
